// SPDX-License-Identifier: GPL-2.0
//! klog_core.ko: the callsite registry and handler dispatch of `klog!` in the kernel.
//!
//! Built with `--cfg klog_kernel` from the cargo crate's `callsite.rs` (the registry, levels
//! and rules are that code; only its lock is a raw spinlock with interrupts off here).
//!
//! * Client modules link their callsites on first execution (`klog_register_callsite`) and
//!   emit through `klog_emit`, which runs the registered handler with interrupts off.
//! * One handler at a time (`klog_register_handler`, `-EBUSY` otherwise). Unregistering
//!   disables every callsite, unpublishes the handler and waits for an RCU grace period: an
//!   emitter runs with interrupts off, i.e. inside an RCU read-side critical section, so after
//!   `synchronize_rcu()` nobody is inside the old handler.
//! * `/sys/kernel/debug/klog/control` lists the callsites and switches them (dynamic-debug
//!   style, `module` is the kernel module's name); a module that unloads has its callsites
//!   unlinked (module notifier). The rules written there are kept and apply to callsites
//!   registered later too: a module loaded (or reloaded) afterwards gets them.
//! * A client built from other klog sources (another `Callsite` layout) is refused: its
//!   callsites never link, and the kernel log says which module to rebuild.
use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use kernel::prelude::*;

#[path = "../callsite.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod callsite;
#[path = "../level.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod level;

use callsite::{Callsite, Meta, LAYOUT};
pub(crate) use level::Level;

module! {
    type: KlogCore,
    name: "klog_core",
    author: "relay-rs",
    description: "klog! callsite registry and handler dispatch",
    license: "GPL",
}

/// `klog_encode_fn` (klog_core.h).
type EncodeFn = unsafe extern "C" fn(*const c_void, *mut u8, usize);

/// `struct klog_handler` (klog_core.h).
#[repr(C)]
pub struct KlogHandler {
    emit: Option<
        unsafe extern "C" fn(
            h: *const KlogHandler,
            cs: *const c_void,
            kind: u32,
            len: usize,
            encode: Option<EncodeFn>,
            ctx: *const c_void,
            types: *const u8,
            n_types: usize,
        ),
    >,
    gen: u32,
}

extern "C" {
    fn klog_irq_save() -> usize;
    fn klog_irq_restore(flags: usize);
    fn klog_synchronize_rcu();
    fn klog_within_module(addr: *const c_void, module: *mut c_void) -> bool;
    fn klog_glue_init() -> *mut c_void;
    fn klog_glue_exit();
    fn klog_reg_lock() -> usize;
    fn klog_reg_unlock(flags: usize);
    fn klog_module_name(module: *const c_void) -> *const c_char;
    fn klog_refuse_layout(module: *const c_void, theirs: u32, ours: u32);
}

static HANDLER: AtomicPtr<KlogHandler> = AtomicPtr::new(ptr::null_mut());
static GEN: AtomicU32 = AtomicU32::new(0);

/// Links a client's callsite: 1 enabled, 0 disabled, `-EPROTO` refused (built against
/// another layout: the callsite is not touched, the kernel log names the module).
#[no_mangle]
/// # Safety
///
/// `cs` points to a static callsite of the loaded module `owner`, whose `#[repr(C)]` layout the
/// client describes with `layout` (`callsite::LAYOUT` of its sources).
pub unsafe extern "C" fn klog_register_callsite(
    cs: *const c_void,
    layout: u32,
    owner: *mut c_void,
) -> c_int {
    if layout != LAYOUT {
        // SAFETY: `owner` is the caller's `struct module` (or null).
        unsafe { klog_refuse_layout(owner, layout, LAYOUT) };
        return -71; // EPROTO
    }
    // The module notifier unlinks callsites before their module's memory goes away.
    // SAFETY: the layouts agree, and clients pass their static callsites.
    let cs = unsafe { &*cs.cast::<Callsite>() };
    c_int::from(callsite::register_callsite(cs, owner))
}

