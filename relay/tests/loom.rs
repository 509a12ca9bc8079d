//! Loom models of every place where the writer, a reader and the wakeup protocol meet (see the
//! "Concurrency protocol" section of `relay/src/core/mod.rs`).
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p relay --test loom --release
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` overrides the per-model preemption bound. Every model asserts that loom
//! explored more than one execution (`--nocapture` prints the count).
//!
//! # Models
//!
//! 1. `seqlock_*`: no-overwrite mode, a writer switching sub-buffers (writes, refused switches,
//!    flush) against a reader thread: the output must be exactly the accepted messages.
//! 2. `overwrite_*`: overwrite mode, the writer reusing the slot the reader copies: no torn,
//!    duplicated or reordered message; the newest survives; lapped/torn counters consistent.
//! 3. `consume_*`: no-overwrite slot reuse (`buf_full`) against `read`'s consumption (also
//!    stopped mid sub-buffer) and against an mmap consumer using `subbufs_consumed`.
//! 4. `wakeup_*`: `wait::wait_until` against `wait::notify` from `subbuf_produced` and against
//!    close (`finalize` + `wake_all`) on a modelled futex; a lost wakeup is a loom deadlock.
//!
//! In each model the main thread first sets the buffer up alone (`init`, messages written before
//! the threads start), so only the interesting part runs concurrently; the reader is a spawned
//! thread too (with the main thread as the reader, loom 0.7 explored a single execution of these
//! models), and the main thread reads what is left after joining both.
//!
//! # What is tracked
//!
//! The core's control block, padding array and wakeup words are loom atomics under `cfg(loom)`,
//! so loom explores every interleaving and every weak-memory outcome of them. The data region is
//! plain memory and invisible to loom. Two kinds of models therefore exist:
//!
//! * *plain* models write with [`Buf::write`] and read with a [`SliceSink`]: the data bytes are
//!   always the newest ones, and loom checks the counters / seqlock logic. Only used in
//!   no-overwrite mode: with a lapping writer, plain bytes newer than the (possibly stale) atomics
//!   a reader loads would be false alarms;
//! * *shadow* models write with [`Buf::write_with`] and additionally store every data byte into a
//!   loom `AtomicU8` "shadow" at the same offset; their sink ([`ShadowSink`]) copies from the
//!   shadow with `Relaxed` loads instead of from the plain memory. That is the formal reading of
//!   the protocol (data accesses as relaxed atomics ordered by the fences and the
//!   `offset`/`produced` release-acquire pairs), it makes loom check the *visibility* of the data,
//!   and every byte copied is a scheduling point, so the writer can run in the middle of a copy
//!   (torn copies, slot reuse while a reader still copies).
//!
//! Message `v` (1, 2, ...) is [`msg_len`]`(v)` bytes all equal to `v`, 2 and 3 bytes alternately
//! in 4-byte sub-buffers: every message after the first switches sub-buffers, and consecutive
//! sub-buffers end at different offsets, so pairing one sub-buffer's `produced` with another's
//! `offset` reads too much or too little. A torn message (mixed values), a zero byte (unwritten
//! memory or padding), a duplicate or a skip is visible in the concatenated output.
#![cfg(loom)]

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;

use loom::model::Builder;
use loom::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use relay::core::{
    wait, Buf, BufState, BufStats, Callbacks, Env, NoOverwrite, NoWake, Overwrite, ReadSink,
    SliceSink, SubbufStart,
};
use relay::{Geometry, Poll};

/// Sub-buffer size of every model.
const SUBBUF: usize = 4;

/// Length of message `v`: odd messages are 2 bytes, even ones 3, so two consecutive messages
/// never fit one sub-buffer together.
fn msg_len(v: u8) -> usize {
    if v % 2 == 1 {
        2
    } else {
        3
    }
}

/// The bytes of message `v`.
fn msg(v: u8) -> Vec<u8> {
    vec![v; msg_len(v)]
}

/// Runs `f` under loom with the given preemption bound (unless `LOOM_MAX_PREEMPTIONS` is set), and
/// makes sure loom actually explored alternatives (it silently checks a single execution when it
/// sees no race, as happened here with the main thread as the reader).
fn model<F>(preemptions: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(preemptions);
    }
    let iterations = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = iterations.clone();
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let iterations = iterations.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom: {iterations} executions");
    assert!(iterations > 1, "loom explored a single execution");
}

// ---------------------------------------------------------------------------------------------
// Fixture: the memory of one buffer, owned for the lifetime of one loom execution.
// ---------------------------------------------------------------------------------------------

/// A futex modelled with a loom mutex and condition variable: `wait` sleeps while the word holds
/// `expected`, checked under the mutex; `wake` takes the mutex and wakes everybody. Because
/// [`wait::wake_all`] changes the word before calling `wake`, a waiter either sees the new value
/// under the mutex or is already asleep when `notify_all` runs: no wakeup can fall in between,
/// exactly like a kernel futex.
struct LoomFutex {
    lock: Mutex<()>,
    cv: Condvar,
}

impl LoomFutex {
    fn new() -> Self {
        LoomFutex {
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }
}

impl wait::Futex for LoomFutex {
    fn wait(&self, word: &AtomicU32, expected: u32) -> bool {
        let mut guard = self.lock.lock().unwrap();
        // The mutex orders this load after any `wake` that already ran (and thus after its
        // preceding bump of the word).
        while word.load(Ordering::Relaxed) == expected {
            guard = self.cv.wait(guard).unwrap();
        }
        // No deadline: loom reports a deadlock if nobody ever wakes us.
        true
    }

    fn wake(&self, _word: &AtomicU32) {
        let _guard = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// One buffer's memory plus its [`Buf`] view, a loom-tracked shadow of the data region and a
/// futex.
struct Fixture {
    buf: Buf,
    state: *mut BufState,
    padding: *mut [AtomicUsize],
    data: *mut [u8],
    /// Loom-tracked copy of the data region (shadow models only).
    shadow: Box<[AtomicU8]>,
    futex: LoomFutex,
}

// SAFETY: the raw pointers are owned allocations only freed in `Drop`; shared access goes through
// `Buf` (Send + Sync) and loom atomics.
unsafe impl Send for Fixture {}
// SAFETY: as above.
unsafe impl Sync for Fixture {}

impl Fixture {
    /// Allocates zeroed memory and runs `Buf::init` with `env` (in the model's main thread, which
    /// is the only thread at this point, so it has writer exclusivity).
    fn new<E: Env>(subbuf_size: usize, n_subbufs: usize, env: &E) -> Arc<Fixture> {
        let geo = Geometry::new(subbuf_size, n_subbufs).unwrap();
        let state = Box::into_raw(Box::new(BufState::new()));
        let padding: Box<[AtomicUsize]> = (0..n_subbufs).map(|_| AtomicUsize::new(0)).collect();
        let padding = Box::into_raw(padding);
        let data = Box::into_raw(vec![0u8; geo.size()].into_boxed_slice());
        let shadow = (0..geo.size()).map(|_| AtomicU8::new(0)).collect();
        // SAFETY: `state` points to a `BufState`, `padding` to `n_subbufs` atomics and `data` to
        // `geo.size()` bytes; all are freed only in `Drop` after the `Buf` is no longer used, and
        // there is a single `Buf` per memory.
        let buf = unsafe {
            Buf::from_raw(
                NonNull::new(state).unwrap(),
                NonNull::new(padding as *mut AtomicUsize).unwrap(),
                NonNull::new(data as *mut u8).unwrap(),
                geo,
                0,
            )
        };
        let fx = Fixture {
            buf,
            state,
            padding,
            data,
            shadow,
            futex: LoomFutex::new(),
        };
        // SAFETY: fresh all-zero state, no other thread exists yet.
        unsafe { fx.buf.init(env) }.unwrap();
        Arc::new(fx)
    }

    fn st(&self) -> &BufState {
        self.buf.state()
    }

    /// Offset of `p` in the data region.
    fn data_offset(&self, p: *const u8) -> usize {
        let off = p as usize - self.buf.data_ptr() as usize;
        assert!(off <= self.shadow.len());
        off
    }

    /// Plain write of message `v`. Caller: the single writer thread.
    fn write_plain<E: Env>(&self, env: &E, v: u8) -> bool {
        // SAFETY: each model has exactly one writer thread.
        unsafe { self.buf.write(env, &msg(v)) }
    }

    /// Write of message `v` that also stores every byte into the shadow (Relaxed), between
    /// `place` and the `Release` commit of `offset`, like the real copy.
    fn write_shadow<E: Env>(&self, env: &E, v: u8) -> bool {
        // SAFETY: each model has exactly one writer thread.
        unsafe {
            self.buf.write_with(env, msg_len(v), |slot| {
                let off = self.data_offset(slot.as_ptr());
                for (i, b) in slot.iter_mut().enumerate() {
                    *b = v;
                    self.shadow[off + i].store(v, Ordering::Relaxed);
                }
            })
        }
    }

    fn flush<E: Env>(&self, env: &E) {
        // SAFETY: each model has exactly one writer thread.
        unsafe { self.buf.flush(env) }
    }

    /// `Buf::read` into a fresh `SliceSink` of `cap` bytes. Caller: the single reader.
    fn read_plain(&self, cap: usize) -> Vec<u8> {
        let mut out = vec![0u8; cap];
        let mut sink = SliceSink::new(&mut out);
        // SAFETY: each model has at most one reader thread, and the main thread reads only
        // after joining it.
        let n = unsafe { self.buf.read(&mut sink) };
        assert_eq!(n, sink.filled());
        out.truncate(n);
        out
    }

    /// `Buf::read` into a [`ShadowSink`] of `cap` bytes. Caller: the single reader.
    fn read_shadow(&self, cap: usize) -> Vec<u8> {
        let mut sink = ShadowSink {
            fx: self,
            cap,
            out: Vec::new(),
            pending: Vec::new(),
        };
        // SAFETY: as in `read_plain`.
        let n = unsafe { self.buf.read(&mut sink) };
        assert_eq!(n, sink.out.len());
        sink.out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: allocated with `Box::into_raw` in `new` and freed only here; `self.buf` is not
        // used afterwards.
        unsafe {
            drop(Box::from_raw(self.state));
            drop(Box::from_raw(self.padding));
            drop(Box::from_raw(self.data));
        }
    }
}

/// A sink that copies from the loom-tracked shadow of the data region (see the module docs).
struct ShadowSink<'a> {
    fx: &'a Fixture,
    cap: usize,
    out: Vec<u8>,
    /// Bytes of the last `copy`, not yet committed.
    pending: Vec<u8>,
}

impl ReadSink for ShadowSink<'_> {
    fn room(&self) -> usize {
        self.cap - self.out.len()
    }

    unsafe fn copy(&mut self, src: *const u8, len: usize) -> bool {
        assert!(len <= self.room());
        let off = self.fx.data_offset(src);
        assert!(off + len <= self.fx.shadow.len());
        self.pending.clear();
        for i in 0..len {
            // One scheduling point per byte: the writer may run in the middle of the copy.
            self.pending
                .push(self.fx.shadow[off + i].load(Ordering::Relaxed));
        }
        true
    }

    fn commit(&mut self, len: usize) {
        assert_eq!(
            len,
            self.pending.len(),
            "commit of a length that was not copied"
        );
        self.out.extend_from_slice(&self.pending);
        self.pending.clear();
    }
}

/// `Env` that forwards to `C` and wakes waiting readers through [`wait::notify`] on the fixture's
/// futex (what a backend's `subbuf_produced` does).
struct WakeEnv<'a, C> {
    cb: C,
    futex: &'a LoomFutex,
}

impl<C: Callbacks> Env for WakeEnv<'_, C> {
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        self.cb.subbuf_start(ctx)
    }

    fn subbuf_produced(&self, buf: &Buf) {
        wait::notify(buf.state(), self.futex);
    }
}

// ---------------------------------------------------------------------------------------------
// Output checks
// ---------------------------------------------------------------------------------------------

/// The bytes of messages `vals`, in order.
fn stream(vals: &[u8]) -> Vec<u8> {
    vals.iter().flat_map(|&v| msg(v)).collect()
}

/// Overwrite mode: the output is a strictly increasing sequence of written messages, each one
/// whole and untorn. The only exception is a message cut short at `cuts` (the end of a `read`
/// whose sink was full): the writer may lap the rest before the next `read`. Returns the values of
/// the messages (or their beginnings) returned.
fn check_messages(got: &[u8], written: u8, cuts: &[usize]) -> Vec<u8> {
    let mut vals = Vec::new();
    let mut pos = 0;
    while pos < got.len() {
        let v = got[pos];
        assert!(
            (1..=written).contains(&v),
            "byte {v} belongs to no message written ({got:?})"
        );
        let run = got[pos..].iter().take_while(|&&b| b == v).count();
        let len = msg_len(v);
        assert!(
            run == len || (run < len && cuts.contains(&(pos + run))),
            "torn or partial message {v} at byte {pos} of {got:?} (sink-full cuts at {cuts:?})"
        );
        vals.push(v);
        pos += run;
    }
    assert!(
        vals.windows(2).all(|w| w[0] < w[1]),
        "messages duplicated or out of order: {vals:?}"
    );
    vals
}

// ---------------------------------------------------------------------------------------------
// Writer vs reader scenarios
// ---------------------------------------------------------------------------------------------

/// One writer thread against one reader thread on a buffer of `n_subbufs` sub-buffers of 4 bytes
/// (so every message after the first one in a sub-buffer switches sub-buffers).
#[derive(Clone, Copy, Debug)]
struct Scenario {
    n_subbufs: usize,
    /// `Overwrite` callbacks instead of the default no-overwrite `subbuf_start`.
    overwrite: bool,
    /// Messages `1..=pre` are written by the main thread before the other threads start
    /// (keeps the models small: only what follows runs concurrently).
    pre: u8,
    /// Messages `pre + 1..=pre + msgs` are written by the writer thread.
    msgs: u8,
    /// The writer thread flushes after its messages.
    flush: bool,
    /// Sink capacities of the reader thread's successive `read` calls.
    reads: &'static [usize],
    /// Write through the loom-tracked shadow and read with a [`ShadowSink`] (otherwise
    /// [`Buf::write`] and a [`SliceSink`]).
    shadow: bool,
}

fn callbacks(overwrite: bool) -> NoWake<'static, dyn Callbacks> {
    if overwrite {
        NoWake(&Overwrite)
    } else {
        NoWake(&NoOverwrite)
    }
}

impl Scenario {
    fn total(&self) -> u8 {
        self.pre + self.msgs
    }

    fn write(&self, fx: &Fixture, v: u8) -> bool {
        let env = callbacks(self.overwrite);
        if self.shadow {
            fx.write_shadow(&env, v)
        } else {
            fx.write_plain(&env, v)
        }
    }

    fn read(&self, fx: &Fixture, cap: usize) -> Vec<u8> {
        if self.shadow {
            fx.read_shadow(cap)
        } else {
            fx.read_plain(cap)
        }
    }

    /// Runs the scenario in one loom execution and checks the result.
    fn run(self) {
        let fx = Fixture::new(SUBBUF, self.n_subbufs, &callbacks(self.overwrite));
        let mut accepted = Vec::new();
        for v in 1..=self.pre {
            if self.write(&fx, v) {
                accepted.push(v);
            }
        }

        let writer = {
            let fx = fx.clone();
            thread::spawn(move || {
                let mut accepted = Vec::new();
                for v in self.pre + 1..=self.total() {
                    if self.write(&fx, v) {
                        accepted.push(v);
                    }
                }
                if self.flush {
                    fx.flush(&callbacks(self.overwrite));
                }
                accepted
            })
        };
        let reader = {
            let fx = fx.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                // Output positions where a `read` stopped because its sink was full.
                let mut cuts = Vec::new();
                for &cap in self.reads {
                    let part = self.read(&fx, cap);
                    assert!(part.len() <= cap);
                    got.extend(&part);
                    if part.len() == cap {
                        cuts.push(got.len());
                    }
                }
                (got, cuts)
            })
        };
        accepted.extend(writer.join().unwrap());
        let (mut got, cuts) = reader.join().unwrap();
        // Both threads joined: the main thread is now the (only) reader.
        got.extend(self.read(&fx, 64));
        assert_eq!(fx.buf.readable_bytes(), 0, "{self:?}");

        let stats = fx.buf.stats();
        let total = usize::from(self.total());
        if self.overwrite {
            assert_eq!(accepted.len(), total, "overwrite mode never drops");
            self.check_overwrite(&got, &cuts, &stats);
        } else {
            // Exactly the accepted messages, in order: no duplicate, no skip, no torn message.
            assert_eq!(
                got,
                stream(&accepted),
                "reader output != accepted messages {accepted:?} in {self:?}"
            );
            assert_eq!(stats.dropped_msgs, total - accepted.len());
            let dropped_bytes: usize = (1..=self.total())
                .filter(|v| !accepted.contains(v))
                .map(msg_len)
                .sum();
            assert_eq!(stats.dropped_bytes, dropped_bytes);
            assert_eq!(stats.lapped_subbufs, 0, "lap in no-overwrite mode");
            assert_eq!(stats.torn_reads, 0, "torn copy in no-overwrite mode");
        }
    }

    /// Overwrite mode: whatever was returned is whole, untorn, written, in order; the newest
    /// message survives; unread messages are accounted for as lapped sub-buffers.
    fn check_overwrite(&self, got: &[u8], cuts: &[usize], stats: &BufStats) {
        let total = self.total();
        let vals = check_messages(got, total, cuts);
        assert_eq!(vals.last(), Some(&total), "newest message lost: {vals:?}");
        // Message k lives in sub-buffer k - 1: one switch per message after the first, plus the
        // flush.
        let produced = usize::from(total) - 1 + usize::from(self.flush);
        assert_eq!(stats.subbufs_produced, produced);
        assert_eq!(stats.subbufs_consumed, produced);
        assert_eq!(stats.dropped_msgs, 0);
        let unread = usize::from(total) - vals.len();
        assert!(
            stats.lapped_subbufs >= unread,
            "{unread} messages unread but only {} sub-buffers lapped ({vals:?})",
            stats.lapped_subbufs
        );
        assert!(
            stats.lapped_subbufs < usize::from(total),
            "lapped {} sub-buffers of {total} messages although the newest was read",
            stats.lapped_subbufs
        );
        // A discarded copy means the writer was a whole ring ahead: a lap follows.
        assert!(
            stats.torn_reads <= stats.lapped_subbufs,
            "torn_reads {} > lapped_subbufs {}",
            stats.torn_reads,
            stats.lapped_subbufs
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Seqlock snapshot (no-overwrite mode)
// ---------------------------------------------------------------------------------------------

/// No-overwrite defaults: 2 sub-buffers, message 1 already written, plain memory.
const NO_OVERWRITE: Scenario = Scenario {
    n_subbufs: 2,
    overwrite: false,
    pre: 1,
    msgs: 1,
    flush: false,
    reads: &[64],
    shadow: false,
};

/// One switch (message 2 does not fit after message 1) against one `read`.
#[test]
fn seqlock_one_switch() {
    model(3, || NO_OVERWRITE.run());
}

/// Two switches (message 2, then the flush) against one `read`, with loom-tracked data: a
/// snapshot can overlap either switch (a torn pair could combine values of both), and the bytes
/// below a snapshot's `offset` (and of complete sub-buffers below its `produced`) must be visible
/// to the reader.
#[test]
fn seqlock_switch_and_flush() {
    model(2, || {
        Scenario {
            flush: true,
            shadow: true,
            ..NO_OVERWRITE
        }
        .run()
    });
}

/// The whole sequence in the writer thread, read through a `SliceSink`: messages 1 to 3 and a
/// flush (three switch attempts; message 3 is refused unless the reader consumed sub-buffer 0
/// in time). Preemption bound 1 keeps it affordable.
#[test]
fn seqlock_three_writes_and_flush() {
    model(1, || {
        Scenario {
            pre: 0,
            msgs: 3,
            flush: true,
            ..NO_OVERWRITE
        }
        .run()
    });
}

/// Full buffer (messages 1 and 2 written): message 3's switch is refused (`offset` becomes
/// `subbuf_size + 1`) or, if the reader consumed sub-buffer 0 in time, accepted; two reads.
#[test]
fn seqlock_refused_switch() {
    model(3, || {
        Scenario {
            pre: 2,
            reads: &[64, 64],
            ..NO_OVERWRITE
        }
        .run()
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Overwrite mode: laps and torn copies (all with loom-tracked data)
// ---------------------------------------------------------------------------------------------

/// Overwrite defaults: 2 sub-buffers holding messages 1 and 2; the writer thread's message 3
/// reuses the slot of message 1, possibly while the reader copies it.
const OVERWRITE: Scenario = Scenario {
    n_subbufs: 2,
    overwrite: true,
    pre: 2,
    msgs: 1,
    flush: false,
    reads: &[64],
    shadow: true,
};

#[test]
fn overwrite_reuse_slot() {
    model(3, || OVERWRITE.run());
}

/// As [`overwrite_reuse_slot`], the reader first taking a single byte (it stops inside message 1,
/// then resumes after the writer may have lapped it).
#[test]
fn overwrite_reuse_slot_partial_read() {
    model(2, || {
        Scenario {
            reads: &[1, 64],
            ..OVERWRITE
        }
        .run()
    });
}

/// Reuse followed by a flush (two switches while the reader copies).
#[test]
fn overwrite_reuse_slot_and_flush() {
    model(1, || {
        Scenario {
            flush: true,
            ..OVERWRITE
        }
        .run()
    });
}

/// Message 1 is the current (incomplete) sub-buffer: the reader may return it from there, then
/// the writer completes it (message 2) and reuses its slot (message 3).
#[test]
fn overwrite_lap_after_partial_subbuf() {
    model(1, || {
        Scenario {
            pre: 1,
            msgs: 2,
            ..OVERWRITE
        }
        .run()
    });
}

// ---------------------------------------------------------------------------------------------
// 3. Consumption vs buf_full (no-overwrite slot reuse, loom-tracked data)
// ---------------------------------------------------------------------------------------------

/// One sub-buffer holding message 1: message 2 is refused, message 3 reuses the slot iff the
/// reader consumed it. The reader first takes one byte, so it stops in the middle of the
/// sub-buffer (`bytes_consumed`); the writer must not reuse the slot before the rest is copied.
#[test]
fn consume_vs_buf_full_one_subbuf() {
    model(2, || {
        Scenario {
            n_subbufs: 1,
            pre: 1,
            msgs: 2,
            reads: &[1, 64],
            shadow: true,
            ..NO_OVERWRITE
        }
        .run()
    });
}

/// Two full sub-buffers: message 3 reuses slot 0 iff the reader consumed sub-buffer 0, which it
/// copies one byte at a time first.
#[test]
fn consume_vs_buf_full_two_subbufs() {
    model(3, || {
        Scenario {
            pre: 2,
            reads: &[1, 64],
            shadow: true,
            ..NO_OVERWRITE
        }
        .run()
    });
}

/// The mmap consumer: a reader that copies complete sub-buffers straight from the mapping
/// (readiness from `stats()`, whose `subbufs_produced` comes from the seqlock snapshot; length
/// from `padding_of`) and hands them back with `subbufs_consumed(1)` (relay's
/// `relay_subbufs_consumed`), racing the writer's `buf_full` on a single sub-buffer: message 2 is
/// refused, message 3 reuses the slot iff the consumer released it in time.
fn mmap_model(rounds: usize, msgs: u8) {
    let env = NoWake(&NoOverwrite);
    let fx = Fixture::new(SUBBUF, 1, &env);
    assert!(fx.write_shadow(&env, 1));
    let n = fx.buf.geometry().n_subbufs();

    let writer = {
        let fx = fx.clone();
        thread::spawn(move || {
            let env = NoWake(&NoOverwrite);
            let mut accepted = vec![1];
            for v in 2..=msgs {
                if fx.write_shadow(&env, v) {
                    accepted.push(v);
                }
            }
            fx.flush(&env);
            accepted
        })
    };
    let reader = {
        let fx = fx.clone();
        thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..rounds {
                let stats = fx.buf.stats();
                if stats.subbufs_produced == stats.subbufs_consumed {
                    continue;
                }
                let slot = stats.subbufs_consumed % n;
                let len = SUBBUF - fx.buf.padding_of(slot).unwrap();
                for i in 0..len {
                    got.push(fx.shadow[slot * SUBBUF + i].load(Ordering::Relaxed));
                }
                // SAFETY: the only reader thread.
                unsafe { fx.buf.subbufs_consumed(1) };
            }
            got
        })
    };
    let accepted = writer.join().unwrap();
    let mut got = reader.join().unwrap();
    got.extend(fx.read_shadow(64));
    assert_eq!(got, stream(&accepted), "accepted {accepted:?}");
    let stats = fx.buf.stats();
    assert_eq!(stats.dropped_msgs, usize::from(msgs) - accepted.len());
}

#[test]
fn consume_mmap_subbufs_consumed_vs_buf_full() {
    model(2, || mmap_model(1, 3));
}

// ---------------------------------------------------------------------------------------------
// 4. Wakeups
// ---------------------------------------------------------------------------------------------

/// A thread's handle on the fixture in the wakeup models. Loom reports a lost wakeup by panicking
/// (deadlock) in a blocked thread; dropping a loom `Arc` while that panic unwinds panics again
/// and aborts the whole test binary instead of failing one test, so on that path the handle is
/// leaked.
struct Handle(ManuallyDrop<Arc<Fixture>>);

impl Handle {
    fn new(fx: Arc<Fixture>) -> Self {
        Handle(ManuallyDrop::new(fx))
    }

    /// A handle for another thread.
    fn share(&self) -> Handle {
        Handle::new(Arc::clone(&self.0))
    }
}

impl Deref for Handle {
    type Target = Fixture;

    fn deref(&self) -> &Fixture {
        &self.0
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: dropped exactly once, here; `self.0` is not used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.0) };
        }
    }
}

/// Blocks (no deadline) until the buffer is not `Poll::Empty`, through the real wait protocol.
fn wait_readable(fx: &Fixture) -> Poll {
    assert!(wait::wait_until(fx.st(), &fx.futex, || fx.buf.poll() != Poll::Empty));
    fx.buf.poll()
}

/// A writer produces a sub-buffer (write + flush; `subbuf_produced` calls `wait::notify`) while a
/// reader sleeps in `wait_until` with no deadline: every interleaving must wake the reader (a
/// lost wakeup is a loom deadlock).
#[test]
fn wakeup_no_lost_wakeup() {
    model(3, || {
        let fx = Handle::new(Fixture::new(SUBBUF, 2, &NoWake(&NoOverwrite)));
        let writer = {
            let fx = fx.share();
            thread::spawn(move || {
                let env = WakeEnv {
                    cb: NoOverwrite,
                    futex: &fx.futex,
                };
                assert!(fx.write_plain(&env, 1));
                fx.flush(&env);
            })
        };
        let reader = {
            let fx = fx.share();
            thread::spawn(move || {
                assert_eq!(wait_readable(&fx), Poll::Readable);
                fx.read_plain(64)
            })
        };
        writer.join().unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got, stream(&[1]));
        assert_eq!(fx.st().waiters().load(Ordering::Relaxed), 0);
    });
}

/// Two sub-buffers produced one after the other (by a write that switches, then a flush) and a
/// reader that waits, reads, and waits again if it still misses data: the waiter count and the
/// wake word must re-arm.
#[test]
fn wakeup_twice() {
    model(1, || {
        let fx = Handle::new(Fixture::new(SUBBUF, 2, &NoWake(&NoOverwrite)));
        assert!(fx.write_plain(&NoWake(&NoOverwrite), 1));
        let writer = {
            let fx = fx.share();
            thread::spawn(move || {
                let env = WakeEnv {
                    cb: NoOverwrite,
                    futex: &fx.futex,
                };
                assert!(fx.write_plain(&env, 2)); // switches: sub-buffer 0 produced
                fx.flush(&env); // sub-buffer 1 produced
            })
        };
        let reader = {
            let fx = fx.share();
            thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < stream(&[1, 2]).len() {
                    assert_eq!(wait_readable(&fx), Poll::Readable);
                    got.extend(fx.read_plain(64));
                }
                got
            })
        };
        writer.join().unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got, stream(&[1, 2]));
        assert_eq!(fx.st().waiters().load(Ordering::Relaxed), 0);
    });
}

/// Closing (`finalize` + `wake_all`) wakes a reader sleeping on an empty buffer.
#[test]
fn wakeup_close_wakes_waiter() {
    model(3, || {
        let fx = Handle::new(Fixture::new(SUBBUF, 2, &NoWake(&NoOverwrite)));
        let closer = {
            let fx = fx.share();
            thread::spawn(move || {
                fx.buf.finalize();
                wait::wake_all(fx.st(), &fx.futex);
            })
        };
        let reader = {
            let fx = fx.share();
            thread::spawn(move || wait_readable(&fx))
        };
        closer.join().unwrap();
        assert_eq!(reader.join().unwrap(), Poll::Finalized);
    });
}

/// A writer producing and a closer closing while a reader waits: the reader wakes in every
/// interleaving and sees either the data or the close, and all data is still readable.
#[test]
fn wakeup_produce_and_close() {
    model(2, || {
        let fx = Handle::new(Fixture::new(SUBBUF, 2, &NoWake(&NoOverwrite)));
        let writer = {
            let fx = fx.share();
            thread::spawn(move || {
                let env = WakeEnv {
                    cb: NoOverwrite,
                    futex: &fx.futex,
                };
                assert!(fx.write_plain(&env, 1));
                fx.flush(&env);
            })
        };
        let closer = {
            let fx = fx.share();
            thread::spawn(move || {
                fx.buf.finalize();
                wait::wake_all(fx.st(), &fx.futex);
            })
        };
        let reader = {
            let fx = fx.share();
            thread::spawn(move || {
                let p = wait_readable(&fx);
                assert_ne!(p, Poll::Empty);
                fx.read_plain(64)
            })
        };
        writer.join().unwrap();
        closer.join().unwrap();
        let mut got = reader.join().unwrap();
        got.extend(fx.read_plain(64));
        assert_eq!(got, stream(&[1]));
    });
}

/// Control for the futex model: an `Env` that never notifies must be caught as a lost wakeup
/// (deadlock) in some interleaving, which shows that the models above would catch one.
#[test]
#[should_panic(expected = "deadlock")]
fn wakeup_control_missing_notify_deadlocks() {
    model(2, || {
        let fx = Handle::new(Fixture::new(SUBBUF, 2, &NoWake(&NoOverwrite)));
        let writer = {
            let fx = fx.share();
            thread::spawn(move || {
                let env = NoWake(&NoOverwrite);
                assert!(fx.write_plain(&env, 1));
                fx.flush(&env);
            })
        };
        let reader = {
            let fx = fx.share();
            thread::spawn(move || wait_readable(&fx))
        };
        writer.join().unwrap();
        reader.join().unwrap();
    });
}
