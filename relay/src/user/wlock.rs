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
//! A writer that has to wait spins briefly, then yields, then sleeps with growing pauses
//! ([`Backoff`]): a holder that is descheduled or stopped costs its waiters no CPU.
//!
//! The module is public so that clients building their own per-CPU exclusivity on top of a
//! channel (klog's emit slots, which call the channel's `*_unlocked` methods) share the same
//! per-thread record — a context nested inside *any* of these locks never waits for another.
//!
//! # Unrecorded holds
//!
//! Recording costs two thread-local stores per hold (set, then restore), measurable on a hot
//! path of a few nanoseconds. A client whose lock words can be enumerated (klog's emit slots, a
//! fixed array) takes them with [`acquire_unrecorded`] instead: one compare-and-swap carrying the
//! thread's token, nothing recorded. Being nested matters only to a context that would wait,
//! i.e. after its compare-and-swap failed, so that is where it is found out: every waiting path
//! ([`acquire`], [`acquire_unrecorded`]) then also asks the client's registered
//! [`set_unrecorded_holds`] function whether one of its words carries the thread's token. An
//! outer hold is visible to a nested context as soon as its compare-and-swap succeeded (same
//! thread); before that the outer context holds nothing, so the nested one may wait.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

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
    /// This context interrupted its own thread while that thread held the lock `held` (null
    /// when the hold is an unrecorded one, see [`acquire_unrecorded`]); it must not wait for any
    /// lock.
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
    if word
        .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        if holds_unrecorded(token) {
            t.held.set(prev);
            return Acquired::Nested(std::ptr::null());
        }
        wait_for(word, token);
    }
    Acquired::Held(WriterGuard {
        word,
        prev: Some((t, prev)),
    })
}

/// The registered tests for unrecorded holds, one per client (see the module documentation).
/// `OnceLock`s: set once, read without locks (a nested context may be a signal handler).
static UNRECORDED_HOLDS: [OnceLock<HoldsFn>; 4] = [const { OnceLock::new() }; 4];

/// A client's test: does one of its unrecorded lock words carry this thread token?
type HoldsFn = fn(usize) -> bool;

/// Registers `holds`, which says whether one of the lock words its caller takes with
/// [`acquire_unrecorded`] carries the thread token it is given. Registering the same function
/// again is a no-op; `false` if four other clients registered first (then the caller must not
/// use [`acquire_unrecorded`]).
pub fn set_unrecorded_holds(holds: fn(usize) -> bool) -> bool {
    UNRECORDED_HOLDS
        .iter()
        .any(|slot| std::ptr::fn_addr_eq(*slot.get_or_init(|| holds), holds))
}

/// Whether the thread with `token` holds an unrecorded lock word of any client.
fn holds_unrecorded(token: usize) -> bool {
    UNRECORDED_HOLDS
        .iter()
        .map_while(OnceLock::get)
        .any(|f| f(token))
}

/// A lock word held without a thread-local record ([`acquire_unrecorded`]); dropping it
/// releases the word (one store).
pub struct UnrecordedGuard<'a> {
    word: &'a AtomicUsize,
}

impl Drop for UnrecordedGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.word.store(0, Ordering::Release);
    }
}

/// Takes `word` like [`acquire`] without recording the hold in the thread's `held`: the fast
/// path is one compare-and-swap, inline; waiting (or finding out that the context is nested)
/// is one cold call. `None` is [`Acquired::Nested`]: this context interrupted its own thread's
/// hold (of a recorded or an unrecorded lock) and must not wait for any lock. The caller's lock
/// words must be visible to the function it registered with [`set_unrecorded_holds`], or a
/// context nested inside such a hold could wait for a lock and deadlock.
///
/// (An `Option` of one pointer rather than [`Acquired`]: it travels in a register, and the
/// caller's test of it folds into the fast path's.)
#[inline(always)]
pub fn acquire_unrecorded(word: &AtomicUsize) -> Option<UnrecordedGuard<'_>> {
    try_acquire_unrecorded(word).or_else(|| acquire_unrecorded_contended(word))
}

/// [`acquire_unrecorded`]'s fast path: the compare-and-swap, `None` if `word` is taken.
#[inline(always)]
fn try_acquire_unrecorded(word: &AtomicUsize) -> Option<UnrecordedGuard<'_>> {
    let token = thread_state() as *const ThreadState as usize;
    // Not `then_some`: a guard built eagerly and dropped on failure would release the owner's
    // word.
    word.compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
        .then(|| UnrecordedGuard { word })
}

