//! Runtime filtering: levels, RUST_LOG-style directives and dynamic-debug commands decide per
//! callsite, and a disabled callsite records nothing. Uses a counting handler (the generic,
//! dynamically dispatched handler path).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use klog::arg::DynArgs;
use klog::{klog, klog_debug, klog_warn, Callsite, Handler};

#[derive(Default)]
struct Counter(Mutex<HashMap<&'static str, usize>>);

impl Handler for Counter {
    fn slots(&self) -> usize {
        1
    }
    unsafe fn event(&self, _slot: usize, cs: &'static Callsite, _args: &dyn DynArgs) {
        *self.0.lock().unwrap().entry(cs.meta().fmt).or_default() += 1;
    }
    unsafe fn raw(&self, _slot: usize, _cs: &'static Callsite, _bytes: &[u8]) {}
    fn lost(&self, _slot: usize) {}
    unsafe fn flush(&self, _slot: usize) {}
}

mod net {
    pub mod rx {
        pub fn emit() {
            klog::klog!("rx packet {}", 1u32);
            klog::klog_debug!("rx detail {}", 2u32);
        }
    }
    pub fn emit() {
        klog::klog!("net up {}", 3u32);
    }
}

fn emit_all() {
    klog!("plain info {}", 1u8);
    klog_warn!("a warning {}", 2u8);
    klog_debug!("a debug line {}", 3u8);
    klog!("special event {}", 4u8);
    net::emit();
    net::rx::emit();
}

fn run(c: &Counter) -> HashMap<&'static str, usize> {
    c.0.lock().unwrap().clear();
    emit_all();
    c.0.lock().unwrap().clone()
}

fn has(m: &HashMap<&'static str, usize>, fmt: &str) -> bool {
    m.get(fmt).copied().unwrap_or(0) == 1
}

#[test]
fn levels_directives_and_commands() {
    let c = Arc::new(Counter::default());
    // Seen once with no handler: every callsite registered and disabled.
    emit_all();
    klog::register(c.clone()).unwrap();

    klog::set_max_level(klog::Level::Info);
    let m = run(&c);
    assert!(has(&m, "plain info {0}") && has(&m, "a warning {0}") && has(&m, "net up {0}"));
    assert!(!m.contains_key("a debug line {0}") && !m.contains_key("rx detail {0}"));

    klog::set_filter("warn,filter::net=info,filter::net::rx=debug").unwrap();
    let m = run(&c);
    assert!(has(&m, "a warning {0}"));
    assert!(!m.contains_key("plain info {0}"), "default warn drops info");
    assert!(has(&m, "net up {0}"), "net=info");
    assert!(
        has(&m, "rx packet {0}") && has(&m, "rx detail {0}"),
        "longest prefix: rx=debug"
    );

    klog::set_filter("trace,filter::net=off").unwrap();
    let m = run(&c);
    assert!(has(&m, "a debug line {0}"));
    assert!(!m.contains_key("net up {0}") && !m.contains_key("rx packet {0}"));

    // Dynamic-debug commands override directives for what they match.
    klog::control("format \"special\" -p").unwrap();
    let m = run(&c);
    assert!(!m.contains_key("special event {0}"));
    assert!(has(&m, "plain info {0}"));
    klog::control("module filter::net::rx +p; level warn -p").unwrap();
    let m = run(&c);
    assert!(has(&m, "rx packet {0}") && has(&m, "rx detail {0}"));
    assert!(!m.contains_key("a warning {0}"));
    let line = line!() + 4;
    klog::control(&format!("file filter.rs line {line} -p")).unwrap();
    let m = {
        c.0.lock().unwrap().clear();
        klog!("on the disabled line {}", 5u8);
        klog!("on another line {}", 6u8);
        c.0.lock().unwrap().clone()
    };
    assert!(!m.contains_key("on the disabled line {0}"));
    assert!(has(&m, "on another line {0}"));

    // A disabled callsite is disabled in its state word (the one-load check).
    let mut special = None;
    klog::for_each_callsite(|cs| {
        if cs.meta().fmt == "special event {0}" {
            special = Some(cs.is_enabled());
        }
    });
    assert_eq!(special, Some(false));

    assert!(klog::control("bogus thing +p").is_err());
    assert!(klog::control("module x").is_err(), "missing +p/-p");
    assert!(klog::set_filter("nope").is_err());
    assert!(klog::set_filter("=debug").is_err());

    klog::filter::clear();
    klog::set_max_level(klog::Level::Trace);
    let m = run(&c);
    assert_eq!(m.len(), 7, "everything back on: {m:?}");
    klog::unregister();
    let m = run(&c);
    assert!(m.is_empty(), "nothing after unregister");
}
