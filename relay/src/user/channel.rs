//! The writer side of a user-space relay channel.
//!
//! # Writer exclusivity (the user-space stand-in for `local_irq_save`)
//!
//! Each buffer has a lock word in its shared control block: 0 when free, otherwise the owner's
//! token (the address of a thread-local). A writer looks up its CPU (`sched_getcpu`, served from
//! rseq by glibc) and takes that buffer's lock with one compare-and-swap, so a thread that is
//! preempted or migrated mid-write still owns the buffer it started on: messages are never torn
//! or interleaved. Contention (a migrated thread meeting the buffer's usual owner) spins briefly,
//! then yields.
//!
//! A signal handler that interrupts a `write` on the same thread finds the lock owned by its own
//! token: it must not wait (that would deadlock), so it takes the first other buffer whose lock
//! is free, and if there is none it drops the message and counts it in `dropped_msgs`. That is
//! the price of not blocking signals around every write (a system call per write); the kernel
//! backend has no such case because `write` runs with interrupts off. `__write` skips the token
//! and the fallback: like the kernel's `__relay_write`, it must not be called from a context that
//! can interrupt another write on the same thread.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::file::{MapHooks, RelayFile};
use super::shm::BufMem;
use super::sys::{current_cpu, possible_cpus, SharedFutex};
use crate::core::{wait, Buf, BufStats, Callbacks, Env, Geometry, NoOverwrite, NoWake, OpenError};
use crate::core::{Overwrite, Slot, SubbufStart};

/// What `create_buf_file` learns about the buffer it creates a file for. (In user space the file
/// *is* the buffer's memory, so it is created before the buffer exists.)
#[derive(Debug, Clone, Copy)]
pub struct BufInfo {
    /// CPU of the buffer (0 for the global buffer).
    pub cpu: usize,
    /// Channel geometry.
    pub geometry: Geometry,
}

/// Callbacks of a user-space channel: the core's [`Callbacks`] plus the file-system ones.
pub trait ChannelCallbacks: Callbacks + Send + Sync + 'static {
    /// relay's `create_buf_file(filename, parent, mode, buf, &is_global)`: returns the file that
    /// backs the buffer, or `None` for an anonymous (buffer-only) one. `name` and `parent` are
    /// `None` when the channel has no base filename. Setting `*is_global` when called for CPU 0
    /// makes the channel use one buffer for all CPUs.
    fn create_buf_file(
        &self,
        name: Option<&str>,
        parent: Option<&Path>,
        mode: u32,
        _buf: &BufInfo,
        _is_global: &mut bool,
    ) -> io::Result<Option<File>> {
        default_create_buf_file(name, parent, mode)
    }

    /// relay's `remove_buf_file`: called at close for every file `create_buf_file` returned.
    fn remove_buf_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

impl ChannelCallbacks for NoOverwrite {}
impl ChannelCallbacks for Overwrite {}

/// The default `create_buf_file`: a new file `parent/name` with `mode`, or `None` when there is
/// no name. Fails if the file exists.
pub fn default_create_buf_file(
    name: Option<&str>,
    parent: Option<&Path>,
    mode: u32,
) -> io::Result<Option<File>> {
    let Some(name) = name else { return Ok(None) };
    let path = parent.unwrap_or(Path::new(".")).join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map(Some)
}

/// Errors from opening or resetting a channel.
#[derive(Debug)]
pub enum Error {
    /// A parameter relay rejects (sizes, header).
    Param(OpenError),
    /// A base filename that is empty or contains `/` or NUL.
    BadName(String),
    /// A file-system operation failed.
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Param(e) => write!(f, "invalid relay channel parameters: {e}"),
            Error::BadName(n) => write!(f, "invalid relay base filename {n:?}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        Error::Param(e)
    }
}

/// What `close` reports: relay's "items not logged" warning and the final counters.
#[derive(Debug, Clone)]
pub struct CloseReport {
    /// Sub-buffer size of the channel.
    pub subbuf_size: usize,
    /// Length of the last message dropped as too big, if any (relay's `last_toobig`).
    pub last_toobig: Option<usize>,
    /// Final counters of every buffer.
    pub stats: Vec<BufStats>,
    /// `remove_buf_file` failures, if any.
    pub remove_errors: Vec<(PathBuf, String)>,
}

