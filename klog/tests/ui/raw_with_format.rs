// A raw callsite takes no format string and exactly one argument (klog_raw! always passes "";
// these call the callsite macro directly).
fn main() {
    let bytes = [1u8, 2, 3];
    klog::__private::klog_callsite!(klog, Info, raw, "bytes {}", (bytes));
    klog::__private::klog_callsite!(klog, Info, raw, "", (bytes), (bytes));
    klog::__private::klog_callsite!(klog, Info, raw, "");
}
