//! Writes a benchmark trace with the same event shape as the LTTng-UST comparison in
//! docs/PERFORMANCE.md ("Decoder throughput"): one tracepoint with three u32 fields.
//!
//! ```text
//! cargo run --release -p klog-decode --example bench_trace -- OUT_DIR [EVENTS]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use klog::{klog, RelayConfig, RelayHandler};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().expect("usage: bench_trace OUT_DIR [EVENTS]"));
    let n: u32 = args
        .next()
        .map_or(10_000_000, |s| s.parse().expect("EVENTS"));
    let live = std::env::temp_dir().join(format!("klog-bench-live-{}", std::process::id()));
    let cfg = RelayConfig {
        subbuf_size: 1 << 20,
        n_subbufs: 64,
        ..RelayConfig::new(&live)
    };
    let h = Arc::new(RelayHandler::open(&cfg).expect("open handler"));
    klog::register(h.clone()).expect("register");
    std::fs::create_dir_all(&out).expect("out dir");
    let rec = relay::user::Recorder::for_dir(&live, "cpu", &out).expect("recorder");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let r = s.spawn(|| rec.run(&stop));
        for i in 0..n {
            klog!("event a={} b={} c={}", i, i % 4, 0x1fu32);
        }
        klog::unregister();
        let st = h.finish();
        stop.store(true, Ordering::Release);
        r.join().expect("recorder").expect("recorder io");
        let lost: u64 = st.lost.iter().sum();
        let frames: u64 = st.frames.iter().sum();
        eprintln!("{frames} events recorded, {lost} lost");
    });
    std::fs::copy(live.join("metadata"), out.join("metadata")).expect("metadata");
    drop(h);
    let _ = std::fs::remove_dir_all(&live);
}
