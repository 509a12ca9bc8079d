use klog::{klog, RelayConfig, RelayHandler};
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let n = 20_000_000u32;
    let t = Instant::now();
    for i in 0..n {
        klog!("disabled {} {} {}", i, i, i);
    }
    println!(
        "disabled: {:.2} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let dir = format!("/dev/shm/qk-{}", std::process::id());
    let h = Arc::new(
        RelayHandler::open(&RelayConfig {
            overwrite: true,
            ..RelayConfig::new(&dir)
        })
        .unwrap(),
    );
    klog::register(h.clone()).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..n {
            klog!("enabled {} {} {}", i, i ^ 0x55, 7u32);
        }
        println!(
            "enabled 3 u32: {:.2} ns",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
    klog::unregister();
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
