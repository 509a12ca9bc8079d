// Arguments must implement klog::Arg (checked by the runtime's `emit`).
use klog::klog;

#[derive(Debug)]
struct Opaque;

fn main() {
    klog!("{:?}", Opaque);
}
