//! The read position of a kernel relay file: rsrelay's `RSRELAY_IOC_READ_POS` ioctl
//! (relay/src/kernel/rsrelay.h), the kernel branch of `RelayFile::read_position`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `struct rsrelay_read_pos` (rsrelay.h).
#[repr(C)]
#[derive(Default)]
struct RawReadPos {
    subbuf: u64,
    offset: u64,
}

/// `_IOR(0xb9, 1, struct rsrelay_read_pos)`: direction read (2) in bits 30-31, the argument's
/// size in bits 16-29, type in bits 8-15, number in bits 0-7 (x86, arm, riscv: asm-generic).
const RSRELAY_IOC_READ_POS: u64 =
    (2 << 30) | ((std::mem::size_of::<RawReadPos>() as u64) << 16) | (0xb9 << 8) | 1;

/// The reader position of an open kernel relay file: (sub-buffers consumed so far as an
/// absolute count, bytes consumed in the current one). `Ok(None)` for a file that cannot tell
/// (the kernel's C relay, which has no such ioctl, or any other file: `ENOTTY`/`EINVAL`).
pub(crate) fn kernel_read_position(file: &File) -> io::Result<Option<(u64, usize)>> {
    let mut pos = RawReadPos::default();
    // Other files reject the command without touching `pos`.
    // SAFETY: the ioctl writes at most one `struct rsrelay_read_pos` into `pos`, that struct.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            RSRELAY_IOC_READ_POS as _,
            &mut pos as *mut RawReadPos,
        )
    };
    if r == 0 {
        let offset = usize::try_from(pos.offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "read offset out of range"))?;
        return Ok(Some((pos.subbuf, offset)));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTTY) | Some(libc::EINVAL) => Ok(None),
        _ => Err(e),
    }
}

/// A read position (sub-buffers consumed, bytes consumed) and the bytes before it.
pub(crate) type KernelPrefix = ((u64, usize), Vec<u8>);

/// `struct rsrelay_read_prefix` (rsrelay.h).
#[repr(C)]
#[derive(Default)]
struct RawReadPrefix {
    subbuf: u64,
    offset: u64,
    buf: u64,
    len: u64,
}

/// `_IOWR(0xb9, 2, struct rsrelay_read_prefix)`: direction read|write (3).
const RSRELAY_IOC_READ_PREFIX: u64 =
    (3 << 30) | ((std::mem::size_of::<RawReadPrefix>() as u64) << 16) | (0xb9 << 8) | 2;

/// The reader position of an open kernel relay file with the bytes of its sub-buffer before
/// it (consumed by an earlier reader), taken together by the kernel under its reader lock.
/// The prefix is empty at a sub-buffer start or when the writer has reused the slot.
/// `Ok(None)` for a file without the ioctl (an older rsrelay, the C relay, any other file).
pub(crate) fn kernel_read_prefix(file: &File) -> io::Result<Option<KernelPrefix>> {
    // The position first, for the size of the buffer; the second call returns the position
    // again (it only moves by reads, which are this reader's own).
    let Some((_, offset)) = kernel_read_position(file)? else {
        return Ok(None);
    };
    let mut bytes = vec![0u8; offset];
    let mut p = RawReadPrefix {
        buf: bytes.as_mut_ptr() as u64,
        len: bytes.len() as u64,
        ..RawReadPrefix::default()
    };
    // The ioctl copies at most `p.len` bytes to `p.buf`, which is `bytes`; other files reject
    // the command.
    // SAFETY: the ioctl reads and writes one `struct rsrelay_read_prefix` at `p`.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            RSRELAY_IOC_READ_PREFIX as _,
            &mut p as *mut RawReadPrefix,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) => Ok(None),
            _ => Err(e),
        };
    }
    let offset = usize::try_from(p.offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "read offset out of range"))?;
    let copied = usize::try_from(p.len).unwrap_or(0);
    // Only a complete prefix is one (a short one means the position moved: another reader).
    bytes.truncate(if copied == offset { copied } else { 0 });
    Ok(Some(((p.subbuf, offset), bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_number_is_the_c_macro() {
        // _IOR(0xb9, 1, struct { __u64; __u64; }) as computed by the C preprocessor.
        assert_eq!(RSRELAY_IOC_READ_POS, 0x8010_b901);
        // _IOWR(0xb9, 2, struct { __u64; __u64; __u64; __u64; }).
        assert_eq!(RSRELAY_IOC_READ_PREFIX, 0xc020_b902);
    }

    #[test]
    fn files_without_the_ioctl_cannot_tell() {
        let f = File::open("/dev/null").unwrap();
        assert_eq!(kernel_read_position(&f).unwrap(), None);
        let f = File::open("Cargo.toml").unwrap();
        assert_eq!(kernel_read_position(&f).unwrap(), None);
        assert_eq!(kernel_read_prefix(&f).unwrap(), None);
    }
}
