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
    // SAFETY: the ioctl writes at most one `struct rsrelay_read_pos` into `pos`, which is
    // that struct; other files reject the command without touching it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_number_is_the_c_macro() {
        // _IOR(0xb9, 1, struct { __u64; __u64; }) as computed by the C preprocessor.
        assert_eq!(RSRELAY_IOC_READ_POS, 0x8010_b901);
    }

    #[test]
    fn files_without_the_ioctl_cannot_tell() {
        let f = File::open("/dev/null").unwrap();
        assert_eq!(kernel_read_position(&f).unwrap(), None);
        let f = File::open("Cargo.toml").unwrap();
        assert_eq!(kernel_read_position(&f).unwrap(), None);
    }
}
