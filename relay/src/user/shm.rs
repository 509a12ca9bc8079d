//! The layout of a user-space relay buffer file, and the memory object behind it.
//!
//! ```text
//! offset 0                 control region (page aligned size)
//!   FileHeader             magic, version, geometry, offsets
//!   BufState @ state_off   counters, locks, futex word (64-byte aligned)
//!   padding  @ padding_off n_subbufs × usize
//! offset data_off          data region: alloc_size = PAGE_ALIGN(subbuf_size × n_subbufs)
//! ```
//!
//! The whole file is shared memory: the writer maps all of it, a reader in another process maps
//! the control region read-write (it moves the consumed counters) and the data region read-only.

use std::fs::File;
use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;

use super::sys::{page_size, Mapping};
use crate::core::{Buf, BufState, Geometry};

/// File magic: identifies a user-space relay buffer file.
pub const MAGIC: [u8; 8] = *b"RSRELAY\0";
/// Layout version; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// First bytes of a buffer file.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileHeader {
    magic: [u8; 8],
    version: u32,
    /// `size_of::<BufState>()` of the writer, to refuse mismatched builds.
    state_size: u32,
    subbuf_size: u64,
    n_subbufs: u64,
    alloc_size: u64,
    state_off: u64,
    padding_off: u64,
    data_off: u64,
    cpu: u64,
    is_global: u64,
}

/// Offsets of a buffer file for a geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub geo: Geometry,
    pub alloc_size: usize,
    pub state_off: usize,
    pub padding_off: usize,
    pub data_off: usize,
}

impl Layout {
    pub fn new(geo: Geometry) -> io::Result<Self> {
        let page = page_size();
        let state_off = size_of::<FileHeader>().next_multiple_of(align_of::<BufState>());
        let padding_off = state_off + size_of::<BufState>();
        let ctl_end = geo
            .n_subbufs()
            .checked_mul(size_of::<usize>())
            .and_then(|p| p.checked_add(padding_off))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many sub-buffers"))?;
        let data_off = ctl_end.next_multiple_of(page);
        Ok(Layout {
            geo,
            alloc_size: geo.alloc_size(page),
            state_off,
            padding_off,
            data_off,
        })
    }

    pub fn file_len(&self) -> usize {
        self.data_off + self.alloc_size
    }
}

