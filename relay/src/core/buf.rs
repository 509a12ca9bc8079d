//! The writer side of a buffer: relay.c's `relay_switch_subbuf`, `relay_write`, `relay_reserve`,
//! `relay_flush`, `__relay_reset`, `relay_subbufs_consumed` and `relay_buf_full`.

use core::ptr::NonNull;

#[cfg(not(loom))]
use core::sync::atomic::{fence, AtomicUsize, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicUsize, Ordering};

use super::{BufState, BufStats, Env, Geometry, OpenError, MAX_ALLOC};

/// A view of one relay buffer: its control block, padding array and data region.
///
/// # Invariants
///
/// For as long as the `Buf` exists: `state` points to a valid [`BufState`], `padding` to
/// `geo.n_subbufs()` valid `AtomicUsize`s and `data` to `geo.size()` bytes that stay mapped. The
/// backend that built it keeps all three alive (e.g. by owning the mapping next to the `Buf`).
pub struct Buf {
    state: NonNull<BufState>,
    padding: NonNull<AtomicUsize>,
    data: NonNull<u8>,
    geo: Geometry,
    cpu: usize,
}

// SAFETY: every field shared between threads is an atomic in `BufState`/padding; the data region
// is accessed under the protocol described in `core/mod.rs` (writer exclusivity from the
// backend, readers only below the published offset). The pointers themselves are plain values.
unsafe impl Send for Buf {}
// SAFETY: as above: `&Buf` only gives access to atomics and to protocol-guarded data.
unsafe impl Sync for Buf {}

/// A slot handed out by [`Buf::reserve`]: `len` bytes at `pos` in the data region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Byte offset of the slot in the data region (always `pos + len <= size`).
    pub pos: usize,
    /// Length of the slot.
    pub len: usize,
}

/// The context `subbuf_start` runs in: relay's `(buf, subbuf, prev_subbuf, prev_padding)` plus
/// `subbuf_start_reserve`.
pub struct SubbufStart<'a> {
    buf: &'a Buf,
    subbuf: usize,
    prev_subbuf: Option<usize>,
    prev_padding: usize,
    reserve: usize,
    bad_reserve: Option<usize>,
}

impl<'a> SubbufStart<'a> {
    /// The buffer being switched.
    pub fn buf(&self) -> &'a Buf {
        self.buf
    }

    /// Index of the sub-buffer being started.
    pub fn subbuf(&self) -> usize {
        self.subbuf
    }

    /// Index of the previous sub-buffer; `None` for the first one (at open and after reset).
    pub fn prev_subbuf(&self) -> Option<usize> {
        self.prev_subbuf
    }

    /// Unused bytes at the end of the previous sub-buffer.
    pub fn prev_padding(&self) -> usize {
        self.prev_padding
    }

    /// relay's `relay_buf_full(buf)`.
    pub fn buf_full(&self) -> bool {
        self.buf.buf_full()
    }

    /// relay's `subbuf_start_reserve(buf, len)`: the new sub-buffer starts with `len` bytes the
    /// client owns (a header). Rejects a header that leaves less than two payload bytes, where
    /// relay.c would `BUG()`.
    pub fn reserve(&mut self, len: usize) -> Result<(), OpenError> {
        if len != 0 && len > self.buf.geo.max_header() {
            self.bad_reserve = Some(len);
            return Err(OpenError::HeaderTooLarge {
                len,
                subbuf_size: self.buf.geo.subbuf_size(),
            });
        }
        self.reserve = len;
        Ok(())
    }

    /// Writes `bytes` at `offset` into the new sub-buffer (typically its reserved header).
    /// Returns `false` and writes nothing if it would not fit in the sub-buffer.
    pub fn write_subbuf(&mut self, offset: usize, bytes: &[u8]) -> bool {
        self.buf.write_in_subbuf(self.subbuf, offset, bytes)
    }

    /// Writes `bytes` at `offset` into the previous sub-buffer (e.g. its padding count, as the
    /// relay documentation's example does). Returns `false` if there is none or it does not fit.
    pub fn write_prev_subbuf(&mut self, offset: usize, bytes: &[u8]) -> bool {
        match self.prev_subbuf {
            Some(prev) => self.buf.write_in_subbuf(prev, offset, bytes),
            None => false,
        }
    }
}

