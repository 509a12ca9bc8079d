//! kleak-user: the kleak tracer in user space. A `GlobalAlloc` wrapper logs every allocation
//! and free of the traced threads with `klog!` into a relay-backed klog handler; a small
//! workload leaks a known number of blocks per site on purpose; the trace is recorded to a
//! directory for `kleak-report` (the same analysis as for `kleak.ko`'s kernel traces).
//!
//! ```text
//! kleak-user [--rounds N] [--live DIR] OUT_DIR
//! kleak-report --expect OUT_DIR/expected-leaks OUT_DIR
//! ```
//!
//! Events, as `kleak.ko` writes them:
//!
//! ```text
//! kleak alloc ptr={:#x} size={} site={}     after the allocation returned
//! kleak free ptr={:#x} size={}              before the block is given back
//! ```
//!
//! The site is a per-thread label the workload sets around each piece of work (`with_site`);
//! a global allocator cannot see its caller. Allocations are logged on the worker threads only
//! and only while tracing is on; frees on every thread (a block may be freed elsewhere; frees
//! of blocks the trace never saw allocated are only counted by the report). Allocations the
//! klog handler makes while logging (its metadata record) are not logged: a thread-local flag
//! stops the recursion.
//!
//! The workers are started before tracing begins and stopped after it ends, so the thread
//! machinery of std allocates and frees outside the traced window; what remains outstanding
//! in the trace is exactly the deliberate leaks, listed in `OUT_DIR/expected-leaks`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use klog::{klog, RelayConfig, RelayHandler};
use relay::user::Recorder;

/// Tracing is on (between the start and end barriers of the workers).
static TRACING: AtomicBool = AtomicBool::new(false);
static LOGGED_ALLOCS: AtomicU64 = AtomicU64::new(0);
static LOGGED_FREES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's allocations are traced (the workers).
    static TRACED: Cell<bool> = const { Cell::new(false) };
    /// Inside the logging of an allocation or free: allocations the handler makes are not
    /// logged (and cannot recurse).
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// The site label of this thread's allocations.
    static SITE: Cell<&'static str> = const { Cell::new("other") };
}

/// Runs `log` unless tracing is off or this thread is already logging.
fn logging(log: impl FnOnce()) {
    if !TRACING.load(Ordering::Relaxed) {
        return;
    }
    let _ = BUSY.try_with(|busy| {
        if !busy.replace(true) {
            log();
            busy.set(false);
        }
    });
}

fn log_alloc(p: *mut u8, size: usize) {
    if !TRACED.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    logging(|| {
        let site = SITE.try_with(Cell::get).unwrap_or("other");
        klog!(
            "kleak alloc ptr={:#x} size={} site={}",
            p as usize as u64,
            size as u64,
            site
        );
        LOGGED_ALLOCS.fetch_add(1, Ordering::Relaxed);
    });
}

fn log_free(p: *mut u8, size: usize) {
    logging(|| {
        klog!(
            "kleak free ptr={:#x} size={}",
            p as usize as u64,
            size as u64
        );
        LOGGED_FREES.fetch_add(1, Ordering::Relaxed);
    });
}

/// The system allocator, with every allocation and free logged.
struct Traced;

