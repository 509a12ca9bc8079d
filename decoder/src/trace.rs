//! Whole traces: a directory (`metadata` + `cpu0..cpuN-1`) or the same bytes in memory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::Error;
use crate::merge::{Merge, RefMerge};
use crate::metadata::{parse_metadata, Metadata};
use crate::snapshot::LiveEnd;
use crate::stats::{Accounting, Stats, WarningKind};
use crate::stream::{CpuStream, Record, RecordRef};
use crate::text::TextFormatter;
use crate::timestamps::ClockConv;

/// How to decode and print a trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Text: print `CLOCK_MONOTONIC` seconds instead of seconds since the first record.
    pub absolute: bool,
    /// The `cpuN` files are mmap snapshots (whole-buffer images) rather than `read()` streams.
    pub snapshot: bool,
}

/// Copies of a live buffer tried while its writer keeps starting sub-buffers underneath.
const SNAPSHOT_TRIES: usize = 8;

/// Files at least this large are mapped rather than read (see docs/PERFORMANCE.md,
/// "Decoder throughput": mapping and releasing the consumed pages keeps the resident set bounded
/// by the merge window instead of the trace size).
pub const MMAP_MIN_LEN: u64 = 1 << 20;

/// The bytes of one per-CPU stream: read into memory, or mapped read-only.
#[derive(Debug)]
pub enum StreamData {
    /// Bytes in memory.
    Owned(Vec<u8>),
    /// A read-only private file mapping; [`Records`] releases the pages it has decoded.
    Mapped(memmap2::Mmap),
}

impl Deref for StreamData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            StreamData::Owned(v) => v,
            StreamData::Mapped(m) => m,
        }
    }
}

impl From<Vec<u8>> for StreamData {
    fn from(v: Vec<u8>) -> Self {
        StreamData::Owned(v)
    }
}

