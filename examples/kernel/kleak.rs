// SPDX-License-Identifier: GPL-2.0
//! kleak.ko: a memory-leak tracer in the spirit of relay-apps' kleak, on `klog!`.
//!
//! Every allocation and free of this module's workload is logged with `klog!`:
//!
//! ```text
//! kleak alloc ptr={:#x} size={} site={}     after the allocation returned
//! kleak free ptr={:#x} size={}              before the memory is given back
//! ```
//!
//! That order makes a trace merged by timestamp consistent even when the allocator hands an
//! address freed on one CPU to another CPU: the free is logged before the address can be
//! reused, the new allocation after. `kleak-report` (examples/src/bin/kleak-report.rs) pairs
//! them by pointer and lists what is still outstanding, grouped by site.
//!
//! Writing `N T` to `/sys/kernel/debug/kleak/run` runs the workload: a kthread on every online
//! CPU does `N` rounds of `KVec`/`KBox`/`kmalloc` allocations at four sites (the `KBox`es are
//! passed between the kthreads and freed by whichever takes them, often on another CPU), and a
//! timer on CPU 0 allocates in hardirq context (`GFP_ATOMIC`) on each of `T` ticks. A few allocations are
//! leaked on purpose (a fixed number and size per site, see `LEAK_*`);
//! `/sys/kernel/debug/kleak/expected` lists them as `site count bytes` lines. The module keeps
//! the leaked blocks on a list and frees them, without logging, when it is unloaded, so the
//! test kernel does not really lose the memory.
use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write;
use core::mem::size_of;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use kernel::prelude::*;

#[macro_use]
#[path = "../../klog/src/kernel/mod.rs"]
mod klog;

#[path = "../../relay/src/kernel/slice_writer.rs"]
mod slice_writer;
use slice_writer::SliceWriter;

module! {
    type: Kleak,
    name: "kleak",
    author: "relay-rs",
    description: "klog! example: allocations and frees traced for leak analysis",
    license: "GPL",
}

extern "C" {
    fn kl_glue_init() -> c_int;
    fn kl_glue_exit();
    fn kl_kmalloc(size: usize, atomic: bool) -> *mut c_void;
    fn kl_kfree(p: *mut c_void);
}

/// Logs an allocation. A macro, so that each site has its own `klog!` callsite (the report
/// shows the callsite's file:line next to the site name).
macro_rules! log_alloc {
    ($site:literal, $ptr:expr, $size:expr) => {
        klog!(
            "kleak alloc ptr={:#x} size={} site={}",
            $ptr as usize as u64,
            $size as u64,
            $site
        )
    };
}

/// Logs a free (before the memory is released).
macro_rules! log_free {
    ($ptr:expr, $size:expr) => {
        klog!(
            "kleak free ptr={:#x} size={}",
            $ptr as usize as u64,
            $size as u64
        )
    };
}

/// The sites, by index (the parked list stores the index).
const SITES: [&str; 5] = ["rx_refill", "conn_new", "msg_dup", "scratch", "timer_tick"];
const RX_REFILL: usize = 0;
const CONN_NEW: usize = 1;
const MSG_DUP: usize = 2;
const TIMER_TICK: usize = 4;

/// `rx_refill`: a `KVec<u8>` of this capacity per round.
const RX_BUF: usize = 256;
/// `scratch`: a `kmalloc` of this size, freed at once.
const SCRATCH: usize = 512;
/// `timer_tick`: a `GFP_ATOMIC` block of this size per tick.
const TICK_BUF: usize = 48;

/// Rounds of the first kthread whose allocation at a site is leaked (the other kthreads leak
/// nothing, so the expected leaks do not depend on the number of CPUs).
const LEAK_RX: [u32; 3] = [10, 50, 90];
const LEAK_CONN: [u32; 2] = [20, 70];
const LEAK_MSG: [u32; 2] = [33, 66];
/// The tick whose block is leaked.
const LEAK_TICK: u32 = 5;

/// `conn_new`: a connection object (96 bytes; the contents only give it its size).
#[allow(dead_code)]
struct Conn {
    id: u64,
    counters: [u64; 11],
}

fn msg_size(round: u32) -> usize {
    24 + (round as usize % 8) * 8
}

/// What a parked (deliberately leaked) block is, for freeing it at unload.
const KIND_VEC: u32 = 1;
const KIND_BOX: u32 = 2;
const KIND_RAW: u32 = 3;

/// One parked block; `kind` is written last (0 = slot not filled).
struct Parked {
    kind: AtomicU32,
    site: AtomicUsize,
    ptr: AtomicUsize,
    size: AtomicUsize,
}

