//! Check 6, `stress`: kthread and hardirq (hrtimer) writers on every CPU hammer the Rust
//! channel while one reader thread per buffer drains it. Every record must arrive whole, in
//! order per writer, exactly once, and the counts must add up.

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{open_cpu, Failures};
use crate::proto::{parse_stats, parse_stress, Command, Ctl, Side, WriterLine};
use crate::seqs::Geom;
use crate::stress_rec::{merge, StreamParser};
use crate::sys;
use crate::util::{diag, Ctx};

const GEOM: Geom = Geom {
    s: 16384,
    n: 8,
    h: 0,
    overwrite: false,
};
const MS: u64 = 2000;
const LEN: usize = 48;
/// Readers stop after this long without data once the run is over.
const QUIET: Duration = Duration::from_millis(300);
/// Hard limit for a reader.
const READER_DEADLINE: Duration = Duration::from_secs(120);

struct ReaderOut {
    cpu: usize,
    parser: StreamParser,
    bytes: u64,
    reads: u64,
    error: Option<String>,
}

fn reader(cpu: usize, mut f: File, done: Arc<AtomicBool>) -> ReaderOut {
    let mut out = ReaderOut {
        cpu,
        parser: StreamParser::new(LEN),
        bytes: 0,
        reads: 0,
        error: None,
    };
    let mut buf = vec![0u8; 64 << 10];
    let start = Instant::now();
    let mut last_data = Instant::now();
    let mut done_seen: Option<Instant> = None;
    loop {
        if let Err(e) = sys::poll_one(&f, libc::POLLIN, 100) {
            out.error = Some(format!("rust/cpu{cpu}: poll: {e}"));
            break;
        }
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    out.parser.feed(&buf[..n]);
                    out.bytes += n as u64;
                    out.reads += 1;
                    last_data = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.error = Some(format!("rust/cpu{cpu}: read: {e}"));
                    break;
                }
            }
        }
        if out.error.is_some() {
            break;
        }
        let now = Instant::now();
        if done_seen.is_none() && done.load(Ordering::Acquire) {
            done_seen = Some(now);
        }
        if let Some(d) = done_seen {
            if now.duration_since(d.max(last_data)) >= QUIET {
                break;
            }
        }
        if now.duration_since(start) > READER_DEADLINE {
            out.error = Some(format!(
                "rust/cpu{cpu}: reader still running after {READER_DEADLINE:?}"
            ));
            break;
        }
    }
    out.parser.finish();
    out
}

/// Where a writer's records should land.
fn home_cpu(writer: u16) -> usize {
    if writer >= 100 {
        (writer - 100) as usize
    } else {
        writer as usize
    }
}

fn evaluate(
    outs: &[ReaderOut],
    writers: &[WriterLine],
    ncpu: usize,
    fails: &mut Failures,
) -> (u64, u64) {
    for o in outs {
        if let Some(e) = &o.error {
            fails.add(e.clone());
        }
        if let Some(e) = &o.parser.error {
            fails.add(format!("rust/cpu{}: {e}", o.cpu));
        }
        diag(&format!(
            "rust/cpu{}: {} bytes in {} reads, {} records",
            o.cpu, o.bytes, o.reads, o.parser.records
        ));
        for &w in o.parser.writers.keys() {
            if home_cpu(w) != o.cpu {
                diag(&format!(
                    "note: writer {w} has records in rust/cpu{} (expected cpu{})",
                    o.cpu,
                    home_cpu(w)
                ));
            }
        }
    }
    let totals = merge(outs.iter().map(|o| &o.parser.writers));
    let (mut attempted, mut written, mut dropped, mut delivered) = (0u64, 0u64, 0u64, 0u64);
    for w in writers {
        let t = u16::try_from(w.writer)
            .ok()
            .and_then(|id| totals.get(&id))
            .cloned()
            .unwrap_or_default();
        diag(&format!(
            "writer {:>3}: attempted {:>9} written {:>9} dropped {:>9} delivered {:>9}{}",
            w.writer,
            w.attempted,
            w.written,
            w.dropped,
            t.delivered,
            if t.buffers > 1 {
                format!(" (in {} buffers)", t.buffers)
            } else {
                String::new()
            }
        ));
        attempted += w.attempted;
        written += w.written;
        dropped += w.dropped;
        delivered += t.delivered;
        if w.written + w.dropped != w.attempted {
            fails.add(format!(
                "writer {}: written {} + dropped {} != attempted {}",
                w.writer, w.written, w.dropped, w.attempted
            ));
        }
        if t.delivered != w.written {
            fails.add(format!(
                "writer {}: {} records delivered, {} written",
                w.writer, t.delivered, w.written
            ));
        }
        if t.duplicates != 0 {
            fails.add(format!(
                "writer {}: {} duplicated records",
                w.writer, t.duplicates
            ));
        }
        if t.delivered > 0 && t.max_seq >= w.attempted {
            fails.add(format!(
                "writer {}: seq {} delivered but only {} attempted",
                w.writer, t.max_seq, w.attempted
            ));
        }
        let home = if w.writer >= 100 {
            w.writer - 100
        } else {
            w.writer
        };
        if home >= ncpu as u64 {
            diag(&format!("note: writer id {} on no known CPU", w.writer));
        }
    }
    for (&id, t) in &totals {
        if !writers.iter().any(|w| w.writer == u64::from(id)) {
            fails.add(format!(
                "writer {id}: {} records delivered but not listed in `stress`",
                t.delivered
            ));
        }
    }
    diag(&format!(
        "total: {} writers, attempted {attempted} written {written} dropped {dropped} delivered {delivered}",
        writers.len()
    ));
    if writers.is_empty() || attempted == 0 {
        fails.add("the stress run attempted no writes".into());
    }
    (dropped, delivered)
}

