//! The reader side of relay files: `open`, `read`, `poll`, `mmap`, `sendfile`, `close`.
//!
//! One API for both worlds: a [`RelayFile`] is either a user-space buffer file (shared memory,
//! the relay logic runs in the reader through the core) or a kernel relay file in debugfs (plain
//! system calls; the kernel runs the same logic). Consumers such as the [`super::Recorder`] do not
//! care which.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::channel::lock_reader;
use super::shm::BufMem;
use super::sys::{cvt, is_kernel_fs, Mapping, SharedFutex};
use crate::core::{wait, Buf, BufStats, Geometry, Poll, SliceSink};

/// Receives `buf_mapped` / `buf_unmapped` for in-process readers.
pub(crate) trait MapHooks: Send + Sync {
    fn mapped(&self, buf: &Buf);
    fn unmapped(&self, buf: &Buf);
}

enum Kind {
    /// A user-space buffer: the memory and, for in-process readers, the channel's hooks.
    User {
        mem: Arc<BufMem>,
        hooks: Option<Arc<dyn MapHooks>>,
    },
    /// A kernel relay file (debugfs); every operation is the kernel's.
    Kernel { file: File },
}

/// A read position ([`RelayFile::read_position`], [`RelayFile::peek`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadPos {
    /// Sub-buffers consumed so far (absolute count).
    pub subbuf: u64,
    /// Bytes consumed in the current one.
    pub offset: usize,
}

impl From<(usize, usize)> for ReadPos {
    fn from((subbuf, offset): (usize, usize)) -> Self {
        ReadPos {
            subbuf: subbuf as u64,
            offset,
        }
    }
}

/// An open relay file. Dropping it is relay's `release`: the buffer memory stays alive while any
/// reader (or mapping) holds it, even after the channel is closed.
///
/// # One consumer at a time
///
/// A relay buffer has one read position: two readers consuming it split the data between them
/// (each gets some frames, neither a whole trace). So the first consuming operation (`read`,
/// `sendfile`, `subbufs_consumed`) *claims* the buffer for this open file ([`RelayFile::claim`]:
/// an advisory `flock(LOCK_EX | LOCK_NB)` on a file description of its own), and a claim held by
/// another open file — in this process or another — makes it fail with
/// [`io::ErrorKind::ResourceBusy`], naming the holder's pid. The claim lasts until this file is
/// dropped or its process dies. Opening, `poll`, `stats` and `mmap` never claim: any number of
/// snapshot readers may look at a buffer that someone consumes.
pub struct RelayFile {
    kind: Kind,
    claim: Claim,
}

/// The consumer claim of a [`RelayFile`]: `claimed` is the fast check of every consuming
/// operation; `lock` serialises claiming and holds the descriptor that carries the `flock`
/// (`None` inside when the file's own descriptor carries it).
#[derive(Default)]
struct Claim {
    claimed: AtomicBool,
    lock: Mutex<Option<File>>,
}

/// A whole-buffer mapping returned by [`RelayFile::mmap`]; unmapping fires `buf_unmapped`.
pub struct BufMapping {
    map: Mapping,
    // Keeps the buffer (and thus the counters below) alive for the mapping's lifetime.
    mem: Option<Arc<BufMem>>,
    hooks: Option<Arc<dyn MapHooks>>,
}

impl BufMapping {
    /// The mapped buffer: `n_subbufs * subbuf_size` bytes (page-rounded). The writer keeps
    /// writing into it: copy out what you need, as with the kernel's relay mmap.
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_slice()
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Drop for BufMapping {
    fn drop(&mut self) {
        if let Some(mem) = &self.mem {
            mem.buf().state().mapped().fetch_sub(1, Ordering::Relaxed);
            if let Some(h) = &self.hooks {
                h.unmapped(mem.buf());
            }
        }
    }
}

impl RelayFile {
    pub(crate) fn from_mem(mem: Arc<BufMem>, hooks: Option<Arc<dyn MapHooks>>) -> Self {
        mem.buf().state().readers().fetch_add(1, Ordering::Relaxed);
        RelayFile {
            kind: Kind::User { mem, hooks },
            claim: Claim::default(),
        }
    }

