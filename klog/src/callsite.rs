//! Callsites: one static per `klog!` statement, registered on first execution.
//!
//! The cost model: a callsite's `state` word alone decides whether a statement does anything,
//! so a disabled statement — no handler, level filtered, or switched off by a rule — costs one
//! relaxed load and a not-taken branch. The state starts as `UNSEEN`; the first execution takes
//! the slow path, links the callsite into the registry and computes its state. Every change
//! that can flip states (registering a handler, changing the level or the rules) walks the
//! registry under the same lock, so no callsite can miss an update.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use super::Level;

/// What a callsite records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `klog!`: a format string and arguments.
    Fmt = 0,
    /// `klog_raw!`: opaque bytes.
    Raw = 1,
}

/// The static description of a callsite (written by `klog-macros`).
///
/// `#[repr(C)]` (as [`Callsite`]): in the kernel, callsites live in client modules and are read
/// by klog_core.ko and the handler module, each compiled from these sources.
#[derive(Debug)]
#[repr(C)]
pub struct Meta {
    /// Normalised format string (every placeholder indexed, see docs/FORMAT.md).
    pub fmt: &'static str,
    /// Level.
    pub level: Level,
    /// Event or raw record.
    pub kind: Kind,
    /// `module_path!()` of the statement.
    pub module: &'static str,
    /// `file!()`.
    pub file: &'static str,
    /// `line!()`.
    pub line: u32,
    /// Number of arguments.
    pub n_args: u8,
}

const DISABLED: u8 = 0;
const ENABLED: u8 = 1;
const UNSEEN: u8 = 2;

/// One `klog!` statement.
///
/// # Invariants
///
/// `state` is `UNSEEN` until the callsite is linked into the registry (exactly once, under the
/// registry lock); afterwards it is `ENABLED` or `DISABLED` as computed from the current
/// configuration, and only changed under the registry lock.
#[repr(C)]
pub struct Callsite {
    state: AtomicU8,
    /// Filter rules' verdict for this callsite, cached: 0 none, 1 on, 2 off.
    rule: AtomicU8,
    id: AtomicU32,
    /// Handler generation in which the definition was written to the handler's metadata.
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    defined: AtomicU32,
    next: AtomicPtr<Callsite>,
    /// The kernel module the callsite belongs to (`struct module *`), set by klog_core.ko when
    /// it links the callsite: rules and the control file match on the module's name.
    #[cfg(any(klog_client, klog_kernel))]
    owner: AtomicPtr<core::ffi::c_void>,
    /// Only in kernel-tests' klog_badlayout.ko: "another layout", which klog_core must refuse.
    #[cfg(klog_test_other_layout)]
    test_pad: u64,
    meta: Meta,
}

/// The layout word a kernel client passes to klog_core.ko with each callsite: klog_core
/// refuses callsites whose word differs from its own (built from other klog sources). The top
/// byte is a version to bump when the contract changes in a way the sizes and offsets below
/// do not show (klog_core.h's handler interface, the meaning of a field).
#[cfg(any(klog_client, klog_kernel))]
pub const LAYOUT: u32 = {
    use core::mem::{offset_of, size_of};
    const VERSION: u32 = 1;
    let parts = [
        size_of::<Callsite>(),
        offset_of!(Callsite, state),
        offset_of!(Callsite, rule),
        offset_of!(Callsite, id),
        offset_of!(Callsite, defined),
        offset_of!(Callsite, next),
        offset_of!(Callsite, owner),
        offset_of!(Callsite, meta),
        size_of::<Meta>(),
        offset_of!(Meta, fmt),
        offset_of!(Meta, level),
        offset_of!(Meta, kind),
        offset_of!(Meta, module),
        offset_of!(Meta, file),
        offset_of!(Meta, line),
        offset_of!(Meta, n_args),
    ];
    // FNV-1a over the parts, folded to 24 bits.
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < parts.len() {
        h = (h ^ parts[i] as u32).wrapping_mul(0x0100_0193);
        i += 1;
    }
    VERSION << 24 | (h ^ h >> 24) & 0x00ff_ffff
};

