//! Thin, checked wrappers over the few system calls the user-space backend needs.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The system page size.
pub fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if v > 0 {
            v as usize
        } else {
            4096
        }
    })
}

/// Number of possible CPUs (relay creates a buffer for each).
pub fn possible_cpus() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let v = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        if v > 0 {
            v as usize
        } else {
            1
        }
    })
}

/// The CPU the calling thread runs on. It may be stale by the time it is used (the thread can
/// migrate at any moment); the backend's writer lock makes that harmless.
///
/// On x86_64 and aarch64 with glibc 2.35 or later, this is one load from the thread's rseq area,
/// which the kernel keeps current (glibc registers it for every thread and exports its offset
/// from the thread pointer as `__rseq_offset`). Elsewhere, or when rseq is not registered, it
/// falls back to `sched_getcpu(3)` (~2.5 ns here, versus ~0.3 ns).
#[inline]
pub fn current_cpu() -> usize {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        let off = rseq::OFFSET.load(std::sync::atomic::Ordering::Relaxed);
        if off != rseq::NONE {
            // A non-zero `off` came from glibc's `__rseq_offset` with a registered area
            // (`__rseq_size` != 0), so thread pointer + off is this thread's `struct rseq`, whose
            // `cpu_id` (a u32 at offset 4) the kernel updates.
            // SAFETY: see above; a volatile load of that `cpu_id` is sound.
            let cpu = unsafe {
                std::ptr::read_volatile((rseq::thread_pointer() as isize + off + 4) as *const i32)
            };
            if cpu >= 0 {
                return cpu as usize;
            }
        } else if !rseq::RESOLVED.load(std::sync::atomic::Ordering::Relaxed) {
            rseq::resolve();
        }
    }
    current_cpu_slow()
}

fn current_cpu_slow() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        0
    } else {
        cpu as usize
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod rseq {
    use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

    /// No usable rseq area (yet): use `sched_getcpu`. Never a real offset: the thread pointer
    /// points at the thread control block, not at the rseq area.
    pub const NONE: isize = 0;
    /// `__rseq_offset`, or [`NONE`]; a single test on the fast path.
    pub static OFFSET: AtomicIsize = AtomicIsize::new(NONE);
    /// Whether [`resolve`] has run.
    pub static RESOLVED: AtomicBool = AtomicBool::new(false);

    #[cold]
    pub fn resolve() {
        // Looked up at run time rather than linked, so the binary still runs on a libc without
        // these symbols.
        // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names has no other preconditions;
        // the symbols, when present, are glibc's `ptrdiff_t __rseq_offset` and
        // `unsigned int __rseq_size`, constant after start-up.
        let off = unsafe {
            let o = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
            let s = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
            if o.is_null() || s.is_null() || *(s as *const u32) == 0 {
                NONE
            } else {
                *(o as *const isize)
            }
        };
        OFFSET.store(off, Ordering::Relaxed);
        RESOLVED.store(true, Ordering::Relaxed);
    }

    #[inline(always)]
    pub fn thread_pointer() -> usize {
        let tp: usize;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: reads the thread pointer register; no memory is accessed.
        unsafe {
            std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags))
        };
        #[cfg(target_arch = "aarch64")]
        // SAFETY: reads the thread pointer register; no memory is accessed.
        unsafe {
            std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags))
        };
        tp
    }
}

/// A shared mapping of part of a file, unmapped on drop.
///
/// # Invariants
///
/// `ptr` is the start of a live mapping of `len` bytes created by `mmap` and owned by this value.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; access discipline is the relay protocol's.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset` (`MAP_SHARED`).
    pub fn new(fd: BorrowedFd<'_>, offset: usize, len: usize, writable: bool) -> io::Result<Self> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mapping offset too large"))?;
        // SAFETY: a fresh mapping at an address of the kernel's choosing aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?,
            len,
        })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for mappings made by this crate).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapped bytes. They may change under the caller (the writer keeps writing): treat the
    /// slice as a snapshot source, as with the kernel's relay mmap.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live and `len` bytes long (type invariant). Concurrent writes by
        // the relay writer are the documented behaviour of a relay mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this live mapping (type invariant) and nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A futex on a word in shared memory (not `FUTEX_PRIVATE`: readers may be other processes).
pub struct SharedFutex {
    /// When to give up waiting; `None` waits forever.
    pub deadline: Option<Instant>,
}

/// Longest single sleep of a waiting reader. A writer preempted (or killed) in the middle of a
/// sub-buffer switch leaves the seqlock odd, so readers cannot take a snapshot and report
/// nothing ready; when it resumes, finishing the switch may produce nothing and wake nobody (a
/// refused switch in a full buffer). Re-checking after at most this long bounds how long such a
/// reader sleeps while data waits; it costs a waiting reader ten wakeups a second.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

impl crate::core::wait::Futex for SharedFutex {
    fn wait(&self, word: &AtomicU32, expected: u32) -> bool {
        let (sleep, last) = match self.deadline {
            None => (RECHECK, false),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                if left <= RECHECK {
                    (left, true)
                } else {
                    (RECHECK, false)
                }
            }
        };
        let ts = timespec(sleep);
        // SAFETY: `word` is a valid, aligned u32 for the duration of the call; `ts` is alive
        // until the call returns.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        let timed_out =
            r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT);
        // A timeout of a capped sleep is a spurious return: the caller re-checks and waits on.
        !(timed_out && last)
    }

    fn wake(&self, word: &AtomicU32) {
        // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not dereference anything else.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            )
        };
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// `statfs(2)` magic numbers of the file systems the kernel's relay files live on.
const DEBUGFS_MAGIC: i64 = 0x6462_6720;
const TRACEFS_MAGIC: i64 = 0x7472_6163;

/// Whether `fd` is a file on debugfs/tracefs, i.e. a kernel relay file.
pub fn is_kernel_fs(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: an all-zero statfs is a valid value for fstatfs to overwrite.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `s` is a valid out-pointer for the duration of the call.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    let t = s.f_type as i64;
    Ok(t == DEBUGFS_MAGIC || t == TRACEFS_MAGIC)
}

/// Converts a `-1`-on-error return into `io::Result`.
pub fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
