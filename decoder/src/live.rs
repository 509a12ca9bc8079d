//! Live relay directories: recording them to a trace directory ([`record`], blktrace-style) and
//! following them ([`follow`], printing events as they arrive).
//!
//! A live directory is the directory of a klog `RelayHandler` (user-space shared-memory relay
//! files `cpu0..` and the `metadata` file) or the kernel's debugfs klog directory. Its `cpuN`
//! files are read through `relay::user::RelayFile` (poll + read, consuming); `metadata` is a
//! plain append-only file, re-read as it grows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use relay::core::Poll;
use relay::user::{copy_appended, trace_files, BufRecord, Recorder, RelayFile};

use crate::error::Error;
use crate::metadata::{parse_metadata, Metadata};
use crate::output::{sink, Filter, Format};
use crate::stats::Stats;
use crate::stream::{LiveStream, Record, Step};
use crate::timestamps::ClockConv;

/// How often the metadata copy is refreshed and the stop flag checked.
const TICK: Duration = Duration::from_millis(100);

/// What [`record`] did.
#[derive(Debug, Clone, Default)]
pub struct RecordReport {
    /// Per-buffer counts from the recorder.
    pub buffers: Vec<BufRecord>,
    /// Bytes of `metadata` copied.
    pub metadata_bytes: u64,
}

impl fmt::Display for RecordReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.buffers.iter().map(|b| b.bytes).sum();
        write!(
            f,
            "recorded {total} bytes from {} buffers, metadata {} bytes",
            self.buffers.len(),
            self.metadata_bytes
        )?;
        for b in &self.buffers {
            write!(f, "\n  {}: {} bytes", b.name, b.bytes)?;
            if let Some(d) = b.dropped_msgs.filter(|&d| d > 0) {
                write!(f, ", {d} messages dropped by the writer")?;
            }
            if let Some(l) = b.lapped_subbufs.filter(|&l| l > 0) {
                write!(f, ", {l} sub-buffers overwritten before they were read")?;
            }
        }
        Ok(())
    }
}

/// A live directory's `metadata`, read whole each time. A user-space handler unlinks it when it
/// goes (like its `cpuN` files), so it is read through a descriptor opened at the start, which
/// outlives the unlink. A kernel handler's debugfs file is re-opened by path on every read: an
/// open descriptor would keep its module from unloading.
struct MetaSource {
    path: std::path::PathBuf,
    file: Option<fs::File>,
}

impl MetaSource {
    fn open(path: &Path) -> io::Result<MetaSource> {
        let f = fs::File::open(path)?;
        let kernel = relay::user::sys::is_kernel_fs(std::os::fd::AsFd::as_fd(&f))?;
        Ok(MetaSource {
            path: path.to_path_buf(),
            file: (!kernel).then_some(f),
        })
    }

    fn read(&self) -> io::Result<Vec<u8>> {
        let Some(mut f) = self.file.as_ref() else {
            return fs::read(&self.path);
        };
        use std::io::{Read, Seek};
        f.seek(io::SeekFrom::Start(0))?;
        let mut b = Vec::new();
        f.read_to_end(&mut b)?;
        Ok(b)
    }
}

/// Options of [`record`].
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Replace klog's files (`metadata`, `cpuN`, `cpuN.idx`) of a trace already in the output
    /// directory; without it such a directory is refused.
    pub force: bool,
}

