// Named arguments come after positional ones, and each name once.
use klog::klog;

fn main() {
    let (a, b) = (1u8, 2u8);
    klog!("{x} {}", x = a, b);
    klog!("{x}", x = a, x = b);
}
