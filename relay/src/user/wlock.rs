//! The per-buffer writer lock of the user-space backend (the stand-in for `local_irq_save`).
//!
//! The lock word lives in the buffer's shared control block: 0 when free, otherwise the owner's
//! token (the address of this thread's [`ThreadState`], unique among live threads).
//!
//! # Deadlock freedom with signal handlers
//!
//! A context that holds no writer lock may wait for one: its owner is another thread, which is
//! running or preempted and never waits itself (see below), so it will release it.
//!
//! A context nested inside a lock holder on the same thread (a signal handler that interrupted
//! a write) must never wait: the owner it would wait for may be a thread whose own handler waits
//! for us (two threads that migrated while holding each other's CPU buffer), or its own
//! interrupted context. Every thread therefore records the lock it holds in `held` (a stack of
//! one, saved and restored around each hold); a writer first checks whether `held` is a lock
//! whose word carries its own token — only then is it nested (the word is authoritative: the
//! outer context may have set `held` but not yet won the lock, or be spinning for it). Nested
//! writers use [`Acquired::Nested`] paths that only try-lock.
//!
//! The module is public so that clients building their own per-CPU exclusivity on top of a
//! channel (klog's emit slots, which call the channel's `*_unlocked` methods) share the same
//! per-thread record — a context nested inside *any* of these locks never waits for another.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Per-thread writer state (its address is the thread's lock token).
pub struct ThreadState {
    /// The lock word this thread holds or is acquiring, null if none.
    held: Cell<*const AtomicUsize>,
}

thread_local! {
    static THREAD: ThreadState = const {
        ThreadState {
            held: Cell::new(std::ptr::null()),
        }
    };
}

/// Token of `__write`, which does not track what it holds (it must not nest).
pub const ANON_TOKEN: usize = 1;

/// A held writer lock; releasing it restores the thread's previous `held`.
pub struct WriterGuard<'a> {
    word: &'a AtomicUsize,
    /// The thread's record and what it held before (`None` for `__write`'s untracked lock).
    prev: Option<(&'a ThreadState, *const AtomicUsize)>,
}

impl Drop for WriterGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.word.store(0, Ordering::Release);
        if let Some((t, prev)) = self.prev {
            t.held.set(prev);
        }
    }
}

/// Outcome of [`acquire`].
pub enum Acquired<'a> {
    /// The lock is ours until the guard is dropped.
    Held(WriterGuard<'a>),
    /// This context interrupted its own thread while that thread held the lock `held`; it must
    /// not wait for any lock.
    Nested(*const AtomicUsize),
}

/// This thread's record, for the lifetime of a guard. One thread-local access per lock: the
/// token is the record's address, and the guard restores `held` through the reference.
#[inline(always)]
fn thread_state<'a>() -> &'a ThreadState {
    // SAFETY: `ThreadState` has no destructor and lives as long as the thread; the reference is
    // only kept inside a guard, which is dropped on the same thread before it exits (guards are
    // `!Send` because `ThreadState` holds a `Cell`).
    THREAD.with(|t| unsafe { &*(t as *const ThreadState) })
}

/// Whether `t` holds `held` (non-null and carrying `t`'s token).
#[inline(always)]
fn holds(t: &ThreadState, held: *const AtomicUsize) -> bool {
    // SAFETY: a non-null `held` points to the lock word of a buffer whose channel is borrowed
    // by an enclosing frame of this thread (the outer writer), so it is alive.
    !held.is_null() && unsafe { (*held).load(Ordering::Relaxed) } == t as *const _ as usize
}

/// Takes `word` for the calling context, waiting for another thread if necessary — unless the
/// context is nested inside its own thread's hold, which it reports instead.
#[inline]
pub fn acquire(word: &AtomicUsize) -> Acquired<'_> {
    let t = thread_state();
    let prev = t.held.get();
    if holds(t, prev) {
        return Acquired::Nested(prev);
    }
    // Record first: a signal arriving right after the compare-and-swap must see the hold.
    t.held.set(word);
    let token = t as *const ThreadState as usize;
    let guard = WriterGuard {
        word,
        prev: Some((t, prev)),
    };
    if word
        .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        wait_for(word, token);
    }
    Acquired::Held(guard)
}

/// Takes `word` only if it is free right now (for nested contexts, which must not wait).
pub fn try_acquire(word: &AtomicUsize) -> Option<WriterGuard<'_>> {
    let t = thread_state();
    let prev = t.held.get();
    t.held.set(word);
    if word
        .compare_exchange(
            0,
            t as *const ThreadState as usize,
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .is_ok()
    {
        Some(WriterGuard {
            word,
            prev: Some((t, prev)),
        })
    } else {
        t.held.set(prev);
        None
    }
}

/// `__write`'s lock: no tracking, no nesting support.
#[inline]
pub fn acquire_anon(word: &AtomicUsize) -> WriterGuard<'_> {
    if word
        .compare_exchange(0, ANON_TOKEN, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        wait_for(word, ANON_TOKEN);
    }
    WriterGuard { word, prev: None }
}

#[cold]
fn wait_for(word: &AtomicUsize, token: usize) {
    let mut spins = 0u32;
    loop {
        if word.load(Ordering::Relaxed) == 0
            && word
                .compare_exchange_weak(0, token, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            // The owner may be preempted: let it run.
            std::thread::yield_now();
        }
    }
}