/// The kernel module name of a callsite (what `module NAME` matches), `?` if unknown.
fn module_name(m: &Meta) -> &[u8] {
    let owner = Callsite::of_meta(m).owner();
    if owner.is_null() {
        return b"?";
    }
    // A linked callsite's owner is its module, loaded while the callsite is linked (the
    // notifier unlinks first).
    // SAFETY: so `owner` is a live module, whose `name` is a NUL-terminated array.
    unsafe { core::ffi::CStr::from_ptr(klog_module_name(owner)) }.to_bytes()
}

/// Hands one event to the handler, with interrupts off.
#[no_mangle]
/// # Safety
///
/// Called by client modules through the klog facade: `cs` is a registered static callsite, `encode(ctx, slot, len)` writes exactly `len` bytes, `types` has `n_types` bytes.
pub unsafe extern "C" fn klog_emit(
    cs: *const c_void,
    kind: u32,
    len: usize,
    encode: Option<EncodeFn>,
    ctx: *const c_void,
    types: *const u8,
    n_types: usize,
) {
    // Interrupts off make this an RCU read-side section (see klog_unregister_handler) and give
    // the handler writer exclusivity on this CPU.
    // SAFETY: paired with the klog_irq_restore below.
    let flags = unsafe { klog_irq_save() };
    let h = HANDLER.load(Ordering::Acquire);
    // SAFETY: a handler stays valid until a grace period after unpublishing; we are in a reader.
    if let Some(hr) = unsafe { h.as_ref() } {
        if let Some(emit) = hr.emit {
            // SAFETY: the handler's contract (klog_core.h); arguments forwarded from the client.
            unsafe { emit(h, cs, kind, len, encode, ctx, types, n_types) };
        }
    }
    // SAFETY: restores what klog_irq_save saved.
    unsafe { klog_irq_restore(flags) };
}

/// Registers the handler (one at a time).
#[no_mangle]
/// # Safety
///
/// `h` points to a handler object that stays valid until it is unregistered (process context).
pub unsafe extern "C" fn klog_register_handler(h: *mut KlogHandler) -> c_int {
    if h.is_null() {
        return -22;
    }
    // The generation is set before the handler is published.
    // SAFETY: the handler module passes its static handler, not yet visible to emitters.
    unsafe { (*h).gen = GEN.fetch_add(1, Ordering::Relaxed).wrapping_add(1) };
    if HANDLER
        .compare_exchange(ptr::null_mut(), h, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return -16; // EBUSY
    }
    callsite::set_handler_present(true);
    0
}

/// Unregisters the handler; on return no CPU is inside it any more.
#[no_mangle]
/// # Safety
///
/// `h` points to a handler object that stays valid until it is unregistered (process context).
pub unsafe extern "C" fn klog_unregister_handler(h: *mut KlogHandler) {
    if HANDLER
        .compare_exchange(h, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    callsite::set_handler_present(false);
    // SAFETY: process context (module exit of the handler).
    unsafe { klog_synchronize_rcu() };
}

/// Module notifier: a module is going away; drop its callsites from the registry.
#[no_mangle]
/// # Safety
///
/// Called from the module notifier with the module that is going away.
pub unsafe extern "C" fn klog_module_going(module: *mut c_void) {
    // SAFETY: `module` is the going module (valid during the notifier).
    callsite::unlink_where(|cs| unsafe { klog_within_module(cs.cast(), module) });
}

#[path = "../../../relay/src/kernel/slice_writer.rs"]
mod slice_writer;
use slice_writer::SliceWriter as Out;

/// The `control` file's contents: one callsite per line,
/// `module file:line LEVEL on|off [+p|-p] "format"`.
#[no_mangle]
/// # Safety
///
/// The C glue passes a writable buffer of `cap` bytes.
pub unsafe extern "C" fn klog_control_show(buf: *mut c_char, cap: usize) -> usize {
    // SAFETY: the glue passes a buffer of `cap` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
    let mut o = Out::new(buf);
    callsite::for_each_callsite(|cs| {
        let m = cs.meta();
        let module = core::str::from_utf8(module_name(m)).unwrap_or("?");
        let rule = match cs.rule() {
            Some(true) => " +p",
            Some(false) => " -p",
            None => "",
        };
        let _ = writeln!(
            o,
            "{} {}:{} {} {}{} \"{}\"",
            module,
            m.file,
            m.line,
            m.level.as_str(),
            if cs.is_enabled() { "on" } else { "off" },
            rule,
            m.fmt
        );
    });
    o.len()
}

/// A parsed control command: criteria (all must match) and a verdict.
#[derive(Default)]
struct Query<'a> {
    module: Option<&'a [u8]>,
    file: Option<&'a [u8]>,
    line: Option<u32>,
    level: Option<Level>,
    format: Option<&'a [u8]>,
}

