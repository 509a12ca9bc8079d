//! Handler registration and event dispatch (user space).
//!
//! # Emit slots and the grace period
//!
//! Events are serialised per *emit slot* (one per CPU, or a single one when the handler has one
//! global buffer): an emitter takes its slot's lock (relay's writer lock: one compare-and-swap),
//! loads the handler, lets it write, and releases the slot. The handler writes its relay buffer
//! number `slot` with the channel's unlocked methods, so an event costs one lock in total.
//!
//! The slot lock is also the read side of an RCU-like scheme: `unregister` unpublishes the
//! handler and then takes and releases every slot, which waits for every emitter that could
//! have loaded the old pointer. After it returns no thread is inside the old handler, and the
//! handler is handed back to the caller (to be closed or dropped).
//!
//! A signal handler that interrupts an emit on its own thread never waits (see
//! `relay::user::wlock`): it takes another slot that is free right now, or the event is counted
//! as lost on its slot. Emitters take their slot with `wlock::acquire_unrecorded` — one
//! compare-and-swap, no thread-local record — so a context finds out whether it interrupted its
//! own thread's emit only when its compare-and-swap failed, by scanning the slots for its thread's
//! token ([`held_by_thread`], registered with `wlock::set_unrecorded_holds`).
//!
//! # fork()
//!
//! A forked child starts with klog disabled ([`after_fork_in_child`]): it never waits for an
//! emit slot a parent thread held at the fork, and never writes into the parent's buffers.
//! `klog!` costs one load there, as with no handler; registering a new handler (on buffers of
//! its own, e.g. a `RelayHandler` in another directory) enables it again.

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

use relay::user::sys::current_cpu;
use relay::user::wlock::{self, Acquired};

use std::any::Any;

use crate::arg::{Args, DynArgs};
use crate::callsite::{self, Callsite};
use crate::relay_handler::FastSlot;
use crate::RelayHandler;

/// Where events go: implemented by [`crate::RelayHandler`]; other handlers are possible.
pub trait Handler: Send + Sync + Any {
    /// Number of emit slots the handler serves (its relay buffers); 1 for a global buffer.
    fn slots(&self) -> usize;
    /// Records an event.
    ///
    /// # Safety
    ///
    /// The caller holds emit slot `slot` exclusively, as the dispatcher does: no other context
    /// runs `event`, `raw` or `flush` for `slot` on this handler until this returns (the
    /// relay handler writes buffer `slot` without a lock of its own).
    unsafe fn event(&self, slot: usize, cs: &'static Callsite, args: &dyn DynArgs);
    /// Records a `klog_raw!` record.
    ///
    /// # Safety
    ///
    /// As for [`Handler::event`].
    unsafe fn raw(&self, slot: usize, cs: &'static Callsite, bytes: &[u8]);
    /// An event for `slot` could not be recorded (a nested context found no free slot).
    fn lost(&self, slot: usize);
    /// Flushes the buffer of `slot`.
    ///
    /// # Safety
    ///
    /// As for [`Handler::event`].
    unsafe fn flush(&self, slot: usize);
}

/// Registration errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// Only one handler at a time; unregister the current one first.
    AlreadyRegistered,
    /// The handler reported zero slots.
    NoSlots,
    /// relay's writer-lock registry has no room for klog's emit slots (four other clients took
    /// their locks unrecorded, see `relay::user::wlock::set_unrecorded_holds`).
    LockRegistryFull,
}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegisterError::AlreadyRegistered => f.write_str("a klog handler is already registered"),
            RegisterError::NoSlots => f.write_str("the handler has no emit slots"),
            RegisterError::LockRegistryFull => {
                f.write_str("relay's writer-lock registry is full (unrecorded holds)")
            }
        }
    }
}

impl std::error::Error for RegisterError {}

/// Upper bound on emit slots (CPUs beyond it share slots, which stays correct).
pub const MAX_SLOTS: usize = 512;

