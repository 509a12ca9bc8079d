//! The writer side of a user-space relay channel.
//!
//! # Writer exclusivity (the user-space stand-in for `local_irq_save`)
//!
//! Each buffer has a lock word in its shared control block (see `wlock.rs`). A writer looks up
//! its CPU (`sched_getcpu`, served from rseq by glibc) and takes that buffer's lock with one
//! compare-and-swap, so a thread that is preempted or migrated mid-write still owns the buffer it
//! started on: messages are never torn or interleaved. Contention (a migrated thread meeting the
//! buffer's usual owner) spins briefly, then yields, then sleeps (`wlock::Backoff`).
//!
//! A context nested inside a write of its own thread (a signal handler) never waits for a lock:
//! it appends its message to the nested queue of the buffer its thread holds (`nested.rs`),
//! which the interrupted writer drains into the buffer before releasing the lock; if that is not
//! possible (queue full, or the thread holds another channel's buffer) it uses any buffer that is
//! free right now, and otherwise drops the message and counts it in `dropped_msgs`. Blocking
//! signals around every write would cost two system calls per write; the kernel backend has no
//! such case because `write` runs with interrupts off. `__write` skips all of this: like the
//! kernel's `__relay_write`, it must not be called from a context that can interrupt another
//! write on the same thread.
//!
//! # fork()
//!
//! A forked child inherits the channel handle and the shared mappings. Its writes go into the
//! same buffers as the parent's and are serialised with them by the lock words, which live in
//! shared memory, exactly like writes from any other process that maps the buffers; nothing
//! on the write path checks for a fork (it costs nothing). What the callbacks object keeps in
//! process memory is a copy in the child (klog therefore disables itself in a forked child).
//! Only the process that opened the channel finalizes and removes its buffers: the child's
//! copy of the handle, dropped or closed, leaves them alone.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::file::{MapHooks, RelayFile};
use super::nested::NestedQueue;
use super::shm::BufMem;
use super::sys::{current_cpu, possible_cpus, SharedFutex};
use super::wlock::{acquire, acquire_anon, try_acquire, Acquired, Backoff, WriterGuard};
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

/// Makes a channel use one global buffer for all CPUs (relay's `is_global`), whatever callbacks
/// it wraps: `Channel::open(.., Global(NoOverwrite))`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Global<C>(pub C);

impl<C: Callbacks> Callbacks for Global<C> {
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        self.0.subbuf_start(ctx)
    }
    fn buf_mapped(&self, buf: &Buf) {
        self.0.buf_mapped(buf)
    }
    fn buf_unmapped(&self, buf: &Buf) {
        self.0.buf_unmapped(buf)
    }
}

impl<C: ChannelCallbacks> ChannelCallbacks for Global<C> {
    fn create_buf_file(
        &self,
        name: Option<&str>,
        parent: Option<&Path>,
        mode: u32,
        buf: &BufInfo,
        is_global: &mut bool,
    ) -> io::Result<Option<File>> {
        let f = self.0.create_buf_file(name, parent, mode, buf, is_global)?;
        *is_global = true;
        Ok(f)
    }
    fn remove_buf_file(&self, path: &Path) -> io::Result<()> {
        self.0.remove_buf_file(path)
    }
}

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
    /// Per buffer: messages queued by nested (signal-handler) writers.
    nested: Vec<NestedQueue>,
    paths: Vec<Option<PathBuf>>,
    is_global: bool,
    closed: AtomicBool,
    /// The process that opened the channel: only it finalizes and removes the buffers (a
    /// forked child's copy of the handle must leave the parent's files alone).
    creator: u32,
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

/// One buffer's writer side, detached from the channel's borrow: what
/// [`Channel::write_with_max_unlocked`] finds by index, looked up once (see
/// [`Channel::raw_writer`]). It holds its own view of the buffer, so a message goes from the
/// writer straight to the buffer's control block.
///
/// # Invariants
///
/// `buf` is an alias of a buffer of a channel and `env` points to that channel's shared state;
/// both stay valid as long as any [`Channel`] handle of that channel exists (the buffers'
/// memory is owned by the state, which the handle keeps alive). `buf` is only used through the
/// `unsafe` [`RawWriter::write_with_max`], whose contract includes that.
pub struct RawWriter<C: ChannelCallbacks> {
    buf: Buf,
    env: NonNull<Inner<C>>,
}

