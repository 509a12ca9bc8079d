// SPDX-License-Identifier: GPL-2.0
//! klog_example.ko: `klog!` statements in a kernel module, in the spirit of relay-apps' klog
//! example. Writing `N T` to `/sys/kernel/debug/klog_example/run` makes a kthread on every
//! online CPU emit N events and an hrtimer (hardirq context) on CPU 0 emit T more; `spin 1` /
//! `spin 0` start and stop kthreads that emit until stopped. The statements are unconditional:
//! with no handler registered they cost one load and a branch.
use core::ffi::c_int;

use kernel::prelude::*;

#[macro_use]
#[path = "../../klog/src/kernel/mod.rs"]
mod klog;

module! {
    type: KlogExample,
    name: "klog_example",
    author: "relay-rs",
    description: "klog! example: kthreads on every CPU and a timer",
    license: "GPL",
}

extern "C" {
    fn kx_glue_init() -> c_int;
    fn kx_glue_exit();
}

/// The kthread body of a `run`: `n` events on `cpu`.
#[no_mangle]
pub extern "C" fn kx_emit_events(cpu: u32, n: u32) {
    for seq in 0..n {
        klog!(
            "example cpu {} seq {} x={:#x}",
            cpu,
            seq,
            seq.wrapping_mul(2_654_435_761)
        );
        if seq % 16 == 0 {
            klog_debug!("example debug cpu {} seq {} name={}", cpu, seq, "kthread");
        }
    }
}

/// One timer event (hardirq context).
#[no_mangle]
pub extern "C" fn kx_timer_event(cpu: u32, n: u32) {
    klog_warn!("timer tick {} on cpu {} ({:>5})", n, cpu, n as i32 - 1);
}

/// One event of a `spin` kthread.
#[no_mangle]
pub extern "C" fn kx_spin_event(cpu: u32, seq: u64) {
    klog!("spin cpu {} seq {}", cpu, seq);
}

struct KlogExample;

impl kernel::Module for KlogExample {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: creates the debugfs control file; the callbacks above are ready.
        if unsafe { kx_glue_init() } != 0 {
            return Err(ENOMEM);
        }
        Ok(KlogExample)
    }
}

impl Drop for KlogExample {
    fn drop(&mut self) {
        // SAFETY: stops every kthread and timer, removes the files.
        unsafe { kx_glue_exit() };
    }
}
