//! The relay-backed klog handler (user space): per-CPU (or one global) relay buffers holding
//! klog frames, plus the metadata stream, in one directory. Wire format: `docs/FORMAT.md`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use relay::core::SubbufStart;
use relay::user::{default_create_buf_file, BufInfo, Channel, ChannelCallbacks, RawWriter};
use relay::Callbacks;

use crate::arg::{varint_len64, DynArgs, Writer};
use crate::callsite::{Callsite, Kind};
use crate::clock::{Clock, ClockRef};
use crate::dispatch::{self, Handler};
use crate::wire;

/// How to open a [`RelayHandler`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Directory for the relay files and `metadata` (created if missing; use a tmpfs such as
    /// `/dev/shm/...` for a live trace).
    pub dir: PathBuf,
    /// Sub-buffer size in bytes (default 256 KiB).
    pub subbuf_size: usize,
    /// Sub-buffers per buffer (default 8).
    pub n_subbufs: usize,
    /// Overwrite (flight recorder) instead of no-overwrite mode.
    pub overwrite: bool,
    /// One global buffer instead of one per CPU.
    pub global: bool,
    /// Replace a trace already in `dir` (its `metadata` and `cpuN` files, nothing else) instead
    /// of refusing to open. Its writer, if still running, keeps writing into the removed files.
    pub replace: bool,
}

impl RelayConfig {
    /// Defaults: 8 × 256 KiB per CPU, no-overwrite, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RelayConfig {
            dir: dir.into(),
            subbuf_size: 256 * 1024,
            n_subbufs: 8,
            overwrite: false,
            global: false,
            replace: false,
        }
    }
}

/// Errors opening a handler.
#[derive(Debug)]
pub enum OpenError {
    /// The relay channel could not be opened.
    Relay(relay::user::Error),
    /// The sub-buffer cannot hold a header and a frame.
    SubbufTooSmall(usize),
    /// File-system error (directory, metadata file); the message names the path.
    Io(io::Error),
    /// `dir` is empty.
    NoDir,
    /// `dir` already holds a trace (these klog files); nothing was changed.
    TraceExists {
        /// The directory.
        dir: PathBuf,
        /// The klog files found in it.
        files: Vec<String>,
    },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Relay(e) => write!(f, "klog relay channel: {e}"),
            OpenError::SubbufTooSmall(n) => {
                write!(
                    f,
                    "sub-buffer size {n} is too small for klog (at least 256 bytes)"
                )
            }
            OpenError::Io(e) => write!(f, "klog trace directory: {e}"),
            OpenError::NoDir => f.write_str("klog trace directory: the path is empty"),
            OpenError::TraceExists { dir, files } => write!(
                f,
                "{} already holds a klog trace ({}); nothing was changed. Decode it with \
                 `klog-decode {0}` (`--snapshot` if its writer still runs), remove it, or \
                 choose another directory; RelayConfig {{ replace: true, .. }} replaces it",
                dir.display(),
                files.join(", ")
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// `e` with `path` in its message (std's I/O errors do not name their path).
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Whether `name` is a file a klog trace directory holds (`metadata`, `cpuN`).
fn is_trace_file(name: &str) -> bool {
    name == "metadata"
        || name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The klog trace files (`metadata`, `cpuN`) in `dir`, sorted; empty if `dir` does not exist.
/// A program about to write a trace into `dir` checks this first, so that it never overwrites
/// another one.
pub fn trace_files(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(at(dir, e)),
    };
    let mut found = Vec::new();
    for e in entries {
        let name = e.map_err(|e| at(dir, e))?.file_name();
        if let Some(n) = name.to_str().filter(|n| is_trace_file(n)) {
            found.push(n.to_string());
        }
    }
    found.sort();
    Ok(found)
}

/// Fails (with [`io::ErrorKind::AlreadyExists`], naming `dir` and the files) if `dir` holds a
/// klog trace: for programs about to write one there, which must not overwrite another.
pub fn ensure_no_trace(dir: &Path) -> io::Result<()> {
    let files = trace_files(dir)?;
    if files.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} already holds a trace ({}); remove it or choose another directory",
            dir.display(),
            files.join(", ")
        ),
    ))
}

