//! The per-buffer control block: relay.c's `struct rchan_buf` counters, as atomics so that a
//! reader in another thread or process can share them.

#[cfg(not(loom))]
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Fields the writer owns (it holds writer exclusivity while changing them).
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct WriterSide {
    /// Backend-defined writer lock word (user space: 0 = free, else the owner's token).
    pub lock: AtomicUsize,
    /// relay's `offset`: bytes used in the current sub-buffer; `subbuf_size + 1` when a switch
    /// was refused.
    pub offset: AtomicUsize,
    /// relay's `data - start`: byte offset of the current sub-buffer in the data region.
    pub data_off: AtomicUsize,
    /// Sub-buffers produced (finished) since open or reset.
    pub produced: AtomicUsize,
    /// Padding of the sub-buffer finished last (relay's `prev_padding`).
    pub prev_padding: AtomicUsize,
    /// Header length reserved by the most recent successful `subbuf_start`.
    pub last_reserve: AtomicUsize,
    /// Seqlock around sub-buffer switches: odd while one is in progress.
    pub switch_seq: AtomicUsize,
}

/// Fields the readers own (serialised by the backend's reader lock).
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct ReaderSide {
    /// Backend-defined reader lock word.
    pub lock: AtomicUsize,
    /// Sub-buffers consumed since open or reset.
    pub consumed: AtomicUsize,
    /// Bytes consumed in sub-buffer number `consumed`.
    pub bytes_consumed: AtomicUsize,
}

/// Statistics and shared flags; updated with read-modify-write operations, because a nested
/// writer (a signal handler interrupting a locked writer) may count a drop concurrently.
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct SharedSide {
    /// Messages dropped because the switch was refused (no-overwrite mode, buffer full) or the
    /// buffer was busy with a writer this writer interrupted.
    pub dropped_msgs: AtomicUsize,
    /// Bytes of those messages.
    pub dropped_bytes: AtomicUsize,
    /// Messages dropped for being larger than a sub-buffer (minus its header).
    pub toobig_msgs: AtomicUsize,
    /// Length of the last too-big message (relay's `last_toobig`, kept per buffer).
    pub last_toobig: AtomicUsize,
    /// Sub-buffers a reader skipped because the writer lapped it (overwrite mode).
    pub lapped_subbufs: AtomicUsize,
    /// Copies a reader threw away because the writer overwrote them while they were copied.
    pub torn_reads: AtomicUsize,
    /// Non-zero once the channel is closed.
    pub finalized: AtomicUsize,
    /// Active mappings of the buffer (all processes).
    pub mapped: AtomicUsize,
    /// Open reader handles (all processes).
    pub readers: AtomicUsize,
    /// Futex word readers sleep on; bumped when a sub-buffer is produced and someone waits.
    pub wake_seq: AtomicU32,
    /// Readers currently sleeping (or about to sleep) on `wake_seq`.
    pub waiters: AtomicU32,
}

/// relay.c's `struct rchan_buf` minus the memory pointers: the counters of one buffer.
///
/// All-zero bytes are a valid (freshly opened, not yet started) state, so a backend may place it
/// in zeroed shared memory; `#[repr(C)]` keeps its layout identical for every process that maps
/// it. Writer-, reader- and shared fields sit on separate cache lines.
///
/// # Invariants
///
/// Only the holder of writer exclusivity changes the writer side; only the holder of reader
/// exclusivity changes `consumed` / `bytes_consumed`; statistics change only through
/// read-modify-write operations.
#[repr(C)]
#[derive(Default)]
pub struct BufState {
    pub(crate) w: WriterSide,
    pub(crate) r: ReaderSide,
    pub(crate) s: SharedSide,
}

/// A snapshot of a buffer's counters, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufStats {
    /// relay's `subbufs_produced`.
    pub subbufs_produced: usize,
    /// relay's `subbufs_consumed`.
    pub subbufs_consumed: usize,
    /// relay's `bytes_consumed`.
    pub bytes_consumed: usize,
    /// relay's `offset` (`subbuf_size + 1` after a refused switch).
    pub offset: usize,
    /// Messages dropped (full buffer in no-overwrite mode, or writer busy).
    pub dropped_msgs: usize,
    /// Bytes of dropped messages.
    pub dropped_bytes: usize,
    /// Messages dropped as larger than a sub-buffer.
    pub toobig_msgs: usize,
    /// Length of the last too-big message, 0 if none (relay's `last_toobig`).
    pub last_toobig: usize,
    /// Sub-buffers skipped by readers after overwrite laps.
    pub lapped_subbufs: usize,
    /// Reader copies discarded because they were overwritten mid-copy.
    pub torn_reads: usize,
    /// Whether the channel was closed.
    pub finalized: bool,
    /// Active mappings.
    pub mapped: usize,
    /// Open reader handles.
    pub readers: usize,
}

impl BufState {
    /// A zeroed control block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters; `produced` and `offset` come from the caller's consistent writer snapshot.
    pub(crate) fn stats(&self, produced: usize, offset: usize) -> BufStats {
        let ld = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        BufStats {
            subbufs_produced: produced,
            subbufs_consumed: ld(&self.r.consumed),
            bytes_consumed: ld(&self.r.bytes_consumed),
            offset,
            dropped_msgs: ld(&self.s.dropped_msgs),
            dropped_bytes: ld(&self.s.dropped_bytes),
            toobig_msgs: ld(&self.s.toobig_msgs),
            last_toobig: ld(&self.s.last_toobig),
            lapped_subbufs: ld(&self.s.lapped_subbufs),
            torn_reads: ld(&self.s.torn_reads),
            finalized: ld(&self.s.finalized) != 0,
            mapped: ld(&self.s.mapped),
            readers: ld(&self.s.readers),
        }
    }

    /// The writer lock word, for backends that serialise writers with a lock.
    #[inline]
    pub fn writer_lock(&self) -> &AtomicUsize {
        &self.w.lock
    }

    /// The reader lock word, for backends that serialise readers with a lock.
    #[inline]
    pub fn reader_lock(&self) -> &AtomicUsize {
        &self.r.lock
    }

    /// Number of readers sleeping or about to sleep.
    #[inline]
    pub fn waiters(&self) -> &AtomicU32 {
        &self.s.waiters
    }

    /// Mapping counter (all processes).
    #[inline]
    pub fn mapped(&self) -> &AtomicUsize {
        &self.s.mapped
    }

    /// Reader handle counter (all processes).
    #[inline]
    pub fn readers(&self) -> &AtomicUsize {
        &self.s.readers
    }

    /// Counts one message that a backend dropped before reaching the core (e.g. its writer lock
    /// was held by the context it interrupted).
    #[inline]
    pub fn count_dropped(&self, len: usize) {
        self.s.dropped_msgs.fetch_add(1, Ordering::Relaxed);
        self.s.dropped_bytes.fetch_add(len, Ordering::Relaxed);
    }
}
