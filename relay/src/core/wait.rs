//! The reader wakeup protocol, independent of how a backend sleeps.
//!
//! Writers must stay cheap and must never block, so a writer only learns whether somebody waits:
//!
//! * writer (in [`super::Env::subbuf_produced`], after `subbufs_produced` was published and a
//!   `SeqCst` fence — `switch_subbuf` issues both): if `waiters != 0`, bump `wake_seq` and wake
//!   the futex ([`notify`]);
//! * reader ([`wait_until`]): `waiters += 1`, `SeqCst` fence, read `wake_seq`, re-check readiness,
//!   sleep on `wake_seq` only if it still holds the value read, `waiters -= 1`.
//!
//! The two fences order "publish produced → read waiters" against "announce waiter → read
//! produced" (Dekker): either the writer sees the waiter and bumps `wake_seq` (so the sleep
//! returns at once or is woken), or the reader's re-check sees the new sub-buffer. Closing bumps
//! and wakes unconditionally ([`wake_all`]). Modelled with loom in `relay/tests/loom.rs`.

#[cfg(not(loom))]
use core::sync::atomic::{fence, AtomicU32, Ordering};
#[cfg(loom)]
use loom::sync::atomic::{fence, AtomicU32, Ordering};

use super::BufState;

/// How a backend sleeps on and wakes a 32-bit word (a futex in user space).
pub trait Futex {
    /// Sleeps while `*word == expected`, at most until the backend-defined deadline. Returns
    /// `false` if the deadline passed. Spurious returns are allowed.
    fn wait(&self, word: &AtomicU32, expected: u32) -> bool;
    /// Wakes every sleeper on `word`.
    fn wake(&self, word: &AtomicU32);
}

/// Writer side: wakes readers if any are waiting. Call after publishing `subbufs_produced`
/// followed by a `SeqCst` fence (as `switch_subbuf` does).
#[inline]
pub fn notify<F: Futex + ?Sized>(st: &BufState, futex: &F) {
    if st.s.waiters.load(Ordering::Relaxed) != 0 {
        wake_all(st, futex);
    }
}

/// Bumps the wake word and wakes every sleeper (close, reset).
pub fn wake_all<F: Futex + ?Sized>(st: &BufState, futex: &F) {
    st.s.wake_seq.fetch_add(1, Ordering::Release);
    futex.wake(&st.s.wake_seq);
}

/// Reader side: returns as soon as `ready()` holds, or `false` once the futex reports the
/// deadline passed with `ready()` still false.
pub fn wait_until<F: Futex + ?Sized>(st: &BufState, futex: &F, ready: impl Fn() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        st.s.waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let seq = st.s.wake_seq.load(Ordering::Acquire);
        let in_time = ready() || futex.wait(&st.s.wake_seq, seq);
        st.s.waiters.fetch_sub(1, Ordering::Relaxed);
        if !in_time {
            return ready();
        }
    }
}