impl Buf {
    /// Builds a view over backend-provided memory.
    ///
    /// # Safety
    ///
    /// `state` must point to a [`BufState`], `padding` to `geo.n_subbufs()` `AtomicUsize`s and
    /// `data` to `geo.size()` bytes, all valid for as long as the returned `Buf` exists, and every
    /// `Buf` over the same memory must use the same `geo`. Other processes may share the memory.
    pub unsafe fn from_raw(
        state: NonNull<BufState>,
        padding: NonNull<AtomicUsize>,
        data: NonNull<u8>,
        geo: Geometry,
        cpu: usize,
    ) -> Self {
        Buf {
            state,
            padding,
            data,
            geo,
            cpu,
        }
    }

    /// Another view of the same buffer (same memory, geometry and CPU), for a writer that
    /// keeps one next to its other per-buffer state and so saves a pointer hop per message.
    ///
    /// # Safety
    ///
    /// The copy must not be used after the memory behind `self` is gone: it carries the same
    /// pointers, whose validity [`Buf::from_raw`]'s caller guaranteed only for as long as `self`
    /// exists.
    pub unsafe fn alias(&self) -> Buf {
        Buf {
            state: self.state,
            padding: self.padding,
            data: self.data,
            geo: self.geo,
            cpu: self.cpu,
        }
    }

    /// The control block.
    #[inline]
    pub fn state(&self) -> &BufState {
        // SAFETY: by the type invariant `state` is valid while `self` exists.
        unsafe { self.state.as_ref() }
    }

    #[inline]
    fn padding(&self, slot: usize) -> &AtomicUsize {
        debug_assert!(slot < self.geo.n_subbufs());
        // SAFETY: callers pass `slot < n_subbufs` (every index is reduced modulo n_subbufs or
        // derived from a `data_off` the writer keeps below `size()`); the array has n_subbufs
        // elements and is valid by the type invariant.
        unsafe { &*self.padding.as_ptr().add(slot) }
    }

    /// The geometry.
    #[inline]
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The CPU this buffer belongs to (0 for a global buffer).
    #[inline]
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Start of the data region (`rchan_buf->start`).
    #[inline]
    pub fn data_ptr(&self) -> *mut u8 {
        self.data.as_ptr()
    }

    /// Padding recorded for sub-buffer slot `slot` (relay's `padding[slot]`), `None` if out of
    /// range.
    pub fn padding_of(&self, slot: usize) -> Option<usize> {
        (slot < self.geo.n_subbufs()).then(|| self.padding(slot).load(Ordering::Acquire))
    }

    /// A snapshot of the counters. `subbufs_produced` and `offset` are taken inside the switch
    /// seqlock: when a count is visible, the `subbuf_start` that followed it (which may write
    /// the previous sub-buffer's header) has completed, so an mmap consumer may use it to pick
    /// complete sub-buffers.
    pub fn stats(&self) -> BufStats {
        let w = &self.state().w;
        let (produced, offset) = self.writer_snapshot().unwrap_or_else(|| {
            (
                w.produced.load(Ordering::Acquire),
                w.offset.load(Ordering::Relaxed),
            )
        });
        self.state().stats(produced, offset)
    }

    /// relay's `relay_buf_full`: all sub-buffers are produced and unconsumed.
    #[inline]
    pub fn buf_full(&self) -> bool {
        let st = self.state();
        let produced = st.w.produced.load(Ordering::Relaxed);
        // Acquire pairs with the reader's Release store after it copied the sub-buffer out.
        let consumed = st.r.consumed.load(Ordering::Acquire);
        produced.wrapping_sub(consumed) >= self.geo.n_subbufs()
    }

    /// Whether the channel was closed.
    #[inline]
    pub fn is_finalized(&self) -> bool {
        self.state().s.finalized.load(Ordering::Acquire) != 0
    }

    /// Marks the buffer closed (relay_close_buf's `finalized = 1`). The backend wakes readers.
    pub fn finalize(&self) {
        self.state().s.finalized.store(1, Ordering::Release);
    }