impl Callsite {
    /// A new, unseen callsite.
    pub const fn new(meta: Meta) -> Self {
        Callsite {
            state: AtomicU8::new(UNSEEN),
            rule: AtomicU8::new(0),
            id: AtomicU32::new(0),
            defined: AtomicU32::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
            #[cfg(any(klog_client, klog_kernel))]
            owner: AtomicPtr::new(ptr::null_mut()),
            #[cfg(klog_test_other_layout)]
            test_pad: 0,
            meta,
        }
    }

    /// The kernel module of the callsite (`struct module *`; null until linked).
    #[cfg(klog_kernel)]
    pub fn owner(&self) -> *mut core::ffi::c_void {
        self.owner.load(Ordering::Relaxed)
    }

    /// The callsite whose description `meta` is (every `Meta` the registry hands out is a
    /// callsite's field).
    #[cfg(klog_kernel)]
    pub fn of_meta(meta: &Meta) -> &Callsite {
        let at = (meta as *const Meta)
            .cast::<u8>()
            .wrapping_sub(core::mem::offset_of!(Callsite, meta));
        // The registry only passes `meta` fields of `Callsite`s.
        // SAFETY: so stepping back by the field's offset gives that callsite, alive as `meta`.
        unsafe { &*at.cast::<Callsite>() }
    }

    /// The description.
    #[inline]
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The id used on the wire (assigned when the callsite is first seen; 0 before).
    #[inline]
    pub fn id(&self) -> u32 {
        self.id.load(Ordering::Relaxed)
    }

    /// Whether the callsite is enabled right now (after registration).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.state.load(Ordering::Relaxed) == ENABLED
    }

    /// The check of every statement: whether the callsite is enabled, registering it first
    /// if it was never seen. A disabled callsite costs one load and a branch; an enabled one
    /// one compare more (and no second load further down the emit path).
    #[inline(always)]
    pub(crate) fn check(&'static self) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        s != DISABLED && (s == ENABLED || register(self))
    }

    /// Whether the definition was already written for handler generation `gen`; if not, marks
    /// it written and returns `false` (the caller writes it). Called with the metadata lock held.
    pub fn mark_defined(&self, gen: u32) -> bool {
        self.defined.swap(gen, Ordering::Relaxed) == gen
    }

    /// Whether the definition exists for `gen`.
    #[inline]
    pub fn is_defined(&self, gen: u32) -> bool {
        self.defined.load(Ordering::Relaxed) == gen
    }

    /// The runtime rule's verdict for this callsite: `Some(true)` forced on, `Some(false)`
    /// forced off, `None` the level decides.
    pub fn rule(&self) -> Option<bool> {
        match self.rule.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }
}

/// A rule verdict for a callsite: `Some(true)` force on, `Some(false)` force off, `None` no
/// opinion (the level decides).
pub type RuleFn = dyn Fn(&Meta) -> Option<bool> + Send + Sync;

struct Config {
    handler: bool,
    max_level: Level,
    rules: Option<&'static RuleFn>,
}

static REGISTRY: AtomicPtr<Callsite> = AtomicPtr::new(ptr::null_mut());
static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// The registry lock: 0 when free, else the holder's thread token (see [`token`]).
static LOCK: AtomicUsize = AtomicUsize::new(0);
static mut CONFIG: Config = Config {
    handler: false,
    max_level: Level::Trace,
    rules: None,
};
/// Events skipped because their callsite's first execution interrupted a registry update on
/// its own thread (a signal handler).
static SKIPPED: AtomicU32 = AtomicU32::new(0);

/// A token identifying the calling thread (never 0): the address of a thread-local. Without
/// `std` there is no portable notion of a thread; the kernel platform will provide one, until
/// then every holder counts as "this thread" and a busy lock is never waited for.
#[cfg(feature = "std")]
fn token() -> usize {
    std::thread_local! {
        static T: u8 = const { 0 };
    }
    T.with(|t| t as *const u8 as usize)
}

#[cfg(not(any(feature = "std", klog_kernel)))]
fn token() -> usize {
    1
}

/// Takes the registry lock. `None` if the calling thread already holds it (a signal handler
/// interrupting a registry update): waiting would deadlock. Another holder is waited for — it
/// holds the lock only briefly and never waits for anything itself.
#[cfg(not(klog_kernel))]
fn lock() -> Option<Guard> {
    let me = token();
    loop {
        match LOCK.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return Some(Guard(0)),
            Err(owner) if owner == me => return None,
            Err(_) => core::hint::spin_loop(),
        }
    }
}

