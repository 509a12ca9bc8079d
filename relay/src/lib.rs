//! The Linux relay interface (relayfs) in Rust.
//!
//! A relay channel is one buffer per CPU (or one global buffer), each split into `n_subbufs`
//! sub-buffers of `subbuf_size` bytes. Writers append whole messages to the current CPU's current
//! sub-buffer; readers in the same or another process `read` (consuming, padding stripped),
//! `mmap`, `poll` or `sendfile` the buffer files. Behaviour follows Linux 6.12 `kernel/relay.c`,
//! with its known defects fixed (see `docs/ARCHITECTURE.md`).
//!
//! * [`core`] — all buffer logic; `#![no_std]`, no dependencies, no allocation. The kernel module
//!   compiles these same sources.
//! * [`user`] (feature `std`, default) — the user-space backend: buffers are shared-memory files
//!   in a directory, [`user::Channel`] writes, [`user::RelayFile`] reads (also the kernel's relay
//!   files in debugfs), [`user::Recorder`] streams a channel to disk.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod core;

#[cfg(all(feature = "std", not(loom)))]
pub mod user;

pub use crate::core::{Callbacks, Geometry, NoOverwrite, OpenError, Overwrite, Poll};
