//! The reader side of a buffer: relay.c's `relay_file_read` with `relay_file_read_avail`,
//! `_start_pos`, `_subbuf_avail`, `_end_pos` and `_consume`, and `relay_file_poll`.
//!
//! relay.c keeps the read position as (`subbufs_consumed`, `bytes_consumed`) and re-derives
//! absolute positions with modular arithmetic, which loses track when the position lands in
//! padding (it returns the same bytes again, sometimes hundreds of times in one call) or when
//! `subbufs_consumed` moves under it. Here the position is always "byte `bytes_consumed` of
//! sub-buffer number `subbufs_consumed`", and a complete sub-buffer is done exactly when
//! `bytes_consumed` reaches its length (`subbuf_size - padding`).
//!
//! DIFF(relay.c): every byte is returned exactly once; see `docs/ARCHITECTURE.md`.

#[cfg(not(loom))]
use core::sync::atomic::{fence, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{fence, Ordering};

use super::{Buf, Poll};

/// Where [`Buf::read`] copies bytes to.
pub trait ReadSink {
    /// Bytes the sink can still take.
    fn room(&self) -> usize;

    /// Copies `len <= room()` bytes from `src` to the sink's current position *without*
    /// advancing it. Returns `false` if the copy failed (e.g. a faulting user pointer); the read
    /// then stops and consumes nothing more.
    ///
    /// # Safety
    ///
    /// `src` is valid for reads of `len` bytes (it may be concurrently overwritten by a lapping
    /// writer; such a copy is discarded through [`ReadSink::commit`] never being called).
    unsafe fn copy(&mut self, src: *const u8, len: usize) -> bool;

    /// Makes the last `len` copied bytes part of the result.
    fn commit(&mut self, len: usize);
}

/// A [`ReadSink`] over a byte slice.
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceSink<'a> {
    /// A sink filling `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceSink { buf, pos: 0 }
    }

    /// Bytes committed so far.
    pub fn filled(&self) -> usize {
        self.pos
    }
}

impl ReadSink for SliceSink<'_> {
    fn room(&self) -> usize {
        self.buf.len() - self.pos
    }

    unsafe fn copy(&mut self, src: *const u8, len: usize) -> bool {
        let dst = &mut self.buf[self.pos..self.pos + len];
        // SAFETY: `src` is valid for `len` bytes (caller contract) and `dst` is a distinct
        // exclusive slice of exactly `len` bytes.
        unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), len) };
        true
    }

    fn commit(&mut self, len: usize) {
        self.pos += len;
    }
}

/// What [`Buf::peek`] copied: read positions are (`subbufs_consumed`, `bytes_consumed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peeked {
    /// Bytes committed to the sink.
    pub len: usize,
    /// The read position of the first of them.
    pub start: (usize, usize),
    /// The position after the last of them (what [`Buf::consume_to`] takes).
    pub end: (usize, usize),
}

impl Buf {
    /// relay's `relay_file_poll` readiness: at least one complete sub-buffer is unconsumed.
    pub fn poll(&self) -> Poll {
        if self.is_finalized() {
            return Poll::Finalized;
        }
        let Some((produced, _)) = self.writer_snapshot() else {
            return Poll::Empty;
        };
        if produced != self.state().r.consumed.load(Ordering::Relaxed) {
            Poll::Readable
        } else {
            Poll::Empty
        }
    }

    /// relay's `relay_file_read`: copies unread bytes into `sink`, consuming them, skipping
    /// padding, including the partly written current sub-buffer; never blocks. Returns the number
    /// of bytes committed to the sink (0 when nothing is available).
    ///
    /// In overwrite mode a reader that was lapped skips to the oldest sub-buffer still intact
    /// (`subbufs_produced - n_subbufs + 1`), as relay.c does, and counts the skipped sub-buffers in
    /// `lapped_subbufs`; a copy that the writer overwrote while it was being made is discarded
    /// and counted in `torn_reads`.
    ///
    /// # Safety
    ///
    /// The caller has reader exclusivity (the backend's reader lock).
    pub unsafe fn read<S: ReadSink + ?Sized>(&self, sink: &mut S) -> usize {
        // SAFETY: forwarded caller contract.
        unsafe { self.read_inner(sink, None, false) }.len
    }

