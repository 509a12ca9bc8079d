//! Thin safe wrappers over the few system calls std does not offer: `poll`, `mmap`/`munmap`,
//! `sendfile`, `sysconf(_SC_PAGESIZE)`. Every `unsafe` block of the crate lives here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `poll(2)` on one descriptor; returns `revents`. Retries on `EINTR` (with the full timeout
/// again, which is fine for the short timeouts used here).
pub fn poll_one(fd: &impl AsRawFd, events: i16, timeout_ms: i32) -> io::Result<i16> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is a valid, initialised pollfd that lives across the call, and nfds = 1
        // matches the single element passed.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r >= 0 {
            return Ok(if r == 0 { 0 } else { pfd.revents });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The system page size (4096 on x86-64).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// `PAGE_ALIGN(n)`.
pub fn page_align(n: usize) -> usize {
    let p = page_size();
    n.div_ceil(p) * p
}

/// A read-only shared mapping of a file, unmapped on drop.
pub struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain read-only memory owned by this value; it may be moved to or read
// from another thread (reads go through `snapshot`, which copies with raw pointers).
unsafe impl Send for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, offset)`.
    pub fn new(fd: &impl AsRawFd, len: usize, offset: i64) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh mapping at a kernel-chosen address (NULL hint, no MAP_FIXED) cannot
        // alias any Rust object; the fd is valid for the duration of the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    /// Copy of the mapped bytes.
    ///
    /// The copy goes through the kernel (`write` of the mapped range into a pipe, then `read`
    /// back), so a page the driver fails to back comes back as `EFAULT` instead of killing the
    /// process with `SIGBUS`; it also never forms a `&[u8]` over memory the kernel may change.
    pub fn snapshot(&self) -> io::Result<Vec<u8>> {
        let (rd, wr) = pipe()?;
        let mut out = vec![0u8; self.len];
        let mut done = 0usize;
        while done < self.len {
            let n = (self.len - done).min(4096);
            // SAFETY: the source range lies inside the live mapping (`done + n <= len`); the
            // kernel validates the user pointer and reports an unbackable page as EFAULT. A
            // 4 KiB write into an empty pipe (64 KiB) never blocks.
            let w = unsafe {
                libc::write(
                    wr.as_raw_fd(),
                    (self.ptr as *const u8).add(done) as *const libc::c_void,
                    n,
                )
            };
            if w < 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading mapping bytes {done}..{}: {e}", done + n),
                ));
            }
            if w == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("reading mapping at byte {done}: no progress"),
                ));
            }
            let w = w as usize;
            let mut got = 0usize;
            while got < w {
                // SAFETY: the destination range `done + got .. done + w` lies inside `out`.
                let r = unsafe {
                    libc::read(
                        rd.as_raw_fd(),
                        out.as_mut_ptr().add(done + got) as *mut libc::c_void,
                        w - got,
                    )
                };
                if r <= 0 {
                    let e = io::Error::last_os_error();
                    if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(io::Error::new(e.kind(), format!("pipe read: {e}")));
                }
                got += r as usize;
            }
            done += w;
        }
        Ok(out)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created by `new` and not unmapped before; no
        // reference into it outlives `self` (snapshot copies).
        let r = unsafe { libc::munmap(self.ptr, self.len) };
        if r != 0 {
            println!(
                "  warning: munmap({:p}, {}) failed: {}",
                self.ptr,
                self.len,
                io::Error::last_os_error()
            );
        }
    }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// One `sendfile(out, in, NULL, count)` call; returns the number of bytes moved. Retries on
/// `EINTR`.
pub fn sendfile(out: &impl AsRawFd, input: &impl AsRawFd, count: usize) -> io::Result<usize> {
    let (o, i): (RawFd, RawFd) = (out.as_raw_fd(), input.as_raw_fd());
    loop {
        // SAFETY: both descriptors are valid open files owned by the caller; a NULL offset
        // pointer makes the kernel use and update the input file's position.
        let r = unsafe { libc::sendfile(o, i, std::ptr::null_mut(), count) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