/// Records the live directory `live` into `out` (created if missing): one poll + read thread per
/// `cpuN` buffer (relay's [`Recorder`], which consumes only what it has written, with an index
/// `cpuN.idx` of checksums) while `metadata` is copied and re-copied as it grows, until `stop` is
/// set, the duration passes, or every buffer is finalized; then drains what is left and copies
/// the final metadata. Claims every buffer first (one consuming reader), refuses an `out` that
/// already holds a trace unless `opts.force`, and stops promptly on a write error (returned,
/// naming the file).
pub fn record(
    live: &Path,
    out: &Path,
    stop: &AtomicBool,
    opts: &RecordOptions,
) -> io::Result<RecordReport> {
    let meta_src = live.join("metadata");
    if !meta_src.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{}: no `metadata` file (not a live klog directory)",
                live.display()
            ),
        ));
    }
    let mut rec = Recorder::for_dir(live, "cpu", out)?;
    rec.claim()?;
    let existing = trace_files(out)?;
    if !existing.is_empty() {
        if !opts.force {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: already holds a trace (metadata or cpuN files); record into a new \
                     directory, or pass --force to replace klog's files in it",
                    out.display()
                ),
            ));
        }
        for p in existing {
            fs::remove_file(&p)
                .map_err(|e| io::Error::new(e.kind(), format!("removing {}: {e}", p.display())))?;
        }
    }
    fs::create_dir_all(out)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", out.display())))?;
    let meta_dst = out.join("metadata");
    // Read through a descriptor (see `MetaSource`): the handler's final records are copied even
    // after it unlinked the file.
    let meta = MetaSource::open(&meta_src)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", meta_src.display())))?;
    let mut copied = 0u64;
    let deadline = opts.duration.map(|d| Instant::now() + d);
    let buffers = rec.run_following(
        TICK,
        || stop.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d),
        || copy_appended(|| meta.read(), &meta_src, &meta_dst, &mut copied),
    )?;
    Ok(RecordReport {
        buffers,
        metadata_bytes: copied,
    })
}

/// Options of [`follow`].
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Output format.
    pub format: Format,
    /// Absolute times.
    pub absolute: bool,
    /// Which records to print.
    pub filter: Filter,
    /// Lateness window: an event is held until every live CPU has shown a later timestamp, or
    /// for at most this long.
    pub window: Duration,
}

enum Msg {
    Data(usize, Vec<u8>),
    Done(usize, Option<io::Error>),
}

fn read_buffer(
    i: usize,
    mut f: RelayFile,
    stop: &AtomicBool,
    abort: &AtomicBool,
    tx: mpsc::Sender<Msg>,
) {
    let mut chunk = vec![0u8; 256 * 1024];
    let res = (|| -> io::Result<()> {
        loop {
            if abort.load(Ordering::Acquire) {
                return Ok(());
            }
            let stopping = stop.load(Ordering::Acquire);
            let state = f.poll(Some(Duration::from_millis(50)))?;
            loop {
                let n = f.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                if tx.send(Msg::Data(i, chunk[..n].to_vec())).is_err() {
                    return Ok(());
                }
            }
            if stopping || state == Poll::Finalized {
                return Ok(());
            }
        }
    })();
    let _ = tx.send(Msg::Done(i, res.err()));
}

fn load_metadata(src: &MetaSource, stats: &mut Stats) -> Result<Metadata, Error> {
    let b = src.read().map_err(|source| Error::Io {
        path: src.path.clone(),
        source,
    })?;
    parse_metadata(&b, stats)
}

struct Pending {
    ts: u64,
    cpu: u16,
    seq: u64,
    at: Instant,
    rec: Record,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.cpu, self.seq) == (o.ts, o.cpu, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.cpu, self.seq).cmp(&(o.ts, o.cpu, o.seq))
    }
}

