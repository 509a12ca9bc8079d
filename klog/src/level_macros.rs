// The level macros of klog, included (`include!`) by the crate (lib.rs) and by the kernel
// facade (kernel/mod.rs): the same definitions in user space and in kernel modules. Each
// expands to `$crate::klog!`, i.e. the includer's own `klog!`.

/// `klog!(Level::Error, ...)`.
#[macro_export]
macro_rules! klog_error {
    ($($t:tt)*) => { $crate::klog!(Level::Error, $($t)*) };
}

/// `klog!(Level::Warn, ...)`.
#[macro_export]
macro_rules! klog_warn {
    ($($t:tt)*) => { $crate::klog!(Level::Warn, $($t)*) };
}

/// `klog!(Level::Info, ...)`.
#[macro_export]
macro_rules! klog_info {
    ($($t:tt)*) => { $crate::klog!(Level::Info, $($t)*) };
}

/// `klog!(Level::Debug, ...)`.
#[macro_export]
macro_rules! klog_debug {
    ($($t:tt)*) => { $crate::klog!(Level::Debug, $($t)*) };
}

/// `klog!(Level::Trace, ...)`.
#[macro_export]
macro_rules! klog_trace {
    ($($t:tt)*) => { $crate::klog!(Level::Trace, $($t)*) };
}
