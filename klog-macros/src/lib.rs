//! klog proc macros: land with the klog issue.
