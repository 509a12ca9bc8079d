//! The README's first command: write a klog trace on a built-in default and print it decoded.
//!
//! Two threads emit a few thousand `klog!` events of every level and argument type into a
//! per-CPU relay channel (shared memory), the relay recorder drains it to a trace directory, and
//! `klog-decode`'s library turns the directory back into merged, timestamp-sorted text.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use klog::{klog, klog_debug, klog_error, klog_raw, klog_warn, RelayConfig, RelayHandler};
use relay::user::Recorder;

fn work(t: u32) {
    for i in 0..2000u32 {
        klog!(
            "request {} handled by worker {} in {} us",
            i,
            t,
            40 + (i * 7 + t) % 60
        );
        if i % 500 == 0 {
            let queue = "rx0";
            klog_warn!(
                "queue {queue} above {:.1}% (flags={:#06x})",
                87.5 + i as f64 / 100.0,
                0x1fu16
            );
            klog_debug!("worker {} state {:?} ok={}", t, "draining", i % 1000 == 0);
        }
    }
    klog_error!("worker {} stopped: code {:+}", t, -(t as i32) - 1);
    klog!(Level::Trace, "bytes {:?}", &[0xde_u8, 0xad, 0xbe, 0xef][..]);
    klog_raw!([t as u8, 0xff]);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    let live = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from(format!("/dev/shm/klog-quickstart-{pid}"))
    } else {
        std::env::temp_dir().join(format!("klog-quickstart-live-{pid}"))
    };
    let trace = std::env::temp_dir().join(format!("klog-quickstart-{pid}"));
    std::fs::create_dir_all(&trace)?;

    let handler = Arc::new(RelayHandler::open(&RelayConfig::new(&live))?);
    let recorder = Recorder::for_dir(&live, "cpu", &trace)?;
    let stop = AtomicBool::new(false);
    klog::register(handler.clone())?;
    std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
        let rec = s.spawn(|| recorder.run(&stop));
        let workers: Vec<_> = (0..2).map(|t| s.spawn(move || work(t))).collect();
        for w in workers {
            w.join().map_err(|_| "worker panicked")?;
        }
        klog::unregister();
        handler.finish();
        stop.store(true, Ordering::Release);
        rec.join().map_err(|_| "recorder panicked")??;
        Ok(())
    })?;
    std::fs::copy(live.join("metadata"), trace.join("metadata"))?;
    let stats = handler.stats();
    drop(handler);
    let _ = std::fs::remove_dir_all(&live);

    let mut text = Vec::new();
    let dstats = klog_decode::decode_to_text(&trace, &mut text)?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "trace: {} ({} events, {} lost)",
        trace.display(),
        stats.frames.iter().sum::<u64>(),
        stats.lost.iter().sum::<u64>()
    )?;
    for l in lines.iter().take(12) {
        writeln!(out, "{l}")?;
    }
    writeln!(
        out,
        "[... {} more lines ...]",
        lines.len().saturating_sub(24)
    )?;
    for l in lines.iter().skip(12.max(lines.len().saturating_sub(12))) {
        writeln!(out, "{l}")?;
    }
    writeln!(out, "decoded {} lines, {} warnings; decode it again with: cargo run --release -p klog-decode -- {}", lines.len(), dstats.total_warnings(), trace.display())?;
    Ok(())
}