const MAX_PARKED: usize = 64;
static PARKED: [Parked; MAX_PARKED] = [const {
    Parked {
        kind: AtomicU32::new(0),
        site: AtomicUsize::new(0),
        ptr: AtomicUsize::new(0),
        size: AtomicUsize::new(0),
    }
}; MAX_PARKED];
static N_PARKED: AtomicUsize = AtomicUsize::new(0);

/// Claims a parked slot; `false` when the list is full (the caller then frees normally).
fn park(kind: u32, site: usize, ptr: usize, size: usize) -> bool {
    let i = N_PARKED.fetch_add(1, Ordering::Relaxed);
    let Some(p) = PARKED.get(i) else {
        N_PARKED.fetch_sub(1, Ordering::Relaxed);
        return false;
    };
    p.site.store(site, Ordering::Relaxed);
    p.ptr.store(ptr, Ordering::Relaxed);
    p.size.store(size, Ordering::Relaxed);
    p.kind.store(kind, Ordering::Release);
    true
}

fn free_vec(v: KVec<u8>) {
    log_free!(v.as_ptr(), v.capacity());
    drop(v);
}

fn free_conn(c: KBox<Conn>) {
    log_free!(&*c as *const Conn, size_of::<Conn>());
    drop(c);
}

fn free_raw(p: *mut c_void, size: usize) {
    log_free!(p, size);
    // SAFETY: `p` came from kl_kmalloc and is freed once, here.
    unsafe { kl_kfree(p) };
}

fn leak_vec(v: KVec<u8>) {
    let (ptr, _len, cap) = v.into_raw_parts();
    if !park(KIND_VEC, RX_REFILL, ptr as usize, cap) {
        // SAFETY: the parts of the vector just taken apart (u8 elements need no drop).
        free_vec(unsafe { KVec::from_raw_parts(ptr, 0, cap) });
    }
}

fn leak_conn(c: KBox<Conn>) {
    let ptr = KBox::into_raw(c);
    if !park(KIND_BOX, CONN_NEW, ptr as usize, size_of::<Conn>()) {
        // SAFETY: the box just turned into a raw pointer.
        free_conn(unsafe { KBox::from_raw(ptr) });
    }
}

fn leak_raw(site: usize, p: *mut c_void, size: usize) {
    if !park(KIND_RAW, site, p as usize, size) {
        free_raw(p, size);
    }
}

/// `conn_new` objects are handed from kthread to kthread through this slot: the one taken out
/// was usually allocated on another CPU, so frees and address reuse cross CPUs.
static HANDOFF: AtomicPtr<Conn> = AtomicPtr::new(core::ptr::null_mut());

/// Puts `c` into the handoff slot and frees what was there.
fn hand_off(c: Option<KBox<Conn>>) {
    let new = c.map_or(core::ptr::null_mut(), KBox::into_raw);
    let old = HANDOFF.swap(new, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: slot pointers come from KBox::into_raw; the swap gave this one to us alone.
        free_conn(unsafe { KBox::from_raw(old) });
    }
}

/// The body of the kthread of `cpu`: `n` rounds over the four process-context sites.
#[no_mangle]
pub extern "C" fn kl_churn(cpu: u32, n: u32, leaker: bool) {
    for round in 0..n {
        // rx_refill: a receive buffer, filled a little, freed at the end of the round.
        let rx = match KVec::<u8>::with_capacity(RX_BUF, GFP_KERNEL) {
            Ok(mut v) => {
                log_alloc!("rx_refill", v.as_ptr(), v.capacity());
                // Within the capacity: no reallocation.
                let _ = v.extend_from_slice(&[cpu as u8; 16], GFP_KERNEL);
                Some(v)
            }
            Err(_) => None,
        };
        // msg_dup: a C kmalloc of a size that varies per round.
        let msz = msg_size(round);
        // SAFETY: plain kmalloc; the block is freed or parked below.
        let msg = unsafe { kl_kmalloc(msz, false) };
        if !msg.is_null() {
            log_alloc!("msg_dup", msg, msz);
        }
        // scratch: allocated and freed right away; never leaks.
        // SAFETY: as above.
        let s = unsafe { kl_kmalloc(SCRATCH, false) };
        if !s.is_null() {
            log_alloc!("scratch", s, SCRATCH);
            free_raw(s, SCRATCH);
        }
        // conn_new: a boxed object that lives until a kthread (maybe on another CPU) takes it
        // out of the handoff slot.
        let conn = KBox::new(
            Conn {
                id: (u64::from(cpu) << 32) | u64::from(round),
                counters: [0; 11],
            },
            GFP_KERNEL,
        )
        .ok();
        if let Some(c) = &conn {
            log_alloc!("conn_new", &**c as *const Conn, size_of::<Conn>());
        }

        if let Some(v) = rx {
            if leaker && LEAK_RX.contains(&round) {
                leak_vec(v);
            } else {
                free_vec(v);
            }
        }
        if !msg.is_null() {
            if leaker && LEAK_MSG.contains(&round) {
                leak_raw(MSG_DUP, msg, msz);
            } else {
                free_raw(msg, msz);
            }
        }
        if let Some(c) = conn {
            if leaker && LEAK_CONN.contains(&round) {
                leak_conn(c);
            } else {
                hand_off(Some(c));
            }
        }
    }
}