/// Gives `file` `len` bytes of allocated, zeroed space. A sparse file (`set_len`) would map
/// fine and then kill the writer with `SIGBUS` at the first page its file system cannot
/// provide (a small tmpfs such as Docker's 64 MiB `/dev/shm`); reserving the space up front
/// turns that into an error at open. The error (kind `StorageFull` when space is short) says
/// how much was needed and how much is free.
pub(crate) fn reserve(file: &File, len: usize) -> io::Result<()> {
    let off_len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "relay buffer too large"))?;
    let r = loop {
        // SAFETY: plain system call on a descriptor we own; no memory is passed.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
        if r != libc::EINTR {
            break r;
        }
    };
    match r {
        0 => Ok(()),
        libc::ENOSPC | libc::EFBIG | libc::EDQUOT => {
            let free = match free_space(file) {
                Ok(n) => format!("{n} bytes free"),
                Err(e) => format!("free space unknown: {e}"),
            };
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "cannot reserve {len} bytes for the buffer ({free} on its file system; \
                     use a smaller channel or a file system with more space)"
                ),
            ))
        }
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Bytes available to unprivileged users on `file`'s file system (`fstatvfs`).
pub(crate) fn free_space(file: &File) -> io::Result<u64> {
    // SAFETY: an all-zero statvfs is a valid value for fstatvfs to overwrite.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `s` is a valid out-pointer for the duration of the call.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// The memory of one buffer: a mapping of its file (or of an anonymous memfd) and the core view.
///
/// # Invariants
///
/// `buf` points into `ctl` and `data`, which live as long as `self`; `ctl` holds an initialised
/// header whose geometry is `buf.geometry()`.
pub struct BufMem {
    buf: Buf,
    layout: Layout,
    file: File,
    // Held only to keep the control region mapped for `buf`.
    _ctl: Mapping,
    _data: Mapping,
}

impl BufMem {
    /// Initialises a new buffer in `file` (which must be empty or fresh) for `cpu`.
    pub(crate) fn create(
        file: File,
        geo: Geometry,
        cpu: usize,
        is_global: bool,
    ) -> io::Result<Self> {
        let layout = Layout::new(geo)?;
        reserve(&file, layout.file_len())?;
        let ctl = Mapping::new(file.as_fd(), 0, layout.data_off, true)?;
        let header = FileHeader {
            magic: MAGIC,
            version: VERSION,
            state_size: size_of::<BufState>() as u32,
            subbuf_size: geo.subbuf_size() as u64,
            n_subbufs: geo.n_subbufs() as u64,
            alloc_size: layout.alloc_size as u64,
            state_off: layout.state_off as u64,
            padding_off: layout.padding_off as u64,
            data_off: layout.data_off as u64,
            cpu: cpu as u64,
            is_global: is_global as u64,
        };
        // The file was just extended with zeros, so the state and padding are already valid
        // (all-zero `BufState` is the fresh state). Write the header last: a reader that sees the
        // magic sees a complete layout.
        // SAFETY: the control mapping is at least `size_of::<FileHeader>()` bytes and page
        // aligned; nobody else accesses this brand-new file yet.
        unsafe { ctl.as_ptr().cast::<FileHeader>().write(header) };
        let data = Mapping::new(file.as_fd(), layout.data_off, layout.alloc_size, true)?;
        Self::assemble(file, layout, ctl, data, cpu)
    }

    /// Maps an existing buffer file written by [`BufMem::create`] (possibly in another process).
    pub(crate) fn open(file: File) -> io::Result<Self> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
        let len = file.metadata()?.len() as usize;
        if len < size_of::<FileHeader>() {
            return Err(bad("not a relay buffer file (too short)"));
        }
        let head_map = Mapping::new(file.as_fd(), 0, size_of::<FileHeader>(), false)?;
        // SAFETY: the mapping is page aligned and holds a whole header; it is plain data.
        let h = unsafe { head_map.as_ptr().cast::<FileHeader>().read() };
        drop(head_map);
        if h.magic != MAGIC {
            return Err(bad("not a relay buffer file (bad magic)"));
        }
        if h.version != VERSION || h.state_size as usize != size_of::<BufState>() {
            return Err(bad("relay buffer file from an incompatible version"));
        }
        let geo = Geometry::new(h.subbuf_size as usize, h.n_subbufs as usize)
            .map_err(|e| bad(&format!("corrupt relay buffer header: {e}")))?;
        let layout = Layout::new(geo)?;
        if layout.data_off as u64 != h.data_off
            || layout.state_off as u64 != h.state_off
            || layout.padding_off as u64 != h.padding_off
            || layout.alloc_size as u64 != h.alloc_size
            || layout.file_len() > len
        {
            return Err(bad("corrupt relay buffer header (layout mismatch)"));
        }
        let ctl = Mapping::new(file.as_fd(), 0, layout.data_off, true)?;
        let data = Mapping::new(file.as_fd(), layout.data_off, layout.alloc_size, false)?;
        Self::assemble(file, layout, ctl, data, h.cpu as usize)
    }

    fn assemble(
        file: File,
        layout: Layout,
        ctl: Mapping,
        data: Mapping,
        cpu: usize,
    ) -> io::Result<Self> {
        // SAFETY: `ctl` is page aligned and `data_off` bytes long; `state_off` is aligned for
        // `BufState` and `padding_off + n_subbufs * 8 <= data_off` (Layout::new); `data` is
        // `alloc_size >= size()` bytes. Both mappings move into the returned value together with
        // the view, which keeps them alive as long as the view.
        let buf = unsafe {
            let state =
                NonNull::new_unchecked(ctl.as_ptr().add(layout.state_off).cast::<BufState>());
            let padding =
                NonNull::new_unchecked(ctl.as_ptr().add(layout.padding_off).cast::<AtomicUsize>());
            let d = NonNull::new_unchecked(data.as_ptr());
            Buf::from_raw(state, padding, d, layout.geo, cpu)
        };
        Ok(BufMem {
            buf,
            layout,
            file,
            _ctl: ctl,
            _data: data,
        })
    }

    /// The core view.
    #[inline]
    pub fn buf(&self) -> &Buf {
        &self.buf
    }

    /// The backing file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// File offset of the data region (where a whole-buffer mapping starts).
    pub fn data_offset(&self) -> usize {
        self.layout.data_off
    }

    /// relay's `alloc_size`: the only length a mapping may have.
    pub fn alloc_size(&self) -> usize {
        self.layout.alloc_size
    }
}
