//! The user-space backend: relay buffers as shared-memory files.
//!
//! * [`Channel`] — the writer: `open`, `write`, `__write`, `write_with`, `reserve`, `flush`,
//!   `reset`, `subbufs_consumed`, `buf_full`, `close`.
//! * [`RelayFile`] — the reader, in this or any other process, and also for the kernel's relay
//!   files in debugfs: `open`, `read`, `poll`, `mmap`, `sendfile`, `subbufs_consumed`, drop.
//! * [`Recorder`] — drains a channel or a directory of relay files to disk.

mod channel;
mod file;
pub mod index;
mod kpos;
mod nested;
mod recorder;
mod shm;
pub mod sys;
pub mod wlock;

pub use channel::{
    default_create_buf_file, BufInfo, Channel, ChannelCallbacks, CloseReport, Error, Global,
    RawWriter, Reservation,
};
pub use file::WritePos;
pub use file::{BufMapping, ReadPos, RelayFile};
pub use recorder::{copy_appended, index_path, trace_files, BufRecord, Recorder};
pub use shm::{MAGIC, VERSION};