    /// Opens a relay file by path: a user-space buffer file (from any process) or a kernel relay
    /// file on debugfs/tracefs. Opening never consumes anything.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let file = OpenOptions::new().read(true).open(path)?;
        if is_kernel_fs(file.as_fd())? {
            return Ok(RelayFile {
                kind: Kind::Kernel { file },
                claim: Claim::default(),
            });
        }
        // User-space buffer: the reader updates the shared counters, so it needs write access.
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mem = BufMem::open(file)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(Self::from_mem(Arc::new(mem), None))
    }

    /// Treats an already open file as a kernel relay file.
    pub fn from_kernel_file(file: File) -> Self {
        RelayFile {
            kind: Kind::Kernel { file },
            claim: Claim::default(),
        }
    }

    /// Makes this open file the one consuming reader of its buffer (see "One consumer at a
    /// time" above); a no-op if it already is. Consuming operations claim by themselves; call
    /// this to find out before reading (a recorder refusing to start). Fails with
    /// [`io::ErrorKind::ResourceBusy`] when another open file holds the claim; the message
    /// names this file and the holder's pid and suggests a non-consuming snapshot.
    pub fn claim(&mut self) -> io::Result<()> {
        self.claimed()
    }

    /// Whether this open file holds the consumer claim.
    pub fn is_claimed(&self) -> bool {
        self.claim.claimed.load(Ordering::Acquire)
    }

    /// The claim check of every consuming operation: one load once claimed.
    #[inline]
    fn claimed(&self) -> io::Result<()> {
        if self.claim.claimed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.claim_slow()
    }

    #[cold]
    fn claim_slow(&self) -> io::Result<()> {
        let mut lock = self.claim.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.claim.claimed.load(Ordering::Acquire) {
            return Ok(());
        }
        let own = self.as_fd();
        // `flock` belongs to a file description: one shared with other readers (in-process
        // readers of a channel share the buffer's descriptor) could not tell them apart, so a
        // user-space file locks a description of its own (without /proc, the shared one: it
        // still excludes other processes). A kernel file's is its own already.
        let private = match &self.kind {
            Kind::User { .. } => reopen(own).ok(),
            Kind::Kernel { .. } => None,
        };
        let fd = private.as_ref().map_or(own, |f| f.as_fd());
        loop {
            // SAFETY: plain system call on a valid descriptor.
            if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Err(busy(own)),
                // A kernel built without file locking (CONFIG_FILE_LOCKING=n, e.g. tinyconfig)
                // has no flock: nothing can exclude a second reader there, and refusing every
                // reader would make the files unreadable. Proceed without the claim.
                Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => break,
                _ => return Err(io::Error::new(e.kind(), format!("{}: {e}", fd_name(own)))),
            }
        }
        *lock = private;
        self.claim.claimed.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether this is a kernel relay file.
    pub fn is_kernel(&self) -> bool {
        matches!(self.kind, Kind::Kernel { .. })
    }

    /// The geometry, for user-space buffers (the kernel does not expose it).
    pub fn geometry(&self) -> Option<Geometry> {
        match &self.kind {
            Kind::User { mem, .. } => Some(mem.buf().geometry()),
            Kind::Kernel { .. } => None,
        }
    }

    /// The buffer's CPU, for user-space buffers.
    pub fn cpu(&self) -> Option<usize> {
        match &self.kind {
            Kind::User { mem, .. } => Some(mem.buf().cpu()),
            Kind::Kernel { .. } => None,
        }
    }

    /// The buffer's counters, for user-space buffers.
    pub fn stats(&self) -> Option<BufStats> {
        match &self.kind {
            Kind::User { mem, .. } => Some(mem.buf().stats()),
            Kind::Kernel { .. } => None,
        }
    }