impl Query<'_> {
    fn matches(&self, m: &Meta) -> bool {
        let contains =
            |hay: &[u8], needle: &[u8]| hay.windows(needle.len().max(1)).any(|w| w == needle);
        self.module.map_or(true, |v| {
            // The kernel module's name, as dynamic debug; `module foo::bar` (a Rust module
            // path) matches that path and its submodules.
            let mb = m.module.as_bytes();
            module_name(m) == v
                || v.windows(2).any(|w| w == b"::")
                    && (mb == v || (mb.starts_with(v) && mb[v.len()..].starts_with(b"::")))
        }) && self.file.map_or(true, |v| {
            let fb = m.file.as_bytes();
            fb == v || fb.ends_with(v) && fb[..fb.len() - v.len()].ends_with(b"/")
        }) && self.line.map_or(true, |l| m.line == l)
            && self.level.map_or(true, |l| m.level == l)
            && self.format.map_or(true, |f| contains(m.fmt.as_bytes(), f))
    }
}

fn parse_level(w: &[u8]) -> Option<Level> {
    let mut up = [0u8; 8];
    if w.len() > up.len() {
        return None;
    }
    for (d, s) in up.iter_mut().zip(w) {
        *d = s.to_ascii_uppercase();
    }
    (1..=5u8)
        .filter_map(Level::from_u8)
        .find(|l| l.as_str().as_bytes() == &up[..w.len()])
}

/// Splits a command into words; `"..."` is one word without the quotes.
fn words<'a>(line: &'a [u8], out: &mut [&'a [u8]; 16]) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (start, end, next) = if line[i] == b'"' {
            let close = line[i + 1..].iter().position(|&c| c == b'"')? + i + 1;
            (i + 1, close, close + 1)
        } else {
            let end = line[i..]
                .iter()
                .position(|c| c.is_ascii_whitespace())
                .map_or(line.len(), |p| p + i);
            (i, end, end)
        };
        if n == out.len() {
            return None;
        }
        out[n] = &line[start..end];
        n += 1;
        i = next;
    }
    Some(n)
}