impl StreamData {
    /// Reads (small files) or maps (large ones) `path`.
    pub fn load(path: &Path) -> io::Result<StreamData> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        if len < MMAP_MIN_LEN || std::env::var_os("KLOG_DECODE_NO_MMAP").is_some() {
            return fs::read(path).map(StreamData::Owned);
        }
        // SAFETY: a private read-only mapping of a recorded trace file. Nothing in this process
        // writes it; a trace file truncated by another process while mapped would fault (SIGBUS),
        // which the recorder never does to a closed trace.
        let m = unsafe { memmap2::MmapOptions::new().map(&f)? };
        let _ = m.advise(memmap2::Advice::Sequential);
        Ok(StreamData::Mapped(m))
    }

    /// A snapshot image: `path` is a recorded image file, or a live relay file (a kernel relay
    /// file in debugfs or a user-space buffer file, e.g. `/sys/kernel/debug/klog/cpu0`), which
    /// is mapped whole (`len` = `n_subbufs × subbuf_size`) and copied at once. The writer may
    /// go on writing while the copy is made: the decoder's snapshot rules (slot order by `seq`,
    /// the newest slot torn) cover a slot being rewritten, except while it is overwritten
    /// underneath the copy; flush (and stop writing) first for an exact picture.
    pub fn load_snapshot(path: &Path, len: usize) -> io::Result<StreamData> {
        Self::load_live_snapshot(path, len).map(|(d, _)| d)
    }

    /// [`StreamData::load_snapshot`], plus the writer's committed position when `path` is a
    /// live user-space buffer file (its control block has it; kernel relay files and recorded
    /// images do not): the sub-buffer being written can then be decoded up to it. The position
    /// is read before and after the copy and kept only if no sub-buffer was started in between
    /// (a writer that keeps going gets a few tries; a dead one holds still).
    pub fn load_live_snapshot(
        path: &Path,
        len: usize,
    ) -> io::Result<(StreamData, Option<LiveEnd>)> {
        let Ok(f) = relay::user::RelayFile::open(path) else {
            // Not a relay file: a recorded image.
            return StreamData::load(path).map(|d| (d, None));
        };
        let m = f.mmap(len).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("mapping the live relay file ({len} bytes): {e}"),
            )
        })?;
        let b = m.as_slice();
        let mut copy = Vec::new();
        for _ in 0..SNAPSHOT_TRIES {
            let before = f.write_position().ok().flatten();
            copy.clear();
            copy.extend_from_slice(&b[..len.min(b.len())]);
            let after = f.write_position().ok().flatten();
            match (before, after) {
                (Some(p), Some(q)) if p.produced == q.produced && p.slot == q.slot => {
                    // Every byte below `p.committed` was published before the copy started.
                    let live = LiveEnd {
                        slot: p.slot,
                        committed: p.committed,
                    };
                    return Ok((StreamData::Owned(copy), Some(live)));
                }
                (Some(_), Some(_)) => continue,
                _ => break,
            }
        }
        Ok((StreamData::Owned(copy), None))
    }

    /// Drops the resident pages of `range` (decoded bytes); they are read back from the file if
    /// touched again. A no-op for bytes in memory.
    fn release(&self, range: std::ops::Range<usize>) {
        if let StreamData::Mapped(m) = self {
            let page = 4096;
            let start = range.start.next_multiple_of(page);
            let end = range.end / page * page;
            if end > start {
                // SAFETY: a private read-only file mapping: MADV_DONTNEED only drops clean pages,
                // which fault back in from the file with the same contents.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
    }
}

/// A loaded trace: parsed metadata and the raw per-CPU streams.
#[derive(Debug)]
pub struct Trace {
    /// The metadata.
    pub metadata: Metadata,
    /// Raw → ns conversion from the clock records.
    pub clock: ClockConv,
    /// (CPU, bytes) of each stream present.
    pub streams: Vec<(u16, StreamData)>,
    /// Streams refused because their trace id is not the metadata's: (file, its trace id).
    pub refused: Vec<(PathBuf, u64)>,
    snapshot: bool,
    /// Per stream (same order): the writer's committed position of a live snapshot.
    live_ends: Vec<Option<LiveEnd>>,
    /// Per stream: bytes of recorded prefix at its start (`cpuN.idx`), decoded but not shown.
    prefixes: Vec<usize>,
    stats: Stats,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `path` is a live relay file rather than a recorded stream: a kernel relay file
/// (debugfs/tracefs) or a user-space buffer file (which starts with relay's file magic).
pub fn is_live_relay_file(path: &Path) -> bool {
    use std::io::Read;
    use std::os::fd::AsFd;
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    if relay::user::sys::is_kernel_fs(f.as_fd()).unwrap_or(false) {
        return true;
    }
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).is_ok() && magic == relay::user::MAGIC
}

fn cpu_index(name: &str) -> Option<u32> {
    let n = name.strip_prefix("cpu")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

impl Trace {
    /// Reads a trace directory: `metadata`, then `cpu0..cpuN-1` (missing ones are warnings).
    pub fn open(dir: impl AsRef<Path>, opts: &Options) -> Result<Trace, Error> {
        let dir = dir.as_ref();
        let md = fs::metadata(dir).map_err(io_err(dir))?;
        if !md.is_dir() {
            return Err(Error::NotADirectory(dir.to_path_buf()));
        }
        let mut names: Vec<String> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(Error::EmptyDir(dir.to_path_buf()));
        }
        if !names.iter().any(|n| n == "metadata") {
            let mut found: Vec<String> = names.iter().take(8).cloned().collect();
            if names.len() > 8 {
                found.push(format!("… {} more", names.len() - 8));
            }
            return Err(Error::MissingMetadata {
                dir: dir.to_path_buf(),
                found,
            });
        }
        let mpath = dir.join("metadata");
        let mbytes = fs::read(&mpath).map_err(io_err(&mpath))?;
        let mut stats = Stats::default();
        let metadata = parse_metadata(&mbytes, &mut stats)?;
        let n = metadata.header.n_cpus;
        let image_len = (metadata.header.n_subbufs as usize)
            .saturating_mul(metadata.header.subbuf_size as usize);
        if !opts.snapshot {
            // Reading a kernel relay file consumes it, and a user-space one is no stream: stop
            // before touching either.
            if let Some(p) = (0..n).map(|c| stream_path(dir, c)).find(|p| p.exists()) {
                if is_live_relay_file(&p) {
                    return Err(Error::LiveDirectory(dir.to_path_buf()));
                }
            }
        }
        let mut streams = Vec::new();
        let mut live_ends = Vec::new();
        let mut prefixes = Vec::new();
        let mut refused = Vec::new();
        for cpu in 0..n {
            let p = stream_path(dir, cpu);
            let loaded = if opts.snapshot {
                StreamData::load_live_snapshot(&p, image_len)
            } else {
                StreamData::load(&p).map(|d| (d, None))
            };
            match loaded {
                Ok((b, live)) => {
                    if !foreign(
                        &metadata,
                        &mpath,
                        (cpu, &p),
                        &b,
                        opts,
                        &mut stats,
                        &mut refused,
                    ) {
                        let (b, prefix) = if opts.snapshot {
                            (b, 0)
                        } else {
                            with_index(dir, cpu, b, &mut stats)
                        };
                        streams.push((cpu, b));
                        live_ends.push(live);
                        prefixes.push(prefix);
                    }
                }
                Err(e) => stats.warn(
                    WarningKind::StreamMissing,
                    Some(cpu),
                    None,
                    format_args!("{}", crate::error::with_path(&p, &e)),
                ),
            }
        }
        for name in &names {
            if let Some(i) = cpu_index(name).filter(|&i| i >= u32::from(n)) {
                stats.warn(
                    WarningKind::StreamExtra,
                    None,
                    None,
                    format_args!("{name}: the metadata announces {n} CPUs; cpu{i} ignored"),
                );
            }
        }
        none_left(&metadata, &mpath, streams.is_empty(), &mut refused)?;
        let mut t = Self::assemble(metadata, streams, opts, stats);
        t.live_ends = live_ends;
        t.prefixes = prefixes;
        t.refused = refused;
        Ok(t)
    }

    /// A trace from bytes in memory: the metadata stream and stream `i` for CPU `i`.
    pub fn from_bytes(
        metadata: &[u8],
        streams: Vec<Vec<u8>>,
        opts: &Options,
    ) -> Result<Trace, Error> {
        let mut stats = Stats::default();
        let metadata = parse_metadata(metadata, &mut stats)?;
        let mpath = Path::new("metadata");
        let mut refused = Vec::new();
        let streams: Vec<(u16, StreamData)> = streams
            .into_iter()
            .enumerate()
            .map(|(i, b)| (u16::try_from(i).unwrap_or(u16::MAX), b))
            .filter(|(cpu, b)| {
                let p = PathBuf::from(format!("cpu{cpu}"));
                !foreign(
                    &metadata,
                    mpath,
                    (*cpu, &p),
                    b,
                    opts,
                    &mut stats,
                    &mut refused,
                )
            })
            .map(|(cpu, b)| (cpu, StreamData::Owned(b)))
            .collect();
        none_left(&metadata, mpath, streams.is_empty(), &mut refused)?;
        let mut t = Self::assemble(metadata, streams, opts, stats);
        t.refused = refused;
        Ok(t)
    }

    fn assemble(
        metadata: Metadata,
        streams: Vec<(u16, StreamData)>,
        opts: &Options,
        mut stats: Stats,
    ) -> Trace {
        let clock = ClockConv::new(&metadata.clocks, &mut stats);
        Trace {
            metadata,
            clock,
            streams,
            refused: Vec::new(),
            snapshot: opts.snapshot,
            live_ends: Vec::new(),
            prefixes: Vec::new(),
            stats,
        }
    }

    /// Warnings of the metadata and the directory (the streams' come with [`Records::stats`]).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// One decoder per stream.
    pub fn cpu_streams(&self) -> Vec<CpuStream<'_>> {
        self.streams
            .iter()
            .enumerate()
            .map(|(i, (cpu, b))| {
                if self.snapshot {
                    let live = self.live_ends.get(i).copied().flatten();
                    CpuStream::snapshot_live(&self.metadata, *cpu, b, live)
                } else {
                    let hide = self.prefixes.get(i).copied().unwrap_or(0);
                    CpuStream::new(&self.metadata, *cpu, b).hide_prefix(hide)
                }
            })
            .collect()
    }

    /// Every record of every stream, in timestamp order. Lazy: the merge holds one decoded
    /// record per CPU, and the pages of mapped streams are released as they are decoded.
    pub fn records(&self) -> Records<'_> {
        let n = self.streams.len();
        Records {
            meta: &self.metadata,
            merge: Merge::new(self.cpu_streams()),
            base: self.stats.clone(),
            data: self.streams.iter().map(|(_, d)| d).collect(),
            released: vec![0; n],
            countdown: RELEASE_EVERY,
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    /// [`Trace::records`] as records that borrow their bytes from the streams
    /// ([`RecordRef`]): the same records in the same order, with the same statistics, without
    /// an allocation per event.
    pub fn records_ref(&self) -> RefRecords<'_> {
        let n = self.streams.len();
        RefRecords {
            meta: &self.metadata,
            merge: RefMerge::new(self.cpu_streams()),
            base: self.stats.clone(),
            data: self.streams.iter().map(|(_, d)| d).collect(),
            released: vec![0; n],
            countdown: RELEASE_EVERY,
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Total bytes of the per-CPU streams.
    pub fn stream_bytes(&self) -> u64 {
        self.streams.iter().map(|(_, d)| d.len() as u64).sum()
    }

    /// Writes the text output; returns the statistics.
    pub fn write_text<W: Write>(&self, opts: &Options, mut w: W) -> Result<Stats, Error> {
        let mut fmt = TextFormatter::new(&self.metadata, self.clock, opts.absolute);
        let mut line = String::new();
        let mut recs = self.records();
        for r in recs.by_ref() {
            line.clear();
            fmt.format(&r, &mut line);
            line.push('\n');
            w.write_all(line.as_bytes()).map_err(Error::Output)?;
        }
        w.flush().map_err(Error::Output)?;
        Ok(recs.stats())
    }
}

/// Whether stream `data` (`cpu`, file `path`) belongs to another trace than `meta` (file
/// `mpath`): its first sub-buffer header carries another trace id. Such a stream is reported
/// in `stats`, listed in `refused`, and must not be decoded.
fn foreign(
    meta: &Metadata,
    mpath: &Path,
    (cpu, path): (u16, &Path),
    data: &[u8],
    opts: &Options,
    stats: &mut Stats,
    refused: &mut Vec<(PathBuf, u64)>,
) -> bool {
    let (Some(want), Some(got)) = (
        meta.header.trace_id,
        first_trace_id(meta, data, opts.snapshot),
    ) else {
        return false;
    };
    if want == got {
        return false;
    }
    stats.warn(
        WarningKind::TraceId,
        Some(cpu),
        None,
        format_args!(
            "{}: trace id {got:016x}, but {} has trace id {want:016x}: the stream belongs to \
             another trace (another run?); refused",
            path.display(),
            mpath.display()
        ),
    );
    refused.push((path.to_path_buf(), got));
    true
}

/// The error when streams were refused for their trace id and none is left.
fn none_left(
    meta: &Metadata,
    mpath: &Path,
    empty: bool,
    refused: &mut Vec<(PathBuf, u64)>,
) -> Result<(), Error> {
    if empty && !refused.is_empty() {
        return Err(Error::TraceIdMismatch {
            metadata: mpath.to_path_buf(),
            meta_id: meta.header.trace_id.unwrap_or(0),
            streams: std::mem::take(refused),
        });
    }
    Ok(())
}

/// The trace id of the first sub-buffer header of a stream (`None`: no header of the
/// metadata's layout found, or a version without trace ids).
fn first_trace_id(meta: &Metadata, data: &[u8], snapshot: bool) -> Option<u64> {
    meta.header.trace_id?;
    let magic = meta.header.subbuf_magic();
    if snapshot {
        let ss = (meta.header.subbuf_size as usize).max(1);
        return (0..data.len() / ss)
            .find_map(|k| meta.header.parse_subbuf(&data[k * ss..]))
            .map(|h| h.trace_id);
    }
    let at = data.windows(4).position(|w| w == magic)?;
    meta.header.parse_subbuf(&data[at..]).map(|h| h.trace_id)
}

/// Where every emitted event went (docs/FORMAT.md, "Accounting"), from the streams' counters
/// (`per_cpu`: each stream's CPU label and statistics) and the metadata's totals records.
pub fn account(meta: &Metadata, per_cpu: &[(u16, &Stats)]) -> Accounting {
    use std::collections::BTreeMap;
    // (decoded, lost reported by the headers, events of recorded prefixes) per CPU.
    let mut seen: BTreeMap<u16, (u64, u64, u64)> = BTreeMap::new();
    for (cpu, s) in per_cpu {
        let e = seen.entry(*cpu).or_default();
        e.0 = e.0.saturating_add(s.events.saturating_add(s.raw_records));
        e.1 = e.1.saturating_add(s.lost_events);
        e.2 = e.2.saturating_add(s.unrecorded_events);
    }
    let mut a = Accounting {
        exact: (0..meta.header.n_cpus).all(|c| meta.totals.contains_key(&c)),
        ..Accounting::default()
    };
    let cpus: std::collections::BTreeSet<u16> =
        seen.keys().chain(meta.totals.keys()).copied().collect();
    for cpu in cpus {
        let (d, header_lost, prefix) = seen.get(&cpu).copied().unwrap_or_default();
        // Saturating: the counters come from the trace's bytes, which may be damaged.
        a.decoded = a.decoded.saturating_add(d);
        let Some(t) = meta.totals.get(&cpu).filter(|t| t.written >= d) else {
            // No totals (the writer did not finish, or an older version), or totals older than
            // the stream (events after them): what the streams show, a lower bound.
            // The events of a recorded prefix (taken by an earlier reader) are known: they
            // count as unrecorded, not as absent.
            a.exact = false;
            a.emitted = a
                .emitted
                .saturating_add(d.saturating_add(header_lost).saturating_add(prefix));
            a.lost = a.lost.saturating_add(header_lost);
            a.unrecorded = a.unrecorded.saturating_add(prefix);
            continue;
        };
        let missing = t.written - d;
        let overwritten = if t.flags & klog::wire::TOTALS_OVERWRITTEN != 0 {
            // A sub-buffer partly read before it was overwritten is counted whole by the
            // writer: never more than is missing.
            t.overwritten.min(missing)
        } else if meta.overwrite() {
            // A writer that does not count them (the kernel's): in overwrite mode what is
            // missing was overwritten, as far as the writer can tell.
            missing
        } else {
            0
        };
        if t.written.checked_add(t.lost).is_none() {
            a.exact = false; // impossible counts: a damaged record
        }
        a.emitted = a.emitted.saturating_add(t.written.saturating_add(t.lost));
        a.lost = a.lost.saturating_add(t.lost);
        a.overwritten = a.overwritten.saturating_add(overwritten);
        a.unrecorded = a.unrecorded.saturating_add(missing - overwritten);
    }
    a
}

/// Records between two checks of the streams' positions (page release, progress).
const RELEASE_EVERY: u32 = 1 << 14;

/// Per-CPU counters of a decode (for `--stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSummary {
    /// The CPU the stream's records are labelled with.
    pub cpu: u16,
    /// Bytes of the stream.
    pub bytes: u64,
    /// The stream's counters and warnings.
    pub stats: Stats,
}

/// The merged records of a [`Trace`].
#[derive(Debug)]
pub struct Records<'a> {
    meta: &'a Metadata,
    merge: Merge<CpuStream<'a>>,
    base: Stats,
    data: Vec<&'a StreamData>,
    released: Vec<usize>,
    countdown: u32,
    progress: Arc<AtomicU64>,
}