// Logging neither touches the blocks nor unwinds.
// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Traced {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            log_alloc(p, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            log_alloc(p, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // Logged before the block is released: its address may be reused at once.
        log_free(p, layout.size());
        // SAFETY: the caller's contract for `dealloc`.
        unsafe { System.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        log_free(p, layout.size());
        // SAFETY: the caller's contract for `realloc`.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if q.is_null() {
            // Failed: the old block lives on.
            log_alloc(p, layout.size());
        } else {
            log_alloc(q, new_size);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Traced = Traced;

/// Runs `f` with this thread's allocations labelled `site`.
fn with_site<R>(site: &'static str, f: impl FnOnce() -> R) -> R {
    let old = SITE.with(|s| s.replace(site));
    let r = f();
    SITE.with(|s| s.set(old));
    r
}

/// The deliberate leaks: (site, worker, rounds, bytes per block).
const PARSE_LEAK: (usize, [u32; 2], usize) = (0, [5, 40], 300);
const SESSION_LEAK: (usize, [u32; 3], usize) = (1, [7, 21, 63], 96);
const CACHE_LEAK: (usize, [u32; 1], usize) = (2, [50], 4096);
const WORKERS: usize = 3;

/// `site count bytes` of the deliberate leaks (what `kleak-report --expect` reads).
fn expected_leaks() -> String {
    format!(
        "cache_fill {} {}\nparse_request {} {}\nsession_new {} {}\n",
        CACHE_LEAK.1.len(),
        CACHE_LEAK.1.len() * CACHE_LEAK.2,
        PARSE_LEAK.1.len(),
        PARSE_LEAK.1.len() * PARSE_LEAK.2,
        SESSION_LEAK.1.len(),
        SESSION_LEAK.1.len() * SESSION_LEAK.2
    )
}

/// One worker's workload: `rounds` rounds over four sites.
fn work(w: usize, rounds: u32) {
    let mut sessions: VecDeque<Box<[u64; 12]>> = VecDeque::new();
    let mut cache: HashMap<u32, String> = HashMap::new();
    for i in 0..rounds {
        with_site("parse_request", || {
            let mut req: Vec<u8> = Vec::with_capacity(64 + (i as usize % 7) * 32);
            req.extend_from_slice(format!("GET /item/{i} HTTP/1.1\r\nworker: {w}\r\n").as_bytes());
            let fields: Vec<&[u8]> = req.split(|&b| b == b'\n').collect();
            black_box(fields.len());
            if w == PARSE_LEAK.0 && PARSE_LEAK.1.contains(&i) {
                std::mem::forget(Vec::<u8>::with_capacity(PARSE_LEAK.2));
            }
        });
        with_site("session_new", || {
            sessions.push_back(Box::new([u64::from(i); 12]));
            if sessions.len() > 8 {
                drop(sessions.pop_front());
            }
            if w == SESSION_LEAK.0 && SESSION_LEAK.1.contains(&i) {
                let leaked: &'static mut [u64; 12] = Box::leak(Box::new([0; 12]));
                black_box(leaked);
            }
        });
        with_site("cache_fill", || {
            cache.insert(i % 97, format!("value {i} of worker {w}"));
            if i % 5 == 0 {
                cache.remove(&((i / 5) % 97));
            }
            if w == CACHE_LEAK.0 && CACHE_LEAK.1.contains(&i) {
                black_box(Vec::<u8>::with_capacity(CACHE_LEAK.2).leak());
            }
        });
        with_site("scratch", || {
            let tmp = vec![w as u8; 1 + (i as usize * 13) % 700].into_boxed_slice();
            black_box(&tmp);
        });
    }
    with_site("session_new", || drop(sessions));
    with_site("cache_fill", || drop(cache));
}

struct Args {
    out: PathBuf,
    live: PathBuf,
    rounds: u32,
}

fn parse_args() -> Option<Args> {
    let live = if Path::new("/dev/shm").is_dir() {
        PathBuf::from(format!("/dev/shm/kleak-user-{}", std::process::id()))
    } else {
        std::env::temp_dir().join(format!("kleak-user-live-{}", std::process::id()))
    };
    let mut a = Args {
        out: PathBuf::new(),
        live,
        rounds: 500,
    };
    let mut out = None;
    let mut it = std::env::args_os().skip(1);
    while let Some(flag) = it.next() {
        match flag.to_str() {
            Some("--rounds") => a.rounds = it.next()?.to_str()?.parse().ok()?,
            Some("--live") => a.live = PathBuf::from(it.next()?),
            Some(s) if s.starts_with('-') => return None,
            _ if out.is_none() => out = Some(PathBuf::from(flag)),
            _ => return None,
        }
    }
    a.out = out?;
    // Every deliberate leak happens before round 64.
    (a.rounds >= 64).then_some(a)
}

fn run(a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // Never overwrite a trace (the recorder writes `cpuN` and `metadata` there). The handler
    // refuses a live directory holding one and removes what it created when dropped.
    klog::ensure_no_trace(&a.out)?;
    // Large enough to hold the whole trace without a reader (the pages are touched only as
    // they are written).
    let cfg = RelayConfig {
        subbuf_size: 1 << 20,
        n_subbufs: 8,
        ..RelayConfig::new(&a.live)
    };
    let h = Arc::new(RelayHandler::open(&cfg)?);
    klog::register(h.clone())?;
    let (start, done, exit) = (
        Barrier::new(WORKERS + 1),
        Barrier::new(WORKERS + 1),
        Barrier::new(WORKERS + 1),
    );
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (start, done, exit) = (&start, &done, &exit);
            s.spawn(move || {
                TRACED.with(|t| t.set(true));
                start.wait();
                work(w, a.rounds);
                done.wait();
                TRACED.with(|t| t.set(false));
                exit.wait();
            });
        }
        TRACING.store(true, Ordering::Release);
        start.wait();
        done.wait();
        TRACING.store(false, Ordering::Release);
        exit.wait();
    });
    klog::unregister();
    let stats = h.finish();
    // Drain the buffers while the handler (and so its files) is alive.
    std::fs::create_dir_all(&a.out)?;
    let records = Recorder::for_dir(&a.live, "cpu", &a.out)?.run(&AtomicBool::new(true))?;
    std::fs::copy(a.live.join("metadata"), a.out.join("metadata"))?;
    drop(h);
    std::fs::write(a.out.join("expected-leaks"), expected_leaks())?;
    let lost: u64 = stats.lost.iter().sum();
    let bytes: u64 = records.iter().map(|r| r.bytes).sum();
    println!(
        "kleak-user: {} workers x {} rounds: {} allocations and {} frees logged, {lost} events \
         lost, {bytes} bytes of trace in {}",
        WORKERS,
        a.rounds,
        LOGGED_ALLOCS.load(Ordering::Relaxed),
        LOGGED_FREES.load(Ordering::Relaxed),
        a.out.display()
    );
    print!("deliberate leaks (site count bytes):\n{}", expected_leaks());
    if lost > 0 {
        return Err(format!("{lost} events lost: the trace is incomplete").into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(a) = parse_args() else {
        eprintln!("usage: kleak-user [--rounds N (>= 64)] [--live DIR] OUT_DIR");
        return ExitCode::from(2);
    };
    let r = run(&a);
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kleak-user: {e}");
            ExitCode::FAILURE
        }
    }
}