fn check_stats(ctl: &Ctl, ncpu: usize, dropped: u64, fails: &mut Failures) {
    let text = match ctl.read_text("stats") {
        Ok(t) => t,
        Err(e) => return fails.add(e),
    };
    match parse_stats(&text) {
        Ok(stats) => {
            for s in &stats {
                diag(&format!(
                    "stats cpu{}: produced {} consumed {} dropped_msgs {} dropped_bytes {} toobig {} last_toobig {}",
                    s.cpu, s.produced, s.consumed, s.dropped_msgs, s.dropped_bytes, s.toobig_msgs, s.last_toobig
                ));
            }
            if stats.len() != ncpu {
                fails.add(format!("stats: {} lines for {ncpu} CPUs", stats.len()));
            }
            let sum: u64 = stats.iter().map(|s| s.dropped_msgs).sum();
            if sum != dropped {
                fails.add(format!(
                    "stats: dropped_msgs sum to {sum}, writers report {dropped} dropped"
                ));
            }
            let bytes: u64 = stats.iter().map(|s| s.dropped_bytes).sum();
            if bytes != dropped * LEN as u64 {
                fails.add(format!(
                    "stats: dropped_bytes sum to {bytes}, expected {} ({dropped} x {LEN})",
                    dropped * LEN as u64
                ));
            }
            if stats.iter().any(|s| s.toobig_msgs != 0) {
                fails.add("stats: too-big messages in the stress run".into());
            }
        }
        Err(e) => fails.add(e),
    }
}

fn run(ctl: &Ctl, ncpu: usize, fails: &mut Failures) -> Result<(), String> {
    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for cpu in 0..ncpu {
        let f = open_cpu(ctl, Side::Rust, cpu)?;
        let d = done.clone();
        let h = thread::Builder::new()
            .name(format!("reader{cpu}"))
            .spawn(move || reader(cpu, f, d))
            .ctx("spawn reader")?;
        handles.push(h);
    }
    let t0 = Instant::now();
    let run = ctl
        .send(&Command::Stress { ms: MS, len: LEN })
        .and_then(|()| ctl.send(&Command::StressWait))
        .and_then(|()| ctl.send(&Command::Flush))
        .ctx("ctl");
    diag(&format!(
        "stress {MS} {LEN}: writers done after {} ms",
        t0.elapsed().as_millis()
    ));
    done.store(true, Ordering::Release);
    let mut outs = Vec::new();
    for h in handles {
        match h.join() {
            Ok(o) => outs.push(o),
            Err(p) => fails.add(format!("reader panicked: {}", crate::diff::panic_text(&*p))),
        }
    }
    run?;
    let writers = parse_stress(&ctl.read_text("stress")?)?;
    let (dropped, _) = evaluate(&outs, &writers, ncpu, fails);
    check_stats(ctl, ncpu, dropped, fails);
    Ok(())
}

pub fn check(ctl: &Ctl) -> Result<(), String> {
    let mut fails = Failures::default();
    let r = super::with_channel(ctl, GEOM, |ncpu| run(ctl, ncpu, &mut fails));
    fails.check(r);
    fails.into_result()
}
