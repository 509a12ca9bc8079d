//! Independent reference model of one relay channel buffer (kernel/relay.c),
//! used as a test oracle.
//!
//! The model deliberately does *not* mirror relay.c's ring arithmetic.
//! Content is kept as an explicit list of sub-buffer records (sequence
//! number, bytes, complete flag); the only "ring" thing is the flat byte
//! image, which is updated by plain copies at `slot * S + offset` so tests
//! can compare mmap snapshots.
//!
//! Where this model differs from relay.c it is on purpose (relay.c bugs that
//! the implementation fixes):
//! - "too big" is checked against `S - last_reserve` *before* switching, so a
//!   too-big write never switches sub-buffers;
//! - `subbufs_consumed` resets the byte position when the consumed count
//!   changes;
//! - `reset` zeroes the image, `prev_padding`, `last_toobig` and all counters;
//! - `reserve(0)` never yields an out-of-bounds position and a refused
//!   zero-length switch is not counted as a dropped message;
//! - `read` returns every byte exactly once, strips padding and returns the
//!   partial in-progress sub-buffer.
//!
//! The sub-buffer start callback the tests use is part of the model: in
//! no-overwrite mode it refuses when the buffer is full, otherwise it reserves
//! `H` header bytes, each equal to `k as u8` where `k` counts successful
//! starts (0 at open, never reset).
#![allow(dead_code)]

use std::collections::VecDeque;

/// One sub-buffer's worth of content, as the writer produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subbuf {
    /// Sub-buffer sequence number (the value of `produced` when it started).
    pub seq: u64,
    /// Header bytes followed by data bytes; its length is the write offset
    /// (for a complete sub-buffer: `S - padding`).
    pub bytes: Vec<u8>,
    /// True once the sub-buffer has been finished by a switch/flush.
    pub complete: bool,
}

/// One invocation of the sub-buffer start callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartCall {
    /// Sequence number of the sub-buffer being started.
    pub seq: u64,
    /// Slot (`seq % N`) of the sub-buffer being started.
    pub slot: usize,
    /// Slot of the previous sub-buffer (relay's `buf->data`), `None` at
    /// open/reset.
    pub prev_slot: Option<usize>,
    /// `prev_padding` argument passed to the callback.
    pub prev_padding: usize,
    /// `Some(k)` if the start succeeded (header bytes are `k as u8`), `None`
    /// if the callback refused.
    pub accepted: Option<u64>,
}

/// Returned by [`Model::poll_ready`] after [`Model::close`] (relay's EPOLLERR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finalized;

#[derive(Clone, Debug)]
pub struct Model {
    // Geometry / configuration.
    subbuf_size: usize,
    n_subbufs: usize,
    header: usize,
    overwrite: bool,

    // Writer state.
    produced: u64,
    off: usize,
    refused: bool,
    last_reserve: usize,
    prev_padding: usize,
    /// Slot of the most recently successfully started sub-buffer
    /// (relay's `buf->data`); `None` before the very first start.
    data_slot: Option<usize>,
    /// Number of successful starts so far (next header value). Never reset.
    k: u64,

    // Reader state.
    consumed: u64,
    bytes_consumed: usize,
    finalized: bool,

    // Content.
    /// Live sub-buffers, ascending by `seq`, contiguous. Holds every
    /// sub-buffer the reader could still see: seq in `consumed..produced`
    /// (minus those physically overwritten) plus the current one (seq ==
    /// produced) unless refused.
    subbufs: VecDeque<Subbuf>,
    image: Vec<u8>,
    padding: Vec<usize>,

    // Counters.
    lapped_subbufs: u64,
    dropped_msgs: u64,
    dropped_bytes: u64,
    toobig_count: u64,
    last_toobig: usize,

    start_calls: Vec<StartCall>,
}

impl Model {
    /// `relay_open` for one buffer: everything zero, then the start callback
    /// for sub-buffer 0 with `prev = None`, `prev_padding = 0`.
    pub fn open(subbuf_size: usize, n_subbufs: usize, header: usize, overwrite: bool) -> Model {
        assert!(subbuf_size > 0, "subbuf_size must be > 0");
        assert!(n_subbufs > 0, "n_subbufs must be > 0");
        assert!(header <= subbuf_size, "header must fit in a sub-buffer");
        let mut m = Model {
            subbuf_size,
            n_subbufs,
            header,
            overwrite,
            produced: 0,
            off: 0,
            refused: false,
            last_reserve: 0,
            prev_padding: 0,
            data_slot: None,
            k: 0,
            consumed: 0,
            bytes_consumed: 0,
            finalized: false,
            subbufs: VecDeque::new(),
            image: vec![0; subbuf_size * n_subbufs],
            padding: vec![0; n_subbufs],
            lapped_subbufs: 0,
            dropped_msgs: 0,
            dropped_bytes: 0,
            toobig_count: 0,
            last_toobig: 0,
            start_calls: Vec::new(),
        };
        m.start_first();
        m
    }

