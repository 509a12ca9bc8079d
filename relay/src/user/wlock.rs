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
    prev: Option<*const AtomicUsize>,
}

impl Drop for WriterGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.word.store(0, Ordering::Release);
        if let Some(prev) = self.prev {
            // `ThreadState` has no destructor, so the thread-local is always accessible.
            THREAD.with(|t| t.held.set(prev));
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

/// This thread's token and the lock it holds, if the word still carries the token.
#[inline(always)]
fn thread() -> (usize, *const AtomicUsize, bool) {
    THREAD.with(|t| {
        let token = t as *const ThreadState as usize;
        let held = t.held.get();
        // SAFETY: a non-null `held` points to the lock word of a buffer whose channel is borrowed
        // by an enclosing frame of this thread (the outer writer), so it is alive.
        let nested = !held.is_null() && unsafe { (*held).load(Ordering::Relaxed) } == token;
        (token, held, nested)
    })
}

#[inline(always)]
fn set_held(word: *const AtomicUsize) {
    THREAD.with(|t| t.held.set(word));
}

/// Takes `word` for the calling context, waiting for another thread if necessary — unless the
/// context is nested inside its own thread's hold, which it reports instead.
#[inline]
pub fn acquire(word: &AtomicUsize) -> Acquired<'_> {
    let (token, prev, nested) = thread();
    if nested {
        return Acquired::Nested(prev);
    }
    // Record first: a signal arriving right after the compare-and-swap must see the hold.
    set_held(word);
    let guard = WriterGuard {
        word,
        prev: Some(prev),
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
    let (token, prev, _) = thread();
    set_held(word);
    if word
        .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        Some(WriterGuard {
            word,
            prev: Some(prev),
        })
    } else {
        set_held(prev);
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