    /// relay's `read`: copies up to `out.len()` unread bytes, consuming them and skipping
    /// padding. Never blocks; `Ok(0)` means nothing is available now.
    pub fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.claimed()?;
        match &self.kind {
            Kind::User { mem, .. } => {
                let b = mem.buf();
                let _r = lock_reader(b);
                let mut sink = SliceSink::new(out);
                // SAFETY: the reader lock is held.
                Ok(unsafe { b.read(&mut sink) })
            }
            Kind::Kernel { file } => loop {
                // SAFETY: `out` is a valid writable buffer of `out.len()` bytes.
                let r = unsafe { libc::read(file.as_raw_fd(), out.as_mut_ptr().cast(), out.len()) };
                match cvt(r) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            },
        }
    }

    /// A non-consuming [`RelayFile::read`] of at most one sub-buffer's bytes: copies what a read
    /// would return, up to the end of the sub-buffer it starts in, and returns the byte count,
    /// the read position of the first byte and the one after the last, for
    /// [`RelayFile::consume`] once the bytes are stored (a consumer killed in between loses
    /// nothing: they stay for the next reader). `from`: start there (a position an earlier peek
    /// returned) rather than at the read position, so that several peeks can precede one
    /// consume. User-space buffers only; kernel relay files consume on read (`Unsupported`).
    pub fn peek(
        &mut self,
        out: &mut [u8],
        from: Option<ReadPos>,
    ) -> io::Result<(usize, ReadPos, ReadPos)> {
        self.claimed()?;
        match &self.kind {
            Kind::User { mem, .. } => {
                let b = mem.buf();
                let _r = lock_reader(b);
                let mut sink = SliceSink::new(out);
                let from = from.map(|p| (p.subbuf as usize, p.offset));
                // SAFETY: the reader lock is held.
                let p = unsafe { b.peek(&mut sink, from) };
                Ok((p.len, ReadPos::from(p.start), ReadPos::from(p.end)))
            }
            Kind::Kernel { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel relay files consume on read; there is no non-consuming read",
            )),
        }
    }

    /// Consumes up to `to`, a position returned by [`RelayFile::peek`].
    pub fn consume(&mut self, to: ReadPos) -> io::Result<()> {
        self.claimed()?;
        match &self.kind {
            Kind::User { mem, .. } => {
                let b = mem.buf();
                let _r = lock_reader(b);
                // SAFETY: the reader lock is held.
                unsafe { b.consume_to((to.subbuf as usize, to.offset)) };
                Ok(())
            }
            Kind::Kernel { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel relay files consume on read",
            )),
        }
    }

    /// The read position: sub-buffers consumed so far and bytes consumed in the current one.
    /// `Ok(None)` when the file cannot tell.
    pub fn read_position(&self) -> io::Result<Option<ReadPos>> {
        match &self.kind {
            Kind::User { mem, .. } => Ok(Some(ReadPos::from(mem.buf().read_pos()))),
            // rsrelay's ioctl; the kernel's C relay cannot tell.
            Kind::Kernel { file } => Ok(super::kpos::kernel_read_position(file)?
                .map(|(subbuf, offset)| ReadPos { subbuf, offset })),
        }
    }

    /// The read position with the bytes of its sub-buffer before it (what an earlier reader
    /// consumed of it: the header and the frames before the position), taken together under
    /// the reader lock. The bytes are empty at a sub-buffer start, when the writer has reused
    /// the slot, or when the file cannot tell (then the position may still be known).
    pub fn read_prefix(&self) -> io::Result<(Option<ReadPos>, Vec<u8>)> {
        match &self.kind {
            Kind::User { mem, .. } => {
                let b = mem.buf();
                let mut out = vec![0u8; b.geometry().subbuf_size()];
                let _r = lock_reader(b);
                let mut sink = crate::core::SliceSink::new(&mut out);
                // SAFETY: the reader lock is held.
                let (pos, n) = unsafe { b.read_prefix(&mut sink) };
                out.truncate(n);
                Ok((Some(ReadPos::from(pos)), out))
            }
            Kind::Kernel { file } => match super::kpos::kernel_read_prefix(file)? {
                Some(((subbuf, offset), bytes)) => Ok((Some(ReadPos { subbuf, offset }), bytes)),
                None => Ok((self.read_position()?, Vec::new())),
            },
        }
    }

    /// relay's `poll` without waiting: `Readable` when at least one complete sub-buffer is
    /// unconsumed, `Finalized` once the channel is closed.
    pub fn poll_now(&self) -> io::Result<Poll> {
        self.poll(Some(Duration::ZERO))
    }

    /// Waits until the buffer is readable (a sub-buffer completed, e.g. on a switch or flush) or
    /// finalized, or `timeout` passes (`None`: forever). Sleeps on a futex in the shared control
    /// block (user space) or in `poll(2)` (kernel files): no busy loop.
    pub fn poll(&self, timeout: Option<Duration>) -> io::Result<Poll> {
        match &self.kind {
            Kind::User { mem, .. } => {
                let b = mem.buf();
                let futex = SharedFutex {
                    deadline: timeout.map(|t| Instant::now() + t),
                };
                wait::wait_until(b.state(), &futex, || b.poll() != Poll::Empty);
                Ok(b.poll())
            }
            Kind::Kernel { file } => {
                let mut pfd = libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = match timeout {
                    None => -1,
                    Some(t) => t.as_millis().min(i32::MAX as u128) as i32,
                };
                loop {
                    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
                    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
                    if r < 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() == io::ErrorKind::Interrupted {
                            continue;
                        }
                        return Err(e);
                    }
                    break;
                }
                Ok(if pfd.revents & libc::POLLERR != 0 {
                    Poll::Finalized
                } else if pfd.revents & libc::POLLIN != 0 {
                    Poll::Readable
                } else {
                    Poll::Empty
                })
            }
        }
    }

    /// relay's `mmap`: maps the whole buffer read-only. `len` must be exactly the buffer size
    /// (`n_subbufs * subbuf_size`, rounded up to a page); anything else fails with `EINVAL`.
    /// Fires `buf_mapped` (and `buf_unmapped` when the mapping is dropped) for in-process
    /// readers; every mapping is counted in the shared `mapped` counter.
    pub fn mmap(&self, len: usize) -> io::Result<BufMapping> {
        match &self.kind {
            Kind::User { mem, hooks } => {
                let page = super::sys::page_size();
                if len == 0 || len.next_multiple_of(page) != mem.alloc_size() {
                    return Err(io::Error::from_raw_os_error(libc::EINVAL));
                }
                let map = Mapping::new(
                    mem.file().as_fd(),
                    mem.data_offset(),
                    mem.alloc_size(),
                    false,
                )?;
                mem.buf().state().mapped().fetch_add(1, Ordering::Relaxed);
                if let Some(h) = hooks {
                    h.mapped(mem.buf());
                }
                Ok(BufMapping {
                    map,
                    mem: Some(mem.clone()),
                    hooks: hooks.clone(),
                })
            }
            Kind::Kernel { file } => Ok(BufMapping {
                map: Mapping::new(file.as_fd(), 0, len, false)?,
                mem: None,
                hooks: None,
            }),
        }
    }

    /// Tells the writer that an mmap consumer has consumed `n` more sub-buffers (relay's
    /// `relay_subbufs_consumed`). Kernel relay files have no such interface from user space.
    pub fn subbufs_consumed(&self, n: usize) -> io::Result<()> {
        match &self.kind {
            Kind::User { mem, .. } => {
                self.claimed()?;
                let b = mem.buf();
                let _r = lock_reader(b);
                // SAFETY: the reader lock is held.
                unsafe { b.subbufs_consumed(n) };
                Ok(())
            }
            Kind::Kernel { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel relay files take consumption notices through the client's own interface",
            )),
        }
    }

    /// `sendfile(out_fd, relay_fd, NULL, count)`: moves up to `count` unread bytes to `out`,
    /// consuming them, padding stripped. Kernel files use `sendfile(2)` (zero-copy where the
    /// kernel supports splicing from the file); user-space buffers copy through a 64 KiB bounce
    /// buffer so that a copy torn by an overwriting writer is never emitted.
    pub fn sendfile(&mut self, out: BorrowedFd<'_>, count: usize) -> io::Result<usize> {
        self.claimed()?;
        if let Kind::Kernel { file } = &self.kind {
            // SAFETY: both descriptors are valid for the call; a null offset uses the file
            // position.
            let r = unsafe {
                libc::sendfile(
                    out.as_raw_fd(),
                    file.as_raw_fd(),
                    std::ptr::null_mut(),
                    count,
                )
            };
            return cvt(r);
        }
        let mut bounce = vec![0u8; count.min(64 * 1024)];
        let mut done = 0;
        while done < count {
            let want = (count - done).min(bounce.len());
            let n = self.read(&mut bounce[..want])?;
            if n == 0 {
                break;
            }
            write_all_fd(out, &bounce[..n])?;
            done += n;
        }
        Ok(done)
    }
}