/// What a handler created in its directory, removed when the handler goes (or when its open
/// fails): the metadata file, if it is still the one this handler created, and the directory,
/// if this handler created it and it is empty by then. Declared after the channel in
/// [`RelayHandler`], so the channel has removed its buffer files when this runs. Nothing is
/// removed in a forked child (the files are the parent's).
struct Cleanup {
    pid: u32,
    /// The directory, if this handler created it.
    dir: Option<PathBuf>,
    /// The metadata file and its identity (device, inode).
    metadata: Option<(PathBuf, u64, u64)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::process::id() != self.pid {
            return;
        }
        if let Some((path, dev, ino)) = &self.metadata {
            // Another program may have replaced the trace meanwhile: its file stays.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
        if let Some(dir) = &self.dir {
            // Fails (and keeps it) if anything else was put there.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Makes `dir` ready for a new trace: creates it (noting that in `cleanup`) or checks that it
/// holds no trace, removing one only if `replace`.
fn prepare_dir(dir: &Path, replace: bool, cleanup: &mut Cleanup) -> Result<(), OpenError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            cleanup.dir = Some(dir.to_path_buf());
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| OpenError::Io(at(parent, e)))?;
            }
            std::fs::create_dir(dir).map_err(|e| OpenError::Io(at(dir, e)))?;
            cleanup.dir = Some(dir.to_path_buf());
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(OpenError::Io(at(dir, e))),
    }
    let files = trace_files(dir).map_err(OpenError::Io)?;
    if files.is_empty() {
        return Ok(());
    }
    if !replace {
        return Err(OpenError::TraceExists {
            dir: dir.to_path_buf(),
            files,
        });
    }
    for f in files {
        let p = dir.join(f);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(OpenError::Io(at(&p, e))),
            _ => {}
        }
    }
    Ok(())
}

/// Per-buffer writer-side state, touched only under the buffer's emit slot (or in
/// `subbuf_start`, which runs under it too). One cache line each: every event writes its lane,
/// and lanes of different CPUs must not share a line.
#[repr(align(64))]
struct Lane {
    /// Sequence number of the next sub-buffer.
    seq: AtomicU64,
    /// Raw timestamp of the last frame published in the current sub-buffer (the header's
    /// `base_ts` until the first): the reference of the next frame's `ts_delta`.
    last: AtomicU64,
    /// Frames lost since the last header (atomic: nested contexts add to it).
    lost: AtomicU32,
    /// Frames written (for statistics).
    frames: AtomicU64,
    /// Frames lost in total.
    lost_total: AtomicU64,
    /// Overwrite mode: frames in sub-buffers overwritten before a reader consumed them.
    overwritten: AtomicU64,
    /// `frames` when sub-buffer `seq` started, at `seq % n_subbufs` (written per sub-buffer, in
    /// `subbuf_start`): the frames of a sub-buffer that is overwritten, and of the current one.
    starts: Box<[AtomicU64]>,
}

/// Everything an event on one emit slot touches besides the callsite, looked up once at open:
/// the slot's relay buffer, its lane, the clock and the handler's generation. While the
/// handler is registered the dispatcher keeps a pointer to it next to the slot's lock, so an
/// event goes from the slot's cache line to this record, not through the handler and the
/// channel's tables.
///
/// # Invariants
///
/// `writer` and `lane` belong to the channel of the [`RelayHandler`] whose `fast` array holds
/// this record (the lane is in that channel's callbacks), so both are valid as long as the
/// record is.
pub(crate) struct FastSlot {
    writer: RawWriter<KlogCallbacks>,
    lane: NonNull<Lane>,
    clock: Clock,
    gen: u32,
}