    /// [`Buf::read`] without consuming, up to the end of one sub-buffer: copies the same bytes,
    /// and returns their count, the read position of the first one and the position a read would
    /// have left, for [`Buf::consume_to`] once the caller has stored the bytes. `from`: start
    /// there instead of at the read position (a position an earlier peek returned, so that
    /// several peeks can precede one `consume_to`). A lap found on the way (overwrite mode) is
    /// applied at once: the skipped sub-buffers are gone whoever reads next.
    ///
    /// # Safety
    ///
    /// The caller has reader exclusivity (the backend's reader lock).
    pub unsafe fn peek<S: ReadSink + ?Sized>(
        &self,
        sink: &mut S,
        from: Option<(usize, usize)>,
    ) -> Peeked {
        // SAFETY: forwarded caller contract.
        unsafe { self.read_inner(sink, from, true) }
    }

    /// The read position: (`subbufs_consumed`, `bytes_consumed`).
    pub fn read_pos(&self) -> (usize, usize) {
        let st = self.state();
        let consumed = st.r.consumed.load(Ordering::Acquire);
        let bytes = st.r.bytes_consumed.load(Ordering::Relaxed);
        (consumed, bytes.min(self.geometry().subbuf_size()))
    }

    /// The read position and the bytes before it in its sub-buffer (the start of a sub-buffer
    /// an earlier reader consumed part of: its header, and the frames a decoder needs for the
    /// time reference). Copies `bytes_consumed` bytes of the current slot into `sink` (if it has
    /// room for all of them) and returns the position with the number of bytes committed: 0
    /// when the position is at a sub-buffer start, the sink is too small, or the writer has
    /// started reusing the slot (the bytes are gone).
    ///
    /// # Safety
    ///
    /// The caller has reader exclusivity (the backend's reader lock), so the position cannot
    /// move during the copy.
    pub unsafe fn read_prefix<S: ReadSink + ?Sized>(
        &self,
        sink: &mut S,
    ) -> ((usize, usize), usize) {
        let pos = self.read_pos();
        let (consumed, bytes) = pos;
        let n = self.geometry().n_subbufs();
        let size = self.geometry().subbuf_size();
        if bytes == 0 || sink.room() < bytes {
            return (pos, 0);
        }
        let intact = |produced: usize, offset: usize| {
            let ahead = produced.wrapping_sub(consumed);
            // `ahead == n` with a refused switch: a full no-overwrite buffer, nobody writes.
            ahead < n || (ahead == n && offset > size)
        };
        match self.writer_snapshot() {
            Some((p, o)) if intact(p, o) => {}
            _ => return (pos, 0),
        }
        // The sink's contract covers the destination.
        // SAFETY: `slot * size + bytes <= size()` (bytes <= subbuf_size).
        if !unsafe { sink.copy(self.data_ptr().add((consumed % n) * size), bytes) } {
            return (pos, 0);
        }
        fence(Ordering::Acquire);
        match self.writer_snapshot() {
            Some((p, o)) if intact(p, o) => {
                sink.commit(bytes);
                (pos, bytes)
            }
            _ => (pos, 0),
        }
    }

    /// Consumes up to the position a [`Buf::peek`] returned. A position behind the current one
    /// (modulo the counter's wrap) is ignored; one ahead may be any distance ahead (in overwrite
    /// mode a run of peeks can follow the writer through more than `n_subbufs` sub-buffers).
    ///
    /// # Safety
    ///
    /// The caller has reader exclusivity (the backend's reader lock).
    pub unsafe fn consume_to(&self, (consumed, bytes): (usize, usize)) {
        let st = self.state();
        let cur = st.r.consumed.load(Ordering::Relaxed);
        if (consumed.wrapping_sub(cur) as isize) < 0 {
            return;
        }
        st.r.bytes_consumed
            .store(bytes.min(self.geometry().subbuf_size()), Ordering::Relaxed);
        // Release: the writer may reuse the slots only after the caller's copy.
        st.r.consumed.store(consumed, Ordering::Release);
    }

