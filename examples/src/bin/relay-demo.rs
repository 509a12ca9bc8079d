//! relay-demo: several threads write sequence-numbered messages into a per-CPU relay channel
//! while the recorder drains the buffer files (by path, as another process would) to disk; then
//! the recorded files are parsed back and every message is accounted for.
//!
//! ```text
//! relay-demo [--threads T] [--messages N] [--subbuf-size BYTES] [--n-subbufs K]
//!            [--overwrite] [--out DIR] [--shm DIR] [--show N]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use relay::user::{Channel, ChannelCallbacks, Recorder};
use relay::{NoOverwrite, Overwrite};

struct Args {
    threads: usize,
    messages: u64,
    subbuf_size: usize,
    n_subbufs: usize,
    overwrite: bool,
    out: PathBuf,
    shm: PathBuf,
    show: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: relay-demo [--threads T] [--messages N] [--subbuf-size BYTES] [--n-subbufs K] \
         [--overwrite] [--out DIR] [--shm DIR] [--show N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let pid = std::process::id();
    let mut a = Args {
        threads: 4,
        messages: 100_000,
        subbuf_size: 256 * 1024,
        n_subbufs: 32,
        overwrite: false,
        out: std::env::temp_dir().join(format!("relay-demo-out-{pid}")),
        shm: PathBuf::from(if std::path::Path::new("/dev/shm").is_dir() {
            format!("/dev/shm/relay-demo-{pid}")
        } else {
            std::env::temp_dir()
                .join(format!("relay-demo-{pid}"))
                .display()
                .to_string()
        }),
        show: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage()),
            "--messages" => a.messages = val().parse().unwrap_or_else(|_| usage()),
            "--subbuf-size" => a.subbuf_size = val().parse().unwrap_or_else(|_| usage()),
            "--n-subbufs" => a.n_subbufs = val().parse().unwrap_or_else(|_| usage()),
            "--overwrite" => a.overwrite = true,
            "--out" => a.out = PathBuf::from(val()),
            "--shm" => a.shm = PathBuf::from(val()),
            "--show" => a.show = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    a
}

/// Message: u16 length of the whole message, u16 thread, u64 sequence, then text.
fn encode(thread: u16, seq: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&thread.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(format!("hello from thread {thread}, message {seq}").as_bytes());
    let len = out.len() as u16;
    out[..2].copy_from_slice(&len.to_le_bytes());
}

fn main() -> ExitCode {
    let args = parse_args();
    let r = if args.overwrite {
        run(&args, Overwrite)
    } else {
        run(&args, NoOverwrite)
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("relay-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run<C: ChannelCallbacks>(args: &Args, cb: C) -> Result<bool, Box<dyn std::error::Error>> {
    // Never overwrite another run's output (the recorder writes `cpuN` there).
    klog::ensure_no_trace(&args.out)?;
    // Only a directory made here is removed at the end (the channel removes its files).
    let made_shm = !args.shm.exists();
    std::fs::create_dir_all(&args.shm)?;
    std::fs::create_dir_all(&args.out)?;
    let chan = Channel::open(
        Some("cpu"),
        Some(&args.shm),
        args.subbuf_size,
        args.n_subbufs,
        cb,
    )?;
    println!(
        "relay channel: {} buffers × {} sub-buffers × {} B in {} ({} mode)",
        chan.n_bufs(),
        args.n_subbufs,
        args.subbuf_size,
        args.shm.display(),
        if args.overwrite {
            "overwrite"
        } else {
            "no-overwrite"
        }
    );

    let stop = AtomicBool::new(false);
    let recorder = Recorder::for_dir(&args.shm, "cpu", &args.out)?;
    let start = Instant::now();
    let (records, written) = std::thread::scope(|s| {
        let rec = s.spawn(|| recorder.run(&stop));
        let writers: Vec<_> = (0..args.threads)
            .map(|t| {
                let chan = &chan;
                s.spawn(move || {
                    let mut msg = Vec::with_capacity(64);
                    let mut ok = 0u64;
                    for seq in 0..args.messages {
                        encode(t as u16, seq, &mut msg);
                        ok += chan.write(&msg) as u64;
                    }
                    ok
                })
            })
            .collect();
        let accepted: u64 = writers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
        chan.flush();
        stop.store(true, Ordering::Release);
        (rec.join(), accepted)
    });
    let elapsed = start.elapsed();
    let records = records.map_err(|_| "recorder panicked")??;
    let stats = chan.stats();
    let report = chan.close();
    if report.last_toobig.is_some() {
        eprintln!("{report}");
    }

    // Parse the recorded files back.
    let total = args.threads as u64 * args.messages;
    let mut next: BTreeMap<(usize, u16), u64> = BTreeMap::new();
    let mut delivered = 0u64;
    let mut bad = 0u64;
    let mut shown = Vec::new();
    for (cpu, rec) in records.iter().enumerate() {
        let data = std::fs::read(&rec.out)?;
        let mut p = 0;
        while p + 12 <= data.len() {
            let len = u16::from_le_bytes([data[p], data[p + 1]]) as usize;
            if len < 12 || p + len > data.len() {
                bad += 1;
                break;
            }
            let thread = u16::from_le_bytes([data[p + 2], data[p + 3]]);
            let seq = u64::from_le_bytes(data[p + 4..p + 12].try_into()?);
            let text = String::from_utf8_lossy(&data[p + 12..p + len]);
            let expect_text = format!("hello from thread {thread}, message {seq}");
            let prev = next.entry((cpu, thread)).or_insert(0);
            if text != expect_text || (!args.overwrite && seq < *prev) {
                bad += 1;
            }
            *prev = seq + 1;
            if shown.len() < args.show {
                shown.push(format!("cpu{cpu} thread {thread} #{seq}: {text}"));
            }
            delivered += 1;
            p += len;
        }
    }
    let dropped: usize = stats.iter().map(|s| s.dropped_msgs).sum();
    let lapped: usize = stats.iter().map(|s| s.lapped_subbufs).sum();
    for line in &shown {
        println!("  {line}");
    }
    for rec in &records {
        println!(
            "  {}: {} bytes recorded, {} dropped, {} sub-buffers lapped",
            rec.name,
            rec.bytes,
            rec.dropped_msgs.unwrap_or(0),
            rec.lapped_subbufs.unwrap_or(0)
        );
    }
    println!(
        "written {total} messages from {} threads in {:.3} s ({:.1} M msgs/s): \
         {delivered} recorded, {dropped} dropped, {lapped} sub-buffers lapped, {bad} malformed",
        args.threads,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
    let ok = bad == 0
        && (args.overwrite || (delivered + dropped as u64 == total && written == delivered));
    if ok {
        println!(
            "relay-demo: OK, every message accounted for (output in {})",
            args.out.display()
        );
    } else {
        println!("relay-demo: FAILED accounting");
    }
    if made_shm {
        let _ = std::fs::remove_dir(&args.shm);
    }
    Ok(ok)
}