/// Where the writer of a user-space buffer stands: what [`RelayFile::write_position`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePos {
    /// Sub-buffers produced (finished) so far, i.e. the absolute number of the one being
    /// written (relay's `subbufs_produced`).
    pub produced: u64,
    /// The slot (`0..n_subbufs`) holding the newest bytes.
    pub slot: usize,
    /// Bytes committed in that slot, from its start (a client header included): every byte
    /// below is published, nothing at or above is.
    pub committed: usize,
    /// The writer's last switch was refused (no-overwrite mode, buffer full): `slot` is the
    /// finished sub-buffer and `committed` its length without padding.
    pub refused: bool,
}

impl RelayFile {
    /// The writer's committed position, read from the shared control block without consuming
    /// or waiting for anything (one seqlock snapshot, as `read` takes): e.g. for a snapshot of a
    /// buffer whose writer died, whose newest sub-buffer is complete up to `committed`.
    /// `Ok(None)` for kernel relay files (relay does not expose it). An error of kind
    /// `WouldBlock` if the writer is inside a sub-buffer switch and stays there (preempted, or
    /// died in it): the counters are then inconsistent.
    pub fn write_position(&self) -> io::Result<Option<WritePos>> {
        let Kind::User { mem, .. } = &self.kind else {
            return Ok(None);
        };
        let b = mem.buf();
        let geo = b.geometry();
        let (size, n) = (geo.subbuf_size(), geo.n_subbufs());
        let Some((produced, offset)) = b.writer_snapshot() else {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the writer is inside a sub-buffer switch (or died in one)",
            ));
        };
        let pos = if offset > size {
            // Refused: `produced` already counts the finished sub-buffer; the writer stays on it.
            let slot = produced.wrapping_sub(1) % n;
            WritePos {
                produced: produced as u64,
                slot,
                committed: b.complete_len(slot),
                refused: true,
            }
        } else {
            WritePos {
                produced: produced as u64,
                slot: produced % n,
                committed: offset,
                refused: false,
            }
        };
        Ok(Some(pos))
    }
}

