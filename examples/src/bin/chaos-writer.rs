//! chaos-writer: the fault-injection suite's writer (examples/tests/chaos.rs). Threads emit
//! `klog!` events that each carry the thread's id and its own sequence number (0, 1, 2, ...), so
//! a checker can tell from a decoded trace alone which events arrived, which are missing and
//! which are duplicated or damaged.
//!
//! ```text
//! chaos-writer (--record DIR | --live DIR) [--threads T] [--events N] [--mode no-overwrite|overwrite]
//!              [--subbuf-size BYTES] [--n-subbufs K] [--pace N] [--max-secs S]
//!              [--fork-storm N] [--late-when FILE] [--counts FILE] [--progress FILE] [--hold]
//! ```
//!
//! * `--record DIR`: the application records its own trace into DIR (`klog::record`; it has no
//!   overwrite mode).
//! * `--live DIR`: only a live channel in DIR, for an external `klog-decode record`; with
//!   `--hold` the finished channel stays open until stdin reaches end-of-file, so a recorder
//!   started late can still drain it.
//! * `--events N`: events per thread; 0 emits until `--max-secs` (default 120) have passed or a
//!   signal ends the process.
//! * `--pace N`: sleep 1 ms after every N events of a thread (0: never), to keep traces small
//!   while a test waits for a point to send a signal.
//! * `--fork-storm N`: one more thread forks N children while the others log; each child runs
//!   `klog!` statements (which must neither hang nor reach the parent's buffers) and exits. A
//!   child that has not exited after 20 s is killed and counted as hung.
//! * `--late-when FILE`: when thread 0 has emitted its events it waits (at most 60 s) until FILE
//!   exists, then emits one event from each of 64 callsites that have not fired before, so the
//!   trace's metadata grows by some kilobytes at a moment the caller chooses.
//! * `--counts FILE`: written once the events are emitted (before `--hold` waits): `thread T emitted N` per thread, then
//!   `forks N hung H failed F` and `handler frames F lost L` (the handler's own counters).
//! * `--progress FILE`: 64 bytes per thread, updated while the process runs and readable after
//!   any death (a shared file mapping): u64 `started` (events whose `klog!` began) and u64 `done`
//!   (events whose `klog!` returned), little-endian, at offsets 64·T and 64·T+8.
//!
//! Event forms, by `seq % 16` (the checker recomputes every argument from `(t, seq)`):
//! * 15: `klog_raw!` of `t` (u32 LE), `seq` (u64 LE), `mix(t, seq)` (u32 LE);
//! * 7: `klog_warn!("chaos t={} seq={} retry name={} ratio={:.3}", t, seq, NAMES[seq % 5], seq / 8)`;
//! * otherwise `klog!("chaos t={} seq={} v={:#x} ok={} d={}", t, seq, mix(t, seq), seq.is_multiple_of(3), -seq)`.
//!
//! The late events (`--late-when`) are `klog!("chaos t={} seq={} late", t, seq)`.
//! Children of a fork storm use `t` = 1_000_000 + child index, which no parent thread has.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use klog::{klog, klog_raw, klog_warn, RelayConfig, RelayHandler};

#[path = "../chaos_events.rs"]
mod chaos_events;
use chaos_events::{mix, CHILD_T, NAMES};

