// SPDX-License-Identifier: GPL-2.0
//! klog_relay.ko: the relay-backed klog handler in the kernel.
//!
//! On load it opens an rsrelay channel `cpuN` under `/sys/kernel/debug/klog/` (module
//! parameters `subbuf_size`, `n_subbufs`, `overwrite`), starts the `metadata` stream there and
//! registers itself with klog_core.ko. Writing anything to `flush` there flushes the channel:
//! every CPU's current sub-buffer completes, so readers and mmap snapshots see the newest
//! events. The files follow docs/FORMAT.md exactly as the user-space handler writes them, so
//! `klog-decode record /sys/kernel/debug/klog DIR` + `klog-decode DIR`, `klog-decode --follow`
//! or (overwrite mode, after a flush) `klog-decode --snapshot /sys/kernel/debug/klog` read them.
//! Timestamps are `ktime_get_mono_fast_ns()` (CLOCK_MONOTONIC in ns, NMI-safe), clock source 0.
use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use kernel::c_str;
use kernel::prelude::*;

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_docs,
    unreachable_pub,
    improper_ctypes,
    unsafe_op_in_unsafe_fn,
    clippy::all
)]
mod sys {
    use kernel::ffi;
    type __kernel_size_t = usize;
    type __kernel_ssize_t = isize;
    type __kernel_ptrdiff_t = isize;
    include!("klog_relay_bindings.rs");
}

#[path = "../../../relay/src/kernel/client.rs"]
#[allow(dead_code, unreachable_pub)]
mod rsrelay;

#[path = "../arg.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod arg;
#[path = "../callsite.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod callsite;
#[path = "../level.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod level;
#[path = "../wire.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod wire;

pub(crate) use level::Level;

use arg::{varint_len64, zigzag64};
use callsite::Callsite;
use wire::{MetaHeader, SubbufHeader, FLAG_FIRST, FLAG_OVERWRITE, SUBBUF_HEADER_LEN};

module! {
    type: KlogRelay,
    name: "klog_relay",
    author: "relay-rs",
    description: "klog handler writing per-CPU relay channels in debugfs",
    license: "GPL",
}

const MAX_CPUS: usize = 64;
const META_CAP: usize = 1 << 20;

/// Per-CPU state of the sub-buffer headers.
struct KlogCb {
    overwrite: bool,
    seq: [AtomicU64; MAX_CPUS],
    base_ts: [AtomicU64; MAX_CPUS],
    lost: [AtomicU32; MAX_CPUS],
}

impl rsrelay::Callbacks for KlogCb {
    fn subbuf_start(&self, ctx: &mut rsrelay::StartCtx<'_>) -> bool {
        if !self.overwrite && ctx.buf_full() {
            return false;
        }
        if ctx.reserve(SUBBUF_HEADER_LEN).is_err() {
            return false;
        }
        let cpu = (ctx.cpu() as usize).min(MAX_CPUS - 1);
        // SAFETY: plain clock read, any context.
        let now = unsafe { sys::klr_clock_ns() };
        let mut flags = 0;
        if self.overwrite {
            flags |= FLAG_OVERWRITE;
        }
        if ctx.prev_subbuf().is_none() {
            flags |= FLAG_FIRST;
        }
        let hdr = SubbufHeader {
            cpu: cpu as u16,
            flags,
            seq: self.seq[cpu].fetch_add(1, Ordering::Relaxed),
            base_ts: now,
            prev_padding: ctx.prev_padding() as u32,
            lost: self.lost[cpu].swap(0, Ordering::Relaxed),
        };
        ctx.write_subbuf(0, &hdr.to_bytes());
        self.base_ts[cpu].store(now, Ordering::Relaxed);
        true
    }
}

struct State {
    chan: rsrelay::Channel<KlogCb>,
}

static STATE: AtomicPtr<State> = AtomicPtr::new(ptr::null_mut());

/// klog_core's handler object; `gen` is set by klog_register_handler.
static mut HANDLER: sys::klog_handler = sys::klog_handler {
    emit: Some(handler_emit),
    gen_: 0,
};

/// A metadata record under construction (on the emitting CPU's stack).
struct StackOut {
    buf: [u8; 768],
    len: usize,
    overflow: bool,
}

