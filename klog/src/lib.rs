//! klog tracing facade: lands with the klog issue.
#![no_std]
