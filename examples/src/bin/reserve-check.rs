//! reserve-check: verifies relay streams whose sub-buffers carry headers that count their
//! contents, as `reserve_example.ko` (examples/kernel/reserve_example.rs) writes them.
//!
//! ```text
//! reserve-check kernel DIR [--per-cpu N] [--timer T]   # DIR: /sys/kernel/debug/reserve_example
//! reserve-check selftest [--records N]                  # the same format from a user-space channel
//! ```
//!
//! Every sub-buffer starts with a 24-byte header of little-endian `u32`s: magic `RSV1`, cpu,
//! seq, records, bytes, padding; the last three are `0xffffffff` while the sub-buffer is being
//! written, and the `subbuf_start` callback of the next sub-buffer fills them in (relay's
//! `write_prev_subbuf` pattern). A record is `u16 len | u8 src | u8 cpu | u32 seq` followed by
//! `len - 8` bytes `(seq + i) as u8`.
//!
//! A `read()` stream has the padding stripped, so the header is what tells where a sub-buffer
//! ends: `subbuf_size - padding`. For every sub-buffer the check walks the records and requires
//! `24 + bytes + padding == subbuf_size`, the header's record and byte counts to equal what it
//! holds, consecutive `seq`s, every record intact and on its buffer's CPU, and each source's
//! record numbers to follow each other without gaps. Only the last sub-buffer may still be
//! open (counts unknown). `kernel` mode also compares with the module's `stats` file (totals
//! per CPU, nothing dropped); `selftest` writes the format with `relay::user::Channel::reserve`
//! and checks that the checker accepts it and rejects it with one header count altered.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};

use relay::core::{Callbacks, SubbufStart};
use relay::user::{Channel, ChannelCallbacks, Global, RelayFile};

const HDR_LEN: usize = 24;
const MAGIC: &[u8; 4] = b"RSV1";
const UNKNOWN: u32 = u32::MAX;
const REC_MIN: usize = 8;
const REC_SPREAD: u32 = 57;

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// What one stream holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Summary {
    /// Sub-buffers with finished headers.
    finished: u64,
    /// Whether the last sub-buffer is still open.
    open: bool,
    records: u64,
    bytes: u64,
    /// Records per source.
    per_src: BTreeMap<u8, u64>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} finished sub-buffers{}, {} records, {} bytes",
            self.finished,
            if self.open { " + 1 open" } else { "" },
            self.records,
            self.bytes
        )?;
        for (src, n) in &self.per_src {
            write!(f, ", src{src}: {n}")?;
        }
        Ok(())
    }
}

/// Checks one record at `at` (which must end by `end`); returns its length.
fn check_record(
    data: &[u8],
    at: usize,
    end: usize,
    cpu: u32,
    next: &mut BTreeMap<u8, u32>,
) -> Result<usize, String> {
    if end - at < REC_MIN {
        return Err(format!("{} stray bytes at offset {at}", end - at));
    }
    let len = usize::from(u16::from_le_bytes([data[at], data[at + 1]]));
    if len < REC_MIN || len > end - at {
        return Err(format!(
            "record at offset {at}: length {len} (room {})",
            end - at
        ));
    }
    let (src, rcpu, seq) = (data[at + 2], data[at + 3], le32(data, at + 4));
    if u32::from(rcpu) != cpu & 0xff {
        return Err(format!("record at offset {at}: cpu {rcpu} in buffer {cpu}"));
    }
    if len != REC_MIN + (seq % REC_SPREAD) as usize {
        return Err(format!(
            "record at offset {at}: length {len} does not fit seq {seq}"
        ));
    }
    let want = next.entry(src).or_insert(0);
    if seq != *want {
        return Err(format!(
            "record at offset {at}: src {src} seq {seq}, expected {want}"
        ));
    }
    *want = want.wrapping_add(1);
    for (i, &b) in data[at + REC_MIN..at + len].iter().enumerate() {
        if b != (seq as u8).wrapping_add(i as u8) {
            return Err(format!(
                "record at offset {at}: payload byte {i} is {b:#x}, expected {:#x}",
                (seq as u8).wrapping_add(i as u8)
            ));
        }
    }
    Ok(len)
}

