//! klog-demo: threads emitting `klog!` events into a relay-backed klog handler while the relay
//! recorder drains the live channel to a trace directory.
//!
//! ```text
//! klog-demo [--threads T] [--events N] [--out DIR] [--mode no-overwrite|overwrite]
//!           [--subbuf-size BYTES] [--n-subbufs K] [--live DIR]
//! ```
//!
//! Each thread t emits `klog!("demo event {} from thread {}", i, t)` for i in 0..N, plus one
//! event of every other level and argument type every 1000 events. At the end it prints how
//! many events were written, recorded (frames in the trace files) and lost. Decode the trace
//! with `klog-decode DIR`.
//!
//! Nothing is overwritten or deleted that this run did not create: `--out` must not hold a
//! trace already, nor `--live` (default: a directory of its own in `/dev/shm`); the live
//! directory is removed at the end only if this run created it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use klog::{klog, klog_debug, klog_error, klog_raw, klog_warn, RelayConfig, RelayHandler};
use relay::user::Recorder;

struct Args {
    threads: usize,
    events: u64,
    out: PathBuf,
    live: PathBuf,
    overwrite: bool,
    subbuf_size: usize,
    n_subbufs: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: klog-demo [--threads T] [--events N] [--out DIR] \
         [--mode no-overwrite|overwrite] [--subbuf-size BYTES] [--n-subbufs K] [--live DIR]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let pid = std::process::id();
    let shm = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from(format!("/dev/shm/klog-demo-{pid}"))
    } else {
        std::env::temp_dir().join(format!("klog-demo-live-{pid}"))
    };
    let mut a = Args {
        threads: 4,
        events: 100_000,
        out: PathBuf::from("klog-trace"),
        live: shm,
        overwrite: false,
        subbuf_size: 1 << 20,
        n_subbufs: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage()),
            "--events" => a.events = val().parse().unwrap_or_else(|_| usage()),
            "--out" => a.out = PathBuf::from(val()),
            "--live" => a.live = PathBuf::from(val()),
            "--mode" => {
                a.overwrite = match val().as_str() {
                    "overwrite" => true,
                    "no-overwrite" => false,
                    _ => usage(),
                }
            }
            "--subbuf-size" => a.subbuf_size = val().parse().unwrap_or_else(|_| usage()),
            "--n-subbufs" => a.n_subbufs = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    a
}

/// What one thread emits; returns the number of `klog!` statements executed.
fn emit_thread(t: u32, events: u64) -> u64 {
    let mut n = 0;
    for i in 0..events {
        klog!("demo event {} from thread {}", i, t);
        n += 1;
        if i % 1000 == 999 {
            let name = "eth0";
            klog_warn!(
                "rx queue {} stalled after {} us, flags={:#x}",
                t,
                i / 1000,
                0x1fu8
            );
            klog_error!(
                "bad checksum {:08x} in {name}",
                (i as u32).wrapping_mul(2654435761)
            );
            klog_debug!(
                "ratio {:.3} signed {} ok={} c={:?}",
                i as f64 / 7.0,
                -(i as i64),
                true,
                'k'
            );
            klog_raw!((i as u32).to_le_bytes());
            n += 4;
        }
    }
    n
}

fn main() -> ExitCode {
    let a = parse();
    match run(&a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("klog-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    // Never overwrite a trace: the recorder and the metadata copy would replace its files.
    klog::ensure_no_trace(&a.out)?;
    // The handler refuses a live directory holding a trace, and removes what it created
    // (its files, and the directory if it made it) when dropped.
    let cfg = RelayConfig {
        subbuf_size: a.subbuf_size,
        n_subbufs: a.n_subbufs,
        overwrite: a.overwrite,
        ..RelayConfig::new(&a.live)
    };
    let handler = Arc::new(RelayHandler::open(&cfg)?);
    std::fs::create_dir_all(&a.out)?;
    let recorder = Recorder::for_dir(&a.live, "cpu", &a.out)?;
    let stop = AtomicBool::new(false);
    klog::register(handler.clone())?;
    let start = Instant::now();
    let (written, records) = std::thread::scope(|s| {
        let rec = s.spawn(|| recorder.run(&stop));
        let writers: Vec<_> = (0..a.threads as u32)
            .map(|t| s.spawn(move || emit_thread(t, a.events)))
            .collect();
        let written: u64 = writers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
        klog::unregister();
        handler.finish();
        stop.store(true, Ordering::Release);
        (written, rec.join())
    });
    let elapsed = start.elapsed();
    let records = records.map_err(|_| "recorder thread panicked")??;
    std::fs::copy(a.live.join("metadata"), a.out.join("metadata"))?;
    let stats = handler.stats();
    drop(handler);

    let frames: u64 = stats.frames.iter().sum();
    let lost: u64 = stats.lost.iter().sum();
    let bytes: u64 = records.iter().map(|r| r.bytes).sum();
    let lapped: usize = records.iter().filter_map(|r| r.lapped_subbufs).sum();
    // What the trace on disk holds, decoded independently of the writer's counters.
    let report = klog_decode::decode_dir(&a.out, &klog_decode::Options::default())?;
    let recorded = report
        .records
        .iter()
        .filter(|r| matches!(r, klog_decode::Record::Event(_)))
        .count() as u64;
    println!(
        "klog-demo: {} threads, {written} events written in {:.3} s ({:.1} M events/s): \
         {recorded} recorded, {lost} lost, {lapped} sub-buffers overwritten, {bytes} bytes, \
         {} decoder warnings; trace in {}",
        a.threads,
        elapsed.as_secs_f64(),
        written as f64 / elapsed.as_secs_f64() / 1e6,
        report.stats.total_warnings(),
        a.out.display()
    );
    // No-overwrite: everything written is in the trace. Overwrite: the writer accounts for every
    // event, and the trace holds at most what was written.
    let ok = frames + lost == written
        && if a.overwrite {
            recorded <= frames
        } else {
            lost == 0 && recorded == written
        };
    if !ok {
        eprintln!("klog-demo: accounting mismatch (written {written}, written to relay {frames}, lost {lost}, recorded {recorded})");
    }
    Ok(ok)
}