    /// The read loop of [`Buf::read`] (`peek`: false; consumes) and [`Buf::peek`] (from
    /// `from`, else the read position; the position moves only in locals, except for lap skips,
    /// and the copy stops at the end of a sub-buffer). Safety: the caller has reader exclusivity.
    unsafe fn read_inner<S: ReadSink + ?Sized>(
        &self,
        sink: &mut S,
        from: Option<(usize, usize)>,
        peek: bool,
    ) -> Peeked {
        let st = self.state();
        let size = self.geometry().subbuf_size();
        let n = self.geometry().n_subbufs();
        let (consume, one_subbuf) = (!peek, peek);
        let mut total = 0;
        let (mut consumed, bytes) = from.unwrap_or_else(|| {
            (
                st.r.consumed.load(Ordering::Relaxed),
                st.r.bytes_consumed.load(Ordering::Relaxed),
            )
        });
        let mut bytes = bytes.min(size);
        let mut start = None;
        // Stores the position (a read) or keeps it local (a peek).
        let advance = |consumed: usize, bytes: usize| {
            if consume {
                st.r.bytes_consumed.store(bytes, Ordering::Relaxed);
                // Release: the writer may reuse the slot only after our copy (buf_full Acquire).
                st.r.consumed.store(consumed, Ordering::Release);
            }
        };
        // Rounds that returned nothing (empty sub-buffers, discarded copies): legitimately at
        // most one per sub-buffer; more only with corrupt shared counters.
        let mut idle = 0;
        loop {
            idle += 1;
            if idle > n + 2 {
                break;
            }
            let room = sink.room();
            if room == 0 {
                break;
            }
            let Some((produced, offset)) = self.writer_snapshot() else {
                break;
            };
            let refused = offset > size;

            if !refused && produced.wrapping_sub(consumed) >= n {
                // The writer is filling the slot of sub-buffer `consumed`: skip to the oldest
                // one not yet reused (relay_file_read_avail's lap logic). Stored even by a peek:
                // what was skipped is gone for every reader.
                let oldest = produced.wrapping_sub(n - 1);
                st.s.lapped_subbufs
                    .fetch_add(oldest.wrapping_sub(consumed), Ordering::Relaxed);
                consumed = oldest;
                bytes = 0;
                st.r.bytes_consumed.store(0, Ordering::Relaxed);
                st.r.consumed.store(consumed, Ordering::Release);
            }

            let slot = consumed % n;
            let complete_len = if consumed != produced {
                // Complete: its padding was published before `produced` (Acquire above).
                let len = self.complete_len(slot);
                if bytes >= len {
                    // Nothing (left) in it, e.g. a flushed empty sub-buffer: move on.
                    consumed = consumed.wrapping_add(1);
                    bytes = 0;
                    advance(consumed, bytes);
                    continue;
                }
                Some(len)
            } else {
                None
            };
            let end = match complete_len {
                Some(len) => len,
                None if !refused && offset > bytes => offset,
                None => break,
            };
            let len = room.min(end - bytes);
            // The sink's contract covers the destination.
            // SAFETY: `slot * size + end <= size()` since `end <= subbuf_size`.
            if !unsafe { sink.copy(self.data_ptr().add(slot * size + bytes), len) } {
                break;
            }
            // Validate the copy: if the writer reached sub-buffer `consumed + n` meanwhile it has
            // started reusing this slot (overwrite mode) and the bytes may be torn.
            fence(Ordering::Acquire);
            let Some((now, now_offset)) = self.writer_snapshot() else {
                break;
            };
            let ahead = now.wrapping_sub(consumed);
            // `ahead == n` with a refused switch is a full no-overwrite buffer: nobody writes.
            if ahead > n || (ahead == n && now_offset <= size) {
                st.s.torn_reads.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            sink.commit(len);
            start.get_or_insert((consumed, bytes));
            idle = 0;
            total += len;
            bytes += len;
            let done = complete_len == Some(bytes);
            if done {
                consumed = consumed.wrapping_add(1);
                bytes = 0;
            }
            advance(consumed, bytes);
            if done && one_subbuf {
                break;
            }
        }
        Peeked {
            len: total,
            start: start.unwrap_or((consumed, bytes)),
            end: (consumed, bytes),
        }
    }

    /// Bytes a `read` could return right now, without consuming them (padding excluded).
    pub fn readable_bytes(&self) -> usize {
        let st = self.state();
        let size = self.geometry().subbuf_size();
        let n = self.geometry().n_subbufs();
        let Some((produced, offset)) = self.writer_snapshot() else {
            return 0;
        };
        let mut consumed = st.r.consumed.load(Ordering::Acquire);
        let mut bytes = st.r.bytes_consumed.load(Ordering::Relaxed).min(size);
        if offset <= size && produced.wrapping_sub(consumed) >= n {
            consumed = produced.wrapping_sub(n - 1);
            bytes = 0;
        }
        let mut total = 0;
        // At most n_subbufs complete sub-buffers can be unconsumed, whatever the counters say.
        let mut left = n;
        while consumed != produced && left > 0 {
            left -= 1;
            let len = self.complete_len(consumed % n);
            total += len.saturating_sub(bytes);
            bytes = 0;
            consumed = consumed.wrapping_add(1);
        }
        if offset <= size {
            total += offset.saturating_sub(bytes);
        }
        total
    }
}