    // ----------------------------------------------------------------
    // Writer side
    // ----------------------------------------------------------------

    /// `relay_write` / `__relay_write` of `data`. Returns whether the data
    /// was stored.
    pub fn write(&mut self, data: &[u8]) -> bool {
        self.reserve_inner(data, false).is_some()
    }

    /// `relay_reserve(data.len())` followed by the caller filling the slot
    /// with `data`. Returns the absolute byte position (`slot * S + off`) of
    /// the reserved slot, or `None` on failure.
    pub fn reserve(&mut self, data: &[u8]) -> Option<usize> {
        self.reserve_inner(data, true)
    }

    /// `relay_flush` for this buffer: `relay_switch_subbuf(buf, 0)`.
    pub fn flush(&mut self) {
        self.switch_subbuf(0);
    }

    /// Corrected `relay_switch_subbuf(buf, length)`. Returns true when a
    /// sub-buffer with room for `length` bytes is now current. Does not copy
    /// any data.
    pub fn switch_subbuf(&mut self, length: usize) -> bool {
        if self.is_too_big(length) {
            self.toobig_count += 1;
            self.last_toobig = length;
            return false;
        }

        if !self.refused {
            self.finish_current();
        }

        // Try to start sub-buffer number `produced`.
        self.off = 0;
        let seq = self.produced;
        let prev_slot = self.data_slot;
        let prev_padding = self.prev_padding;
        if self.start_callback(seq, prev_slot, prev_padding) {
            self.refused = false;
            true
        } else {
            self.refused = true;
            if length > 0 {
                self.dropped_msgs += 1;
                self.dropped_bytes += length as u64;
            }
            self.prune();
            false
        }
    }

    /// Corrected `relay_reset`: back to the initial state (the start counter
    /// `k` keeps counting; the start-call log is kept too).
    pub fn reset(&mut self) {
        self.produced = 0;
        self.consumed = 0;
        self.bytes_consumed = 0;
        self.off = 0;
        self.refused = false;
        self.last_reserve = 0;
        self.prev_padding = 0;
        self.data_slot = None;
        self.finalized = false;
        self.subbufs.clear();
        self.image.iter_mut().for_each(|b| *b = 0);
        self.padding.iter_mut().for_each(|p| *p = 0);
        self.lapped_subbufs = 0;
        self.dropped_msgs = 0;
        self.dropped_bytes = 0;
        self.toobig_count = 0;
        self.last_toobig = 0;
        self.start_first();
    }

    /// `relay_close` for this buffer: marks it finalized. Does not flush.
    pub fn close(&mut self) {
        self.finalized = true;
    }

    // ----------------------------------------------------------------
    // Reader side
    // ----------------------------------------------------------------

    /// Corrected `relay_subbufs_consumed(n)`.
    pub fn subbufs_consumed(&mut self, n: usize) {
        if n > self.n_subbufs {
            return;
        }
        let old = self.consumed;
        let n = n as u64;
        if n > self.produced - self.consumed {
            self.consumed = self.produced;
        } else {
            self.consumed += n;
        }
        if self.consumed != old {
            self.bytes_consumed = 0;
        }
        self.prune();
    }

    /// Corrected `relay_file_read(count)`: never blocks, returns each stored
    /// byte exactly once, padding stripped, including the in-progress
    /// sub-buffer. Empty when nothing is available.
    pub fn read(&mut self, count: usize) -> Vec<u8> {
        let n = self.n_subbufs as u64;
        let mut count = count;
        let mut out = Vec::new();
        while count > 0 {
            if !self.refused && self.produced - self.consumed >= n {
                // The writer lapped the reader: the oldest unread sub-buffers
                // were overwritten.
                let first_live = self.produced - n + 1;
                self.lapped_subbufs += first_live - self.consumed;
                self.consumed = first_live;
                self.bytes_consumed = 0;
            }
            if self.consumed < self.produced {
                let sb = self.record(self.consumed);
                debug_assert!(sb.complete);
                let len = sb.bytes.len();
                if self.bytes_consumed >= len {
                    self.consumed += 1;
                    self.bytes_consumed = 0;
                    continue;
                }
                let take = count.min(len - self.bytes_consumed);
                out.extend_from_slice(&sb.bytes[self.bytes_consumed..self.bytes_consumed + take]);
                count -= take;
                self.bytes_consumed += take;
                if self.bytes_consumed == len {
                    self.consumed += 1;
                    self.bytes_consumed = 0;
                }
            } else {
                if self.refused || self.off <= self.bytes_consumed {
                    break;
                }
                let sb = self.record(self.consumed);
                debug_assert!(!sb.complete);
                let take = count.min(self.off - self.bytes_consumed);
                out.extend_from_slice(&sb.bytes[self.bytes_consumed..self.bytes_consumed + take]);
                count -= take;
                self.bytes_consumed += take;
            }
        }
        self.prune();
        out
    }