/// The merged records of a [`Trace`], borrowing their bytes ([`Trace::records_ref`]).
#[derive(Debug)]
pub struct RefRecords<'a> {
    meta: &'a Metadata,
    merge: RefMerge<'a>,
    base: Stats,
    data: Vec<&'a StreamData>,
    released: Vec<usize>,
    countdown: u32,
    progress: Arc<AtomicU64>,
}

/// The accessors shared by [`Records`] and [`RefRecords`] (they differ in the merge only).
macro_rules! records_common {
    ($t:ident) => {
        impl $t<'_> {
            /// Statistics so far: the trace's plus every stream's, and the accounting.
            pub fn stats(&self) -> Stats {
                let mut s = self.base.clone();
                for c in self.merge.sources() {
                    s.absorb(c.stats());
                }
                let per_cpu: Vec<(u16, &Stats)> = self
                    .merge
                    .sources()
                    .iter()
                    .map(|c| (c.cpu(), c.stats()))
                    .collect();
                s.accounting = Some(account(self.meta, &per_cpu));
                s
            }

            /// Each stream's counters so far.
            pub fn per_cpu(&self) -> Vec<CpuSummary> {
                self.merge
                    .sources()
                    .iter()
                    .zip(&self.data)
                    .map(|(c, d)| CpuSummary {
                        cpu: c.cpu(),
                        bytes: d.len() as u64,
                        stats: c.stats().clone(),
                    })
                    .collect()
            }

            /// Bytes of the streams decoded so far (for a progress bar).
            pub fn bytes_done(&self) -> u64 {
                self.merge
                    .sources()
                    .iter()
                    .map(|c| c.position() as u64)
                    .sum()
            }

            /// A counter of the stream bytes decoded so far, updated every few thousand records
            /// while the iterator runs (for a progress bar on another handle).
            pub fn progress(&self) -> Arc<AtomicU64> {
                self.progress.clone()
            }

            fn release_consumed(&mut self) {
                self.progress.store(self.bytes_done(), Ordering::Relaxed);
                for (i, c) in self.merge.sources().iter().enumerate() {
                    // Keep a margin behind the position: a resync never looks back, but the
                    // current sub-buffer's start is still referenced for the size check. (Pages
                    // released under a record still being rendered elsewhere fault back in.)
                    let upto = c.position().saturating_sub(4 << 20);
                    if upto > self.released[i] + (4 << 20) {
                        self.data[i].release(self.released[i]..upto);
                        self.released[i] = upto;
                    }
                }
            }
        }
    };
}