/// Walks the `read()` stream of buffer `cpu`.
fn check_stream(cpu: u32, data: &[u8], subbuf_size: usize) -> Result<Summary, String> {
    let mut s = Summary::default();
    let mut next: BTreeMap<u8, u32> = BTreeMap::new();
    let mut pos = 0;
    let mut seq = 0u32;
    while pos < data.len() {
        let sb = format!("sub-buffer {seq} at offset {pos}");
        if s.open {
            return Err(format!("{sb}: follows an open sub-buffer"));
        }
        if data.len() - pos < HDR_LEN {
            return Err(format!("{sb}: truncated header"));
        }
        let h = &data[pos..pos + HDR_LEN];
        if &h[0..4] != MAGIC {
            return Err(format!("{sb}: bad magic {:02x?}", &h[0..4]));
        }
        let (hcpu, hseq) = (le32(h, 4), le32(h, 8));
        let (records, bytes, padding) = (le32(h, 12), le32(h, 16), le32(h, 20));
        if hcpu != cpu || hseq != seq {
            return Err(format!("{sb}: header says cpu {hcpu} seq {hseq}"));
        }
        let end = if (records, bytes, padding) == (UNKNOWN, UNKNOWN, UNKNOWN) {
            s.open = true;
            data.len()
        } else {
            if HDR_LEN + bytes as usize + padding as usize != subbuf_size {
                return Err(format!(
                    "{sb}: header {HDR_LEN} + bytes {bytes} + padding {padding} != \
                     subbuf_size {subbuf_size}"
                ));
            }
            let end = pos + subbuf_size - padding as usize;
            if end > data.len() {
                return Err(format!(
                    "{sb}: stream ends {} bytes early",
                    end - data.len()
                ));
            }
            end
        };
        let (mut n, mut b) = (0u64, 0u64);
        let mut at = pos + HDR_LEN;
        while at < end {
            let len =
                check_record(data, at, end, cpu, &mut next).map_err(|e| format!("{sb}: {e}"))?;
            let src = data[at + 2];
            *s.per_src.entry(src).or_insert(0) += 1;
            n += 1;
            b += len as u64;
            at += len;
        }
        if !s.open {
            if (n, b) != (u64::from(records), u64::from(bytes)) {
                return Err(format!(
                    "{sb}: header counts {records} records / {bytes} bytes, holds {n} / {b}"
                ));
            }
            s.finished += 1;
        }
        s.records += n;
        s.bytes += b;
        pos = end;
        seq = seq.wrapping_add(1);
    }
    Ok(s)
}

/// Reads a relay file (kernel debugfs or user space) to its current end.
fn read_all(path: &Path) -> Result<Vec<u8>, String> {
    let mut f = RelayFile::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut chunk)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// A `cpu N records R bytes B dropped D relay_dropped X produced P` line of `stats`.
#[derive(Debug, Default)]
struct CpuStats {
    cpu: u32,
    records: u64,
    bytes: u64,
    dropped: u64,
    relay_dropped: u64,
}

/// Parses the module's `stats` file: the sub-buffer size and the per-CPU lines.
fn parse_stats(text: &str) -> Result<(usize, Vec<CpuStats>), String> {
    let mut subbuf_size = None;
    let mut cpus = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| -> Option<u64> {
            let i = f.iter().position(|w| *w == name)?;
            f.get(i + 1)?.parse().ok()
        };
        match f.first() {
            Some(&"subbuf_size") => {
                subbuf_size = field("subbuf_size").and_then(|v| usize::try_from(v).ok());
                if field("header") != Some(HDR_LEN as u64) {
                    return Err(format!("stats: unexpected header size in {line:?}"));
                }
            }
            Some(&"cpu") => {
                let get = |n| field(n).ok_or_else(|| format!("stats: no {n} in {line:?}"));
                cpus.push(CpuStats {
                    cpu: u32::try_from(get("cpu")?).map_err(|e| e.to_string())?,
                    records: get("records")?,
                    bytes: get("bytes")?,
                    dropped: get("dropped")?,
                    relay_dropped: get("relay_dropped")?,
                });
            }
            _ => {}
        }
    }
    let ss = subbuf_size.ok_or("stats: no subbuf_size line")?;
    Ok((ss, cpus))
}

