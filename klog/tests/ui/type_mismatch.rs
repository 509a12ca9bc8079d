// A spec whose trait the argument does not implement: rustc's own format_args! check, pointing
// at the argument.
use klog::klog;

fn main() {
    let name = "eth0";
    klog!("{:x}", name);
    klog!("{} {:b}", 1u8, 2.5f64);
}