struct Args {
    threads: usize,
    events: u64,
    overwrite: bool,
    subbuf_size: usize,
    n_subbufs: usize,
    pace: u64,
    max_secs: u64,
    fork_storm: u32,
    record: Option<PathBuf>,
    live: Option<PathBuf>,
    hold: bool,
    late_when: Option<PathBuf>,
    counts: Option<PathBuf>,
    progress: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: chaos-writer (--record DIR | --live DIR) [--threads T] [--events N] \
         [--mode no-overwrite|overwrite] [--subbuf-size BYTES] [--n-subbufs K] [--pace N] \
         [--max-secs S] [--fork-storm N] [--late-when FILE] [--counts FILE] [--progress FILE] [--hold]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        threads: 8,
        events: 10_000,
        overwrite: false,
        subbuf_size: 4096,
        n_subbufs: 4,
        pace: 0,
        max_secs: 120,
        fork_storm: 0,
        record: None,
        live: None,
        hold: false,
        late_when: None,
        counts: None,
        progress: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage()),
            "--events" => a.events = val().parse().unwrap_or_else(|_| usage()),
            "--mode" => {
                a.overwrite = match val().as_str() {
                    "overwrite" => true,
                    "no-overwrite" => false,
                    _ => usage(),
                }
            }
            "--subbuf-size" => a.subbuf_size = val().parse().unwrap_or_else(|_| usage()),
            "--n-subbufs" => a.n_subbufs = val().parse().unwrap_or_else(|_| usage()),
            "--pace" => a.pace = val().parse().unwrap_or_else(|_| usage()),
            "--max-secs" => a.max_secs = val().parse().unwrap_or_else(|_| usage()),
            "--fork-storm" => a.fork_storm = val().parse().unwrap_or_else(|_| usage()),
            "--record" => a.record = Some(PathBuf::from(val())),
            "--live" => a.live = Some(PathBuf::from(val())),
            "--hold" => a.hold = true,
            "--late-when" => a.late_when = Some(PathBuf::from(val())),
            "--counts" => a.counts = Some(PathBuf::from(val())),
            "--progress" => a.progress = Some(PathBuf::from(val())),
            _ => usage(),
        }
    }
    if a.record.is_some() == a.live.is_some() || a.threads == 0 {
        usage()
    }
    a
}

/// Per-thread counters in a shared file mapping: they outlive the process whatever kills it.
struct Progress {
    map: Option<(*mut u8, usize)>,
}

// SAFETY: the mapping is only accessed through atomic operations on disjoint 8-byte words.
unsafe impl Sync for Progress {}

impl Progress {
    fn open(path: Option<&Path>, threads: usize) -> io::Result<Progress> {
        let Some(path) = path else {
            return Ok(Progress { map: None });
        };
        let len = threads * 64;
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        f.set_len(len as u64)?;
        use std::os::fd::AsRawFd;
        // The file was just sized to `len` bytes; no other mapping in this process aliases it.
        // SAFETY: a fresh shared mapping of that file, checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Progress {
            map: Some((p.cast(), len)),
        })
    }

    /// Word `w` (0: started, 1: done) of thread `t`.
    fn word(&self, t: usize, w: usize) -> Option<&AtomicU64> {
        let (p, len) = self.map?;
        let off = t * 64 + w * 8;
        if off + 8 > len {
            return None;
        }
        // The mapping (page-aligned base) lives as long as `self`; its words are only accessed
        // atomically.
        // SAFETY: `off` is 8-aligned and inside that live mapping.
        Some(unsafe { &*p.add(off).cast::<AtomicU64>() })
    }

    fn set(&self, t: usize, w: usize, v: u64) {
        if let Some(a) = self.word(t, w) {
            a.store(v, Ordering::Release);
        }
    }
}

/// One event of thread `t`, in the form `seq` selects (see the module documentation).
#[inline]
fn emit(t: u32, seq: u64) {
    match seq % 16 {
        15 => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&t.to_le_bytes());
            b[4..12].copy_from_slice(&seq.to_le_bytes());
            b[12..].copy_from_slice(&mix(t, seq).to_le_bytes());
            klog_raw!(b);
        }
        7 => klog_warn!(
            "chaos t={} seq={} retry name={} ratio={:.3}",
            t,
            seq,
            NAMES[(seq % 5) as usize],
            seq as f64 / 8.0
        ),
        _ => klog!(
            "chaos t={} seq={} v={:#x} ok={} d={}",
            t,
            seq,
            mix(t, seq),
            seq.is_multiple_of(3),
            -(seq as i64)
        ),
    }
}

/// Emits thread `t`'s events until `events` (0: until `stop`); returns how many.
fn run_thread(t: u32, a: &Args, stop: &AtomicBool, progress: &Progress) -> u64 {
    let mut seq = 0u64;
    while (a.events == 0 || seq < a.events) && !stop.load(Ordering::Relaxed) {
        progress.set(t as usize, 0, seq + 1);
        emit(t, seq);
        seq += 1;
        progress.set(t as usize, 1, seq);
        if a.pace > 0 && seq.is_multiple_of(a.pace) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if let (0, Some(trigger)) = (t, &a.late_when) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !trigger.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // 64 distinct callsites (one per expansion of `klog!`), defined in the metadata now.
        macro_rules! x4 { ($($s:tt)*) => { $($s)* $($s)* $($s)* $($s)* }; }
        x4! { x4! { x4! { {
            progress.set(0, 0, seq + 1);
            klog!("chaos t={} seq={} late", t, seq);
            seq += 1;
            progress.set(0, 1, seq);
        } } } }
    }
    seq
}