impl fmt::Display for CloseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_toobig {
            Some(n) => write!(
                f,
                "relay: one or more items not logged [item size ({n}) > sub-buffer size ({})]",
                self.subbuf_size
            ),
            None => f.write_str("relay: closed"),
        }
    }
}

struct Inner<C> {
    cb: C,
    geo: Geometry,
    bufs: Vec<Arc<BufMem>>,
    paths: Vec<Option<PathBuf>>,
    is_global: bool,
    closed: AtomicBool,
}

impl<C: ChannelCallbacks> Env for Inner<C> {
    #[inline]
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        self.cb.subbuf_start(ctx)
    }
    #[inline]
    fn subbuf_produced(&self, buf: &Buf) {
        wait::notify(buf.state(), &SharedFutex { deadline: None });
    }
}

impl<C: ChannelCallbacks> MapHooks for Inner<C> {
    fn mapped(&self, buf: &Buf) {
        self.cb.buf_mapped(buf);
    }
    fn unmapped(&self, buf: &Buf) {
        self.cb.buf_unmapped(buf);
    }
}

/// A user-space relay channel: one shared-memory buffer per possible CPU, or one global buffer.
///
/// Files are named `base0 .. baseN-1` in `parent` (use a tmpfs such as `/dev/shm` for speed);
/// other processes read them with [`RelayFile::open`]. All methods take `&self`: share the channel
/// between threads with `Arc` or scoped threads.
pub struct Channel<C: ChannelCallbacks = NoOverwrite> {
    inner: Arc<Inner<C>>,
}

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// This thread's lock token: the address of a thread-local (never 0, unique among live threads).
#[inline]
fn token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Token used by `__write`, which does not detect re-entry.
const ANON_TOKEN: usize = 1;

/// A held writer lock; released on drop (also if a `write_with` closure panics).
struct WriterGuard<'a>(&'a AtomicUsize);

impl Drop for WriterGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

enum Locked<'a> {
    Held(WriterGuard<'a>),
    /// The lock belongs to the context this one interrupted.
    Nested,
}

#[inline]
fn lock_writer(word: &AtomicUsize, token: usize) -> Locked<'_> {
    match word.compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => Locked::Held(WriterGuard(word)),
        Err(owner) if owner == token && token != ANON_TOKEN => Locked::Nested,
        Err(_) => lock_writer_slow(word, token),
    }
}

#[cold]
fn lock_writer_slow(word: &AtomicUsize, token: usize) -> Locked<'_> {
    let mut spins = 0u32;
    loop {
        if word.load(Ordering::Relaxed) == 0
            && word
                .compare_exchange_weak(0, token, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Locked::Held(WriterGuard(word));
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            // The owner may be preempted: let it run.
            std::thread::yield_now();
        }
    }
}

#[inline]
fn try_lock_writer(word: &AtomicUsize, token: usize) -> Option<WriterGuard<'_>> {
    word.compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
        .ok()
        .map(|_| WriterGuard(word))
}

/// Takes the reader lock of a buffer (shared by every reader in every process).
pub(crate) fn lock_reader(buf: &Buf) -> ReaderGuard<'_> {
    let word = buf.state().reader_lock();
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    ReaderGuard(word)
}

/// A held reader lock.
pub(crate) struct ReaderGuard<'a>(&'a AtomicUsize);

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// A slot returned by [`Channel::reserve`]. As in relay, readers may see it before it is filled.
pub struct Reservation<'a> {
    buf: &'a Buf,
    slot: Slot,
}

