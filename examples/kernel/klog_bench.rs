// SPDX-License-Identifier: GPL-2.0
//! klog_bench.ko: the cost of one `klog!` event with three `u32` arguments in the kernel, side
//! by side with `trace_printk` and `pr_info` of the same arguments.
//!
//! Writing `VARIANT ITERS` to `/sys/kernel/debug/klog_bench/run` times one round of `ITERS`
//! events of that variant on the current CPU with preemption off (klog_bench_glue.c) and keeps
//! the ns per event as a sample; `/sys/kernel/debug/klog_bench/results` prints, per variant,
//! the number of rounds and the median, minimum and maximum (in ns, three decimals). Variants:
//!
//! * `klog-on`, `klog-off`: the same `klog!` loop; the caller makes sure a handler is
//!   registered (klog_relay.ko, overwrite mode so nothing is dropped) or not;
//! * `trace_printk`: `trace_printk("bench %u %u %u\n", ...)` (binary `bprintk` into the ftrace
//!   ring buffer);
//! * `pr_info`: `pr_info` into the printk ring buffer (not printed on a console at loglevel 4);
//! * `loop`: the loop alone (`black_box` of the arguments), the floor of the others.
use core::ffi::{c_char, c_int};
use core::fmt::Write;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kernel::prelude::*;

#[macro_use]
#[path = "../../klog/src/kernel/mod.rs"]
mod klog;

#[path = "../../relay/src/kernel/slice_writer.rs"]
mod slice_writer;
use slice_writer::SliceWriter;

module! {
    type: KlogBench,
    name: "klog_bench",
    author: "relay-rs",
    description: "klog! vs trace_printk vs pr_info cost per event",
    license: "GPL",
}

extern "C" {
    fn kb_glue_init() -> c_int;
    fn kb_glue_exit();
}

/// The `klog!` loop (the `klog-on` and `klog-off` variants).
#[no_mangle]
pub extern "C" fn kb_klog_loop(n: u32) {
    for i in 0..n {
        klog!("bench {} {} {}", i, i ^ 0x5a5a, i.wrapping_mul(3));
    }
}

/// The bare loop with the same arguments.
#[no_mangle]
pub extern "C" fn kb_empty_loop(n: u32) {
    for i in 0..n {
        black_box((i, i ^ 0x5a5a, i.wrapping_mul(3)));
    }
}

/// Variant names; the index is the variant number the C side uses.
const VARIANTS: [&str; 5] = ["klog-on", "klog-off", "trace_printk", "pr_info", "loop"];
const MAX_ROUNDS: usize = 32;

/// Samples in picoseconds per event, per variant.
static SAMPLES: [[AtomicU64; MAX_ROUNDS]; VARIANTS.len()] =
    [const { [const { AtomicU64::new(0) }; MAX_ROUNDS] }; VARIANTS.len()];
static N_SAMPLES: [AtomicUsize; VARIANTS.len()] = [const { AtomicUsize::new(0) }; VARIANTS.len()];

/// Looks up a variant by name (`name` is `len` bytes); -1 if unknown.
///
/// # Safety
///
/// `name` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn kb_variant(name: *const c_char, len: usize) -> c_int {
    // SAFETY: the caller's buffer.
    let name = unsafe { core::slice::from_raw_parts(name.cast::<u8>(), len) };
    VARIANTS
        .iter()
        .position(|v| v.as_bytes() == name)
        .map_or(-1, |i| i as c_int)
}

/// Records one round: `ns` for `iters` events of `variant`.
#[no_mangle]
pub extern "C" fn kb_record(variant: c_int, iters: u32, ns: u64) {
    let Some(slots) = usize::try_from(variant).ok().and_then(|v| SAMPLES.get(v)) else {
        return;
    };
    let i = N_SAMPLES[variant as usize].fetch_add(1, Ordering::Relaxed);
    if let Some(s) = slots.get(i) {
        s.store(ns * 1000 / u64::from(iters.max(1)), Ordering::Relaxed);
    } else {
        N_SAMPLES[variant as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

fn ps(w: &mut SliceWriter<'_>, v: u64) {
    let _ = write!(w, " {}.{:03}", v / 1000, v % 1000);
}

/// The `results` file: `variant rounds median min max` per variant with samples (ns).
///
/// # Safety
///
/// `buf` has `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn kb_results(buf: *mut c_char, cap: usize) -> usize {
    // SAFETY: the caller's buffer.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
    let mut w = SliceWriter::new(out);
    for (v, name) in VARIANTS.iter().enumerate() {
        let n = N_SAMPLES[v].load(Ordering::Relaxed).min(MAX_ROUNDS);
        if n == 0 {
            continue;
        }
        let mut s = [0u64; MAX_ROUNDS];
        for (d, a) in s.iter_mut().zip(&SAMPLES[v][..n]) {
            *d = a.load(Ordering::Relaxed);
        }
        let s = &mut s[..n];
        // Insertion sort: a few samples (core's sort trips objtool in a module build).
        for i in 1..n {
            let mut j = i;
            while j > 0 && s[j - 1] > s[j] {
                s.swap(j - 1, j);
                j -= 1;
            }
        }
        // Median: the middle sample, or the mean of the two middle ones.
        let med = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        };
        let _ = write!(w, "{name} {n}");
        ps(&mut w, med);
        ps(&mut w, s[0]);
        ps(&mut w, s[n - 1]);
        let _ = writeln!(w);
    }
    w.len()
}

struct KlogBench;

impl kernel::Module for KlogBench {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: creates the debugfs files; the callbacks above are ready.
        kernel::error::to_result(unsafe { kb_glue_init() })?;
        Ok(KlogBench)
    }
}

impl Drop for KlogBench {
    fn drop(&mut self) {
        // SAFETY: removes the files; no round runs (an open control file pins the module).
        unsafe { kb_glue_exit() };
    }
}