records_common!(Records);
records_common!(RefRecords);

impl<'a> RefRecords<'a> {
    /// The next record in timestamp order.
    #[inline]
    pub fn next_ref(&mut self) -> Option<RecordRef<'a>> {
        self.next_in_place().copied()
    }

    /// The next record in timestamp order, in place (valid until the next call).
    #[inline]
    pub fn next_in_place(&mut self) -> Option<&RecordRef<'a>> {
        self.countdown -= 1;
        if self.countdown == 0 {
            self.countdown = RELEASE_EVERY;
            self.release_consumed();
        }
        self.merge.next_in_place()
    }
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        self.countdown -= 1;
        if self.countdown == 0 {
            self.countdown = RELEASE_EVERY;
            self.release_consumed();
        }
        self.merge.next()
    }
}

/// A fully decoded trace (every record in memory: for tests and small traces; the CLI streams
/// with [`Trace::records`]).
#[derive(Debug, Clone)]
pub struct Report {
    /// The metadata.
    pub metadata: Metadata,
    /// Raw → ns conversion.
    pub clock: ClockConv,
    /// Every record, in timestamp order.
    pub records: Vec<Record>,
    /// Counters and warnings.
    pub stats: Stats,
}

impl Report {
    fn of(trace: Trace) -> Report {
        let mut recs = trace.records();
        let records: Vec<Record> = recs.by_ref().collect();
        let stats = recs.stats();
        Report {
            metadata: trace.metadata,
            clock: trace.clock,
            records,
            stats,
        }
    }