/// An emit slot: its lock and, while a [`RelayHandler`] is registered, that handler and its
/// [`FastSlot`] for this slot, in the lock's cache line (the event's first touch after the lock).
///
/// # Invariants
///
/// `relay` and `fast` are both null or both set; they are written only with the lock held
/// (by `register` and `unregister`), and while set they point to the registered relay handler
/// and its record for this slot, which stay alive until `unregister` has cleared them.
#[repr(align(64))]
struct Slot {
    lock: AtomicUsize,
    relay: AtomicPtr<RelayHandler>,
    fast: AtomicPtr<FastSlot>,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: Slot = Slot {
    lock: AtomicUsize::new(0),
    relay: AtomicPtr::new(ptr::null_mut()),
    fast: AtomicPtr::new(ptr::null_mut()),
};
static SLOTS: [Slot; MAX_SLOTS] = [FREE_SLOT; MAX_SLOTS];
/// Slots of the registered handler (0: none registered yet).
static NSLOTS: AtomicUsize = AtomicUsize::new(0);
/// The registered handler and its slot count: a leaked `Box`, null when none. (A relay
/// handler is also reachable from the slots, for static dispatch: see [`Slot`].)
struct Current {
    slots: usize,
    handler: Arc<dyn Handler>,
}

static HANDLER: AtomicPtr<Current> = AtomicPtr::new(std::ptr::null_mut());
/// Serialises register/unregister: a lock word rather than a `Mutex`, so that a forked child
/// can reset it (a thread of the parent may have held it at the fork; it does not exist in the
/// child).
static REGISTRATION: AtomicBool = AtomicBool::new(false);

/// Holds [`REGISTRATION`].
struct Registration;

impl Registration {
    fn lock() -> Registration {
        let mut backoff = wlock::Backoff::new();
        while REGISTRATION
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            backoff.wait();
        }
        Registration
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        REGISTRATION.store(false, Ordering::Release);
    }
}

/// Installs [`after_fork_in_child`] once.
fn watch_forks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Registers a child handler with the C runtime.
        // SAFETY: `after_fork_in_child` is an `extern "C" fn()` valid for the process's life.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
}

/// Runs in a forked child, on its only thread, before `fork` returns (`pthread_atfork`):
/// disables klog there. The registered handler writes into buffers that belong to the parent,
/// its emit slots may be held by parent threads that do not exist here (waiting for them would
/// hang forever), and its state is a copy: so the child forgets it — slots freed, pointers
/// cleared, the handler leaked rather than dropped (its destructor would finalize the parent's
/// buffers) — and every callsite goes back to one load and a branch. A new [`register`] (of a
/// handler on fresh buffers) enables klog in the child again.
extern "C" fn after_fork_in_child() {
    // Parent threads holding these locks are gone; nothing else runs in the child yet.
    REGISTRATION.store(false, Ordering::Relaxed);
    NSLOTS.store(0, Ordering::Relaxed);
    // Leaked: the `Arc` of the parent's handler is not the child's to drop.
    HANDLER.store(ptr::null_mut(), Ordering::Relaxed);
    for s in &SLOTS {
        s.relay.store(ptr::null_mut(), Ordering::Relaxed);
        s.fast.store(ptr::null_mut(), Ordering::Relaxed);
        s.lock.store(0, Ordering::Release);
    }
    callsite::after_fork_in_child();
}

/// Installs `handler`: from now on enabled callsites record into it. A [`RelayHandler`] is
/// recognised and dispatched statically.
pub fn register<H: Handler + 'static>(handler: Arc<H>) -> Result<(), RegisterError> {
    watch_forks();
    let _g = Registration::lock();
    if !HANDLER.load(Ordering::Acquire).is_null() {
        return Err(RegisterError::AlreadyRegistered);
    }
    let slots = handler.slots().min(MAX_SLOTS);
    if slots == 0 {
        return Err(RegisterError::NoSlots);
    }
    // Before any emitter can take a slot without a record.
    if !wlock::set_unrecorded_holds(held_by_thread) {
        return Err(RegisterError::LockRegistryFull);
    }
    NSLOTS.store(slots, Ordering::Release);
    // The handler lives in the `Arc` until `unregister` has cleared these pointers.
    if let Some(r) = (&*handler as &dyn Any).downcast_ref::<RelayHandler>() {
        for (i, slot) in SLOTS[..slots].iter().enumerate() {
            if let Some(fast) = r.fast_slot(i) {
                set_relay(slot, r, fast);
            }
        }
    }
    let handler: Arc<dyn Handler> = handler;
    HANDLER.store(
        Box::into_raw(Box::new(Current { slots, handler })),
        Ordering::Release,
    );
    callsite::set_handler_present(true);
    Ok(())
}