    fn write_in_subbuf(&self, subbuf: usize, offset: usize, bytes: &[u8]) -> bool {
        let size = self.geo.subbuf_size();
        if subbuf >= self.geo.n_subbufs() || offset > size || bytes.len() > size - offset {
            return false;
        }
        // SAFETY: the range lies inside sub-buffer `subbuf` (checked above), hence inside the data
        // region, valid by the type invariant. `subbuf_start` runs with writer exclusivity; a
        // concurrent reader may copy the previous sub-buffer while its header is rewritten, which
        // is relay's documented behaviour (the header is client data).
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.data.as_ptr().add(subbuf * size + offset),
                bytes.len(),
            );
        }
        true
    }

    /// First-time initialisation (`__relay_reset(buf, 1)`): starts sub-buffer 0.
    ///
    /// # Safety
    ///
    /// The caller has writer exclusivity and the state is all zero (fresh memory).
    pub unsafe fn init<E: Env + ?Sized>(&self, env: &E) -> Result<(), OpenError> {
        self.start_first(env)
    }

    fn start_first<E: Env + ?Sized>(&self, env: &E) -> Result<(), OpenError> {
        let mut ctx = SubbufStart {
            buf: self,
            subbuf: 0,
            prev_subbuf: None,
            prev_padding: 0,
            reserve: 0,
            bad_reserve: None,
        };
        // relay ignores the return value for the first sub-buffer; a refusal then only means the
        // header was not reserved. We keep that, but report an oversized header as an error.
        let _ = env.subbuf_start(&mut ctx);
        if let Some(len) = ctx.bad_reserve {
            return Err(OpenError::HeaderTooLarge {
                len,
                subbuf_size: self.geo.subbuf_size(),
            });
        }
        let st = self.state();
        st.w.last_reserve.store(ctx.reserve, Ordering::Relaxed);
        st.w.offset.store(ctx.reserve, Ordering::Release);
        Ok(())
    }

    /// relay's `relay_reset` for this buffer: back to the freshly opened state. The mapping stays
    /// valid; the data region is zeroed.
    ///
    /// DIFF(relay.c): relay.c leaves `prev_padding`, `last_toobig` and the old bytes behind, so a
    /// reader could see a stale header after a reset; we clear all of them (and the statistics).
    ///
    /// # Safety
    ///
    /// The caller has writer *and* reader exclusivity.
    pub unsafe fn reset<E: Env + ?Sized>(&self, env: &E) -> Result<(), OpenError> {
        let st = self.state();
        let seq = st.w.switch_seq.load(Ordering::Relaxed);
        st.w.switch_seq
            .store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        // SAFETY: the data region is `size()` bytes, valid by the type invariant; with both
        // exclusivities held nobody else writes it (mmap readers see zeros appear).
        unsafe { core::ptr::write_bytes(self.data.as_ptr(), 0, self.geo.size()) };
        for slot in 0..self.geo.n_subbufs() {
            self.padding(slot).store(0, Ordering::Relaxed);
        }
        for a in [
            &st.w.offset,
            &st.w.data_off,
            &st.w.produced,
            &st.w.prev_padding,
            &st.w.last_reserve,
            &st.r.consumed,
            &st.r.bytes_consumed,
            &st.s.dropped_msgs,
            &st.s.dropped_bytes,
            &st.s.toobig_msgs,
            &st.s.last_toobig,
            &st.s.lapped_subbufs,
            &st.s.torn_reads,
            &st.s.finalized,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        let r = self.start_first(env);
        st.w.switch_seq
            .store(seq.wrapping_add(2), Ordering::Release);
        r
    }

    #[cold]
    fn toobig(&self, length: usize) {
        let s = &self.state().s;
        s.toobig_msgs.fetch_add(1, Ordering::Relaxed);
        s.last_toobig.store(length, Ordering::Relaxed);
    }

    /// relay's `relay_switch_subbuf(buf, length)`: finishes the current sub-buffer and starts the
    /// next one if `subbuf_start` agrees. Returns `true` if `length` bytes now fit at `offset`.
    ///
    /// DIFF(relay.c): a message that can never fit (longer than a sub-buffer minus the header the
    /// client reserves) is rejected *before* switching, so no bare header is left behind.
    ///
    /// # Safety
    ///
    /// The caller has writer exclusivity.
    pub unsafe fn switch_subbuf<E: Env + ?Sized>(&self, env: &E, length: usize) -> bool {
        self.switch(env, length) == Switched::Fits
    }

    fn switch<E: Env + ?Sized>(&self, env: &E, length: usize) -> Switched {
        let st = self.state();
        let size = self.geo.subbuf_size();
        let n = self.geo.n_subbufs();
        if length > size - st.w.last_reserve.load(Ordering::Relaxed) {
            self.toobig(length);
            return Switched::TooBig;
        }

        let seq = st.w.switch_seq.load(Ordering::Relaxed);
        st.w.switch_seq
            .store(seq.wrapping_add(1), Ordering::Relaxed);
        // Orders the odd sequence number before every store below (seqlock writer side).
        fence(Ordering::Release);

        let offset = st.w.offset.load(Ordering::Relaxed);
        let old_off = st.w.data_off.load(Ordering::Relaxed);
        let mut produced = st.w.produced.load(Ordering::Relaxed);
        let finished = offset != size + 1;
        if finished {
            let prev_padding = size - offset;
            st.w.prev_padding.store(prev_padding, Ordering::Relaxed);
            self.padding(produced % n)
                .store(prev_padding, Ordering::Relaxed);
            produced = produced.wrapping_add(1);
            // Release: a reader that sees the new count also sees the padding.
            st.w.produced.store(produced, Ordering::Release);
        }

        let new_subbuf = produced % n;
        st.w.offset.store(0, Ordering::Relaxed);
        let mut ctx = SubbufStart {
            buf: self,
            subbuf: new_subbuf,
            prev_subbuf: Some(old_off / size),
            prev_padding: st.w.prev_padding.load(Ordering::Relaxed),
            reserve: 0,
            bad_reserve: None,
        };
        let accepted = env.subbuf_start(&mut ctx) && ctx.bad_reserve.is_none();
        let fits = if accepted {
            st.w.data_off.store(new_subbuf * size, Ordering::Relaxed);
            self.padding(new_subbuf).store(0, Ordering::Relaxed);
            st.w.last_reserve.store(ctx.reserve, Ordering::Relaxed);
            st.w.offset.store(ctx.reserve, Ordering::Relaxed);
            // Only reachable if the client grew its header since the pre-check.
            length + ctx.reserve <= size
        } else {
            st.w.offset.store(size + 1, Ordering::Relaxed);
            false
        };
        st.w.switch_seq
            .store(seq.wrapping_add(2), Ordering::Release);

        if finished {
            // Pairs with the waiter's registration (see `wait`): either the reader sees the new
            // `produced`, or we see its waiter count.
            fence(Ordering::SeqCst);
            env.subbuf_produced(self);
        }
        match (accepted, fits) {
            (true, true) => Switched::Fits,
            (true, false) => {
                self.toobig(length);
                Switched::TooBig
            }
            (false, _) => Switched::Refused,
        }
    }

    /// Finds room for `len` bytes, switching if needed. Returns the absolute position.
    #[inline(always)]
    fn place<E: Env + ?Sized>(&self, env: &E, len: usize) -> Option<usize> {
        let st = self.state();
        let offset = st.w.offset.load(Ordering::Relaxed);
        // `offset <= size + 1 <= MAX_ALLOC + 1` always, so for `len <= MAX_ALLOC` the sum is
        // below 2^33 and exact in u64 on every target (`wrapping_add` only spares the kernel
        // build's overflow check); a larger `len` takes the slow path and is rejected there.
        // Unlike `saturating_add`, a constant `len` folds the first test away.
        if len > MAX_ALLOC
            || (offset as u64).wrapping_add(len as u64) > self.geo.subbuf_size() as u64
        {
            return if self.place_slow(env, len) {
                Some(self.current_pos())
            } else {
                None
            };
        }
        // data_off + offset <= size (writer invariant): wrapping_add only spares the overflow
        // check the kernel build would emit.
        Some(st.w.data_off.load(Ordering::Relaxed).wrapping_add(offset))
    }

    #[cold]
    #[inline(never)]
    fn place_slow<E: Env + ?Sized>(&self, env: &E, len: usize) -> bool {
        // Callers of `place` hold writer exclusivity (all are `unsafe fn`s with that contract).
        let st = self.state();
        match self.switch(env, len) {
            Switched::Fits => true,
            Switched::Refused => {
                // relay drops the message silently; we count it (a zero-length write is no loss).
                if len != 0 {
                    st.count_dropped(len);
                }
                false
            }
            Switched::TooBig => false,
        }
    }

    /// The absolute position of the current offset.
    #[inline(always)]
    fn current_pos(&self) -> usize {
        let w = &self.state().w;
        w.data_off.load(Ordering::Relaxed) + w.offset.load(Ordering::Relaxed)
    }

    /// Publishes `len` bytes written at the current offset.
    #[inline(always)]
    fn commit(&self, len: usize) {
        let offset = &self.state().w.offset;
        // Release publishes the bytes just written to readers that Acquire-load `offset`.
        // Re-loading `offset` (rather than keeping it in a register across the copy) measured
        // faster in user space. offset + len <= subbuf_size (checked by `place`): wrapping_add
        // only spares the kernel build's overflow check.
        offset.store(
            offset.load(Ordering::Relaxed).wrapping_add(len),
            Ordering::Release,
        );
    }

    /// relay's `relay_write` body: copies `data` into the current sub-buffer, switching first if
    /// it does not fit. Returns `false` if the message was dropped (counted in the statistics).
    ///
    /// # Safety
    ///
    /// The caller has writer exclusivity for the whole call.
    #[inline]
    pub unsafe fn write<E: Env + ?Sized>(&self, env: &E, data: &[u8]) -> bool {
        let len = data.len();
        // SAFETY: forwarded contract. The slot has exactly `len` bytes; a plain copy rather than
        // `copy_from_slice`, which the kernel build does not inline from its separately compiled
        // `core` (a call and a length check per message there).
        unsafe {
            self.write_with_max(env, len, |slot| {
                copy_message(slot, data);
                len
            })
        }
    }

    /// Writes a `len`-byte message in place: `fill` gets the slot, then the bytes are published.
    /// Unlike [`Buf::reserve`], readers never see the slot before `fill` returns. Returns
    /// `false` (without calling `fill`) if the message was dropped.
    ///
    /// # Safety
    ///
    /// The caller has writer exclusivity for the whole call.
    #[inline]
    pub unsafe fn write_with<E: Env + ?Sized, F: FnOnce(&mut [u8])>(
        &self,
        env: &E,
        len: usize,
        fill: F,
    ) -> bool {
        // SAFETY: forwarded contract.
        unsafe {
            self.write_with_max(env, len, |slot| {
                fill(slot);
                len
            })
        }
    }

    /// Like [`Buf::write_with`] for messages whose exact length is known only while encoding:
    /// room for `max` bytes is found (switching if needed), `fill` encodes into it and returns
    /// how many bytes it used, and only those are published. A return value above `max` is
    /// clamped to `max`.
    ///
    /// # Safety
    ///
    /// The caller has writer exclusivity for the whole call.
    #[inline]
    pub unsafe fn write_with_max<E: Env + ?Sized, F: FnOnce(&mut [u8]) -> usize>(
        &self,
        env: &E,
        max: usize,
        fill: F,
    ) -> bool {
        let Some(pos) = self.place(env, max) else {
            return false;
        };
        // Writer exclusivity: nobody else writes there; readers only read below the published
        // offset, which moves only in `commit`.
        // SAFETY: `place` returned `max` free bytes in the current sub-buffer, in the data region.
        let slot = unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr().add(pos), max) };
        let used = fill(slot).min(max);
        self.commit(used);
        true
    }

    /// relay's `relay_reserve`: returns a `len`-byte slot and publishes it immediately (readers
    /// may see it before the client fills it, as in relay).
    ///
    /// DIFF(relay.c): `reserve(0)` never returns a slot outside the buffer (relay.c can hand out
    /// one-past-the-end) and does not fail when its switch succeeded (relay.c returns NULL).
    ///
    /// # Safety
    ///
    /// The caller has writer exclusivity for the whole call.
    pub unsafe fn reserve<E: Env + ?Sized>(&self, env: &E, len: usize) -> Option<Slot> {
        let pos = if len == 0 {
            let offset = self.state().w.offset.load(Ordering::Relaxed);
            // A zero-length slot must start inside the buffer: switch when the sub-buffer is
            // full (offset == size) or refused (size + 1).
            if offset >= self.geo.subbuf_size() {
                // Writer exclusivity is the caller's contract.
                if self.switch(env, 0) != Switched::Fits {
                    return None;
                }
            }
            self.current_pos()
        } else {
            self.place(env, len)?
        };
        self.commit(len);
        Some(Slot { pos, len })
    }

    /// Pointer to a slot returned by [`Buf::reserve`].
    pub fn slot_ptr(&self, slot: Slot) -> *mut u8 {
        debug_assert!(slot.pos + slot.len <= self.geo.size());
        // SAFETY: slots always lie inside the data region.
        unsafe { self.data.as_ptr().add(slot.pos) }
    }

    /// relay's `relay_flush` for this buffer: `relay_switch_subbuf(buf, 0)`.
    ///
    /// # Safety
    ///
    /// The caller has writer exclusivity.
    pub unsafe fn flush<E: Env + ?Sized>(&self, env: &E) {
        // Writer exclusivity is the caller's contract.
        self.switch(env, 0);
    }

    /// relay's `relay_subbufs_consumed(chan, cpu, n)` for this buffer, with its clamping.
    ///
    /// DIFF(relay.c): when the consumed count moves, the byte position within the read
    /// sub-buffer goes back to 0 (relay.c keeps a stale `bytes_consumed`, which makes the next
    /// `read` skip or repeat data).
    ///
    /// # Safety
    ///
    /// The caller has reader exclusivity.
    pub unsafe fn subbufs_consumed(&self, n: usize) {
        let st = self.state();
        if n > self.geo.n_subbufs() {
            return;
        }
        let produced = st.w.produced.load(Ordering::Acquire);
        let consumed = st.r.consumed.load(Ordering::Relaxed);
        let new = if n > produced.wrapping_sub(consumed) {
            produced
        } else {
            consumed.wrapping_add(n)
        };
        if new != consumed {
            st.r.bytes_consumed.store(0, Ordering::Relaxed);
            st.r.consumed.store(new, Ordering::Release);
        }
    }

    /// The writer's current position as seen by a reader: `(subbufs_produced, offset)` from one
    /// consistent moment (seqlock read side). `offset` is relay's, i.e. `subbuf_size + 1` when
    /// refused, and is clamped to that range: the control block is shared memory and a reader
    /// must stay in bounds whatever it holds.
    ///
    /// `None` if no consistent snapshot was seen within a bounded number of attempts (a writer
    /// preempted — or crashed — in the middle of a switch); readers then report nothing
    /// available for now rather than spin without bound.
    ///
    /// In the kernel (`--cfg rsrelay_kernel`) a writer switches with interrupts (at least
    /// preemption) off and never in NMI: it cannot be preempted or die inside a switch, only
    /// an interrupt or a hypervisor can delay it for a while. Giving up after a few thousand
    /// attempts there made `read` return 0 and `poll` report nothing while complete sub-buffers
    /// waited (seen in the QEMU guest: writers hammering a full no-overwrite buffer, where every
    /// refused write is a switch) — and such a poller is never woken, as a full buffer produces
    /// nothing more. So the kernel reader waits like a seqcount reader; the bound (seconds of
    /// spinning) only keeps a broken writer from hanging a reader forever.
    pub(crate) fn writer_snapshot(&self) -> Option<(usize, usize)> {
        #[cfg(not(rsrelay_kernel))]
        const ATTEMPTS: u32 = 1 << 12;
        #[cfg(rsrelay_kernel)]
        const ATTEMPTS: u32 = 1 << 28;
        let w = &self.state().w;
        for _ in 0..ATTEMPTS {
            let s1 = w.switch_seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let produced = w.produced.load(Ordering::Acquire);
                // Acquire: the bytes below `offset` are visible after this load.
                let offset = w.offset.load(Ordering::Acquire);
                fence(Ordering::Acquire);
                if w.switch_seq.load(Ordering::Relaxed) == s1 {
                    return Some((produced, offset.min(self.geo.subbuf_size() + 1)));
                }
            }
            spin_hint();
        }
        None
    }

    /// Complete length (`subbuf_size - padding`) of the sub-buffer in `slot`, clamped as above.
    pub(crate) fn complete_len(&self, slot: usize) -> usize {
        let size = self.geo.subbuf_size();
        size - self.padding(slot).load(Ordering::Relaxed).min(size)
    }
}

/// What a sub-buffer switch achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switched {
    /// A sub-buffer is current and the message fits at `offset`.
    Fits,
    /// `subbuf_start` refused; the buffer is in the "switch refused" state.
    Refused,
    /// The message can never fit; counted in `toobig_msgs`.
    TooBig,
}

/// Copies a message into its slot (same length). User space: `copy_from_slice`, which measured
/// fastest there; the kernel build: a plain `copy_nonoverlapping`, because it does not inline
/// `copy_from_slice` from its separately compiled `core` (a call and a length check per message).
#[inline(always)]
fn copy_message(slot: &mut [u8], data: &[u8]) {
    #[cfg(not(rsrelay_kernel))]
    slot.copy_from_slice(data);
    #[cfg(rsrelay_kernel)]
    {
        let n = slot.len().min(data.len());
        // SAFETY: both are valid for `n` bytes and distinct (the slot lies in the buffer).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), slot.as_mut_ptr(), n) };
    }
}

#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
