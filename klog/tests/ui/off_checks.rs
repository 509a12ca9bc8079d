// A compiled-out statement (kind `off`, for klog's `off` feature) is checked like a live one.
fn main() {
    let a = 1u8;
    klog::__private::klog_callsite!(klog, Info, off, "{:x?}", (a));
    klog::__private::klog_callsite!(klog, Info, off, "{}", (a), (a));
    klog::__private::klog_callsite!(klog, Info, off, "{:x}", ("str"));
}