#[derive(Default)]
struct Storm {
    forks: u32,
    hung: u32,
    failed: u32,
}

/// Forks `n` children while the other threads log. A child runs `klog!` statements and
/// `_exit`s; `_exit` (not `exit`) because only async-signal-safe calls are sound in the child
/// of a multi-threaded process, and `klog!` is what is under test.
fn fork_storm(n: u32) -> Storm {
    let mut s = Storm::default();
    for i in 0..n {
        // SAFETY: the child only runs `klog!` (the behaviour under test) and `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            for seq in 0..64 {
                emit(CHILD_T + i, seq);
            }
            // SAFETY: ends the child without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            s.failed += 1;
            continue;
        }
        s.forks += 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child `pid`; `status` is a valid out pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    eprintln!("chaos-writer: fork child {i} ended with status {status:#x}");
                    s.failed += 1;
                }
                break;
            }
            if r < 0 {
                s.failed += 1;
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("chaos-writer: fork child {i} (pid {pid}) hangs; killing it");
                s.hung += 1;
                // SAFETY: our own child; reaped right after.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    s
}

fn main() -> ExitCode {
    let a = parse();
    match run(&a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos-writer: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the writer threads (and the fork storm) to the end; returns per-thread counts.
fn emit_all(a: &Args, progress: &Progress) -> (Vec<u64>, Storm) {
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(a.max_secs);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..a.threads as u32)
            .map(|t| {
                let stop = &stop;
                s.spawn(move || run_thread(t, a, stop, progress))
            })
            .collect();
        let storm = (a.fork_storm > 0).then(|| s.spawn(|| fork_storm(a.fork_storm)));
        while !writers.iter().all(|w| w.is_finished()) {
            if Instant::now() >= deadline {
                stop.store(true, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let counts = writers.into_iter().map(|w| w.join().unwrap_or(0)).collect();
        let storm = storm
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (counts, storm)
    })
}

fn run(a: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let progress = Progress::open(a.progress.as_deref(), a.threads)?;
    if let Some(dir) = &a.record {
        if a.overwrite {
            return Err("--record: klog::record has no overwrite mode (use --live)".into());
        }
        let rec = klog::RecordConfig {
            subbuf_size: a.subbuf_size,
            n_subbufs: a.n_subbufs,
            ..klog::RecordConfig::new(dir)
        }
        .start()?;
        let (counts, storm) = emit_all(a, &progress);
        let sum = rec.finish()?;
        write_counts(a, &counts, &storm, &sum.frames, &sum.lost)?;
        return Ok(storm.hung == 0 && storm.failed == 0);
    }
    let live = a.live.as_deref().unwrap_or(Path::new("."));
    let handler = Arc::new(RelayHandler::open(&RelayConfig {
        subbuf_size: a.subbuf_size,
        n_subbufs: a.n_subbufs,
        overwrite: a.overwrite,
        ..RelayConfig::new(live)
    })?);
    klog::register(handler.clone())?;
    let (counts, storm) = emit_all(a, &progress);
    klog::unregister();
    let stats = handler.finish();
    write_counts(a, &counts, &storm, &stats.frames, &stats.lost)?;
    if a.hold {
        // The channel stays open (and its files in place) until the test closes stdin.
        let mut sink = Vec::new();
        let _ = io::stdin().take(1 << 20).read_to_end(&mut sink);
    }
    drop(handler);
    Ok(storm.hung == 0 && storm.failed == 0)
}

fn write_counts(
    a: &Args,
    counts: &[u64],
    storm: &Storm,
    frames: &[u64],
    lost: &[u64],
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(path) = &a.counts {
        let mut s = String::new();
        for (t, n) in counts.iter().enumerate() {
            s += &format!("thread {t} emitted {n}\n");
        }
        s += &format!(
            "forks {} hung {} failed {}\nhandler frames {} lost {}\n",
            storm.forks,
            storm.hung,
            storm.failed,
            frames.iter().sum::<u64>(),
            lost.iter().sum::<u64>()
        );
        File::create(path)
            .and_then(|mut f| f.write_all(s.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