impl Reservation<'_> {
    /// Length of the slot.
    pub fn len(&self) -> usize {
        self.slot.len
    }

    /// Whether the slot is empty (`reserve(0)`).
    pub fn is_empty(&self) -> bool {
        self.slot.len == 0
    }

    /// Position of the slot in the buffer's data region, and the buffer's CPU.
    pub fn position(&self) -> (usize, usize) {
        (self.buf.cpu(), self.slot.pos)
    }

    /// Copies `bytes` into the slot at `offset`. Returns `false` (writing nothing) if they do not
    /// fit in the slot.
    pub fn fill(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset > self.slot.len || bytes.len() > self.slot.len - offset {
            return false;
        }
        // SAFETY: the range is inside the reserved slot, which lies inside the data region and
        // belongs to the holder of this reservation (no writer reuses it before readers consume
        // it in no-overwrite mode; in overwrite mode relay gives no guarantee either).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.buf.slot_ptr(self.slot).add(offset),
                bytes.len(),
            )
        };
        true
    }

    /// Raw pointer to the slot, for encoding in place.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.buf.slot_ptr(self.slot)
    }
}

impl<C: ChannelCallbacks> Channel<C> {
    /// relay's `relay_open(base_filename, parent, subbuf_size, n_subbufs, cb, private_data)`.
    ///
    /// With a `base_filename`, creates (through `create_buf_file`) the files
    /// `parent/base_filename{cpu}`; without one, the buffers are anonymous shared memory.
    pub fn open(
        base_filename: Option<&str>,
        parent: Option<&Path>,
        subbuf_size: usize,
        n_subbufs: usize,
        callbacks: C,
    ) -> Result<Self, Error> {
        let geo = Geometry::new(subbuf_size, n_subbufs)?;
        if let Some(b) = base_filename {
            if b.is_empty() || b.contains('/') || b.contains('\0') {
                return Err(Error::BadName(b.to_string()));
            }
        }
        let mut inner = Inner {
            cb: callbacks,
            geo,
            bufs: Vec::new(),
            paths: Vec::new(),
            is_global: false,
            closed: AtomicBool::new(false),
        };
        let result = Self::open_bufs(&mut inner, base_filename, parent);
        let chan = Channel {
            inner: Arc::new(inner),
        };
        match result {
            Ok(()) => Ok(chan),
            Err(e) => {
                drop(chan.close_inner());
                Err(e)
            }
        }
    }

    fn open_bufs(
        inner: &mut Inner<C>,
        base: Option<&str>,
        parent: Option<&Path>,
    ) -> Result<(), Error> {
        let parent_dir = parent.unwrap_or(Path::new("."));
        for cpu in 0..possible_cpus() {
            let name = base.map(|b| format!("{b}{cpu}"));
            let info = BufInfo {
                cpu,
                geometry: inner.geo,
            };
            let mut is_global = false;
            let file = inner
                .cb
                .create_buf_file(name.as_deref(), parent, 0o600, &info, &mut is_global)
                .map_err(|source| Error::Io {
                    what: format!(
                        "creating relay buffer file {}",
                        name.as_deref().unwrap_or("(anonymous)")
                    ),
                    source,
                })?;
            let (file, path) = match file {
                Some(f) => (f, name.map(|n| parent_dir.join(n))),
                None => (
                    anonymous_file().map_err(|source| Error::Io {
                        what: "creating anonymous relay buffer".into(),
                        source,
                    })?,
                    None,
                ),
            };
            // Record the path first so a failure below still removes the file.
            inner.paths.push(path);
            let global = is_global && cpu == 0;
            let mem = BufMem::create(file, inner.geo, cpu, global).map_err(|source| Error::Io {
                what: format!("mapping relay buffer for cpu {cpu}"),
                source,
            })?;
            // SAFETY: the buffer is brand new (all-zero state) and not yet visible to any other
            // writer of this process; readers of the file see a consistent state through the
            // seqlock.
            unsafe { mem.buf().init(&NoWake(&inner.cb))? };
            inner.bufs.push(Arc::new(mem));
            if global {
                inner.is_global = true;
                break;
            }
        }
        Ok(())
    }

    /// The buffer a write from this thread goes to right now.
    #[inline]
    fn current_index(&self) -> usize {
        let n = self.inner.bufs.len();
        if n == 1 {
            0
        } else {
            current_cpu() % n
        }
    }

    /// Runs `f` on the current CPU's buffer with its writer lock held; in a nested context
    /// (signal handler interrupting this thread's write) on the first other free buffer. `None`
    /// if no buffer could be taken (the message is counted as dropped).
    #[inline]
    fn with_writer<R>(&self, len: usize, f: impl FnOnce(&Buf) -> R) -> Option<R> {
        let i = self.current_index();
        let mem = &self.inner.bufs[i];
        let tok = token();
        match lock_writer(mem.buf().state().writer_lock(), tok) {
            Locked::Held(_g) => Some(f(mem.buf())),
            Locked::Nested => self.with_other_writer(i, tok, len, f),
        }
    }

