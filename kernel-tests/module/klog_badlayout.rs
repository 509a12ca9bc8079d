// SPDX-License-Identifier: GPL-2.0
//! klog_badlayout.ko: a klog! client built with `--cfg klog_test_other_layout`, i.e. against
//! another `Callsite` layout than klog_core.ko's. klog_core must refuse its callsites (and say
//! so in the kernel log) instead of reading them with the wrong layout.
use kernel::prelude::*;

#[macro_use]
#[path = "../../klog/src/kernel/mod.rs"]
mod klog;

module! {
    type: KlogBadLayout,
    name: "klog_badlayout",
    author: "relay-rs",
    description: "klog! test client built against another callsite layout",
    license: "GPL",
}

struct KlogBadLayout;

impl kernel::Module for KlogBadLayout {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        for i in 0..3u32 {
            klog!("badlayout event {}", i);
        }
        Ok(KlogBadLayout)
    }
}