// The pointers lead to the channel's buffer and to a lane, both shared between threads by
// design (atomics and the writer protocol); writing through them needs the emit slot.
// SAFETY: see above.
unsafe impl Send for FastSlot {}
// SAFETY: as above.
unsafe impl Sync for FastSlot {}

impl FastSlot {
    #[inline(always)]
    fn lane(&self) -> &Lane {
        // SAFETY: valid while `self` is (type invariant).
        unsafe { self.lane.as_ref() }
    }
}

impl Lane {
    /// Counts a frame written or lost. Runs with the lane's emit slot held.
    #[inline(always)]
    fn count(&self, written: bool) {
        if written {
            // Only the holder of the slot writes `frames`: no read-modify-write needed.
            self.frames
                .store(self.frames.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            self.lost_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Lane {
    fn new(n_subbufs: usize) -> Lane {
        Lane {
            seq: AtomicU64::new(0),
            last: AtomicU64::new(0),
            lost: AtomicU32::new(0),
            frames: AtomicU64::new(0),
            lost_total: AtomicU64::new(0),
            overwritten: AtomicU64::new(0),
            starts: (0..n_subbufs.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Sub-buffer `seq` starts (in `subbuf_start`, under the buffer's writer exclusivity).
    /// `lapped`: it reuses the slot of sub-buffer `seq - n_subbufs`, which no reader consumed
    /// (overwrite mode), so that sub-buffer's frames count as overwritten.
    fn subbuf_started(&self, seq: u64, lapped: bool) {
        let n = self.starts.len() as u64;
        let frames = self.frames.load(Ordering::Relaxed);
        let at = |s: u64| &self.starts[(s % n) as usize];
        if lapped && seq >= n {
            // The ring holds the starts of `seq - n ..= seq - 1`; the overwritten one ends where
            // its successor started (or now, with a single sub-buffer).
            let end = if n == 1 {
                frames
            } else {
                at(seq - n + 1).load(Ordering::Relaxed)
            };
            let start = at(seq - n).load(Ordering::Relaxed);
            self.overwritten
                .fetch_add(end.saturating_sub(start), Ordering::Relaxed);
        }
        at(seq).store(frames, Ordering::Relaxed);
    }

    /// The end-of-trace counters (read under the buffer's emit slot, so they agree).
    fn totals(&self, cpu: u16) -> wire::Totals {
        let next_seq = self.seq.load(Ordering::Relaxed);
        let written = self.frames.load(Ordering::Relaxed);
        let n = self.starts.len() as u64;
        let cur_frames = match next_seq.checked_sub(1) {
            Some(cur) => {
                written.saturating_sub(self.starts[(cur % n) as usize].load(Ordering::Relaxed))
            }
            None => 0,
        };
        wire::Totals {
            cpu,
            // This writer counts overwritten frames in both modes (0 without overwrite).
            flags: wire::TOTALS_OVERWRITTEN,
            written,
            lost: self.lost_total.load(Ordering::Relaxed),
            lost_pending: u64::from(self.lost.load(Ordering::Relaxed)),
            overwritten: self.overwritten.load(Ordering::Relaxed),
            next_seq,
            cur_frames,
        }
    }
}

/// A random, nonzero trace id from the operating system (`getrandom(2)`, else
/// `/dev/urandom`, else the clock and the process id: an id must never stop a trace).
fn new_trace_id() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a valid, writable buffer of `b.len()` bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let mut id = u64::from_le_bytes(b);
    if n != b.len() as isize {
        use std::io::Read;
        id = match File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                t ^ (u64::from(std::process::id()) << 32).rotate_left(17)
            }
        };
    }
    id.max(1)
}

/// Largest [`crate::arg::Args::MAX_LEN`] that takes the short-frame path: a body of at most
/// 5 (head) + 10 (delta) + 112 = 127 bytes has a one-byte length prefix.
const SHORT_ARGS_MAX: usize = 112;

/// The frame's `ts_delta` for raw clock value `ts` against the lane's previous frame
/// (docs/FORMAT.md, version 2), which becomes the frame's time in the lane; also returns the
/// previous reference, which the caller restores if it does not publish the frame.
///
/// The clock is read before the frame's place is reserved (so its latency overlaps the
/// reservation), so `ts` may be older than the reference: when the reservation switched
/// sub-buffers, the new header's base was read after `ts`, and a context that waited for the
/// emit slot may follow a frame stamped after its own read. Such a frame is stamped with the
/// reference itself: docs/FORMAT.md promises `ts_delta >= 0` (no frame may start like a
/// header), and the event did happen at about that time.
#[inline(always)]
fn delta_since(ts: u64, lane: &Lane) -> (u64, u64) {
    let last = lane.last.load(Ordering::Relaxed);
    // `max(0)` keeps `d` below 2^63, where zigzag is a plain doubling.
    let d = (ts.wrapping_sub(last) as i64).max(0) as u64;
    lane.last.store(last.wrapping_add(d), Ordering::Relaxed);
    (d << 1, last)
}

/// The relay callbacks: the sub-buffer header of docs/FORMAT.md.
struct KlogCallbacks {
    overwrite: bool,
    trace_id: u64,
    global: bool,
    clock: Clock,
    lanes: Box<[Lane]>,
}

impl Callbacks for KlogCallbacks {
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        if !self.overwrite && ctx.buf_full() {
            return false;
        }
        let Some(lane) = self.lanes.get(ctx.buf().cpu()) else {
            return false;
        };
        if ctx.reserve(wire::SUBBUF_HEADER_LEN).is_err() {
            return false;
        }
        let ts = self.clock.now();
        let mut flags = 0u16;
        if self.overwrite {
            flags |= wire::FLAG_OVERWRITE;
        }
        if ctx.prev_subbuf().is_none() {
            flags |= wire::FLAG_FIRST;
        }
        let seq = lane.seq.fetch_add(1, Ordering::Relaxed);
        lane.subbuf_started(seq, self.overwrite && ctx.buf_full());
        let hdr = wire::SubbufHeader {
            cpu: ctx.buf().cpu() as u16,
            flags,
            seq,
            base_ts: ts,
            prev_padding: ctx.prev_padding() as u32,
            lost: lane.lost.swap(0, Ordering::Relaxed),
            trace_id: self.trace_id,
        };
        ctx.write_subbuf(0, &hdr.to_bytes());
        lane.last.store(ts, Ordering::Relaxed);
        true
    }
}

impl ChannelCallbacks for KlogCallbacks {
    fn create_buf_file(
        &self,
        name: Option<&str>,
        parent: Option<&Path>,
        mode: u32,
        _buf: &BufInfo,
        is_global: &mut bool,
    ) -> io::Result<Option<File>> {
        *is_global = self.global;
        default_create_buf_file(name, parent, mode)
    }
}

/// Counters of a handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// Frames written, per buffer.
    pub frames: Vec<u64>,
    /// Frames lost (buffer full, too big, nested without room), per buffer.
    pub lost: Vec<u64>,
    /// Callsites defined in the metadata stream.
    pub callsites: u32,
}

/// Handlers get distinct generations so a callsite is defined once per handler.
static GENERATION: AtomicU32 = AtomicU32::new(1);

/// The metadata stream and its lock (a spin lock whose owner is a thread token, so a context
/// nested inside its own thread's definition skips instead of deadlocking).
struct Metadata {
    owner: AtomicUsize,
    file: Mutex<File>,
    defined: AtomicU32,
}

thread_local! {
    static TOKEN: u8 = const { 0 };
}

fn token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

impl Metadata {
    /// Appends one record; `false` if the lock belongs to the context this one interrupted or
    /// the write failed.
    fn append(&self, build: impl FnOnce(&mut Vec<u8>)) -> bool {
        let me = token();
        // Sleeps rather than spins while a descheduled or stopped thread holds it.
        let mut backoff = relay::user::wlock::Backoff::new();
        loop {
            match self
                .owner
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(o) if o == me => return false,
                Err(_) => backoff.wait(),
            }
        }
        let mut rec = Vec::with_capacity(128);
        build(&mut rec);
        let ok = match self.file.try_lock() {
            Ok(mut f) => f.write_all(&rec).is_ok(),
            Err(_) => false,
        };
        self.owner.store(0, Ordering::Release);
        ok
    }
}

/// A klog handler writing into a relay channel. Open it, [`crate::register`] an `Arc` of it,
/// and read the directory with `relay::user::Recorder` / `klog-decode`.
pub struct RelayHandler {
    chan: Channel<KlogCallbacks>,
    /// One per buffer (emit slot).
    fast: Box<[FastSlot]>,
    gen: u32,
    meta: Metadata,
    dir: PathBuf,
    finished: AtomicBool,
    /// After `chan` (fields drop in order): removes the metadata and the directory.
    cleanup: Cleanup,
}

impl RelayHandler {
    /// Opens the relay channel (`dir/cpu0..`) and the metadata stream (`dir/metadata`).
    ///
    /// `dir` is created if missing. A directory that already holds a trace (`metadata` or
    /// `cpuN`, e.g. another live handler's or a crashed run's flight recorder) is refused with
    /// [`OpenError::TraceExists`] and left as it was, unless [`RelayConfig::replace`] is set.
    /// Every file is created new (never truncated); a failed open removes only what it
    /// created. Dropping the handler removes its files, and the directory if it created it
    /// (keep a copy with a recorder, or `klog-decode --snapshot`, before that).
    pub fn open(cfg: &RelayConfig) -> Result<Self, OpenError> {
        if cfg.dir.as_os_str().is_empty() {
            return Err(OpenError::NoDir);
        }
        if cfg.subbuf_size < 256 {
            return Err(OpenError::SubbufTooSmall(cfg.subbuf_size));
        }
        let mut cleanup = Cleanup {
            pid: std::process::id(),
            dir: None,
            metadata: None,
        };
        prepare_dir(&cfg.dir, cfg.replace, &mut cleanup)?;
        let clock = Clock::choose();
        let n = relay::user::sys::possible_cpus();
        let lanes = (0..n).map(|_| Lane::new(cfg.n_subbufs)).collect();
        let trace_id = new_trace_id();
        let cb = KlogCallbacks {
            overwrite: cfg.overwrite,
            trace_id,
            global: cfg.global,
            clock,
            lanes,
        };
        let meta_path = cfg.dir.join("metadata");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&meta_path)
            .map_err(|e| OpenError::Io(at(&meta_path, e)))?;
        {
            use std::os::unix::fs::MetadataExt;
            let m = file
                .metadata()
                .map_err(|e| OpenError::Io(at(&meta_path, e)))?;
            cleanup.metadata = Some((meta_path.clone(), m.dev(), m.ino()));
        }
        let chan = Channel::open(
            Some("cpu"),
            Some(&cfg.dir),
            cfg.subbuf_size,
            cfg.n_subbufs,
            cb,
        )
        .map_err(OpenError::Relay)?;
        let mut rec = Vec::new();
        wire::meta_header(
            &mut rec,
            &wire::MetaHeader {
                n_cpus: chan.n_bufs() as u16,
                overwrite: cfg.overwrite,
                subbuf_size: cfg.subbuf_size as u32,
                n_subbufs: cfg.n_subbufs as u32,
                trace_id,
            },
        );
        wire::meta_clock(&mut rec, clock.source() as u8, &clock.reference());
        file.write_all(&rec)
            .map_err(|e| OpenError::Io(at(&meta_path, e)))?;
        let gen = GENERATION.fetch_add(1, Ordering::Relaxed);
        let lanes = &chan.private_data().lanes;
        let fast = (0..chan.n_bufs())
            .map_while(|i| {
                Some(FastSlot {
                    writer: chan.raw_writer(i)?,
                    lane: NonNull::from(lanes.get(i)?),
                    clock,
                    gen,
                })
            })
            .collect::<Box<[_]>>();
        Ok(RelayHandler {
            chan,
            fast,
            gen,
            meta: Metadata {
                owner: AtomicUsize::new(0),
                file: Mutex::new(file),
                defined: AtomicU32::new(0),
            },
            dir: cfg.dir.clone(),
            finished: AtomicBool::new(false),
            cleanup,
        })
    }

    /// The trace directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The relay channel (for statistics and in-process readers).
    pub fn channel(&self) -> &Channel<impl ChannelCallbacks> {
        &self.chan
    }

    fn cb(&self) -> &KlogCallbacks {
        self.chan.private_data()
    }

    /// Writes the callsite's definition if this handler has not yet. `types` fills in the
    /// `n_args` argument type tags.
    #[cold]
    #[inline(never)]
    fn define(&self, cs: &'static Callsite, n_args: usize, types: &dyn Fn(&mut [u8])) -> bool {
        let m = cs.meta();
        let mut tags = [0u8; 16];
        let n = n_args.min(16);
        types(&mut tags);
        let mut wrote = false;
        let ok = self.meta.append(|rec| {
            if !cs.mark_defined(self.gen) {
                wire::meta_callsite(rec, cs.id(), m, &tags[..n]);
                wrote = true;
            }
        });
        if ok && wrote {
            self.meta.defined.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The fast-path record of emit slot `slot` (one per buffer).
    #[inline]
    pub(crate) fn fast_slot(&self, slot: usize) -> Option<&FastSlot> {
        self.fast.get(slot)
    }

    /// Records an event through `fs`; generic so that the argument encoding inlines into the
    /// caller.
    ///
    /// # Safety
    ///
    /// `fs` is one of this handler's [`FastSlot`]s and the caller holds its emit slot.
    #[inline(always)]
    pub(crate) unsafe fn event_args<A: crate::arg::Args>(
        &self,
        fs: &FastSlot,
        cs: &'static Callsite,
        args: &A,
    ) {
        if let Some(head) = self.head(fs, cs, Kind::Fmt, A::N, |t| args.types(t)) {
            // A compile-time bound when the types have one, else the exact length.
            let bound = if A::MAX_LEN <= SHORT_ARGS_MAX {
                A::MAX_LEN
            } else {
                args.encoded_len()
            };
            // SAFETY: forwarded contract.
            unsafe { self.frame(fs, head, bound, || args.encoded_len(), |w| args.encode(w)) };
        }
    }

    /// Records a `klog_raw!` record through `fs`.
    ///
    /// # Safety
    ///
    /// As for [`RelayHandler::event_args`].
    #[inline]
    pub(crate) unsafe fn raw_bytes(&self, fs: &FastSlot, cs: &'static Callsite, bytes: &[u8]) {
        if let Some(head) = self.head(fs, cs, Kind::Raw, 0, |_| ()) {
            let len = bytes.len();
            // SAFETY: forwarded contract.
            unsafe { self.frame(fs, head, len, || len, |w| w.bytes(bytes)) };
        }
    }

    /// The frame head for an event of `kind` at `cs`, after defining `cs` in the metadata if
    /// this handler has not (`n_args` argument types written by `types`); `None` (counted
    /// lost) when the definition cannot be written.
    #[inline(always)]
    fn head(
        &self,
        fs: &FastSlot,
        cs: &'static Callsite,
        kind: Kind,
        n_args: usize,
        types: impl Fn(&mut [u8]),
    ) -> Option<u64> {
        if !cs.is_defined(fs.gen) && !self.define(cs, n_args, &types) {
            fs.lane().count(false);
            return None;
        }
        Some(((cs.id() as u64) << 2) | kind as u64)
    }

    /// Writes a frame with `head` whose payload `encode` writes: at most `bound` bytes,
    /// exactly `exact()`.
    ///
    /// A payload of at most `SHORT_ARGS_MAX` bytes makes a body below 128 bytes, whose length
    /// prefix is one byte written after the body: nothing is measured before encoding. Longer
    /// frames write their exact length first.
    ///
    /// # Safety
    ///
    /// As for [`RelayHandler::put`].
    #[inline(always)]
    unsafe fn frame(
        &self,
        fs: &FastSlot,
        head: u64,
        bound: usize,
        exact: impl FnOnce() -> usize,
        encode: impl FnOnce(&mut Writer<'_>),
    ) {
        if bound <= SHORT_ARGS_MAX {
            // Head (at most 5 bytes for a u32 callsite id), delta (at most 10), payload.
            let fill = |buf: &mut [u8], delta| {
                let Some((len, body)) = buf.split_first_mut() else {
                    return 0;
                };
                let mut w = Writer::new(body);
                w.varint64(head);
                w.varint64(delta);
                encode(&mut w);
                if w.overflowed() {
                    return 0;
                }
                let n = w.pos();
                // n < 128: a one-byte varint.
                *len = n as u8;
                n + 1
            };
            // SAFETY: forwarded contract.
            unsafe { self.put(fs, 1 + 5 + 10 + bound, fill) };
        } else {
            let payload = exact();
            let fill = |buf: &mut [u8], delta| {
                let body = varint_len64(head) + varint_len64(delta) + payload;
                let mut w = Writer::new(buf);
                w.varint64(body as u64);
                w.varint64(head);
                w.varint64(delta);
                encode(&mut w);
                // `encoded_len` must agree with `encode`, or the length prefix is wrong.
                let end = varint_len64(body as u64) + body;
                if w.overflowed() || w.pos() != end {
                    return 0;
                }
                end
            };
            // SAFETY: forwarded contract.
            unsafe { self.put(fs, 5 + varint_len64(head) + 10 + payload, fill) };
        }
    }

    /// Reserves `max` bytes in `fs`'s buffer and lets `fill` write a frame there, given its
    /// `ts_delta`; `fill` returns the frame's length, or 0 to publish nothing (an `Arg` that
    /// understated its size; no frame is empty). Counts the frame as written or lost.
    ///
    /// The clock is read before the reservation, so its latency overlaps it.
    ///
    /// # Safety
    ///
    /// `fs` is one of this handler's [`FastSlot`]s and the caller holds its emit slot.
    #[inline(always)]
    unsafe fn put(&self, fs: &FastSlot, max: usize, fill: impl FnOnce(&mut [u8], u64) -> usize) {
        let lane = fs.lane();
        let ts = fs.clock.now();
        let mut cut = false;
        // `fs` is one of this handler's slots, so its channel (`self.chan`) is alive; the caller
        // holds its emit slot: this is its buffer's only writer.
        // SAFETY: see above (the caller's contract).
        let ok = unsafe {
            fs.writer.write_with_max(max, |buf| {
                let (delta, last) = delta_since(ts, lane);
                let n = fill(buf, delta);
                cut = n == 0;
                // Only a published frame is the next one's reference.
                if cut {
                    lane.last.store(last, Ordering::Relaxed);
                }
                n
            })
        };
        lane.count(ok && !cut);
    }

    /// Whether this is a forked child's copy of the handler: its buffers and metadata are the
    /// parent's, which the child leaves alone (`flush` and `finish` do nothing there).
    fn forked(&self) -> bool {
        std::process::id() != self.cleanup.pid
    }

    /// Flushes every buffer (under the emit slots, so it is safe while registered).
    pub fn flush(&self) {
        if self.forked() {
            return;
        }
        for slot in 0..self.chan.n_bufs() {
            // SAFETY: `with_slot_held` holds emit slot `slot`, which serialises every writer of
            // buffer `slot`.
            dispatch::with_slot_held(slot, || unsafe { self.chan.flush_unlocked(slot) });
        }
    }

    /// Flushes, writes the final clock reference (for the decoder's interpolation) and each
    /// buffer's end-of-trace totals (docs/FORMAT.md: what makes the decoder's accounting exact,
    /// drops after the last sub-buffer header included), and returns the counters. Further
    /// events still work (a later `finish` writes newer totals, the last ones win); call it
    /// once at the end of a trace, after the threads that log have stopped.
    pub fn finish(&self) -> HandlerStats {
        if self.forked() {
            return self.stats();
        }
        let cb = self.cb();
        let mut totals = Vec::with_capacity(self.chan.n_bufs());
        for (slot, lane) in cb.lanes.iter().enumerate().take(self.chan.n_bufs()) {
            // Flush and read the counters under the slot, so they describe the same buffer
            // state. A flush refused by a full buffer is fine: the totals count what it drops.
            let mut t = None;
            dispatch::with_slot_held(slot, || {
                // SAFETY: emit slot `slot` is held: it serialises every writer of buffer `slot`.
                unsafe { self.chan.flush_unlocked(slot) };
                t = Some(lane.totals(slot as u16));
            });
            // Not held (a nested call on a thread inside an emit): the counters as they are.
            totals.push(t.unwrap_or_else(|| lane.totals(slot as u16)));
        }
        if !self.finished.swap(true, Ordering::AcqRel) {
            let r: ClockRef = cb.clock.reference();
            self.meta
                .append(|rec| wire::meta_clock(rec, cb.clock.source() as u8, &r));
        }
        self.meta.append(|rec| {
            for t in &totals {
                wire::meta_totals(rec, t);
            }
        });
        self.stats()
    }

    /// The trace id written into the metadata header and every sub-buffer header.
    pub fn trace_id(&self) -> u64 {
        self.cb().trace_id
    }

    /// The counters.
    pub fn stats(&self) -> HandlerStats {
        let lanes = &self.cb().lanes[..self.chan.n_bufs()];
        HandlerStats {
            frames: lanes
                .iter()
                .map(|l| l.frames.load(Ordering::Relaxed))
                .collect(),
            lost: lanes
                .iter()
                .map(|l| l.lost_total.load(Ordering::Relaxed))
                .collect(),
            callsites: self.meta.defined.load(Ordering::Relaxed),
        }
    }
}

impl Handler for RelayHandler {
    fn slots(&self) -> usize {
        self.chan.n_bufs()
    }

    unsafe fn event(&self, slot: usize, cs: &'static Callsite, args: &dyn DynArgs) {
        let Some(fs) = self.fast_slot(slot) else {
            return;
        };
        if let Some(head) = self.head(fs, cs, Kind::Fmt, args.count(), |t| args.types(t)) {
            let len = args.encoded_len();
            // SAFETY: `fs` is this handler's record of `slot`, which the caller holds.
            unsafe { self.frame(fs, head, len, || len, |w| args.encode(w)) };
        }
    }

    unsafe fn raw(&self, slot: usize, cs: &'static Callsite, bytes: &[u8]) {
        if let Some(fs) = self.fast_slot(slot) {
            // SAFETY: `fs` is this handler's record of `slot`, which the caller holds.
            unsafe { self.raw_bytes(fs, cs, bytes) };
        }
    }

    fn lost(&self, slot: usize) {
        if let Some(fs) = self.fast_slot(slot) {
            fs.lane().count(false);
        }
    }

    unsafe fn flush(&self, slot: usize) {
        // SAFETY: the caller holds emit slot `slot`: it serialises every writer of buffer `slot`.
        unsafe { self.chan.flush_unlocked(slot) };
    }
}
