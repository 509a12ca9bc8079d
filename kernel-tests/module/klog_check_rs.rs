// SPDX-License-Identifier: GPL-2.0
//! klog_check.ko (crate `klog_check_rs`: the module and crate names differ on purpose, the
//! control file's `module` must match the module's): on load, one event through every level
//! macro of the kernel facade, a plain `klog!` and a `klog_raw!`, each exactly once. Used by
//! scripts/kernel/checks-klogdev.sh (levels, rules across reloads, module names).
use kernel::prelude::*;

#[macro_use]
#[path = "../../klog/src/kernel/mod.rs"]
mod klog;

module! {
    type: KlogCheck,
    name: "klog_check",
    author: "relay-rs",
    description: "klog! test client: every level macro once on load",
    license: "GPL",
}

struct KlogCheck;

impl kernel::Module for KlogCheck {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        klog_error!("check error {}", 1u32);
        klog_warn!("check warn {}", 2u32);
        klog_info!("check info {}", 3u32);
        klog_debug!("check debug {}", 4u32);
        klog_trace!("check trace {}", 5u32);
        klog!("check plain {} {}", 6u32, "six");
        klog_raw!([7u8, 8, 9]);
        Ok(KlogCheck)
    }
}
