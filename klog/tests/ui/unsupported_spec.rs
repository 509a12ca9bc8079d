// Format specs klog cannot carry in a trace, and malformed format strings.
use klog::klog;

fn main() {
    let (a, w) = (1u32, 8usize);
    klog!("{:*}", a);
    klog!("{:.*}", w, a);
    klog!("{:x?}", a);
    klog!("{:1$}", a, w);
    klog!("{:p}", &a);
    klog!("{:d}", a);
    klog!("a } b", a);
    klog!("a {0 b", a);
    klog!("a long message with a stray } somewhere in the middle {}", a);
    klog!("ünïcödé}", a);
}