fn kernel(dir: &Path, per_cpu: Option<u64>, timer: Option<u64>) -> Result<(), String> {
    let stats = std::fs::read_to_string(dir.join("stats"))
        .map_err(|e| format!("{}/stats: {e}", dir.display()))?;
    let (ss, cpus) = parse_stats(&stats)?;
    let mut errors = Vec::new();
    let mut timer_records = 0;
    for c in &cpus {
        let data = read_all(&dir.join(format!("cpu{}", c.cpu)))?;
        match check_stream(c.cpu, &data, ss) {
            Ok(s) => {
                println!(
                    "reserve-check: cpu{}: {} bytes read: {s}",
                    c.cpu,
                    data.len()
                );
                if (s.records, s.bytes) != (c.records, c.bytes) {
                    errors.push(format!(
                        "cpu{}: the module wrote {} records / {} bytes, the stream holds {} / {}",
                        c.cpu, c.records, c.bytes, s.records, s.bytes
                    ));
                }
                if c.dropped + c.relay_dropped > 0 {
                    errors.push(format!(
                        "cpu{}: {} reserves failed, {} messages dropped by relay",
                        c.cpu, c.dropped, c.relay_dropped
                    ));
                }
                let kthread = s.per_src.get(&0).copied().unwrap_or(0);
                if let Some(n) = per_cpu.filter(|&n| kthread != 0 && kthread != n) {
                    errors.push(format!(
                        "cpu{}: {kthread} kthread records, expected {n}",
                        c.cpu
                    ));
                }
                timer_records += s.per_src.get(&1).copied().unwrap_or(0);
            }
            Err(e) => errors.push(format!("cpu{}: {e}", c.cpu)),
        }
    }
    if let Some(t) = timer.filter(|&t| t != timer_records) {
        errors.push(format!("{timer_records} timer records, expected {t}"));
    }
    if cpus.iter().all(|c| c.records == 0) {
        errors.push("no records at all (was `run` written?)".into());
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// The kernel module's header callback, for a user-space channel (one buffer, one writer).
struct Hdr {
    records: AtomicU32,
    bytes: AtomicU32,
    seq: AtomicU32,
}

impl Callbacks for Hdr {
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        if ctx.prev_subbuf().is_some() {
            let mut b = [0u8; 12];
            b[0..4].copy_from_slice(&self.records.load(Ordering::Relaxed).to_le_bytes());
            b[4..8].copy_from_slice(&self.bytes.load(Ordering::Relaxed).to_le_bytes());
            b[8..12].copy_from_slice(&(ctx.prev_padding() as u32).to_le_bytes());
            ctx.write_prev_subbuf(12, &b);
        }
        if ctx.buf_full() || ctx.reserve(HDR_LEN).is_err() {
            return false;
        }
        let mut h = [0xffu8; HDR_LEN];
        h[0..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&(ctx.buf().cpu() as u32).to_le_bytes());
        h[8..12].copy_from_slice(&self.seq.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        ctx.write_subbuf(0, &h);
        self.records.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        true
    }
}

impl ChannelCallbacks for Hdr {}

fn selftest(records: u32) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("reserve-check-{}", std::process::id()));
    // A directory of its own (never someone else's, which the end of the test removes).
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ss = 4096;
    let hdr = Hdr {
        records: AtomicU32::new(0),
        bytes: AtomicU32::new(0),
        seq: AtomicU32::new(0),
    };
    let chan = Channel::open(Some("cpu"), Some(&dir), ss, 256, Global(hdr))
        .map_err(|e| format!("open: {e}"))?;
    let (mut written, mut bytes) = (0u64, 0u64);
    for seq in 0..records {
        let len = REC_MIN + (seq % REC_SPREAD) as usize;
        let Some(r) = chan.reserve(len) else {
            return Err(format!("reserve {seq} failed: buffer too small"));
        };
        let mut rec = vec![0u8; len];
        rec[0..2].copy_from_slice(&(len as u16).to_le_bytes());
        rec[4..8].copy_from_slice(&seq.to_le_bytes());
        for (i, b) in rec[REC_MIN..].iter_mut().enumerate() {
            *b = (seq as u8).wrapping_add(i as u8);
        }
        r.fill(0, &rec);
        // One writer: counting after the reserve is exact (a switch inside it reset the counts).
        let h = &chan.private_data().0;
        h.records.fetch_add(1, Ordering::Relaxed);
        h.bytes.fetch_add(len as u32, Ordering::Relaxed);
        written += 1;
        bytes += len as u64;
    }
    chan.flush();
    let data = read_all(&dir.join("cpu0"));
    drop(chan);
    let _ = std::fs::remove_dir_all(&dir);
    let mut data = data?;
    let s = check_stream(0, &data, ss)?;
    println!("reserve-check: selftest: {} bytes read: {s}", data.len());
    if (s.records, s.bytes) != (written, bytes) || s.finished < 2 || !s.open {
        return Err(format!(
            "selftest: wrote {written} records / {bytes} bytes, checked {s}"
        ));
    }
    // Alter the record count of the first header: the check must notice.
    data[12] ^= 1;
    match check_stream(0, &data, ss) {
        Err(e) => println!("reserve-check: selftest: altered header rejected: {e}"),
        Ok(_) => return Err("selftest: an altered header count was accepted".into()),
    }
    Ok(())
}

enum Cmd {
    Kernel {
        dir: PathBuf,
        per_cpu: Option<u64>,
        timer: Option<u64>,
    },
    Selftest {
        records: u32,
    },
}

fn parse_args() -> Option<Cmd> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next()?;
    let rest: Vec<String> = it.collect();
    let opt = |name: &str| -> Option<Option<u64>> {
        match rest.iter().position(|a| a == name) {
            Some(i) => rest.get(i + 1)?.parse().ok().map(Some),
            None => Some(None),
        }
    };
    match cmd.as_str() {
        "kernel" => {
            let dir = rest.first().filter(|d| !d.starts_with("--"))?;
            Some(Cmd::Kernel {
                dir: PathBuf::from(dir),
                per_cpu: opt("--per-cpu")?,
                timer: opt("--timer")?,
            })
        }
        "selftest" => Some(Cmd::Selftest {
            records: u32::try_from(opt("--records")?.unwrap_or(5000)).ok()?,
        }),
        _ => None,
    }
}

fn main() -> ExitCode {
    let Some(cmd) = parse_args() else {
        eprintln!(
            "usage: reserve-check kernel DIR [--per-cpu N] [--timer T]\n       \
             reserve-check selftest [--records N]"
        );
        return ExitCode::from(2);
    };
    let r = match cmd {
        Cmd::Kernel {
            dir,
            per_cpu,
            timer,
        } => kernel(&dir, per_cpu, timer),
        Cmd::Selftest { records } => selftest(records),
    };
    match r {
        Ok(()) => {
            println!("reserve-check: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reserve-check: FAIL\n{e}");
            ExitCode::FAILURE
        }
    }
}
