// Placeholders that refer to arguments that were not given: the error points at the literal.
use klog::klog;

fn main() {
    let a = 1u8;
    klog!("{} and {}", a);
    klog!("{5}", a);
    klog!("nothing to fill {}");
}