    /// `read(usize::MAX)`.
    pub fn read_all(&mut self) -> Vec<u8> {
        self.read(usize::MAX)
    }

    /// How many bytes (headers included) a reader would get by reading
    /// everything now. Does not change the model.
    pub fn unread_bytes(&self) -> usize {
        self.clone().read(usize::MAX).len()
    }

    /// `relay_file_poll`: `Err` once closed, otherwise whether at least one
    /// complete sub-buffer is unconsumed (the in-progress one is ignored).
    pub fn poll_ready(&self) -> Result<bool, Finalized> {
        if self.finalized {
            Err(Finalized)
        } else {
            Ok(self.produced != self.consumed)
        }
    }

    /// `relay_buf_full`.
    pub fn buffer_full(&self) -> bool {
        self.produced - self.consumed >= self.n_subbufs as u64
    }

    // ----------------------------------------------------------------
    // Accessors
    // ----------------------------------------------------------------

    pub fn subbuf_size(&self) -> usize {
        self.subbuf_size
    }
    pub fn n_subbufs(&self) -> usize {
        self.n_subbufs
    }
    pub fn header_size(&self) -> usize {
        self.header
    }
    pub fn overwrite(&self) -> bool {
        self.overwrite
    }
    pub fn produced(&self) -> u64 {
        self.produced
    }
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
    pub fn bytes_consumed(&self) -> usize {
        self.bytes_consumed
    }
    /// Write offset in the current sub-buffer; `S + 1` when refused (as
    /// relay).
    pub fn offset(&self) -> usize {
        if self.refused {
            self.subbuf_size + 1
        } else {
            self.off
        }
    }
    pub fn refused(&self) -> bool {
        self.refused
    }
    pub fn finalized(&self) -> bool {
        self.finalized
    }
    pub fn prev_padding(&self) -> usize {
        self.prev_padding
    }
    pub fn last_reserve(&self) -> usize {
        self.last_reserve
    }
    pub fn padding(&self, slot: usize) -> usize {
        self.padding[slot]
    }
    pub fn paddings(&self) -> &[usize] {
        &self.padding
    }
    /// The flat `N * S` byte image (what an mmap of the buffer shows).
    pub fn image(&self) -> &[u8] {
        &self.image
    }
    /// Slot of the current sub-buffer (`produced % N`).
    pub fn current_slot(&self) -> usize {
        self.slot_of(self.produced)
    }
    pub fn lapped_subbufs(&self) -> u64 {
        self.lapped_subbufs
    }
    pub fn dropped_msgs(&self) -> u64 {
        self.dropped_msgs
    }
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes
    }
    pub fn toobig_count(&self) -> u64 {
        self.toobig_count
    }
    pub fn last_toobig(&self) -> usize {
        self.last_toobig
    }
    /// Number of successful sub-buffer starts so far, i.e. the `k` the next
    /// successful start will use. Not reset by `reset()`.
    pub fn starts_k(&self) -> u64 {
        self.k
    }
    /// Every start-callback invocation since open (kept across reset).
    pub fn start_calls(&self) -> &[StartCall] {
        &self.start_calls
    }
    /// Live sub-buffer records (see the field doc).
    pub fn subbufs(&self) -> &VecDeque<Subbuf> {
        &self.subbufs
    }

    /// Internal consistency checks; panics on violation.
    pub fn check_invariants(&self) {
        let s = self.subbuf_size;
        assert!(self.consumed <= self.produced);
        if !self.overwrite {
            assert!(self.produced - self.consumed <= self.n_subbufs as u64);
        }
        assert!(self.off <= s);
        // Records are contiguous and ascending.
        for w in self.subbufs.iter().collect::<Vec<_>>().windows(2) {
            assert_eq!(w[0].seq + 1, w[1].seq);
        }
        for sb in &self.subbufs {
            let slot = self.slot_of(sb.seq);
            assert!(sb.bytes.len() <= s);
            assert_eq!(
                &self.image[slot * s..slot * s + sb.bytes.len()],
                &sb.bytes[..]
            );
            if sb.complete {
                assert!(sb.seq < self.produced);
                assert_eq!(self.padding[slot], s - sb.bytes.len());
            } else {
                assert_eq!(sb.seq, self.produced);
                assert!(!self.refused);
                assert_eq!(sb.bytes.len(), self.off);
                assert_eq!(self.padding[slot], 0);
            }
        }
        if !self.refused {
            assert_eq!(
                self.subbufs.back().map(|b| (b.seq, b.complete)),
                Some((self.produced, false))
            );
        }
    }

    // ----------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------

    fn slot_of(&self, seq: u64) -> usize {
        (seq % self.n_subbufs as u64) as usize
    }

    fn is_too_big(&self, length: usize) -> bool {
        length > self.subbuf_size - self.last_reserve
    }

    fn record(&self, seq: u64) -> &Subbuf {
        let front = self.subbufs.front().expect("no live sub-buffers").seq;
        let sb = &self.subbufs[(seq - front) as usize];
        assert_eq!(sb.seq, seq);
        sb
    }

    fn current_mut(&mut self) -> &mut Subbuf {
        let sb = self.subbufs.back_mut().expect("no current sub-buffer");
        assert!(!sb.complete);
        sb
    }

    /// Start sub-buffer 0 at open/reset: prev = None, prev_padding = 0.
    fn start_first(&mut self) {
        let accepted = self.start_callback(0, None, 0);
        // With P == C == 0 and N >= 1 the test callback always accepts.
        assert!(accepted);
    }

    /// The test's sub-buffer start callback plus relay's bookkeeping on
    /// success (`buf->data = new`, `padding[new] = 0`).
    fn start_callback(&mut self, seq: u64, prev_slot: Option<usize>, prev_padding: usize) -> bool {
        let slot = self.slot_of(seq);
        if !self.overwrite && self.buffer_full() {
            self.start_calls.push(StartCall {
                seq,
                slot,
                prev_slot,
                prev_padding,
                accepted: None,
            });
            return false;
        }
        let k = self.k;
        self.k += 1;
        self.start_calls.push(StartCall {
            seq,
            slot,
            prev_slot,
            prev_padding,
            accepted: Some(k),
        });

        let h = self.header;
        let s = self.subbuf_size;
        let hdr = vec![k as u8; h];
        self.image[slot * s..slot * s + h].copy_from_slice(&hdr);
        self.off = h;
        self.last_reserve = h;
        self.padding[slot] = 0;
        self.data_slot = Some(slot);
        self.subbufs.push_back(Subbuf {
            seq,
            bytes: hdr,
            complete: false,
        });
        self.prune();
        true
    }

    /// Finish the current sub-buffer (relay_switch_subbuf's first half).
    fn finish_current(&mut self) {
        let slot = self.current_slot();
        let pad = self.subbuf_size - self.off;
        self.padding[slot] = pad;
        self.prev_padding = pad;
        self.current_mut().complete = true;
        self.produced += 1;
    }

    /// Copy `data` into the current sub-buffer at `off`.
    fn store(&mut self, data: &[u8]) -> usize {
        let s = self.subbuf_size;
        let pos = self.current_slot() * s + self.off;
        assert!(self.off + data.len() <= s);
        self.image[pos..pos + data.len()].copy_from_slice(data);
        self.current_mut().bytes.extend_from_slice(data);
        self.off += data.len();
        pos
    }

    fn reserve_inner(&mut self, data: &[u8], is_reserve: bool) -> Option<usize> {
        let len = data.len();
        if self.is_too_big(len) {
            self.toobig_count += 1;
            self.last_toobig = len;
            return None;
        }
        let full_for_zero = is_reserve && len == 0 && self.off == self.subbuf_size;
        if (self.refused || self.off + len > self.subbuf_size || full_for_zero)
            && !self.switch_subbuf(len)
        {
            return None;
        }
        Some(self.store(data))
    }

    /// Drop records the reader can no longer see: already consumed, or
    /// physically overwritten by the current sub-buffer (same slot).
    fn prune(&mut self) {
        let n = self.n_subbufs as u64;
        while let Some(front) = self.subbufs.front() {
            let overwritten = !self.refused && front.seq + n <= self.produced;
            if front.seq < self.consumed || overwritten {
                self.subbufs.pop_front();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq_bytes(from: u8, n: u8) -> Vec<u8> {
        (from..from + n).collect()
    }

    #[test]
    fn open_initial_state() {
        let m = Model::open(8, 2, 0, false);
        m.check_invariants();
        assert_eq!(m.produced(), 0);
        assert_eq!(m.consumed(), 0);
        assert_eq!(m.offset(), 0);
        assert_eq!(m.image(), &[0u8; 16][..]);
        assert_eq!(m.starts_k(), 1);
        assert_eq!(
            m.start_calls(),
            &[StartCall {
                seq: 0,
                slot: 0,
                prev_slot: None,
                prev_padding: 0,
                accepted: Some(0)
            }]
        );
        assert_eq!(m.poll_ready(), Ok(false));
        assert_eq!(m.unread_bytes(), 0);
    }

    #[test]
    fn two_writes_switch_and_read_back() {
        let mut m = Model::open(8, 2, 0, false);
        assert!(m.write(&seq_bytes(1, 5)));
        assert_eq!(m.offset(), 5);
        assert_eq!(m.produced(), 0);
        assert!(m.write(&seq_bytes(6, 5)));
        m.check_invariants();
        assert_eq!(m.produced(), 1);
        assert_eq!(m.padding(0), 3);
        assert_eq!(m.padding(1), 0);
        assert_eq!(m.prev_padding(), 3);
        assert_eq!(m.offset(), 5);
        assert_eq!(
            m.image(),
            &[1, 2, 3, 4, 5, 0, 0, 0, 6, 7, 8, 9, 10, 0, 0, 0][..]
        );
        assert_eq!(m.poll_ready(), Ok(true));
        assert_eq!(m.unread_bytes(), 10);
        assert_eq!(m.read(100), seq_bytes(1, 10));
        m.check_invariants();
        // Complete sub-buffer 0 was eagerly consumed; reader sits in the
        // current one at byte 5.
        assert_eq!(m.consumed(), 1);
        assert_eq!(m.bytes_consumed(), 5);
        assert_eq!(m.poll_ready(), Ok(false));
        assert_eq!(m.read(100), Vec::<u8>::new());
        assert_eq!(m.unread_bytes(), 0);
    }

    #[test]
    fn exact_fit_does_not_switch() {
        let mut m = Model::open(4, 2, 0, false);
        assert!(m.write(&[1, 2, 3, 4]));
        assert_eq!(m.produced(), 0);
        assert_eq!(m.offset(), 4);
        assert!(m.write(&[]));
        assert_eq!(m.produced(), 0);
        assert_eq!(m.offset(), 4);
    }

    #[test]
    fn fill_until_refused_then_drain_and_resume() {
        let mut m = Model::open(4, 2, 0, false);
        let a = [0xa0, 0xa1, 0xa2, 0xa3];
        let b = [0xb0, 0xb1, 0xb2, 0xb3];
        assert!(m.write(&a));
        assert!(m.write(&b));
        assert_eq!(m.produced(), 1);
        assert!(!m.buffer_full());
        // Third write: finishes sub-buffer 1, start of 2 refused.
        assert!(!m.write(&[0xc0, 0xc1, 0xc2, 0xc3]));
        m.check_invariants();
        assert_eq!(m.produced(), 2);
        assert!(m.refused());
        assert!(m.buffer_full());
        assert_eq!(m.offset(), 5);
        assert_eq!(m.dropped_msgs(), 1);
        assert_eq!(m.dropped_bytes(), 4);
        assert_eq!((m.padding(0), m.padding(1)), (0, 0));
        // Another write while refused: retry, refused again, no new finish.
        assert!(!m.write(&[0xd0, 0xd1]));
        assert_eq!(m.produced(), 2);
        assert_eq!(m.dropped_msgs(), 2);
        assert_eq!(m.dropped_bytes(), 6);
        // Zero-length write while refused: retry, refused, not a drop.
        assert!(!m.write(&[]));
        assert_eq!(m.dropped_msgs(), 2);
        assert_eq!(m.poll_ready(), Ok(true));
        assert_eq!(m.unread_bytes(), 8);

        assert_eq!(m.read(3), vec![0xa0, 0xa1, 0xa2]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (0, 3));
        assert!(m.buffer_full());
        assert_eq!(m.read(1), vec![0xa3]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (1, 0));
        assert!(!m.buffer_full());
        m.check_invariants();

        // Retry succeeds now: sub-buffer 2 goes into slot 0.
        assert!(m.write(&[0xe0, 0xe1]));
        m.check_invariants();
        assert!(!m.refused());
        assert_eq!(m.produced(), 2);
        assert_eq!(m.offset(), 2);
        assert_eq!(m.padding(0), 0);
        assert_eq!(
            m.image(),
            &[0xe0, 0xe1, 0xa2, 0xa3, 0xb0, 0xb1, 0xb2, 0xb3][..]
        );
        let last = m.start_calls().last().unwrap().clone();
        assert_eq!(
            last,
            StartCall {
                seq: 2,
                slot: 0,
                prev_slot: Some(1),
                prev_padding: 0,
                accepted: Some(2)
            }
        );
        assert_eq!(m.read(100), vec![0xb0, 0xb1, 0xb2, 0xb3, 0xe0, 0xe1]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (2, 2));
        assert_eq!(m.poll_ready(), Ok(false));
        assert_eq!(m.dropped_msgs(), 2);
    }

    #[test]
    fn overwrite_lap_reader_gets_newest() {
        let mut m = Model::open(4, 2, 0, true);
        for i in 0..5u8 {
            let d = [i * 16, i * 16 + 1, i * 16 + 2, i * 16 + 3];
            assert!(m.write(&d));
            m.check_invariants();
        }
        // Sub-buffers 0..=3 complete (A,B,C,D), 4 current (E).
        assert_eq!(m.produced(), 4);
        assert!(m.buffer_full());
        assert_eq!(
            m.image(),
            &[0x40, 0x41, 0x42, 0x43, 0x30, 0x31, 0x32, 0x33][..]
        );
        assert_eq!(m.dropped_msgs(), 0);
        assert_eq!(m.unread_bytes(), 8);
        assert_eq!(
            m.read(100),
            vec![0x30, 0x31, 0x32, 0x33, 0x40, 0x41, 0x42, 0x43]
        );
        assert_eq!(m.lapped_subbufs(), 3);
        assert_eq!((m.consumed(), m.bytes_consumed()), (4, 4));
        m.check_invariants();
    }

    #[test]
    fn overwrite_lap_resets_partial_read() {
        let mut m = Model::open(4, 2, 0, true);
        assert!(m.write(&[1, 2, 3, 4]));
        assert!(m.write(&[5, 6, 7, 8]));
        assert_eq!(m.read(2), vec![1, 2]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (0, 2));
        assert!(m.write(&[9, 10, 11, 12])); // P = 2, overwrites slot 0
        m.check_invariants();
        assert_eq!(m.read(100), vec![5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(m.lapped_subbufs(), 1);
    }

    #[test]
    fn flush_empty_subbuf_each_byte_once() {
        let mut m = Model::open(8, 4, 0, false);
        assert!(m.write(&[1, 2, 3]));
        m.flush();
        assert_eq!((m.produced(), m.padding(0), m.offset()), (1, 5, 0));
        m.flush(); // empty sub-buffer 1
        assert_eq!((m.produced(), m.padding(1)), (2, 8));
        assert_eq!(m.prev_padding(), 8);
        assert!(m.write(&[4, 5]));
        m.check_invariants();
        assert_eq!(m.unread_bytes(), 5);
        assert_eq!(m.read(100), vec![1, 2, 3, 4, 5]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (2, 2));
        assert_eq!(m.poll_ready(), Ok(false));
        assert_eq!(m.read(100), Vec::<u8>::new());
        assert_eq!(m.dropped_msgs(), 0);
    }

    #[test]
    fn read_stops_exactly_at_count_before_empty_subbuf() {
        // The loop runs only while count > 0, so an empty complete sub-buffer
        // right after the last byte taken is skipped by the *next* read.
        let mut m = Model::open(8, 4, 0, false);
        assert!(m.write(&[1, 2, 3]));
        m.flush();
        m.flush();
        assert!(m.write(&[4, 5]));
        assert_eq!(m.read(3), vec![1, 2, 3]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (1, 0));
        assert_eq!(m.poll_ready(), Ok(true));
        assert_eq!(m.read(100), vec![4, 5]);
        assert_eq!(m.consumed(), 2);
        assert_eq!(m.poll_ready(), Ok(false));
    }

    #[test]
    fn flush_refused_is_not_a_drop() {
        let mut m = Model::open(4, 1, 0, false);
        assert!(m.write(&[1]));
        m.flush(); // finishes 0, start of 1 refused (P - C = 1 >= 1)
        assert!(m.refused());
        assert_eq!(m.produced(), 1);
        assert_eq!(m.padding(0), 3);
        m.flush(); // retry only
        assert_eq!(m.produced(), 1);
        assert_eq!(m.dropped_msgs(), 0);
        assert_eq!(m.read(100), vec![1]);
        m.flush(); // retry succeeds
        assert!(!m.refused());
        assert_eq!(m.produced(), 1);
        assert_eq!(m.offset(), 0);
        assert_eq!(m.padding(0), 0);
        m.check_invariants();
    }

    #[test]
    fn subbufs_consumed_resets_byte_position() {
        let mut m = Model::open(4, 4, 0, false);
        assert!(m.write(&[1, 2, 3, 4]));
        assert!(m.write(&[5, 6, 7, 8]));
        assert!(m.write(&[9, 10, 11, 12]));
        assert_eq!(m.produced(), 2);
        assert_eq!(m.read(1), vec![1]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (0, 1));
        m.subbufs_consumed(1);
        assert_eq!((m.consumed(), m.bytes_consumed()), (1, 0));
        assert_eq!(m.read(100), vec![5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (2, 4));
        m.check_invariants();
    }

    #[test]
    fn subbufs_consumed_limits() {
        let mut m = Model::open(4, 4, 0, false);
        for _ in 0..3 {
            assert!(m.write(&[7, 7, 7, 7]));
        }
        assert_eq!(m.produced(), 2);
        assert_eq!(m.read(2), vec![7, 7]);
        m.subbufs_consumed(5); // > N: ignored
        assert_eq!((m.consumed(), m.bytes_consumed()), (0, 2));
        m.subbufs_consumed(0); // no change: B kept
        assert_eq!((m.consumed(), m.bytes_consumed()), (0, 2));
        m.subbufs_consumed(3); // > P - C: clamp to P
        assert_eq!((m.consumed(), m.bytes_consumed()), (2, 0));
        assert_eq!(m.read(100), vec![7, 7, 7, 7]);
        assert_eq!(m.bytes_consumed(), 4);
        m.subbufs_consumed(1); // C == P already: unchanged, B kept
        assert_eq!((m.consumed(), m.bytes_consumed()), (2, 4));
        m.check_invariants();
    }

    #[test]
    fn header_bytes_count_starts() {
        let mut m = Model::open(8, 2, 2, false);
        assert_eq!(m.offset(), 2);
        assert_eq!(m.last_reserve(), 2);
        assert!(m.write(&[9, 9, 9, 9]));
        assert!(m.write(&[7, 7, 7, 7]));
        m.check_invariants();
        assert_eq!(m.padding(0), 2);
        assert_eq!(
            m.image(),
            &[0, 0, 9, 9, 9, 9, 0, 0, 1, 1, 7, 7, 7, 7, 0, 0][..]
        );
        assert_eq!(m.read(100), vec![0, 0, 9, 9, 9, 9, 1, 1, 7, 7, 7, 7]);
        assert_eq!((m.consumed(), m.bytes_consumed()), (1, 6));
        m.flush();
        assert_eq!((m.produced(), m.padding(1)), (2, 2));
        assert_eq!(m.starts_k(), 3);
        assert_eq!(&m.image()[0..8], &[2, 2, 9, 9, 9, 9, 0, 0][..]);
        assert_eq!(m.read(100), vec![2, 2]);
        m.check_invariants();

        // Reset: image zeroed, k keeps counting.
        m.reset();
        m.check_invariants();
        assert_eq!(m.starts_k(), 4);
        assert_eq!(
            m.image(),
            &[3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]
        );
        assert_eq!(m.read(100), vec![3, 3]);
        let last = m.start_calls().last().unwrap().clone();
        assert_eq!(
            last,
            StartCall {
                seq: 0,
                slot: 0,
                prev_slot: None,
                prev_padding: 0,
                accepted: Some(3)
            }
        );
    }

    #[test]
    fn toobig_with_header_changes_nothing() {
        let mut m = Model::open(8, 2, 2, false);
        let before = m.clone();
        assert!(!m.write(&[1; 7]));
        assert_eq!(m.toobig_count(), 1);
        assert_eq!(m.last_toobig(), 7);
        assert_eq!(m.produced(), 0);
        assert_eq!(m.offset(), 2);
        assert_eq!(m.image(), before.image());
        assert_eq!(m.dropped_msgs(), 0);
        assert_eq!(m.reserve(&[1; 9]), None);
        assert_eq!((m.toobig_count(), m.last_toobig()), (2, 9));
        assert_eq!(m.produced(), 0);
        // 6 bytes fit exactly.
        assert!(m.write(&[6; 6]));
        assert_eq!((m.produced(), m.offset()), (0, 8));
        assert!(m.write(&[5; 6]));
        assert_eq!((m.produced(), m.offset(), m.padding(0)), (1, 8, 0));
        m.check_invariants();
    }

    #[test]
    fn reserve_positions_and_zero_length() {
        let mut m = Model::open(4, 2, 0, false);
        assert_eq!(m.reserve(&[1, 2, 3]), Some(0));
        assert_eq!(m.reserve(&[]), Some(3));
        assert_eq!(m.produced(), 0);
        assert_eq!(m.reserve(&[4]), Some(3));
        assert_eq!(m.offset(), 4);
        // reserve(0) at off == S switches and stays in bounds.
        assert_eq!(m.reserve(&[]), Some(4));
        assert_eq!((m.produced(), m.offset(), m.padding(0)), (1, 0, 0));
        assert_eq!(m.reserve(&[]), Some(4));
        assert_eq!(m.produced(), 1);
        assert_eq!(m.reserve(&[5, 6, 7, 8]), Some(4));
        // reserve(0) at off == S, start refused: None, not a drop.
        assert_eq!(m.reserve(&[]), None);
        assert!(m.refused());
        assert_eq!(m.produced(), 2);
        assert_eq!(m.dropped_msgs(), 0);
        assert_eq!(m.reserve(&[]), None);
        assert_eq!(m.dropped_msgs(), 0);
        // Non-empty reserve while refused is a drop.
        assert_eq!(m.reserve(&[9, 9]), None);
        assert_eq!((m.dropped_msgs(), m.dropped_bytes()), (1, 2));
        m.check_invariants();
        assert_eq!(m.read(100), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        // Now there is room: the retry succeeds and lands in slot 0.
        assert_eq!(m.reserve(&[]), Some(0));
        assert_eq!(m.reserve(&[10, 11]), Some(0));
        assert_eq!(m.read(100), vec![10, 11]);
        m.check_invariants();
    }

    #[test]
    fn reset_clears_everything_but_k() {
        let mut m = Model::open(4, 2, 0, false);
        assert!(m.write(&[1, 2, 3]));
        assert!(m.write(&[4, 5]));
        assert!(!m.write(&[6; 5])); // toobig
        assert!(!m.write(&[7, 7, 7])); // finishes 1, refused -> drop
        assert_eq!(
            (m.produced(), m.dropped_msgs(), m.toobig_count()),
            (2, 1, 1)
        );
        m.close();
        m.reset();
        m.check_invariants();
        assert_eq!(m.produced(), 0);
        assert_eq!(m.consumed(), 0);
        assert_eq!(m.bytes_consumed(), 0);
        assert_eq!(m.offset(), 0);
        assert!(!m.refused());
        assert_eq!(m.prev_padding(), 0);
        assert_eq!(m.paddings(), &[0, 0][..]);
        assert_eq!(m.image(), &[0u8; 8][..]);
        assert_eq!((m.dropped_msgs(), m.dropped_bytes()), (0, 0));
        assert_eq!((m.toobig_count(), m.last_toobig()), (0, 0));
        assert_eq!(m.lapped_subbufs(), 0);
        assert_eq!(m.starts_k(), 3);
        assert_eq!(m.poll_ready(), Ok(false));
        assert_eq!(m.read(100), Vec::<u8>::new());
    }

    #[test]
    fn close_finalizes_but_data_still_readable() {
        let mut m = Model::open(4, 2, 0, false);
        assert!(m.write(&[1, 2, 3]));
        assert!(m.write(&[4, 5]));
        m.close();
        assert_eq!(m.poll_ready(), Err(Finalized));
        assert_eq!(m.produced(), 1); // close does not flush
        assert_eq!(m.read(100), vec![1, 2, 3, 4, 5]);
        assert_eq!(m.poll_ready(), Err(Finalized));
    }

    #[test]
    fn unread_bytes_does_not_mutate() {
        let mut m = Model::open(4, 2, 0, true);
        for i in 0..4u8 {
            assert!(m.write(&[i; 3]));
        }
        let p = (m.produced(), m.consumed(), m.lapped_subbufs());
        assert_eq!(m.unread_bytes(), 6);
        assert_eq!((m.produced(), m.consumed(), m.lapped_subbufs()), p);
        assert_eq!(m.read_all(), vec![2, 2, 2, 3, 3, 3]);
        assert_eq!(m.lapped_subbufs(), 2);
    }
    /// Deterministic pseudo-random op sequences: invariants hold after every
    /// op, and with H = 0 in no-overwrite mode (no subbufs_consumed) the
    /// concatenation of all reads equals the concatenation of all accepted
    /// writes.
    #[test]
    fn random_ops_conserve_bytes() {
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for &(s, n) in &[(1usize, 1usize), (4, 1), (4, 2), (8, 3), (16, 4)] {
            let mut m = Model::open(s, n, 0, false);
            let mut written = Vec::new();
            let mut read = Vec::new();
            let mut tag = 0u8;
            for _ in 0..2000 {
                match next(6) {
                    0 | 1 => {
                        let len = next(s as u64 + 2) as usize;
                        let data: Vec<u8> = (0..len)
                            .map(|_| {
                                tag = tag.wrapping_add(1);
                                tag
                            })
                            .collect();
                        if m.write(&data) {
                            written.extend_from_slice(&data);
                        }
                    }
                    2 => {
                        let len = next(s as u64 + 1) as usize;
                        let data = vec![0xee; len];
                        if let Some(pos) = m.reserve(&data) {
                            assert!(pos + len <= s * n);
                            assert!(pos < s * n);
                            written.extend_from_slice(&data);
                        }
                    }
                    3 => m.flush(),
                    _ => {
                        let before = m.unread_bytes();
                        let got = m.read(next(2 * s as u64 + 1) as usize);
                        assert_eq!(m.unread_bytes(), before - got.len());
                        read.extend_from_slice(&got);
                    }
                }
                m.check_invariants();
                assert_eq!(m.lapped_subbufs(), 0);
            }
            read.extend_from_slice(&m.read_all());
            assert_eq!(read, written, "S={s} N={n}");
        }
    }
}
