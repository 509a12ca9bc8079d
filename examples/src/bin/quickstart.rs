//! The README's first command: write a klog trace on a built-in default and print it decoded.
//!
//! Two threads emit a few thousand `klog!` events of every level and argument type;
//! `klog::record` drains the per-CPU relay buffers (shared memory) into a trace directory in the
//! background, and `klog-decode`'s library turns the directory back into merged,
//! timestamp-sorted text.

use std::io::Write;

use klog::{klog, klog_debug, klog_error, klog_raw, klog_warn};

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
    let trace = std::env::temp_dir().join(format!("klog-quickstart-{}", std::process::id()));
    let rec = klog::record(&trace)?;
    std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
        let workers: Vec<_> = (0..2).map(|t| s.spawn(move || work(t))).collect();
        for w in workers {
            w.join().map_err(|_| "worker panicked")?;
        }
        Ok(())
    })?;
    let summary = rec.finish()?;

    let mut text = Vec::new();
    let dstats = klog_decode::decode_to_text(&trace, &mut text)?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "trace: {} ({} events, {} lost)",
        trace.display(),
        summary.frames.iter().sum::<u64>(),
        summary.lost.iter().sum::<u64>()
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