/// Removes the handler and waits until no thread is inside it any more; returns it. `None` if
/// none was registered. Must not be called from inside a handler or a `klog!` argument.
pub fn unregister() -> Option<Arc<dyn Handler>> {
    let _g = Registration::lock();
    // New events stop at the callsite check; events already past it find no handler.
    callsite::set_handler_present(false);
    let p = HANDLER.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if p.is_null() {
        return None;
    }
    // Grace period: every emitter that may hold the old pointers holds a slot.
    for slot in &SLOTS[..NSLOTS.load(Ordering::Acquire)] {
        set_relay(slot, ptr::null(), ptr::null());
    }
    // `p` was unpublished above and the grace period waited for every context that loaded it.
    // SAFETY: `p` came from `Box::into_raw` in `register` and is no longer reachable.
    Some(unsafe { Box::from_raw(p) }.handler)
}

/// Sets `slot`'s relay handler pointers under its lock (waiting for the emitter holding it).
fn set_relay(slot: &Slot, relay: *const RelayHandler, fast: *const FastSlot) {
    if let Acquired::Held(g) = wlock::acquire(&slot.lock) {
        slot.relay.store(relay.cast_mut(), Ordering::Relaxed);
        slot.fast.store(fast.cast_mut(), Ordering::Relaxed);
        drop(g);
    }
}

/// Whether one of the slots is held by the thread whose lock token is `token` (emitters hold
/// them without a thread-local record, see the module documentation). Runs only on contended
/// paths, so it scans every slot rather than depend on the current slot count.
fn held_by_thread(token: usize) -> bool {
    // A context asks about its own thread: an outer hold's compare-and-swap precedes it in
    // program order, so `Relaxed` sees it.
    SLOTS
        .iter()
        .any(|s| s.lock.load(Ordering::Relaxed) == token)
}

/// Whether a handler is registered.
pub fn is_registered() -> bool {
    !HANDLER.load(Ordering::Acquire).is_null()
}

/// Where an event goes, for the context holding emit slot `slot`.
enum Target<'a> {
    /// The registered relay handler, with its record for the slot.
    Relay(&'a RelayHandler, &'a FastSlot),
    /// Any other handler.
    Dyn(&'a dyn Handler),
}

/// The target of an event whose context holds `slot` (index `i`), read `n` slots before taking
/// it: the relay handler from the slot itself, else the registered handler if it still serves
/// `n` slots (a registration between reading `NSLOTS` and taking the slot could change that;
/// such an event is dropped).
#[inline(always)]
fn target<'a>(slot: &'a Slot, n: usize) -> Option<Target<'a>> {
    let fast = slot.fast.load(Ordering::Relaxed);
    if let Some(fast) = NonNull::new(fast) {
        let relay = slot.relay.load(Ordering::Relaxed);
        // The slot's pointers are set (type invariant: both or none) and stay valid while its
        // lock is held, which the caller does for the lifetime it uses them.
        // SAFETY: see above.
        return Some(unsafe { Target::Relay(&*relay, fast.as_ref()) });
    }
    loaded(n).map(Target::Dyn)
}