impl wire::Out for StackOut {
    fn put(&mut self, b: &[u8]) {
        if b.len() > self.buf.len() - self.len {
            self.overflow = true;
            return;
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

fn meta_append(rec: &StackOut) -> bool {
    if rec.overflow {
        return false;
    }
    // SAFETY: appends bytes of a valid buffer under the glue's lock.
    unsafe {
        let f = sys::klr_meta_lock();
        let ok = sys::klr_meta_append(rec.buf.as_ptr().cast(), rec.len);
        sys::klr_meta_unlock(f);
        ok
    }
}

fn clock_record() {
    // SAFETY: plain clock read.
    let now = unsafe { sys::klr_clock_ns() };
    let mut o = StackOut {
        buf: [0; 768],
        len: 0,
        overflow: false,
    };
    wire::meta_clock_raw(&mut o, 0, now, now, 1_000_000_000);
    meta_append(&o);
}

/// Writes the callsite's definition the first time it fires under this handler generation;
/// returns whether the definition is in the metadata stream (`false`: the stream is full).
///
/// The callsite is marked defined only after its record was appended (release fence; the
/// emitters' fast path pairs it with an acquire fence), so no CPU writes a frame of the
/// callsite before its definition is readable (docs/FORMAT.md: a reader always finds the
/// definition first), and a definition that did not fit is retried rather than lost for good.
fn define(cs: &Callsite, gen: u32, types: &[u8]) -> bool {
    let mut o = StackOut {
        buf: [0; 768],
        len: 0,
        overflow: false,
    };
    // SAFETY: the metadata lock (interrupts off) serialises definitions with each other; the
    // record is a valid buffer of `o.len` bytes.
    unsafe {
        let f = sys::klr_meta_lock();
        let mut ok = cs.is_defined(gen);
        if !ok {
            wire::meta_callsite(&mut o, cs.id(), cs.meta(), types);
            ok = !o.overflow && sys::klr_meta_append(o.buf.as_ptr().cast(), o.len);
            if ok {
                // Orders the append (the record and the stream's published length) before
                // the mark that lets other CPUs skip this function.
                fence(Ordering::Release);
                cs.mark_defined(gen);
            }
        }
        sys::klr_meta_unlock(f);
        ok
    }
}

fn put_varint(out: &mut [u8], at: &mut usize, mut v: u64) {
    while v >= 0x80 {
        out[*at] = v as u8 | 0x80;
        *at += 1;
        v >>= 7;
    }
    out[*at] = v as u8;
    *at += 1;
}

/// klog_core calls this with interrupts off for every enabled event.
///
/// # Safety
///
/// Called by klog_core with interrupts off, per the `klog_handler` contract of klog_core.h.
unsafe extern "C" fn handler_emit(
    h: *const sys::klog_handler,
    cs: *const c_void,
    kind: u32,
    len: usize,
    encode: sys::klog_encode_fn,
    ctx: *const c_void,
    types: *const u8,
    n_types: usize,
) {
    // SAFETY: klog_core only calls a registered handler, i.e. while STATE is set (it is set
    // before registration and cleared after unregistration's grace period).
    let Some(st) = (unsafe { STATE.load(Ordering::Acquire).as_ref() }) else {
        return;
    };
    let Some(encode) = encode else { return };
    // SAFETY: `h` is HANDLER; `cs` a static callsite of a loaded module; `types` has n_types.
    let (gen, cs, types) = unsafe {
        (
            (*h).gen_,
            &*cs.cast::<Callsite>(),
            core::slice::from_raw_parts(types, if types.is_null() { 0 } else { n_types }),
        )
    };
    // SAFETY: interrupts are off: the CPU is stable.
    let cpu = (unsafe { sys::klr_this_cpu() } as usize).min(MAX_CPUS - 1);
    let cb = st.chan.private_data();
    if cs.is_defined(gen) {
        // Pairs with define's release fence: the definition is in the stream before our frame.
        fence(Ordering::Acquire);
    } else if !define(cs, gen, types) {
        // No room for the definition: a frame without one could never be decoded.
        cb.lost[cpu].fetch_add(1, Ordering::Relaxed);
        return;
    }
    let head = ((cs.id() as u64) << 2) | kind as u64;
    // len varint (<= 5 for a sub-buffer) + head + zigzag delta (<= 10) + payload.
    let max = 5 + varint_len64(head) + 10 + len;
    let ok = st.chan.write_with(max, |slot| {
        // After a possible sub-buffer switch: the current base is this sub-buffer's.
        // SAFETY: plain clock read.
        let now = unsafe { sys::klr_clock_ns() };
        let delta = now.wrapping_sub(cb.base_ts[cpu].load(Ordering::Relaxed)) as i64;
        let zz = zigzag64(delta);
        let body = varint_len64(head) + varint_len64(zz) + len;
        let mut at = 0;
        put_varint(slot, &mut at, body as u64);
        put_varint(slot, &mut at, head);
        put_varint(slot, &mut at, zz);
        if at + len > slot.len() {
            return 0;
        }
        // SAFETY: the client's encoder writes exactly `len` bytes into the slot's tail.
        unsafe { encode(ctx, slot.as_mut_ptr().add(at), len) };
        at + len
    });
    if !ok {
        cb.lost[cpu].fetch_add(1, Ordering::Relaxed);
    }
}

/// relay_glue.c's `flush` file: completes every CPU's current sub-buffer (process context).
#[no_mangle]
pub extern "C" fn klr_flush() {
    // SAFETY: STATE is set before the `flush` file is created and freed only after the file
    // was removed (klr_flush_exit waits for writes in progress), so a non-null pointer is valid
    // for this call.
    if let Some(st) = unsafe { STATE.load(Ordering::Acquire).as_ref() } {
        st.chan.flush();
    }
}

struct KlogRelay;

impl kernel::Module for KlogRelay {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: plain getters of the module parameters and klog_core's directory.
        let (subbuf_size, n_subbufs, overwrite, dir, ncpu) = unsafe {
            (
                sys::klr_param_subbuf_size() as usize,
                sys::klr_param_n_subbufs() as usize,
                sys::klr_param_overwrite(),
                sys::klog_debugfs_dir(),
                sys::klr_nr_cpu_ids(),
            )
        };
        if dir.is_null() || subbuf_size <= SUBBUF_HEADER_LEN + 16 {
            return Err(EINVAL);
        }
        // SAFETY: creates the metadata file in klog_core's directory.
        if unsafe { sys::klr_meta_init(dir, META_CAP) } != 0 {
            return Err(ENOMEM);
        }
        let mut o = StackOut {
            buf: [0; 768],
            len: 0,
            overflow: false,
        };
        wire::meta_header(
            &mut o,
            &MetaHeader {
                n_cpus: ncpu as u16,
                overwrite,
                subbuf_size: subbuf_size as u32,
                n_subbufs: n_subbufs as u32,
            },
        );
        meta_append(&o);
        clock_record();
        let cb = KlogCb {
            overwrite,
            seq: [const { AtomicU64::new(0) }; MAX_CPUS],
            base_ts: [const { AtomicU64::new(0) }; MAX_CPUS],
            lost: [const { AtomicU32::new(0) }; MAX_CPUS],
        };
        let chan = match rsrelay::Channel::open(c_str!("cpu"), dir, subbuf_size, n_subbufs, cb) {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: undoes klr_meta_init.
                unsafe { sys::klr_meta_exit() };
                return Err(e);
            }
        };
        let st = match KBox::new(State { chan }, GFP_KERNEL) {
            Ok(st) => st,
            Err(_) => {
                // The channel was closed with the State that could not be boxed.
                // SAFETY: undoes klr_meta_init.
                unsafe { sys::klr_meta_exit() };
                return Err(ENOMEM);
            }
        };
        STATE.store(KBox::into_raw(st), Ordering::Release);
        // SAFETY: HANDLER is only touched here, in Drop and by klog_core (its `gen` field,
        // before publishing); the handler is ready (STATE set).
        let r = unsafe { sys::klog_register_handler(ptr::addr_of_mut!(HANDLER)) };
        if r != 0 {
            let st = STATE.swap(ptr::null_mut(), Ordering::AcqRel);
            // SAFETY: never published to klog_core; ours to free.
            drop(unsafe { KBox::from_raw(st) });
            // SAFETY: undoes klr_meta_init.
            unsafe { sys::klr_meta_exit() };
            return Err(EBUSY);
        }
        // SAFETY: klog_core's directory (valid while we depend on klog_core); STATE is set.
        unsafe { sys::klr_flush_init(dir) };
        pr_info!(
            "{} x {} bytes per cpu, {}\n",
            n_subbufs,
            subbuf_size,
            if overwrite {
                "overwrite"
            } else {
                "no-overwrite"
            }
        );
        Ok(KlogRelay)
    }
}

impl Drop for KlogRelay {
    fn drop(&mut self) {
        // SAFETY: removes the `flush` file and waits for writes in progress: nothing else
        // reaches STATE from user space afterwards.
        unsafe { sys::klr_flush_exit() };
        // SAFETY: after this returns no CPU is inside handler_emit (RCU grace period).
        unsafe { sys::klog_unregister_handler(ptr::addr_of_mut!(HANDLER)) };
        clock_record();
        let st = STATE.swap(ptr::null_mut(), Ordering::AcqRel);
        if !st.is_null() {
            // SAFETY: unpublished above and nobody can be inside the handler any more; the
            // channel is flushed (readers see the last sub-buffer complete) and closed by drop.
            let st = unsafe { KBox::from_raw(st) };
            st.chan.flush();
            drop(st);
        }
        // SAFETY: undoes klr_meta_init (open readers of `metadata` pin this module).
        unsafe { sys::klr_meta_exit() };
    }
}