    /// The text lines of the records.
    pub fn text_lines(&self, absolute: bool) -> Vec<String> {
        let mut f = TextFormatter::new(&self.metadata, self.clock, absolute);
        self.records.iter().map(|r| f.line(r)).collect()
    }
}

/// Decodes a trace directory completely.
pub fn decode_dir(path: impl AsRef<Path>, opts: &Options) -> Result<Report, Error> {
    Trace::open(path, opts).map(Report::of)
}

/// Decodes a trace held in memory (metadata stream, stream `i` for CPU `i`).
pub fn decode_bytes(
    metadata: &[u8],
    streams: Vec<Vec<u8>>,
    opts: &Options,
) -> Result<Report, Error> {
    Trace::from_bytes(metadata, streams, opts).map(Report::of)
}

/// Decodes a trace directory into text lines on `w` (default options); returns the statistics.
pub fn decode_to_text<W: Write>(dir: impl AsRef<Path>, w: W) -> Result<Stats, Error> {
    decode_to_text_with(dir, &Options::default(), w)
}

/// [`decode_to_text`] with options.
pub fn decode_to_text_with<W: Write>(
    dir: impl AsRef<Path>,
    opts: &Options,
    w: W,
) -> Result<Stats, Error> {
    Trace::open(dir, opts)?.write_text(opts, w)
}

