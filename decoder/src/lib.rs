//! klog-decode library: lands with the decoder issue.