// A `RawWriter` is a buffer view (`Send + Sync`) and a pointer to the channel's `Sync` shared
// state; using them is `unsafe` and carries the channel's writer contract.
// SAFETY: see above.
unsafe impl<C: ChannelCallbacks> Send for RawWriter<C> {}
// SAFETY: as above.
unsafe impl<C: ChannelCallbacks> Sync for RawWriter<C> {}

impl<C: ChannelCallbacks> RawWriter<C> {
    /// [`Channel::write_with_max_unlocked`] on this buffer.
    ///
    /// # Safety
    ///
    /// The channel this writer came from is still alive (a [`Channel`] handle of it exists), and
    /// the caller meets [`Channel::write_with_max_unlocked`]'s exclusivity contract for this
    /// buffer.
    #[inline(always)]
    pub unsafe fn write_with_max(&self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
        // The channel is alive (caller's contract), so the view and `env` are valid (type
        // invariant); exclusivity is the caller's contract too.
        // SAFETY: see above.
        unsafe { self.buf.write_with_max(self.env.as_ref(), max, fill) }
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

/// Takes the reader lock of a buffer (shared by every reader in every process). The word holds
/// the owner's process id; a waiter takes over a lock whose owner process no longer exists (a
/// reader that died holding it), so a crashed reader cannot block the others forever.
pub(crate) fn lock_reader(buf: &Buf) -> ReaderGuard<'_> {
    let word = buf.state().reader_lock();
    let me = std::process::id() as usize;
    let mut backoff = Backoff::new();
    loop {
        let owner = word.load(Ordering::Relaxed);
        let free =
            owner == 0 || (backoff.rounds() % 128 == 127 && owner != me && !process_alive(owner));
        if free
            && word
                .compare_exchange(owner, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return ReaderGuard(word);
        }
        backoff.wait();
    }
}

fn process_alive(pid: usize) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
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
            nested: Vec::new(),
            paths: Vec::new(),
            is_global: false,
            closed: AtomicBool::new(false),
            creator: std::process::id(),
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
                    what: match &name {
                        Some(n) => format!(
                            "creating relay buffer file {}",
                            parent_dir.join(n).display()
                        ),
                        None => format!("creating anonymous relay buffer for cpu {cpu}"),
                    },
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
            let what = match &path {
                Some(p) => format!("relay buffer file {}", p.display()),
                None => format!("anonymous relay buffer for cpu {cpu}"),
            };
            // Record the path first so a failure below still removes the file.
            inner.paths.push(path);
            let global = is_global && cpu == 0;
            let mem = BufMem::create(file, inner.geo, cpu, global).map_err(|source| Error::Io {
                what: if source.kind() == io::ErrorKind::StorageFull {
                    format!(
                        "{what} (channel of {} buffer(s) of {} bytes each)",
                        if global { 1 } else { possible_cpus() },
                        inner.geo.alloc_size(super::sys::page_size())
                    )
                } else {
                    what
                },
                source,
            })?;
            // SAFETY: the buffer is brand new (all-zero state) and not yet visible to any other
            // writer of this process; readers of the file see a consistent state through the
            // seqlock.
            unsafe { mem.buf().init(&NoWake(&inner.cb))? };
            inner.bufs.push(Arc::new(mem));
            inner.nested.push(NestedQueue::new());
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
        let cpu = current_cpu();
        // `%` is a division (tens of cycles): only needed for a global buffer or a CPU number
        // beyond the possible CPUs.
        if cpu < n {
            cpu
        } else if n == 1 {
            0
        } else {
            cpu % n
        }
    }

    /// Releases buffer `i`'s writer lock, then writes out what nested contexts queued while it
    /// was held. One check on the fast path: the queue is drained after the release with a
    /// try-lock; if another writer took the buffer meanwhile, its own release drains it.
    #[inline]
    fn unlock(&self, i: usize, guard: WriterGuard<'_>) {
        drop(guard);
        if !self.inner.nested[i].is_empty() {
            self.drain_after_release(i);
        }
    }

    /// Writes the nested queue of buffer `i` out. The caller holds `i`'s lock as the outermost
    /// context of its thread.
    #[cold]
    fn drain_nested(&self, i: usize) {
        let b = self.inner.bufs[i].buf();
        // SAFETY: the caller holds the writer lock and is not nested; the core writes run under
        // that same lock.
        unsafe { self.inner.nested[i].drain(|msg| _ = b.write(&*self.inner, msg)) };
    }

    /// Messages were queued on buffer `i` (by contexts nested in a holder's thread). Drain them
    /// if the lock is free; if another writer holds it, that writer drains after its release.
    #[cold]
    fn drain_after_release(&self, i: usize) {
        let q = &self.inner.nested[i];
        while !q.is_empty() {
            let Some(g) = try_acquire(self.inner.bufs[i].buf().state().writer_lock()) else {
                return;
            };
            self.drain_nested(i);
            drop(g);
        }
    }

    /// A write from a context nested inside a write of its own thread (a signal handler), which
    /// must not wait for any lock: queue it on the buffer the thread holds (if it belongs to this
    /// channel), else use any buffer that is free right now, else drop and count it.
    #[cold]
    fn write_nested(
        &self,
        held: *const AtomicUsize,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        let mut fill = Some(fill);
        let own = self
            .inner
            .bufs
            .iter()
            .position(|m| std::ptr::eq(m.buf().state().writer_lock(), held));
        if let Some(i) = own {
            let queue = &self.inner.nested[i];
            let encode = |d: &mut [u8]| fill.take().map_or(0, |f| f(d));
            // SAFETY: `acquire` verified that we run nested inside this thread's hold of the lock.
            let queued = unsafe { queue.push(max, encode) };
            if queued {
                return true;
            }
        }
        let start = self.current_index();
        let n = self.inner.bufs.len();
        for j in (0..n).map(|k| (start + k) % n) {
            let b = self.inner.bufs[j].buf();
            if let Some(g) = try_acquire(b.state().writer_lock()) {
                let Some(f) = fill.take() else { break };
                // SAFETY: the writer lock of buffer `j` is held until `unlock`.
                let ok = unsafe { b.write_with_max(&*self.inner, max, f) };
                self.unlock(j, g);
                return ok;
            }
        }
        self.inner.bufs[own.unwrap_or(start)]
            .buf()
            .state()
            .count_dropped(max);
        false
    }

    /// relay's `relay_write`: appends `data` as one message to the current CPU's buffer. Safe to
    /// call from a signal handler that interrupted another `write` (see the module docs). Returns
    /// `false` if the message was dropped (buffer full in no-overwrite mode, too big, or no room
    /// for a nested writer); drops are counted in [`Channel::stats`]. A nested write that was
    /// queued returns `true` and is written (or dropped and counted) when the interrupted write
    /// finishes.
    #[inline]
    pub fn write(&self, data: &[u8]) -> bool {
        self.write_with(data.len(), |slot| slot.copy_from_slice(data))
    }

    /// relay's `__relay_write`: like [`Channel::write`] but without re-entry detection. Must not
    /// be called from a signal handler that may interrupt a write on the same thread (it would
    /// wait for itself).
    #[inline]
    #[allow(non_snake_case)]
    pub fn __write(&self, data: &[u8]) -> bool {
        let b = self.inner.bufs[self.current_index()].buf();
        let _g = acquire_anon(b.state().writer_lock());
        // SAFETY: the writer lock is held for the duration of the write.
        unsafe { b.write(&*self.inner, data) }
    }

    /// Writes a `len`-byte message in place: `fill` encodes it straight into the buffer, then it
    /// is published. Readers never see a partly filled message. Returns `false` (without calling
    /// `fill`) if the message was dropped. Signal-safe like [`Channel::write`].
    #[inline]
    pub fn write_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        self.write_with_max(len, |slot| {
            fill(slot);
            len
        })
    }

    /// Writes a message of at most `max` bytes in place: `fill` encodes into the slot and returns
    /// the length it used; only that much is published. For encoders whose exact length depends
    /// on values read while encoding (a timestamp taken under the buffer's exclusivity).
    #[inline]
    pub fn write_with_max(&self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
        let i = self.current_index();
        let b = self.inner.bufs[i].buf();
        match acquire(b.state().writer_lock()) {
            Acquired::Held(g) => {
                // SAFETY: the writer lock is held until `unlock`.
                let ok = unsafe { b.write_with_max(&*self.inner, max, fill) };
                self.unlock(i, g);
                ok
            }
            Acquired::Nested(held) => self.write_nested(held, max, fill),
        }
    }

    /// [`Channel::write_with_max`] on buffer `index` without taking its writer lock, for a
    /// client that serialises writers itself (klog's per-CPU emit slots). Returns `false` if
    /// the message was dropped or `index` has no buffer.
    ///
    /// # Safety
    ///
    /// For the whole call the caller guarantees that no other context writes, flushes or resets
    /// buffer `index` — through this method or any other — and that it is not itself
    /// interrupting such a context.
    #[inline]
    pub unsafe fn write_with_max_unlocked(
        &self,
        index: usize,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        match self.inner.bufs.get(index) {
            // SAFETY: exclusivity is the caller's contract.
            Some(m) => unsafe { m.buf().write_with_max(&*self.inner, max, fill) },
            None => false,
        }
    }

    /// Buffer `index`'s writer side as a [`RawWriter`], for a client that serialises writers
    /// itself and wants to skip the channel's buffer lookup on every message (klog keeps one per
    /// emit slot). `None` if `index` has no buffer.
    pub fn raw_writer(&self, index: usize) -> Option<RawWriter<C>> {
        let m = self.inner.bufs.get(index)?;
        // The alias is used only while the channel is alive (`RawWriter`'s invariant and
        // `write_with_max`'s contract).
        // SAFETY: see above.
        let buf = unsafe { m.buf().alias() };
        Some(RawWriter {
            buf,
            env: NonNull::from(&*self.inner),
        })
    }

    /// relay's flush of buffer `index` without taking its writer lock.
    ///
    /// # Safety
    ///
    /// As for [`Channel::write_with_max_unlocked`].
    pub unsafe fn flush_unlocked(&self, index: usize) {
        if let Some(m) = self.inner.bufs.get(index) {
            // SAFETY: exclusivity is the caller's contract.
            unsafe { m.buf().flush(&*self.inner) };
        }
    }

    /// relay's `relay_reserve`: reserves `len` bytes in the current CPU's buffer for the caller
    /// to fill later. As in relay, the slot is visible to readers at once.
    pub fn reserve(&self, len: usize) -> Option<Reservation<'_>> {
        let i = self.current_index();
        let b = self.inner.bufs[i].buf();
        // A nested context cannot take the slot of the write it interrupted, and a slot cannot
        // be queued: in that case the reservation fails (counted as a drop).
        let Acquired::Held(g) = acquire(b.state().writer_lock()) else {
            b.state().count_dropped(len);
            return None;
        };
        // SAFETY: the writer lock is held until `unlock`.
        let slot = unsafe { b.reserve(&*self.inner, len) };
        self.unlock(i, g);
        Some(Reservation {
            buf: b,
            slot: slot?,
        })
    }

    /// relay's `relay_flush`: forces a sub-buffer switch on every buffer, so readers can see
    /// (and `poll` reports) what was written so far.
    pub fn flush(&self) {
        for (i, mem) in self.inner.bufs.iter().enumerate() {
            if let Acquired::Held(g) = acquire(mem.buf().state().writer_lock()) {
                // SAFETY: the writer lock is held until `unlock`.
                unsafe { mem.buf().flush(&*self.inner) };
                self.unlock(i, g);
            }
        }
    }

    /// relay's `relay_reset`: erases all data and restarts every buffer in its initial state.
    /// Buffers are not freed and mappings stay valid (they see zeros).
    pub fn reset(&self) -> Result<(), Error> {
        for (i, mem) in self.inner.bufs.iter().enumerate() {
            let b = mem.buf();
            let Acquired::Held(w) = acquire(b.state().writer_lock()) else {
                continue;
            };
            let r = lock_reader(b);
            // SAFETY: both the writer and the reader lock are held.
            let res = unsafe { b.reset(&NoWake(&self.inner.cb)) };
            drop(r);
            self.unlock(i, w);
            wait::wake_all(b.state(), &SharedFutex { deadline: None });
            res?;
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
    /// In a forked child (any process but the one that opened the channel) closing or dropping
    /// the inherited handle does none of that: the buffers belong to the parent.
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
        if inner.closed.swap(true, Ordering::AcqRel) || std::process::id() != inner.creator {
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
        for (i, path) in inner.paths.iter().enumerate() {
            let Some(path) = path else { continue };
            // A file someone put in its place (a replaced trace) is not ours to remove.
            if inner.bufs.get(i).is_some_and(|m| replaced(m.file(), path)) {
                let why = "replaced by another file since the channel opened; left in place";
                report.remove_errors.push((path.clone(), why.into()));
                continue;
            }
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

/// Whether `path` names a file other than `file` (another device or inode).
fn replaced(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev() || a.ino() != b.ino(),
        _ => false,
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