/// [`acquire_unrecorded`] after a failed compare-and-swap: nested contexts return, others wait.
#[cold]
#[inline(never)]
fn acquire_unrecorded_contended(word: &AtomicUsize) -> Option<UnrecordedGuard<'_>> {
    let t = thread_state();
    let token = t as *const ThreadState as usize;
    if holds(t, t.held.get()) || holds_unrecorded(token) {
        return None;
    }
    wait_for(word, token);
    Some(UnrecordedGuard { word })
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
    let mut backoff = Backoff::new();
    loop {
        if word.load(Ordering::Relaxed) == 0
            && word
                .compare_exchange_weak(0, token, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        backoff.wait();
    }
}

/// How a context waits for a lock whose holder does not release it soon: spin briefly (the
/// holder is running: a write takes nanoseconds), yield a few times (it was preempted), then
/// sleep with pauses doubling from 1 µs to [`Backoff::MAX_SLEEP`] (it is descheduled for
/// long, stopped by a signal or a debugger, or its process is frozen). A waiter thus burns no
/// CPU while the holder cannot run — one short wakeup per 4 ms — and the
/// release stays a plain store: nobody has to be woken, so the uncontended path costs nothing.
/// A holder that resumes is noticed within one pause.
#[derive(Debug, Default)]
pub struct Backoff {
    rounds: u32,
}

impl Backoff {
    const SPINS: u32 = 64;
    const YIELDS: u32 = 16;
    /// The longest pause.
    pub const MAX_SLEEP: std::time::Duration = std::time::Duration::from_millis(4);

    /// A fresh wait.
    pub const fn new() -> Self {
        Backoff { rounds: 0 }
    }

    /// Waits a little longer than the previous call (see the type's documentation). Safe in a
    /// signal handler (`sched_yield`, `nanosleep`).
    pub fn wait(&mut self) {
        self.rounds = self.rounds.saturating_add(1);
        let r = self.rounds;
        if r <= Self::SPINS {
            std::hint::spin_loop();
        } else if r <= Self::SPINS + Self::YIELDS {
            std::thread::yield_now();
        } else {
            let exp = (r - Self::SPINS - Self::YIELDS).min(12);
            let pause = std::time::Duration::from_micros(1 << exp).min(Self::MAX_SLEEP);
            std::thread::sleep(pause);
        }
    }

    /// How many times [`Backoff::wait`] ran.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lock words of a test client that takes them unrecorded.
    static WORDS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

    fn words_held_by(token: usize) -> bool {
        WORDS.iter().any(|w| w.load(Ordering::Relaxed) == token)
    }

    #[test]
    fn nesting_inside_an_unrecorded_hold_is_found_before_waiting() {
        assert!(set_unrecorded_holds(words_held_by));
        assert!(set_unrecorded_holds(words_held_by), "the same client again");
        let outer = acquire_unrecorded(&WORDS[0]);
        let Some(outer) = outer else {
            panic!("a free word is taken")
        };
        // A failed attempt leaves the owner's hold alone.
        assert!(try_acquire_unrecorded(&WORDS[0]).is_none());
        assert_ne!(WORDS[0].load(Ordering::Relaxed), 0, "still held");
        // What a signal handler interrupting the hold would do, on both waiting paths: the
        // same word again (taken, so it would wait forever) must report nesting.
        assert!(acquire_unrecorded(&WORDS[0]).is_none());
        assert!(matches!(acquire(&WORDS[0]), Acquired::Nested(p) if p.is_null()));
        // The recorded path restored the thread's record: a free word is still taken normally
        // (nesting only matters to a context that would wait).
        let Acquired::Held(inner) = acquire(&WORDS[1]) else {
            panic!("a free word is taken while nested")
        };
        drop(inner);
        drop(outer);
        assert_eq!(WORDS[0].load(Ordering::Relaxed), 0, "released");
        // Another thread holding the word is waited for, not reported as nesting.
        let Some(held) = acquire_unrecorded(&WORDS[0]) else {
            panic!("free")
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| acquire_unrecorded(&WORDS[0]).is_some());
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(held);
            assert!(waiter.join().unwrap(), "the other thread waited and got it");
        });
    }

    #[test]
    fn the_registry_takes_four_clients() {
        // Either test may register `words_held_by` first; it takes one place, three distinct
        // functions the others (distinct bodies: identical ones could share an address), and a
        // fifth is refused.
        assert!(set_unrecorded_holds(words_held_by));
        let fns: [fn(usize) -> bool; 3] = [
            |t| t == usize::MAX,
            |t| t == usize::MAX - 1,
            |t| t == usize::MAX - 2,
        ];
        for f in fns {
            assert!(set_unrecorded_holds(f));
            assert!(set_unrecorded_holds(f), "the same client again");
        }
        assert!(!set_unrecorded_holds(|t| t == usize::MAX - 3));
        assert!(
            set_unrecorded_holds(words_held_by),
            "registered ones stay accepted"
        );
    }
}
