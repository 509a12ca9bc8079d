//! The `log` crate routed into klog (feature `log`): records arrive as klog events with the
//! target and the rendered message, filtered by level.
#![cfg(feature = "log")]

use std::sync::{Arc, Mutex};

use klog::arg::{DynArgs, Writer};
use klog::{Callsite, Handler};

#[derive(Default)]
struct Capture(Mutex<Vec<(klog::Level, Vec<u8>)>>);

impl Handler for Capture {
    fn slots(&self) -> usize {
        1
    }
    unsafe fn event(&self, _slot: usize, cs: &'static Callsite, args: &dyn DynArgs) {
        let mut buf = vec![0u8; args.encoded_len()];
        args.encode(&mut Writer::new(&mut buf));
        self.0.lock().unwrap().push((cs.meta().level, buf));
    }
    unsafe fn raw(&self, _slot: usize, _cs: &'static Callsite, _bytes: &[u8]) {}
    fn lost(&self, _slot: usize) {}
    unsafe fn flush(&self, _slot: usize) {}
}

#[test]
fn log_macros_become_klog_events() {
    klog::set_max_level(klog::Level::Info);
    klog::log_bridge::init().unwrap();
    let c = Arc::new(Capture::default());
    log::info!("dropped: no handler yet");
    klog::register(c.clone()).unwrap();
    log::warn!(target: "net::rx", "queue {} stalled", 3);
    log::info!("{}", "é".repeat(2000));
    log::debug!("filtered out by level");
    klog::unregister();
    let got = c.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    let (target, msg): (String, String) = postcard::from_bytes(&got[0].1).unwrap();
    assert_eq!(
        (got[0].0, target.as_str(), msg.as_str()),
        (klog::Level::Warn, "net::rx", "queue 3 stalled")
    );
    let (_, long): (String, String) = postcard::from_bytes(&got[1].1).unwrap();
    assert_eq!(
        long,
        "é".repeat(512),
        "truncated to 1 KiB on a character boundary"
    );
}