    #[cold]
    fn with_other_writer<R>(
        &self,
        busy: usize,
        tok: usize,
        len: usize,
        f: impl FnOnce(&Buf) -> R,
    ) -> Option<R> {
        for (j, mem) in self.inner.bufs.iter().enumerate() {
            if j == busy {
                continue;
            }
            if let Some(_g) = try_lock_writer(mem.buf().state().writer_lock(), tok) {
                return Some(f(mem.buf()));
            }
        }
        self.inner.bufs[busy].buf().state().count_dropped(len);
        None
    }

    /// relay's `relay_write`: appends `data` as one message to the current CPU's buffer. Safe to
    /// call from a signal handler that interrupted another `write` (see the module docs). Returns
    /// `false` if the message was dropped (buffer full in no-overwrite mode, too big, or no
    /// buffer free in a nested context); drops are counted in [`Channel::stats`].
    #[inline]
    pub fn write(&self, data: &[u8]) -> bool {
        // SAFETY: `with_writer` holds the buffer's writer lock while the closure runs.
        self.with_writer(data.len(), |b| unsafe { b.write(&*self.inner, data) })
            .unwrap_or(false)
    }

    /// relay's `__relay_write`: like [`Channel::write`] but without re-entry detection. Must not
    /// be called from a signal handler that may interrupt a write on the same thread (it would
    /// wait for itself).
    #[inline]
    #[allow(non_snake_case)]
    pub fn __write(&self, data: &[u8]) -> bool {
        let mem = &self.inner.bufs[self.current_index()];
        match lock_writer(mem.buf().state().writer_lock(), ANON_TOKEN) {
            // SAFETY: the writer lock is held for the duration of the write.
            Locked::Held(_g) => unsafe { mem.buf().write(&*self.inner, data) },
            Locked::Nested => false,
        }
    }

