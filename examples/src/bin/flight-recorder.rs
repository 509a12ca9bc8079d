//! flight-recorder: klog as a flight recorder. A relay-backed klog handler in overwrite mode
//! keeps only the newest events of each CPU; nobody reads while the program runs. At the end
//! the buffers are flushed and mapped (`mmap`, the whole buffer), the images are saved as a
//! snapshot trace directory, and the snapshot is decoded to show what the recorder kept.
//!
//! ```text
//! flight-recorder [--threads T] [--events N] [--subbuf-size BYTES] [--n-subbufs K]
//!                 [--show M] [--out DIR]
//! klog-decode --snapshot DIR
//! ```
//!
//! Each thread `t` is pinned to its own allowed CPU (default: up to 4 threads) and emits
//! `klog!("flight event {} of thread {}", i, t)` for `i` in `0..N`. Since a buffer keeps a
//! contiguous run of its newest bytes, the snapshot holds, for every thread, a suffix of its
//! events: the newest one (`N - 1`) present, the oldest (`0`) overwritten long ago, nothing
//! missing in between. The program checks exactly that and exits with 1 if it does not hold.
//! The current sub-buffer of every buffer (after the flush: a bare header) is reported as
//! torn by the decoder, as docs/FORMAT.md describes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use klog::{klog, RelayConfig, RelayHandler};
use klog_decode::{decode_dir, Options, Payload, Record, Value};
use relay::user::RelayFile;

struct Args {
    threads: usize,
    events: u64,
    subbuf_size: usize,
    n_subbufs: usize,
    show: usize,
    out: PathBuf,
    live: PathBuf,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: flight-recorder [--threads T] [--events N] [--subbuf-size BYTES] \
         [--n-subbufs K] [--show M] [--out DIR]"
    );
    ExitCode::from(2)
}

