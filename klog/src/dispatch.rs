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
//! as lost on its slot.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use relay::user::sys::current_cpu;
use relay::user::wlock::{self, Acquired};

use std::any::Any;

use crate::arg::{Args, DynArgs};
use crate::callsite::{self, Callsite};
use crate::RelayHandler;

/// Where events go: implemented by [`crate::RelayHandler`]; other handlers are possible.
pub trait Handler: Send + Sync + Any {
    /// Number of emit slots the handler serves (its relay buffers); 1 for a global buffer.
    fn slots(&self) -> usize;
    /// Records an event. Runs with emit slot `slot` held exclusively.
    fn event(&self, slot: usize, cs: &'static Callsite, args: &dyn DynArgs);
    /// Records a `klog_raw!` record. Runs with emit slot `slot` held exclusively.
    fn raw(&self, slot: usize, cs: &'static Callsite, bytes: &[u8]);
    /// An event for `slot` could not be recorded (a nested context found no free slot).
    fn lost(&self, slot: usize);
    /// Flushes the buffer of `slot`. Runs with the slot held exclusively.
    fn flush(&self, slot: usize);
}

/// Registration errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// Only one handler at a time; unregister the current one first.
    AlreadyRegistered,
    /// The handler reported zero slots.
    NoSlots,
}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RegisterError::AlreadyRegistered => f.write_str("a klog handler is already registered"),
            RegisterError::NoSlots => f.write_str("the handler has no emit slots"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Upper bound on emit slots (CPUs beyond it share slots, which stays correct).
pub const MAX_SLOTS: usize = 512;

#[repr(align(64))]
struct Slot(AtomicUsize);

#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: Slot = Slot(AtomicUsize::new(0));
static SLOTS: [Slot; MAX_SLOTS] = [FREE_SLOT; MAX_SLOTS];
/// Slots of the registered handler (0: none registered yet).
static NSLOTS: AtomicUsize = AtomicUsize::new(0);
/// A registered handler. The relay handler gets static dispatch, so a `klog!` statement's
/// arguments are encoded by code inlined at the call site; other handlers go through the vtable.
enum Registered {
    Relay(Arc<RelayHandler>),
    Dyn(Arc<dyn Handler>),
}

impl Registered {
    fn slots(&self) -> usize {
        match self {
            Registered::Relay(h) => h.slots(),
            Registered::Dyn(h) => h.slots(),
        }
        .min(MAX_SLOTS)
    }

    fn as_dyn(&self) -> &dyn Handler {
        match self {
            Registered::Relay(h) => &**h,
            Registered::Dyn(h) => &**h,
        }
    }

    fn into_dyn(self) -> Arc<dyn Handler> {
        match self {
            Registered::Relay(h) => h,
            Registered::Dyn(h) => h,
        }
    }
}

/// The registered handler and its slot count: a leaked `Box`, null when none.
struct Current {
    slots: usize,
    handler: Registered,
}

static HANDLER: AtomicPtr<Current> = AtomicPtr::new(std::ptr::null_mut());
/// Serialises register/unregister.
static REGISTRATION: Mutex<()> = Mutex::new(());

/// Installs `handler`: from now on enabled callsites record into it. A [`RelayHandler`] is
/// recognised and dispatched statically.
pub fn register<H: Handler + 'static>(handler: Arc<H>) -> Result<(), RegisterError> {
    let any: Arc<dyn Any + Send + Sync> = handler.clone();
    let handler = match any.downcast::<RelayHandler>() {
        Ok(relay) => Registered::Relay(relay),
        Err(_) => Registered::Dyn(handler),
    };
    let _g = REGISTRATION.lock().unwrap_or_else(|e| e.into_inner());
    if !HANDLER.load(Ordering::Acquire).is_null() {
        return Err(RegisterError::AlreadyRegistered);
    }
    let slots = handler.slots();
    if slots == 0 {
        return Err(RegisterError::NoSlots);
    }
    NSLOTS.store(slots, Ordering::Release);
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
    let _g = REGISTRATION.lock().unwrap_or_else(|e| e.into_inner());
    // New events stop at the callsite check; events already past it find no handler.
    callsite::set_handler_present(false);
    let p = HANDLER.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if p.is_null() {
        return None;
    }
    // Grace period: every emitter that may hold the old pointer holds a slot.
    for slot in &SLOTS[..NSLOTS.load(Ordering::Acquire)] {
        if let Acquired::Held(g) = wlock::acquire(&slot.0) {
            drop(g);
        }
    }
    // SAFETY: `p` came from `Box::into_raw` in `register` and is no longer reachable: it was
    // unpublished above and the grace period waited for every context that loaded it.
    Some(unsafe { Box::from_raw(p) }.handler.into_dyn())
}

/// Whether a handler is registered.
pub fn is_registered() -> bool {
    !HANDLER.load(Ordering::Acquire).is_null()
}

/// Runs `f` with the handler and a held slot, if a handler is registered.
#[inline(always)]
fn with_slot(f: impl FnOnce(&Registered, usize)) {
    let n = NSLOTS.load(Ordering::Relaxed);
    if n == 0 {
        return;
    }
    let cpu = current_cpu();
    // `%` is a division: skip it in the common case of one slot per CPU.
    let slot = if cpu < n { cpu } else { cpu % n };
    match wlock::acquire(&SLOTS[slot].0) {
        Acquired::Held(g) => {
            if let Some(h) = loaded(n) {
                f(h, slot);
            }
            drop(g);
        }
        Acquired::Nested(_) => with_other_slot(n, slot, f),
    }
}

/// The handler, if registered and serving `n` slots (a registration between reading `NSLOTS`
/// and taking the slot could change it; such an event is dropped).
#[inline(always)]
fn loaded<'a>(n: usize) -> Option<&'a Registered> {
    let p = HANDLER.load(Ordering::Acquire);
    // SAFETY: a non-null pointer stays valid while we hold a slot (grace period in
    // `unregister`); the caller holds one for the lifetime it uses the reference.
    let c: &'a Current = unsafe { p.as_ref()? };
    (c.slots == n).then_some(&c.handler)
}

#[cold]
fn with_other_slot(n: usize, busy: usize, f: impl FnOnce(&Registered, usize)) {
    for j in (1..n).map(|k| (busy + k) % n) {
        if let Some(g) = wlock::try_acquire(&SLOTS[j].0) {
            if let Some(h) = loaded(n) {
                f(h, j);
            }
            drop(g);
            return;
        }
    }
    // The interrupted context on this thread holds `busy`, so the handler cannot go away.
    if let Some(h) = loaded(n) {
        h.as_dyn().lost(busy);
    }
}

/// Records an event for `cs` (called by `klog!` after the callsite check passed).
#[inline]
pub fn emit<A: Args>(cs: &'static Callsite, args: A) {
    if cs.check() {
        with_slot(|h, slot| match h {
            Registered::Relay(r) => r.event_args(slot, cs, &args),
            Registered::Dyn(d) => d.event(slot, cs, &args),
        });
    }
}

/// Records a raw record for `cs` (called by `klog_raw!`).
#[inline]
pub fn emit_raw(cs: &'static Callsite, bytes: &[u8]) {
    if cs.check() {
        with_slot(|h, slot| h.as_dyn().raw(slot, cs, bytes));
    }
}

/// Runs `f` with emit slot `slot` held (waiting for it), e.g. to flush that slot's buffer.
pub(crate) fn with_slot_held(slot: usize, f: impl FnOnce()) {
    if let Some(s) = SLOTS.get(slot) {
        if let Acquired::Held(g) = wlock::acquire(&s.0) {
            f();
            drop(g);
        }
    }
}

/// Flushes every slot of the registered handler, so readers see what was written so far.
pub fn flush() {
    let n = NSLOTS.load(Ordering::Acquire);
    for (slot, s) in SLOTS[..n].iter().enumerate() {
        if let Acquired::Held(g) = wlock::acquire(&s.0) {
            if let Some(h) = loaded(n) {
                h.as_dyn().flush(slot);
            }
            drop(g);
        }
    }
}