    /// Writes a `len`-byte message in place: `fill` encodes it straight into the buffer, then it
    /// is published. Readers never see a partly filled message. Returns `false` (without calling
    /// `fill`) if the message was dropped.
    #[inline]
    pub fn write_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        // SAFETY: `with_writer` holds the buffer's writer lock while the closure runs.
        self.with_writer(len, |b| unsafe { b.write_with(&*self.inner, len, fill) })
            .unwrap_or(false)
    }

    /// relay's `relay_reserve`: reserves `len` bytes in the current CPU's buffer for the caller
    /// to fill later. As in relay, the slot is visible to readers at once.
    pub fn reserve(&self, len: usize) -> Option<Reservation<'_>> {
        let mut chosen = None;
        // SAFETY: `with_writer` holds the buffer's writer lock while the closure runs.
        self.with_writer(len, |b| {
            chosen = unsafe { b.reserve(&*self.inner, len) }.map(|s| (b.cpu(), s));
        })?;
        let (cpu, slot) = chosen?;
        let idx = if self.inner.is_global { 0 } else { cpu };
        Some(Reservation {
            buf: self.inner.bufs[idx].buf(),
            slot,
        })
    }

    /// relay's `relay_flush`: forces a sub-buffer switch on every buffer, so readers can see
    /// (and `poll` reports) what was written so far.
    pub fn flush(&self) {
        for mem in &self.inner.bufs {
            if let Locked::Held(_g) = lock_writer(mem.buf().state().writer_lock(), token()) {
                // SAFETY: the writer lock is held.
                unsafe { mem.buf().flush(&*self.inner) };
            }
        }
    }

    /// relay's `relay_reset`: erases all data and restarts every buffer in its initial state.
    /// Buffers are not freed and mappings stay valid (they see zeros).
    pub fn reset(&self) -> Result<(), Error> {
        for mem in &self.inner.bufs {
            let b = mem.buf();
            let Locked::Held(_w) = lock_writer(b.state().writer_lock(), token()) else {
                continue;
            };
            let _r = lock_reader(b);
            // SAFETY: both the writer and the reader lock are held.
            unsafe { b.reset(&NoWake(&self.inner.cb))? };
            wait::wake_all(b.state(), &SharedFutex { deadline: None });
        }
        Ok(())
    }

    /// relay's `relay_subbufs_consumed(chan, cpu, n)`: an mmap consumer reports `n` more
    /// sub-buffers consumed on `cpu`'s buffer. Ignored for a CPU without a buffer or `n` larger
    /// than `n_subbufs`, clamped to what was produced.
    pub fn subbufs_consumed(&self, cpu: usize, n: usize) {
        if let Some(b) = self.buf(cpu) {
            let _r = lock_reader(b);
            // SAFETY: the reader lock is held.
            unsafe { b.subbufs_consumed(n) };
        }
    }

    /// relay's `relay_buf_full` for `cpu`'s buffer (`None` if `cpu` has none).
    pub fn buf_full(&self, cpu: usize) -> Option<bool> {
        self.buf(cpu).map(Buf::buf_full)
    }

    /// The buffer that `cpu` writes to: its own, or the global one.
    pub fn buf(&self, cpu: usize) -> Option<&Buf> {
        if self.inner.is_global {
            (cpu < possible_cpus()).then(|| self.inner.bufs[0].buf())
        } else {
            self.inner.bufs.get(cpu).map(|m| m.buf())
        }
    }

    /// Number of buffers (possible CPUs, or 1 when global).
    pub fn n_bufs(&self) -> usize {
        self.inner.bufs.len()
    }

    /// Whether `create_buf_file` asked for a single global buffer.
    pub fn is_global(&self) -> bool {
        self.inner.is_global
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.inner.geo
    }

    /// relay's `private_data`: the callbacks object.
    pub fn private_data(&self) -> &C {
        &self.inner.cb
    }

    /// Paths of the buffer files, by buffer index (`None` for anonymous buffers).
    pub fn paths(&self) -> &[Option<PathBuf>] {
        &self.inner.paths
    }

    /// Counters of every buffer.
    pub fn stats(&self) -> Vec<BufStats> {
        self.inner.bufs.iter().map(|m| m.buf().stats()).collect()
    }

    /// Opens buffer `index` for reading in this process (relay's file `open`): the reader keeps
    /// the buffer's memory alive after the channel is closed.
    pub fn open_file(&self, index: usize) -> Option<RelayFile> {
        let mem = self.inner.bufs.get(index)?.clone();
        Some(RelayFile::from_mem(
            mem,
            Some(self.inner.clone() as Arc<dyn MapHooks>),
        ))
    }

    /// relay's `relay_close`: finalizes every buffer (pollers get an error, readers still read
    /// what is left), wakes readers, removes the files through `remove_buf_file`. Does not flush.
    pub fn close(self) -> CloseReport {
        self.close_inner()
    }

    fn close_inner(&self) -> CloseReport {
        let inner = &self.inner;
        let mut report = CloseReport {
            subbuf_size: inner.geo.subbuf_size(),
            last_toobig: None,
            stats: Vec::new(),
            remove_errors: Vec::new(),
        };
        if inner.closed.swap(true, Ordering::AcqRel) {
            return report;
        }
        for mem in &inner.bufs {
            let b = mem.buf();
            b.finalize();
            wait::wake_all(b.state(), &SharedFutex { deadline: None });
            let st = b.stats();
            if st.last_toobig != 0 {
                report.last_toobig = Some(st.last_toobig);
            }
            report.stats.push(st);
        }
        for path in inner.paths.iter().flatten() {
            if let Err(e) = inner.cb.remove_buf_file(path) {
                report.remove_errors.push((path.clone(), e.to_string()));
            }
        }
        report
    }
}

impl<C: ChannelCallbacks> Drop for Channel<C> {
    fn drop(&mut self) {
        self.close_inner();
    }
}

/// An anonymous shared-memory file (a buffer-only channel).
fn anonymous_file() -> io::Result<File> {
    // SAFETY: the name is a valid NUL-terminated string; memfd_create has no other
    // preconditions.
    let fd = unsafe { libc::memfd_create(c"relay".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}