fn parse_args(allowed: usize) -> Option<Args> {
    let pid = std::process::id();
    let live = if Path::new("/dev/shm").is_dir() {
        PathBuf::from(format!("/dev/shm/flight-recorder-{pid}"))
    } else {
        std::env::temp_dir().join(format!("flight-recorder-live-{pid}"))
    };
    let mut a = Args {
        threads: allowed.clamp(1, 4),
        events: 50_000,
        subbuf_size: 4096,
        n_subbufs: 8,
        show: 10,
        out: PathBuf::from("flight-snapshot"),
        live,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next();
        match flag.as_str() {
            "--threads" => a.threads = val()?.parse().ok().filter(|&t| t > 0)?,
            "--events" => a.events = val()?.parse().ok().filter(|&n| n > 0)?,
            "--subbuf-size" => a.subbuf_size = val()?.parse().ok()?,
            "--n-subbufs" => a.n_subbufs = val()?.parse().ok()?,
            "--show" => a.show = val()?.parse().ok()?,
            "--out" => a.out = PathBuf::from(val()?),
            _ => return None,
        }
    }
    // The whole buffer must be addressable (RelayHandler::open checks the rest).
    a.subbuf_size.checked_mul(a.n_subbufs)?;
    Some(a)
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return vec![0];
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, `set` is initialised.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` comes from sched_getaffinity, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Per thread: the event numbers the snapshot holds, in timestamp order.
type Kept = BTreeMap<u64, Vec<u64>>;

fn kept_events(records: &[Record]) -> Kept {
    let mut kept = Kept::new();
    for r in records {
        let Record::Event(e) = r else { continue };
        let Payload::Values(v) = &e.payload else {
            continue;
        };
        if let [Value::Unsigned(i), Value::Unsigned(t)] = v.as_slice() {
            if let (Ok(i), Ok(t)) = (u64::try_from(*i), u64::try_from(*t)) {
                kept.entry(t).or_default().push(i);
            }
        }
    }
    kept
}

fn run(a: &Args, cpus: &[usize]) -> Result<bool, Box<dyn std::error::Error>> {
    if a.threads > cpus.len() {
        // Threads sharing a buffer would push each other's events out.
        return Err(format!(
            "--threads {} exceeds the {} CPUs this process may run on (each thread gets a \
             buffer of its own)",
            a.threads,
            cpus.len()
        )
        .into());
    }
    // Never overwrite a trace (the snapshot writes `cpuN` and `metadata` there).
    klog::ensure_no_trace(&a.out)?;
    // The handler refuses a live directory that holds a trace and removes what it created
    // when dropped.
    let cfg = RelayConfig {
        subbuf_size: a.subbuf_size,
        n_subbufs: a.n_subbufs,
        overwrite: true,
        ..RelayConfig::new(&a.live)
    };
    let h = Arc::new(RelayHandler::open(&cfg)?);
    klog::register(h.clone())?;
    let pinned: Vec<std::io::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                let cpu = cpus[t % cpus.len()];
                s.spawn(move || {
                    pin(cpu)?;
                    for i in 0..a.events {
                        klog!("flight event {} of thread {}", i, t as u64);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("thread panicked")))
            })
            .collect()
    });
    klog::unregister();
    // Flush: the sub-buffers holding the newest events become complete (the decoder skips
    // the one being written). `finish` also writes the final clock record.
    let stats = h.finish();
    for p in pinned {
        p.map_err(|e| format!("pinning a thread: {e}"))?;
    }

    // The snapshot: every buffer mapped whole, saved as a trace directory.
    std::fs::create_dir_all(&a.out)?;
    let n_bufs = h.channel().n_bufs();
    for cpu in 0..n_bufs {
        let name = format!("cpu{cpu}");
        let f = RelayFile::open(a.live.join(&name))?;
        let map = f.mmap(a.subbuf_size * a.n_subbufs)?;
        std::fs::write(a.out.join(&name), map.as_slice())?;
    }
    std::fs::copy(a.live.join("metadata"), a.out.join("metadata"))?;
    drop(h);

    let report = decode_dir(
        &a.out,
        &Options {
            snapshot: true,
            ..Options::default()
        },
    )?;
    let written: u64 = stats.frames.iter().sum();
    println!(
        "flight-recorder: {} threads x {} events ({written} written) into {n_bufs} buffers of \
         {} x {} bytes (overwrite); the snapshot in {} holds {} events ({} torn sub-buffers \
         skipped, {} decoder warnings)",
        a.threads,
        a.events,
        a.n_subbufs,
        a.subbuf_size,
        a.out.display(),
        report.stats.events,
        report.stats.count(klog_decode::WarningKind::TornSubbuf),
        report.stats.total_warnings()
    );
    let lines = report.text_lines(false);
    println!("newest {} events:", a.show.min(lines.len()));
    for l in &lines[lines.len().saturating_sub(a.show)..] {
        println!("  {l}");
    }
    let kept = kept_events(&report.records);
    let mut ok = true;
    for t in 0..a.threads as u64 {
        let ev = kept.get(&t).map(Vec::as_slice).unwrap_or(&[]);
        let (first, last) = (ev.first().copied(), ev.last().copied());
        let contiguous = ev.windows(2).all(|w| w[1] == w[0] + 1);
        let newest = last == Some(a.events - 1);
        let oldest_gone = first.is_some_and(|f| f > 0);
        println!(
            "thread {t}: events {}..={} kept ({} of {}): newest {}, oldest {}, {}",
            first.map_or("-".into(), |f| f.to_string()),
            last.map_or("-".into(), |l| l.to_string()),
            ev.len(),
            a.events,
            if newest { "present" } else { "MISSING" },
            if oldest_gone {
                "overwritten"
            } else {
                "STILL PRESENT"
            },
            if contiguous { "no gaps" } else { "GAPS" }
        );
        ok &= newest && oldest_gone && contiguous;
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let cpus = allowed_cpus();
    let Some(a) = parse_args(cpus.len()) else {
        return usage();
    };
    let r = run(&a, &cpus);
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("flight-recorder: the snapshot is not the newest events of every thread");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("flight-recorder: {e}");
            ExitCode::FAILURE
        }
    }
}