/// Parses `[module M] [file F] [line N] [level L] [format "S"] +p|-p|=p` into the criteria
/// (all must match), the verdict (force on, off, or back to the level's) and the criteria's
/// words (to recognise a rule that replaces an earlier one). `None`: malformed.
fn parse<'a>(
    line: &'a [u8],
    w: &'a mut [&'a [u8]; 16],
) -> Option<(Query<'a>, Option<bool>, &'a [&'a [u8]])> {
    let n = words(line, w)?;
    let w = &w[..n];
    let (&flag, crit) = w.split_last()?;
    let verdict = match flag {
        b"+p" => Some(true),
        b"-p" => Some(false),
        b"=p" => None,
        _ => return None,
    };
    if crit.len() % 2 != 0 {
        return None;
    }
    let mut q = Query::default();
    for kv in crit.chunks(2) {
        let v = kv[1];
        match kv[0] {
            b"module" => q.module = Some(v),
            b"file" => q.file = Some(v),
            b"line" => q.line = Some(core::str::from_utf8(v).ok()?.parse().ok()?),
            b"level" => q.level = Some(parse_level(v)?),
            b"format" => q.format = Some(v),
            _ => return None,
        }
    }
    Some((q, verdict, crit))
}

/// The control commands in force, oldest first (the last matching one decides), kept for
/// callsites that register later: a module loaded or reloaded after the command gets it too.
/// Only touched with the registry lock held.
struct Rules {
    cmds: [[u8; CMD_CAP]; MAX_RULES],
    lens: [usize; MAX_RULES],
    n: usize,
}

const MAX_RULES: usize = 64;
/// The glue's command buffer is 256 bytes (core_glue.c).
const CMD_CAP: usize = 256;

static mut RULES: Rules = Rules {
    cmds: [[0; CMD_CAP]; MAX_RULES],
    lens: [0; MAX_RULES],
    n: 0,
};

/// The registry's rule function (`callsite::set_rules`): the verdict of the last stored
/// command matching the callsite. Called with the registry lock held.
fn rule_verdict(m: &Meta) -> Option<bool> {
    // SAFETY: RULES is only written with the registry lock held, which our caller holds.
    let r = unsafe { &*ptr::addr_of!(RULES) };
    let mut verdict = None;
    for (cmd, &len) in r.cmds.iter().zip(&r.lens).take(r.n) {
        let mut w: [&[u8]; 16] = [&[]; 16];
        if let Some((q, v, _)) = parse(&cmd[..len], &mut w) {
            if q.matches(m) {
                verdict = v;
            }
        }
    }
    verdict
}

/// Stores `line` as the newest rule, replacing one with the same criteria. `false`: no room.
fn store_rule(line: &[u8], crit: &[&[u8]]) -> bool {
    if line.len() > CMD_CAP {
        return false;
    }
    // SAFETY: the registry lock is held until `klog_reg_unlock`.
    let flags = unsafe { klog_reg_lock() };
    // SAFETY: RULES is only touched with the registry lock held (taken above).
    let r = unsafe { &mut *ptr::addr_of_mut!(RULES) };
    let mut i = 0;
    while i < r.n {
        let mut w: [&[u8]; 16] = [&[]; 16];
        let same = parse(&r.cmds[i][..r.lens[i]], &mut w).is_some_and(|(_, _, c)| c == crit);
        if same {
            r.cmds.copy_within(i + 1..r.n, i);
            r.lens.copy_within(i + 1..r.n, i);
            r.n -= 1;
        } else {
            i += 1;
        }
    }
    let ok = r.n < MAX_RULES;
    if ok {
        r.cmds[r.n][..line.len()].copy_from_slice(line);
        r.lens[r.n] = line.len();
        r.n += 1;
    }
    // SAFETY: releases the lock taken above.
    unsafe { klog_reg_unlock(flags) };
    ok
}

/// A control command: `-EINVAL` if malformed, `-ENOENT` if it matches no callsite and names no
/// module (a rule for a module is kept for when the module loads or first logs), `-ENOSPC`
/// when MAX_RULES commands are in force.
#[no_mangle]
/// # Safety
///
/// The C glue passes `len` readable bytes.
pub unsafe extern "C" fn klog_control_write(cmd: *const c_char, len: usize) -> c_int {
    // SAFETY: the glue passes `len` bytes.
    let line = unsafe { core::slice::from_raw_parts(cmd.cast::<u8>(), len) };
    let mut w: [&[u8]; 16] = [&[]; 16];
    let Some((q, _, crit)) = parse(line, &mut w) else {
        return -22; // EINVAL
    };
    let mut matched = 0;
    callsite::for_each_callsite(|cs| matched += usize::from(q.matches(cs.meta())));
    if matched == 0 && q.module.is_none() {
        return -2; // ENOENT, as dynamic debug
    }
    if !store_rule(line, crit) {
        return -28; // ENOSPC
    }
    // Applies every stored rule to every callsite again (and to later ones when they link).
    callsite::set_rules(Some(&rule_verdict));
    0
}

struct KlogCore;

impl kernel::Module for KlogCore {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: creates the debugfs directory and registers the module notifier.
        let d = unsafe { klog_glue_init() };
        if d.is_null() || (d as isize) < 0 && (d as isize) > -4096 {
            return Err(ENOMEM);
        }
        pr_info!("klog_core: ready\n");
        Ok(KlogCore)
    }
}

impl Drop for KlogCore {
    fn drop(&mut self) {
        // SAFETY: undoes klog_glue_init. No handler can be registered (it depends on us).
        unsafe { klog_glue_exit() };
    }
}
