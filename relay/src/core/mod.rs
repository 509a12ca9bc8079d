//! The relay core: every rule of a relay buffer, with no I/O and no allocation.
//!
//! A backend (user space in [`crate::user`], the kernel module later) owns the memory of each
//! buffer — a [`BufState`] control block, a padding array and the data region — and builds a
//! [`Buf`] view over it. The backend also provides writer exclusivity (the kernel disables
//! interrupts, user space takes a per-buffer lock) and reader exclusivity, and it delivers
//! wakeups. Everything else — sub-buffer switching, padding, modes through the `subbuf_start`
//! callback, the read position and its consumption, overwrite laps, statistics — lives here, so
//! both backends behave identically.
//!
//! Behaviour follows Linux 6.12 `kernel/relay.c` except for the defects listed in
//! `docs/ARCHITECTURE.md` ("Differences from kernel/relay.c"); the places that differ are marked
//! `DIFF(relay.c)` below.
//!
//! # Concurrency protocol
//!
//! One writer at a time per buffer (guaranteed by the backend), any number of readers serialised
//! by the backend's reader lock, in the same or another address space.
//!
//! * Writer fast path: load `offset`, copy the message to `data + data_off + offset`, store
//!   `offset + len` with `Release`. A reader that loads `offset` with `Acquire` therefore sees the
//!   bytes before it.
//! * Sub-buffer switch: the writer makes `switch_seq` odd, issues a `Release` fence, updates
//!   `padding[]`, `subbufs_produced`, `data_off` and `offset` (and runs `subbuf_start`, which may
//!   write a header), then makes `switch_seq` even with `Release`. Readers take a seqlock snapshot
//!   of (`subbufs_produced`, `offset`) and retry when a switch overlapped it, so they never pair
//!   one sub-buffer's count with another one's offset.
//! * Consumption: only readers (and `subbufs_consumed`) move `subbufs_consumed` /
//!   `bytes_consumed`; they store `subbufs_consumed` with `Release` after copying the bytes out,
//!   and the writer's `buf_full` loads it with `Acquire`, so a slot is never reused in
//!   no-overwrite mode while a reader still copies from it.
//! * Overwrite laps: a reader validates every copy afterwards: if `subbufs_produced` reached
//!   `c + n_subbufs` (the writer started reusing the slot of sub-buffer `c`) the copy is thrown
//!   away and the lap logic skips ahead, so a torn copy is never returned.
//! * Wakeups: see [`wait`]; the writer pays one fence and one load per produced sub-buffer, and a
//!   futex wake only when a reader is waiting.
//!
//! The protocol is model-checked with loom in `relay/tests/loom.rs`.

mod buf;
mod geometry;
mod read;
mod state;
pub mod wait;

pub use buf::{Buf, Slot, SubbufStart};
pub use geometry::{Geometry, OpenError, MAX_ALLOC};
pub use read::{Peeked, ReadSink, SliceSink};
pub use state::{BufState, BufStats};

/// The client's callbacks that run on the buffer-logic side; shared by every backend.
///
/// `private_data` in relay.c is `self` here: an implementation carries whatever state it needs.
pub trait Callbacks {
    /// Called when a new sub-buffer is about to be started (and once for the first sub-buffer
    /// at open and after reset, with no previous sub-buffer). Return `false` to refuse the switch:
    /// the writer then drops messages until a later attempt succeeds. The default is relay's
    /// no-overwrite mode: refuse while the buffer is full.
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        !ctx.buf_full()
    }

    /// A reader mapped the buffer (relay documentation's `buf_mapped`).
    fn buf_mapped(&self, _buf: &Buf) {}

    /// A reader's mapping of the buffer went away (`buf_unmapped`).
    fn buf_unmapped(&self, _buf: &Buf) {}
}

/// The ready-made overwrite ("flight recorder") mode: always switch.
#[derive(Debug, Default, Clone, Copy)]
pub struct Overwrite;

impl Callbacks for Overwrite {
    fn subbuf_start(&self, _ctx: &mut SubbufStart<'_>) -> bool {
        true
    }
}

/// The default no-overwrite mode with no header.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOverwrite;

impl Callbacks for NoOverwrite {}

/// What a backend plugs into the core's write path: the client's `subbuf_start` and the
/// backend's reader wakeup.
pub trait Env {
    /// Forwards to the client's [`Callbacks::subbuf_start`].
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool;
    /// A sub-buffer was just produced (after `subbufs_produced` was published). The backend wakes
    /// waiting readers; it must not block (the writer may run in interrupt context).
    fn subbuf_produced(&self, buf: &Buf);
}

/// Adapts bare [`Callbacks`] to an [`Env`] that wakes nobody (tests, buffer-only channels).
pub struct NoWake<'a, C: ?Sized>(pub &'a C);

impl<C: Callbacks + ?Sized> Env for NoWake<'_, C> {
    #[inline]
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        self.0.subbuf_start(ctx)
    }
    #[inline]
    fn subbuf_produced(&self, _buf: &Buf) {}
}

/// Outcome of [`Buf::poll`]: relay's `relay_file_poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// At least one complete sub-buffer is unconsumed (`EPOLLIN | EPOLLRDNORM`).
    Readable,
    /// Nothing complete yet; a partly written sub-buffer does not count.
    Empty,
    /// The channel was closed (`EPOLLERR`); `read` still returns what is left.
    Finalized,
}
