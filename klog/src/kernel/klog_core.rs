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
//!   style); a module that unloads has its callsites unlinked (module notifier).
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

use callsite::{Callsite, Meta};
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
}

static HANDLER: AtomicPtr<KlogHandler> = AtomicPtr::new(ptr::null_mut());
static GEN: AtomicU32 = AtomicU32::new(0);

/// Links a client's callsite; returns whether it is enabled.
#[no_mangle]
/// # Safety
///
/// `cs` points to a static `Callsite` of a loaded module (same `#[repr(C)]` layout).
pub unsafe extern "C" fn klog_register_callsite(cs: *const c_void) -> bool {
    // The module notifier unlinks callsites before their module's memory goes away.
    // SAFETY: clients pass their static callsites (same #[repr(C)] layout, same sources).
    callsite::register_callsite(unsafe { &*cs.cast::<Callsite>() })
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
        let rule = match cs.rule() {
            Some(true) => " +p",
            Some(false) => " -p",
            None => "",
        };
        let _ = writeln!(
            o,
            "{} {}:{} {} {}{} \"{}\"",
            m.module,
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
            let mb = m.module.as_bytes();
            // `module foo` matches foo and foo::anything, as a path prefix.
            mb == v || (mb.starts_with(v) && mb[v.len()..].starts_with(b"::"))
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

/// `[module M] [file F] [line N] [level L] [format "S"] +p|-p|=p`: force the matching
/// callsites on, off, or back to the level's verdict. `-EINVAL` on a bad command, `-ENOENT` if
/// nothing matched.
#[no_mangle]
/// # Safety
///
/// The C glue passes `len` readable bytes.
pub unsafe extern "C" fn klog_control_write(cmd: *const c_char, len: usize) -> c_int {
    // SAFETY: the glue passes `len` bytes.
    let line = unsafe { core::slice::from_raw_parts(cmd.cast::<u8>(), len) };
    let mut w: [&[u8]; 16] = [&[]; 16];
    let Some(n) = words(line, &mut w) else {
        return -22;
    };
    let w = &w[..n];
    let Some((&flag, crit)) = w.split_last() else {
        return -22;
    };
    let verdict = match flag {
        b"+p" => Some(true),
        b"-p" => Some(false),
        b"=p" => None,
        _ => return -22,
    };
    if crit.len() % 2 != 0 {
        return -22;
    }
    let mut q = Query::default();
    for kv in crit.chunks(2) {
        let v = kv[1];
        match kv[0] {
            b"module" => q.module = Some(v),
            b"file" => q.file = Some(v),
            b"line" => {
                let Some(l) = core::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) else {
                    return -22;
                };
                q.line = Some(l);
            }
            b"level" => match parse_level(v) {
                Some(l) => q.level = Some(l),
                None => return -22,
            },
            b"format" => q.format = Some(v),
            _ => return -22,
        }
    }
    if callsite::set_rule_where(|m| q.matches(m), verdict) == 0 {
        return -2; // ENOENT, as dynamic debug
    }
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