/// Applies the recorder's index `cpuN.idx` to stream `cpu`, when there is one (see
/// [`crate::recorded`]): returns the bytes to decode and the length of their hidden prefix.
fn with_index(dir: &Path, cpu: u16, data: StreamData, stats: &mut Stats) -> (StreamData, usize) {
    let ipath = relay::user::index_path(&stream_path(dir, cpu));
    let idx = match fs::read(&ipath) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (data, 0),
        Err(e) => {
            stats.warn(
                WarningKind::Damaged,
                Some(cpu),
                None,
                format_args!("{}: {e}; the stream is not verified", ipath.display()),
            );
            return (data, 0);
        }
    };
    let Some(idx) = relay::user::index::parse(&idx) else {
        stats.warn(
            WarningKind::Damaged,
            Some(cpu),
            None,
            format_args!(
                "{}: not a recorder index (bad magic); the stream is not verified",
                ipath.display()
            ),
        );
        return (data, 0);
    };
    let p = crate::recorded::prepare(cpu, &data, &idx, stats, &|r| data.release(r));
    match p.data {
        Some(d) => (StreamData::Owned(d), p.prefix),
        None => (data, 0),
    }
}

/// Where `decode_dir` looks for stream `cpu`.
pub fn stream_path(dir: &Path, cpu: u16) -> PathBuf {
    dir.join(format!("cpu{cpu}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Mode, TraceHeader};

    /// Without totals records, the events of a recorded prefix (read by an earlier reader) are
    /// in the accounting as unrecorded, not silently absent.
    #[test]
    fn prefix_events_are_unrecorded_without_totals() {
        let meta = Metadata {
            header: TraceHeader {
                version: klog::wire::VERSION,
                n_cpus: 2,
                mode: Mode::NoOverwrite,
                subbuf_size: 4096,
                n_subbufs: 4,
                trace_id: Some(1),
            },
            clocks: Vec::new(),
            callsites: Default::default(),
            parsed_len: 0,
            totals: Default::default(),
        };
        let s0 = Stats {
            events: 100,
            unrecorded_events: 7,
            ..Stats::default()
        };
        let s1 = Stats {
            events: 50,
            lost_events: 3,
            ..Stats::default()
        };
        let a = account(&meta, &[(0, &s0), (1, &s1)]);
        assert_eq!(
            (a.emitted, a.decoded, a.lost, a.unrecorded, a.exact),
            (160, 150, 3, 7, false)
        );
    }
}