/// In klog_core.ko the registry lock is a raw spinlock taken with interrupts off (callsites
/// register from any context but NMI), provided by the module's C glue.
#[cfg(klog_kernel)]
fn lock() -> Option<Guard> {
    extern "C" {
        fn klog_reg_lock() -> usize;
    }
    // SAFETY: takes the glue's spinlock and returns the saved interrupt flags.
    Some(Guard(unsafe { klog_reg_lock() }))
}

/// Holds the registry lock (with the saved interrupt flags in the kernel).
struct Guard(#[cfg_attr(not(klog_kernel), allow(dead_code))] usize);

impl Drop for Guard {
    #[cfg(not(klog_kernel))]
    fn drop(&mut self) {
        LOCK.store(0, Ordering::Release);
    }

    #[cfg(klog_kernel)]
    fn drop(&mut self) {
        extern "C" {
            fn klog_reg_unlock(flags: usize);
        }
        // SAFETY: releases the lock taken in `lock` with the flags it saved.
        unsafe { klog_reg_unlock(self.0) }
    }
}

/// Runs `f` with the registry lock held; `None` if this thread already holds it.
fn with_lock<R>(f: impl FnOnce(&mut Config) -> R) -> Option<R> {
    let _g = lock()?;
    // SAFETY: `CONFIG` is only accessed with `LOCK` held, which we hold until `_g` drops.
    Some(f(unsafe { &mut *ptr::addr_of_mut!(CONFIG) }))
}

fn compute(cfg: &Config, cs: &Callsite) -> u8 {
    if !cfg.handler {
        return DISABLED;
    }
    let rule = match cs.rule.load(Ordering::Relaxed) {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    };
    let on = rule.unwrap_or(cs.meta.level <= cfg.max_level);
    if on {
        ENABLED
    } else {
        DISABLED
    }
}

fn apply_rules(cfg: &Config, cs: &Callsite) {
    let v = match cfg.rules.and_then(|r| r(&cs.meta)) {
        None => 0,
        Some(true) => 1,
        Some(false) => 2,
    };
    cs.rule.store(v, Ordering::Relaxed);
}

/// In a kernel client module the registry is klog_core.ko's (one for every module).
#[cfg(klog_client)]
#[cold]
#[inline(never)]
fn register(cs: &'static Callsite) -> bool {
    extern "C" {
        /// > 0 enabled, 0 disabled, < 0 refused (klog_core logged why).
        fn klog_register_callsite(
            cs: *const core::ffi::c_void,
            layout: u32,
            owner: *const core::ffi::c_void,
        ) -> core::ffi::c_int;
        /// This module's `struct module` (every module's `.mod.c` defines it).
        static __this_module: u8;
    }
    // klog_core links the callsite and unlinks it when this module goes away.
    // SAFETY: a static callsite; `__this_module` is only taken by address.
    let r = unsafe {
        klog_register_callsite(
            (cs as *const Callsite).cast(),
            LAYOUT,
            ptr::addr_of!(__this_module).cast(),
        )
    };
    if r < 0 {
        // Refused (another layout): never ask again, the statement stays one load and a branch.
        cs.state.store(DISABLED, Ordering::Relaxed);
    }
    r > 0
}

/// Links `cs`, a callsite of the kernel module `owner`, into the registry (klog_core.ko's
/// export for client modules, after its layout check).
#[cfg(klog_kernel)]
pub fn register_callsite(cs: &'static Callsite, owner: *mut core::ffi::c_void) -> bool {
    // Before linking: the rules consulted while linking match on the owner's name.
    cs.owner.store(owner, Ordering::Relaxed);
    register(cs)
}

#[cfg(not(klog_client))]
#[cold]
#[inline(never)]
fn register(cs: &'static Callsite) -> bool {
    // A context that interrupted a registry update on its own thread cannot wait: skip this
    // event and leave the callsite unseen (the next execution registers it).
    let r = with_lock(|cfg| {
        if cs.state.load(Ordering::Relaxed) == UNSEEN {
            cs.id
                .store(NEXT_ID.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
            cs.next
                .store(REGISTRY.load(Ordering::Relaxed), Ordering::Relaxed);
            REGISTRY.store(cs as *const _ as *mut _, Ordering::Release);
            apply_rules(cfg, cs);
            cs.state.store(compute(cfg, cs), Ordering::Relaxed);
        }
        cs.state.load(Ordering::Relaxed) == ENABLED
    });
    r.unwrap_or_else(|| {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        false
    })
}

/// Visits every registered callsite (under the registry lock).
fn walk(cfg: &Config, mut f: impl FnMut(&Config, &'static Callsite)) {
    let mut p = REGISTRY.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: only `&'static Callsite`s are linked into the registry.
        let cs: &'static Callsite = unsafe { &*p };
        f(cfg, cs);
        p = cs.next.load(Ordering::Relaxed);
    }
}

fn refresh(cfg: &Config) {
    walk(cfg, |cfg, cs| {
        cs.state.store(compute(cfg, cs), Ordering::Relaxed)
    });
}

/// Called by handler registration: enables (or disables) every callsite per the configuration.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) fn set_handler_present(present: bool) {
    with_lock(|cfg| {
        cfg.handler = present;
        refresh(cfg);
    });
}

/// In a forked child (from `dispatch`'s `pthread_atfork` handler, on the child's only thread):
/// frees the registry lock, which a parent thread may have held at the fork, and disables
/// every callsite (no handler).
#[cfg(feature = "std")]
pub(crate) fn after_fork_in_child() {
    LOCK.store(0, Ordering::Relaxed);
    set_handler_present(false);
}

/// Sets the runtime maximum level (like `RUST_LOG=level`); more verbose callsites are disabled.
/// Ignored when called from a context that interrupted a configuration change on its thread.
pub fn set_max_level(level: Level) {
    with_lock(|cfg| {
        cfg.max_level = level;
        refresh(cfg);
    });
}

/// The runtime maximum level.
pub fn max_level() -> Level {
    with_lock(|cfg| cfg.max_level).unwrap_or(Level::Trace)
}

/// Installs per-callsite rules (dynamic-debug style: by module, file, line, level or format),
/// replacing the previous ones. The function is consulted once per callsite now and once for
/// every callsite seen later; `None` removes all rules.
pub fn set_rules(rules: Option<&'static RuleFn>) {
    with_lock(|cfg| {
        cfg.rules = rules;
        walk(cfg, apply_rules);
        refresh(cfg);
    });
}

/// Calls `f` for every callsite seen so far (for a control interface listing them).
pub fn for_each_callsite(mut f: impl FnMut(&'static Callsite)) {
    with_lock(|cfg| walk(cfg, |_, cs| f(cs)));
}

/// Sets the rule of every callsite for which `pred` holds to `verdict` (`Some(true)` on,
/// `Some(false)` off, `None` back to the level) and recomputes the states (dynamic-debug style
/// control). Returns the number of callsites changed.
pub fn set_rule_where(mut pred: impl FnMut(&Meta) -> bool, verdict: Option<bool>) -> usize {
    let v = match verdict {
        None => 0,
        Some(true) => 1,
        Some(false) => 2,
    };
    with_lock(|cfg| {
        let mut n = 0;
        walk(cfg, |_, cs| {
            if pred(&cs.meta) {
                cs.rule.store(v, Ordering::Relaxed);
                n += 1;
            }
        });
        refresh(cfg);
        n
    })
    .unwrap_or(0)
}

/// Removes every callsite for which `pred` holds from the registry (the kernel's module
/// unload: the statics of a module that goes away).
#[cfg(klog_kernel)]
pub fn unlink_where(mut pred: impl FnMut(*const Callsite) -> bool) {
    with_lock(|_| {
        let mut link: &AtomicPtr<Callsite> = &REGISTRY;
        loop {
            let p = link.load(Ordering::Relaxed);
            if p.is_null() {
                break;
            }
            // This runs before a module's memory goes away.
            // SAFETY: only `&'static Callsite`s of loaded modules are linked.
            let cs: &'static Callsite = unsafe { &*p };
            if pred(p) {
                link.store(cs.next.load(Ordering::Relaxed), Ordering::Release);
            } else {
                link = &cs.next;
            }
        }
    });
}

/// Events skipped because their callsite's first execution interrupted a registry update.
pub fn skipped_events() -> u32 {
    SKIPPED.load(Ordering::Relaxed)
}