/// The end of a run (every kthread finished): frees the object left in the handoff slot.
#[no_mangle]
pub extern "C" fn kl_run_done() {
    hand_off(None);
}

/// The block of the previous tick (freed by the next one).
static TICK_PREV: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// One timer tick (hardirq context on CPU 0, ticks run one after another): allocate a block,
/// free the previous tick's (or leak it at `LEAK_TICK`); the last tick frees its own too.
#[no_mangle]
pub extern "C" fn kl_timer_tick(tick: u32, last: bool) {
    // SAFETY: GFP_ATOMIC kmalloc, allowed in hardirq context.
    let p = unsafe { kl_kmalloc(TICK_BUF, true) };
    if !p.is_null() {
        log_alloc!("timer_tick", p, TICK_BUF);
    }
    let prev = TICK_PREV.swap(p, Ordering::Relaxed);
    if !prev.is_null() {
        if tick == LEAK_TICK + 1 {
            leak_raw(TIMER_TICK, prev, TICK_BUF);
        } else {
            free_raw(prev, TICK_BUF);
        }
    }
    if last {
        let cur = TICK_PREV.swap(core::ptr::null_mut(), Ordering::Relaxed);
        if !cur.is_null() {
            free_raw(cur, TICK_BUF);
        }
    }
}

/// The `expected` file: one `site count bytes` line per site with deliberate leaks.
///
/// # Safety
///
/// `buf` has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn kl_expected(buf: *mut c_char, cap: usize) -> usize {
    // SAFETY: the caller's buffer.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
    let mut w = SliceWriter::new(out);
    let n = N_PARKED.load(Ordering::Relaxed).min(MAX_PARKED);
    for (site, name) in SITES.iter().enumerate() {
        let (mut count, mut bytes) = (0usize, 0usize);
        for p in &PARKED[..n] {
            if p.kind.load(Ordering::Acquire) != 0 && p.site.load(Ordering::Relaxed) == site {
                count += 1;
                bytes += p.size.load(Ordering::Relaxed);
            }
        }
        if count > 0 {
            let _ = writeln!(w, "{name} {count} {bytes}");
        }
    }
    w.len()
}

/// Frees the parked blocks (at unload, no workload running, not logged).
fn release_parked() {
    let n = N_PARKED.swap(0, Ordering::Relaxed).min(MAX_PARKED);
    for p in &PARKED[..n] {
        let ptr = p.ptr.load(Ordering::Relaxed);
        let size = p.size.load(Ordering::Relaxed);
        match p.kind.swap(0, Ordering::Acquire) {
            // SAFETY: parked by leak_vec from a KVec<u8> of capacity `size`.
            KIND_VEC => drop(unsafe { KVec::<u8>::from_raw_parts(ptr as *mut u8, 0, size) }),
            // SAFETY: parked by leak_conn from a KBox<Conn>.
            KIND_BOX => drop(unsafe { KBox::from_raw(ptr as *mut Conn) }),
            // SAFETY: parked by leak_raw from kl_kmalloc.
            KIND_RAW => unsafe { kl_kfree(ptr as *mut c_void) },
            _ => {}
        }
    }
}

struct Kleak;

impl kernel::Module for Kleak {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: creates the debugfs files; the callbacks above are ready.
        kernel::error::to_result(unsafe { kl_glue_init() })?;
        Ok(Kleak)
    }
}

impl Drop for Kleak {
    fn drop(&mut self) {
        // No run can be in progress: an open control file pins the module.
        // SAFETY: removes the files and stops the timer; nothing uses them afterwards.
        unsafe { kl_glue_exit() };
        kl_run_done();
        release_parked();
    }
}