/// A new file description of the file behind `fd` (through `/proc/self/fd`, which also
/// reaches unlinked files and memfds).
fn reopen(fd: BorrowedFd<'_>) -> io::Result<File> {
    File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A name for the file behind `fd`, for messages.
fn fd_name(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| format!("relay file (fd {})", fd.as_raw_fd()))
}

/// The refusal of a second consuming reader: names the file and who holds it.
fn busy(fd: BorrowedFd<'_>) -> io::Error {
    let holder = match flock_holder(fd) {
        Some(pid) if pid == std::process::id() => format!("pid {pid} (this process)"),
        Some(pid) => format!("pid {pid}"),
        None => "another process".to_string(),
    };
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!(
            "{}: another reader ({holder}) is consuming this relay buffer; a buffer has one \
             consuming reader at a time (two would split its data). Use a non-consuming \
             snapshot instead (`klog-decode --snapshot`, or mmap)",
            fd_name(fd)
        ),
    )
}

/// The pid that holds a `flock` on the file behind `fd`, from `/proc/locks` (lines like
/// `1: FLOCK  ADVISORY  WRITE 4242 00:1a:12345 0 EOF`, device numbers in hex).
fn flock_holder(fd: BorrowedFd<'_>) -> Option<u32> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer for the duration of the call.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    let (major, minor) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    #[allow(clippy::unnecessary_cast)]
    let (major, minor, ino) = (major as u32, minor as u32, st.st_ino as u64);
    // The file is generated a page at a time while other processes take and drop locks, so
    // one read can miss a line: look again a few times.
    (0..4).find_map(|_| {
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        find_flock(&locks, major, minor, ino)
    })
}

/// In `/proc/locks` text, the pid holding a `FLOCK` on device `major:minor`, inode `ino`.
fn find_flock(locks: &str, major: u32, minor: u32, ino: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().filter(|w| *w != "->").collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = f.get(5)?.split(':');
        let ma = u32::from_str_radix(id.next()?, 16).ok()?;
        let mi = u32::from_str_radix(id.next()?, 16).ok()?;
        let i: u64 = id.next()?.parse().ok()?;
        (ma == major && mi == minor && i == ino)
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

fn write_all_fd(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable buffer of its length.
        let r = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        match cvt(r) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for RelayFile {
    fn drop(&mut self) {
        if let Kind::User { mem, .. } = &self.kind {
            mem.buf().state().readers().fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl AsFd for RelayFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::User { mem, .. } => mem.file().as_fd(),
            Kind::Kernel { file } => file.as_fd(),
        }
    }
}