/// Follows the live directory `dir`: one poll + read thread per `cpuN` buffer, events decoded as
/// they arrive and printed in timestamp order with a bounded lateness window; the metadata is
/// re-read when an unknown callsite id appears. Runs until `stop` is set or every buffer is
/// finalized, then drains what is left. Returns the decoding statistics.
pub fn follow<W: Write>(
    dir: &Path,
    opts: &FollowOptions,
    stop: &AtomicBool,
    mut w: W,
) -> Result<Stats, Error> {
    let mpath = dir.join("metadata");
    let mpath = MetaSource::open(&mpath).map_err(|source| Error::Io {
        path: mpath,
        source,
    })?;
    let mut meta_stats = Stats::default();
    let mut meta = load_metadata(&mpath, &mut meta_stats)?;
    let mut clock = ClockConv::new(&meta.clocks, &mut Stats::default());
    let mut files = Vec::new();
    for i in 0..meta.header.n_cpus.max(1) {
        let p = dir.join(format!("cpu{i}"));
        if !p.exists() {
            break;
        }
        let mut f = RelayFile::open(&p).map_err(|source| Error::Io {
            path: p.clone(),
            source,
        })?;
        // One consuming reader: a second `--follow` or a `record` fails here, naming the holder.
        f.claim().map_err(|source| Error::Io { path: p, source })?;
        files.push(f);
    }
    if files.is_empty() {
        return Err(Error::Io {
            path: dir.join("cpu0"),
            source: io::Error::new(io::ErrorKind::NotFound, "no live relay files cpu0.."),
        });
    }
    let n = files.len();
    let mut streams: Vec<LiveStream> = (0..n).map(|i| LiveStream::new(i as u16)).collect();
    let mut done = vec![false; n];
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut sink = sink(opts.format, opts.absolute, (0..n).map(|i| i as u16));
    let mut out = Vec::with_capacity(1 << 16);
    let mut origin: Option<i128> = None;
    let (tx, rx) = mpsc::channel();
    let mut read_err = None;
    let abort = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<(), Error> {
        for (i, f) in files.into_iter().enumerate() {
            let tx = tx.clone();
            let abort = &abort;
            s.spawn(move || read_buffer(i, f, stop, abort, tx));
        }
        drop(tx);
        let res = (|| -> Result<(), Error> {
            sink.begin(&mut out);
            let mut live = n;
            while live > 0 || !heap.is_empty() {
                let msg = if live > 0 {
                    match rx.recv_timeout(Duration::from_millis(20)) {
                        Ok(m) => Some(m),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            live = 0;
                            None
                        }
                    }
                } else {
                    None
                };
                let now = Instant::now();
                match msg {
                    Some(Msg::Data(i, bytes)) => {
                        streams[i].push(&bytes);
                        loop {
                            match streams[i].next(&meta) {
                                Step::Record(rec) => {
                                    let seq = match &rec {
                                        Record::Event(e) => e.seq_in_cpu,
                                        Record::Lost(_) => 0,
                                    };
                                    heap.push(Reverse(Pending {
                                        ts: rec.ts_raw(),
                                        cpu: rec.cpu(),
                                        seq,
                                        at: now,
                                        rec,
                                    }));
                                }
                                Step::NeedMore => break,
                                Step::NeedMetadata(_) => {
                                    let mut st = Stats::default();
                                    if let Ok(m) = load_metadata(&mpath, &mut st) {
                                        meta = m;
                                        clock = ClockConv::new(&meta.clocks, &mut Stats::default());
                                    }
                                }
                            }
                        }
                    }
                    Some(Msg::Done(i, err)) => {
                        if !done[i] {
                            done[i] = true;
                            live -= 1;
                            streams[i].finish();
                        }
                        if let Some(e) = err {
                            read_err.get_or_insert(e);
                        }
                    }
                    None => {}
                }
                // Emit what is old enough.
                let draining = live == 0;
                while let Some(Reverse(top)) = heap.peek() {
                    let ready = draining
                        || now.duration_since(top.at) >= opts.window
                        || streams.iter().enumerate().all(|(i, s)| {
                            done[i]
                                || s.cpu() == top.cpu
                                || s.watermark.is_some_and(|w| w >= top.ts)
                        });
                    if !ready {
                        break;
                    }
                    let Some(Reverse(p)) = heap.pop() else { break };
                    let ns = clock.to_ns(p.ts);
                    let o = *origin.get_or_insert(ns);
                    if opts.filter.is_empty() || opts.filter.accepts(&meta, &p.rec, ns, o) {
                        sink.record(&meta, &p.rec, ns, o, &mut out);
                    }
                }
                if !out.is_empty() {
                    w.write_all(&out).map_err(Error::Output)?;
                    w.flush().map_err(Error::Output)?;
                    out.clear();
                }
            }
            sink.end(&mut out);
            w.write_all(&out).map_err(Error::Output)?;
            w.flush().map_err(Error::Output)?;
            Ok(())
        })();
        abort.store(true, Ordering::Release);
        res
    })?;
    if let Some(e) = read_err {
        return Err(Error::Io {
            path: dir.to_path_buf(),
            source: e,
        });
    }
    let mut stats = meta_stats;
    for s in &streams {
        stats.absorb(s.stats());
    }
    Ok(stats)
}
