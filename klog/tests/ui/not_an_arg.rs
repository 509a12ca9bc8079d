// Arguments must implement klog::Arg (checked by the runtime's `emit`); the error says which
// types klog records.
use klog::klog;

#[derive(Debug)]
struct Opaque;

fn main() {
    klog!("{:?}", Opaque);
    let v = vec![1u8, 2];
    klog!("{:?}", v);
}
