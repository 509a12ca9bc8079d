// SPDX-License-Identifier: GPL-2.0
//! reserve_example.ko: records written in place with the Rust relay's `reserve`, and
//! sub-buffer headers that count what each sub-buffer holds, as in relay's documentation
//! (Documentation/filesystems/relay.rst: the `subbuf_start` callback reserves a header in the
//! new sub-buffer and writes the padding of the previous one into that one's header).
//!
//! Channel `/sys/kernel/debug/reserve_example/cpuN`, 64 × 4 KiB per CPU, no-overwrite.
//! Every sub-buffer starts with a 24-byte header (little-endian `u32`s):
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | magic | `RSV1` |
//! | 4 | cpu | the buffer's CPU |
//! | 8 | seq | sub-buffer number on this buffer (0, 1, ...) |
//! | 12 | records | records in the sub-buffer |
//! | 16 | bytes | bytes of those records |
//! | 20 | padding | unused bytes at the end (`prev_padding` of the next start) |
//!
//! `records`, `bytes` and `padding` are `0xffffffff` until the sub-buffer is finished: the next
//! `subbuf_start` (a full sub-buffer, or `flush`) fills them in with `write_prev_subbuf`, so
//! `24 + bytes + padding == subbuf_size` for every finished sub-buffer. A record is
//! `u16 len | u8 src | u8 cpu | u32 seq | len - 8 bytes (seq + i) as u8`, 8..64 bytes.
//!
//! Writers reserve with interrupts off (`rx_irq_save`), fill the slot and count it in the
//! per-CPU counters the header callback reads: relay's rule for `relay_reserve`, which here also
//! keeps the counters exact (the callback runs on the same CPU, inside a reserve or in the flush
//! IPI). Writing `N T` to `run` makes a kthread on every online CPU write N records (src 0) and
//! a timer on CPU 0 write T more in hardirq context (src 1), then flushes the channel. `stats`
//! shows the geometry and, per CPU, the records and bytes written and the writes dropped.
//! `reserve-check kernel /sys/kernel/debug/reserve_example` (examples/src/bin) verifies it all.
use core::ffi::c_char;
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

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
    include!("reserve_bindings.rs");
}

#[path = "../../relay/src/kernel/client.rs"]
#[allow(dead_code, unreachable_pub)]
mod rsrelay;

#[path = "../../relay/src/kernel/slice_writer.rs"]
mod slice_writer;
use slice_writer::SliceWriter;

module! {
    type: ReserveExample,
    name: "reserve_example",
    author: "relay-rs",
    description: "rsrelay reserve + sub-buffer headers counting their contents",
    license: "GPL",
}

const SUBBUF_SIZE: usize = 4096;
const N_SUBBUFS: usize = 64;
const HDR_LEN: usize = 24;
const MAGIC: [u8; 4] = *b"RSV1";
const UNKNOWN: u32 = u32::MAX;
const MAX_CPUS: usize = 64;
/// Record sizes: 8..=64 bytes.
const REC_MIN: usize = 8;
const REC_SPREAD: u32 = 57;

/// What the current sub-buffer of one buffer holds (only touched on that CPU, interrupts off).
struct Counts {
    records: AtomicU32,
    bytes: AtomicU32,
    seq: AtomicU32,
}

/// The header callback and the per-CPU counters.
struct Hdr {
    cur: [Counts; MAX_CPUS],
}

impl rsrelay::Callbacks for Hdr {
    fn subbuf_start(&self, ctx: &mut rsrelay::StartCtx<'_>) -> bool {
        let c = &self.cur[(ctx.cpu() as usize).min(MAX_CPUS - 1)];
        if ctx.prev_subbuf().is_some() {
            // The previous sub-buffer is finished: its counts and padding go into its header
            // (before the full check, as relay.rst's example: a refused switch also finished
            // it, and a retry writes the same values again).
            let mut b = [0u8; 12];
            b[0..4].copy_from_slice(&c.records.load(Ordering::Relaxed).to_le_bytes());
            b[4..8].copy_from_slice(&c.bytes.load(Ordering::Relaxed).to_le_bytes());
            b[8..12].copy_from_slice(&(ctx.prev_padding() as u32).to_le_bytes());
            ctx.write_prev_subbuf(12, &b);
        }
        if ctx.buf_full() || ctx.reserve(HDR_LEN).is_err() {
            return false;
        }
        let seq = c.seq.load(Ordering::Relaxed);
        c.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        let mut h = [0u8; HDR_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&ctx.cpu().to_le_bytes());
        h[8..12].copy_from_slice(&seq.to_le_bytes());
        for f in h[12..].chunks_exact_mut(4) {
            f.copy_from_slice(&UNKNOWN.to_le_bytes());
        }
        ctx.write_subbuf(0, &h);
        c.records.store(0, Ordering::Relaxed);
        c.bytes.store(0, Ordering::Relaxed);
        true
    }
}

/// Per-CPU totals of the writers: records, bytes, dropped writes.
static TOTALS: [[AtomicU64; 3]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 3] }; MAX_CPUS];

struct State {
    chan: rsrelay::Channel<Hdr>,
    dir: *mut sys::dentry,
}

/// Set while the module is loaded (before the control files exist, cleared after they are gone).
static STATE: AtomicPtr<State> = AtomicPtr::new(ptr::null_mut());

fn state() -> Option<&'static State> {
    // SAFETY: STATE is null or a leaked KBox freed only at unload, after every writer stopped
    // and the control files were removed.
    unsafe { STATE.load(Ordering::Acquire).as_ref() }
}

