// Arguments no placeholder uses: the error points at the argument.
use klog::klog;

fn main() {
    let (a, b) = (1u8, 2u16);
    klog!("{}", a, b + 1);
    klog!("{x}", x = a, y = b);
}