/// Runs `f` with the event's target and a held slot, if a handler is registered.
#[inline(always)]
fn with_slot(f: impl FnOnce(Target<'_>, usize)) {
    let n = NSLOTS.load(Ordering::Relaxed);
    let cpu = current_cpu();
    // `%` is a division: skip it in the common case of one slot per CPU (`n == 0`, no handler
    // yet, fails the comparison too).
    let i = if cpu < n {
        cpu
    } else {
        match other_index(cpu, n) {
            Some(i) => i,
            None => return,
        }
    };
    // NSLOTS <= MAX_SLOTS (`register` clamps it), so `i < n` indexes `SLOTS`.
    // SAFETY: see above.
    let slot = unsafe { SLOTS.get_unchecked(i) };
    // This context interrupted its own thread's hold: another slot, without waiting.
    let Some(g) = wlock::acquire_unrecorded(&slot.lock) else {
        return with_other_slot(n, i, f);
    };
    if let Some(t) = target(slot, n) {
        f(t, i);
    }
    drop(g);
}

/// The slot of CPU `cpu` when it is not below `n` (`None` when no handler is registered).
#[cold]
#[inline(never)]
fn other_index(cpu: usize, n: usize) -> Option<usize> {
    (n != 0).then(|| cpu % n)
}

/// The handler, if registered and serving `n` slots.
#[inline(always)]
fn loaded<'a>(n: usize) -> Option<&'a dyn Handler> {
    let p = HANDLER.load(Ordering::Acquire);
    // SAFETY: a non-null pointer stays valid while we hold a slot (grace period in
    // `unregister`); the caller holds one for the lifetime it uses the reference.
    let c: &'a Current = unsafe { p.as_ref()? };
    (c.slots == n).then_some(&*c.handler)
}

/// [`with_slot`] for a context that interrupted its own thread's hold of slot `busy`: it must
/// not wait, so it takes another slot that is free right now, or counts the event lost on
/// `busy`.
#[cold]
fn with_other_slot(n: usize, busy: usize, f: impl FnOnce(Target<'_>, usize)) {
    for j in (1..n).map(|k| (busy + k) % n) {
        let slot = &SLOTS[j];
        if let Some(g) = wlock::try_acquire(&slot.lock) {
            if let Some(t) = target(slot, n) {
                f(t, j);
            }
            drop(g);
            return;
        }
    }
    // The interrupted context on this thread holds `busy`, so the handler cannot go away.
    if let Some(h) = loaded(n) {
        h.lost(busy);
    }
}

/// Records an event for `cs` (called by `klog!` after the callsite check passed).
#[inline]
pub fn emit<A: Args>(cs: &'static Callsite, args: A) {
    // `with_slot` holds emit slot `slot` while this runs, and `fast` is `r`'s record of it
    // (`Slot` invariant).
    // SAFETY: see above.
    with_slot(|t, slot| unsafe {
        match t {
            Target::Relay(r, fast) => r.event_args(fast, cs, &args),
            Target::Dyn(d) => d.event(slot, cs, &args),
        }
    });
}

/// Records a raw record for `cs` (called by `klog_raw!`).
#[inline]
pub fn emit_raw(cs: &'static Callsite, bytes: &[u8]) {
    // As in `emit`.
    // SAFETY: see above.
    with_slot(|t, slot| unsafe {
        match t {
            Target::Relay(r, fast) => r.raw_bytes(fast, cs, bytes),
            Target::Dyn(d) => d.raw(slot, cs, bytes),
        }
    });
}

/// Runs `f` with emit slot `slot` held (waiting for it), e.g. to flush that slot's buffer.
pub(crate) fn with_slot_held(slot: usize, f: impl FnOnce()) {
    if let Some(s) = SLOTS.get(slot) {
        if let Acquired::Held(g) = wlock::acquire(&s.lock) {
            f();
            drop(g);
        }
    }
}

/// Flushes every slot of the registered handler, so readers see what was written so far.
pub fn flush() {
    let n = NSLOTS.load(Ordering::Acquire);
    for (slot, s) in SLOTS[..n].iter().enumerate() {
        if let Acquired::Held(g) = wlock::acquire(&s.lock) {
            if let Some(h) = loaded(n) {
                // SAFETY: emit slot `slot` is held until `g` drops.
                unsafe { h.flush(slot) };
            }
            drop(g);
        }
    }
}
