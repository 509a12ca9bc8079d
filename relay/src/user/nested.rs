//! Messages from a signal handler that interrupted the lock holder of the same buffer on its own
//! thread.
//!
//! Such a handler must not wait for the lock (its owner cannot run until the handler returns).
//! It appends the message here instead; right after releasing the lock, the holder checks the
//! queue and, if it is not empty, takes the lock again with a try-lock and drains it into the
//! buffer. If another writer took the lock in between, that writer drains the queue after its
//! own release (every release checks), so nothing stays queued.
//!
//! Why this is race-free: only contexts nested inside the current lock owner's thread push (a
//! context that finds the lock owned by *another* thread waits for it instead), and only a
//! holder of the lock that is not itself nested drains. Nested contexts
//! on one thread run strictly last-in-first-out, so a push is complete before the context it
//! interrupted — whether it was pushing or draining — resumes. Pushes reserve their range with a
//! compare-and-swap on `len`, which is atomic with respect to an interrupting handler, and the
//! drainer resets `len` with a compare-and-swap that fails if a push slipped in.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes a buffer can queue for nested writers (each message costs 4 extra bytes).
pub const NESTED_CAP: usize = 4096;

/// Per-buffer queue of nested messages: `[u32 used][u32 reserved][bytes; reserved]` records.
///
/// # Invariants
///
/// Bytes `0..len` hold complete records, except while a nested push is in progress, which the
/// drainer can never observe (it runs on the same thread, below the pushing context).
pub(crate) struct NestedQueue {
    len: AtomicUsize,
    data: UnsafeCell<[u8; NESTED_CAP]>,
}

// SAFETY: access to `data` follows the protocol above: ranges are reserved through `len`, and the
// only concurrent accessors are contexts nested on the lock owner's thread.
unsafe impl Sync for NestedQueue {}

impl NestedQueue {
    pub fn new() -> Self {
        NestedQueue {
            len: AtomicUsize::new(0),
            data: UnsafeCell::new([0; NESTED_CAP]),
        }
    }

    /// Whether anything waits to be drained.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Appends one message of at most `max` bytes, encoded by `fill`, which returns the length
    /// it used. Returns `false` (without calling `fill`) if the queue has no room.
    ///
    /// # Safety
    ///
    /// The caller runs nested inside the thread that holds this buffer's writer lock.
    pub unsafe fn push(&self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize) -> bool {
        let Ok(max32) = u32::try_from(max) else {
            return false;
        };
        let need = 8 + max;
        let mut at = self.len.load(Ordering::Relaxed);
        loop {
            if need > NESTED_CAP - at {
                return false;
            }
            match self
                .len
                .compare_exchange(at, at + need, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => at = now,
            }
        }
        let base = self.data.get().cast::<u8>();
        // Reserved for this context alone (module docs); nothing reads it before it returns.
        // SAFETY: `at..at + need` is inside the array.
        let rec = unsafe { std::slice::from_raw_parts_mut(base.add(at), need) };
        let used = fill(&mut rec[8..]).min(max) as u32;
        rec[..4].copy_from_slice(&used.to_ne_bytes());
        rec[4..8].copy_from_slice(&max32.to_ne_bytes());
        true
    }

    /// Hands every queued message to `sink`, in order, and empties the queue.
    ///
    /// # Safety
    ///
    /// The caller holds this buffer's writer lock and is not itself nested.
    pub unsafe fn drain(&self, mut sink: impl FnMut(&[u8])) {
        let mut pos = 0;
        loop {
            let end = self.len.load(Ordering::Acquire);
            let base = self.data.get().cast::<u8>();
            while pos < end {
                // SAFETY: records below `end` are complete (type invariant) and not modified
                // until `len` is reset below; the slices cover only these records, never the
                // range a nested push may be writing (at or above `end`).
                let (rec, reserved) = unsafe {
                    let mut w = [0u8; 8];
                    std::ptr::copy_nonoverlapping(base.add(pos), w.as_mut_ptr(), 8);
                    let used = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as usize;
                    let reserved = u32::from_ne_bytes([w[4], w[5], w[6], w[7]]) as usize;
                    (
                        std::slice::from_raw_parts(base.add(pos + 8), used),
                        reserved,
                    )
                };
                sink(rec);
                pos += 8 + reserved;
            }
            if self
                .len
                .compare_exchange(end, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }
}
