// `{name}` without a named argument captures a variable of the caller's scope.
use klog::klog;

fn main() {
    klog!("value {nope}");
}