fn fill(slot: &mut [u8], src: u8, cpu: u32, seq: u32) {
    let len = slot.len();
    slot[0..2].copy_from_slice(&(len as u16).to_le_bytes());
    slot[2] = src;
    slot[3] = cpu as u8;
    slot[4..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in slot[8..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
}

/// Writes record `seq` of source `src` on the current CPU (any context but NMI).
#[no_mangle]
pub extern "C" fn rx_write(src: u32, seq: u32) -> bool {
    let Some(st) = state() else { return false };
    let len = REC_MIN + (seq % REC_SPREAD) as usize;
    // SAFETY: paired with rx_irq_restore below.
    let flags = unsafe { sys::rx_irq_save() };
    // SAFETY: interrupts are off: the CPU is stable.
    let cpu = unsafe { sys::rx_this_cpu() };
    let c = cpu as usize % MAX_CPUS;
    // SAFETY: interrupts stay off until the slot is filled and counted.
    let ok = match unsafe { st.chan.reserve(len) } {
        Some(slot) => {
            fill(slot, src as u8, cpu, seq);
            // After the reserve: if it switched sub-buffers, the callback reset the counters
            // and this record is the new sub-buffer's first.
            let cur = &st.chan.private_data().cur[c];
            cur.records
                .store(cur.records.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            cur.bytes.store(
                cur.bytes.load(Ordering::Relaxed) + len as u32,
                Ordering::Relaxed,
            );
            TOTALS[c][0].fetch_add(1, Ordering::Relaxed);
            TOTALS[c][1].fetch_add(len as u64, Ordering::Relaxed);
            true
        }
        None => {
            TOTALS[c][2].fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    // SAFETY: restores what rx_irq_save saved.
    unsafe { sys::rx_irq_restore(flags) };
    ok
}

/// The kthread body: `n` records of source 0.
#[no_mangle]
pub extern "C" fn rx_thread_body(n: u32) {
    for seq in 0..n {
        rx_write(0, seq);
    }
}

/// After a run: finish every buffer's current sub-buffer (its header gets its counts).
#[no_mangle]
pub extern "C" fn rx_flush() {
    if let Some(st) = state() {
        st.chan.flush();
    }
}

/// The `stats` file.
///
/// # Safety
///
/// `buf` has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rx_stats(buf: *mut c_char, cap: usize) -> usize {
    // SAFETY: the caller's buffer.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
    let mut w = SliceWriter::new(out);
    let _ = writeln!(
        w,
        "subbuf_size {SUBBUF_SIZE} n_subbufs {N_SUBBUFS} header {HDR_LEN}"
    );
    let Some(st) = state() else { return w.len() };
    // SAFETY: plain getter.
    let ncpu = (unsafe { sys::rx_nr_cpu_ids() } as usize).min(MAX_CPUS);
    for (cpu, t) in TOTALS.iter().enumerate().take(ncpu) {
        let Some(s) = st.chan.stats(cpu as u32) else {
            continue;
        };
        let _ = writeln!(
            w,
            "cpu {cpu} records {} bytes {} dropped {} relay_dropped {} produced {}",
            t[0].load(Ordering::Relaxed),
            t[1].load(Ordering::Relaxed),
            t[2].load(Ordering::Relaxed),
            s.dropped_msgs,
            s.produced,
        );
    }
    w.len()
}

struct ReserveExample;

impl kernel::Module for ReserveExample {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: a new top-level debugfs directory.
        let dir = unsafe {
            sys::debugfs_create_dir(c_str!("reserve_example").as_char_ptr(), ptr::null_mut())
        };
        // SAFETY: pointer check only.
        if unsafe { sys::rx_is_err_or_null(dir.cast()) } {
            return Err(ENOMEM);
        }
        let hdr = Hdr {
            cur: [const {
                Counts {
                    records: AtomicU32::new(0),
                    bytes: AtomicU32::new(0),
                    seq: AtomicU32::new(0),
                }
            }; MAX_CPUS],
        };
        let st = rsrelay::Channel::open(c_str!("cpu"), dir, SUBBUF_SIZE, N_SUBBUFS, hdr)
            .and_then(|chan| Ok(KBox::new(State { chan, dir }, GFP_KERNEL)?));
        let st = match st {
            Ok(st) => st,
            Err(e) => {
                // SAFETY: created above; the channel (if it was opened) is closed.
                unsafe { sys::debugfs_remove(dir) };
                return Err(e);
            }
        };
        STATE.store(KBox::into_raw(st), Ordering::Release);
        // SAFETY: the control files go into our directory; STATE is set.
        let r = unsafe { sys::rx_glue_init(dir) };
        if r != 0 {
            drop_state();
            return Err(Error::from_errno(r));
        }
        Ok(ReserveExample)
    }
}

fn drop_state() {
    let p = STATE.swap(ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: leaked in init, unpublished above; no writer runs any more.
        let st = unsafe { KBox::from_raw(p) };
        let dir = st.dir;
        drop(st);
        // SAFETY: the channel's files were removed by its close.
        unsafe { sys::debugfs_remove(dir) };
    }
}

impl Drop for ReserveExample {
    fn drop(&mut self) {
        // SAFETY: removes the control files (an open one pins the module, so no run is in
        // progress) and cancels the timer.
        unsafe { sys::rx_glue_exit() };
        drop_state();
    }
}
