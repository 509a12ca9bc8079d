//! The `log` crate routed into klog (feature `log`), checked through the decoder: each `log`
//! statement's record carries its own target, file and line (not the bridge's), obeys
//! `klog::set_filter` and later `klog::set_max_level` / `log::set_max_level` calls.
#![cfg(feature = "log")]

use std::sync::Arc;

use klog::{Level, RelayConfig, RelayHandler};
use klog_decode::{decode_dir, Options, Payload, Record, Value};

/// (level, target, file, line, message) of every decoded event.
fn decoded(dir: &std::path::Path) -> Vec<(Level, String, String, u32, String)> {
    // A snapshot of the live (flushed) buffers: complete, no warning.
    let opts = Options {
        snapshot: true,
        ..Options::default()
    };
    let r = decode_dir(dir, &opts).unwrap();
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    r.records
        .iter()
        .map(|rec| {
            let Record::Event(e) = rec else {
                panic!("{rec:?}")
            };
            let cs = r.metadata.callsite(e.callsite).unwrap();
            let Payload::Values(v) = &e.payload else {
                panic!("{e:?}")
            };
            let msg = v
                .iter()
                .map(|x| match x {
                    Value::Str(s) => s.clone(),
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join(" | ");
            let level = Level::from_u8(cs.level_raw).unwrap();
            (level, cs.module.clone(), cs.file.clone(), cs.line, msg)
        })
        .collect()
}

#[test]
fn log_records_keep_their_target_file_and_line_and_follow_the_filters() {
    let dir = std::env::temp_dir().join(format!("klog-log-bridge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    klog::set_max_level(Level::Info);
    klog::log_bridge::init().unwrap();
    log::info!("dropped: no handler yet");
    let cfg = RelayConfig {
        global: true,
        overwrite: true,
        ..RelayConfig::new(&dir)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();

    let warn_line = line!() + 1;
    log::warn!(target: "net::rx", "queue {} stalled", 3);
    let info_line = line!() + 1;
    log::info!("plain {}", 1);
    log::debug!("filtered out by klog's level");
    // A later klog::set_max_level lets debug records through.
    klog::set_max_level(Level::Debug);
    let debug_line = line!() + 1;
    log::debug!("debug after set_max_level");
    // set_filter rules by target, as for klog! statements.
    klog::set_filter("debug,net::rx=off").unwrap();
    log::warn!(target: "net::rx", "muted by set_filter");
    let tx_line = line!() + 1;
    log::warn!(target: "net::tx", "kept by set_filter");
    // A later log::set_max_level filters in log's macros.
    log::set_max_level(log::LevelFilter::Warn);
    log::info!("below log's max level");
    log::set_max_level(log::LevelFilter::Trace);
    let long_line = line!() + 1;
    log::info!("{}", "é".repeat(2000));

    klog::unregister();
    h.finish();
    klog::set_filter("trace").unwrap();
    let got = decoded(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let here = module_path!().to_owned();
    let file = file!().to_owned();
    let e = |l, t: &str, line, m: &str| (l, t.to_owned(), file.clone(), line, m.to_owned());
    assert_eq!(
        got,
        [
            e(Level::Warn, "net::rx", warn_line, "queue 3 stalled"),
            e(Level::Info, &here, info_line, "plain 1"),
            e(Level::Debug, &here, debug_line, "debug after set_max_level"),
            e(Level::Warn, "net::tx", tx_line, "kept by set_filter"),
            e(Level::Info, &here, long_line, &"é".repeat(512)),
        ],
        "the last one truncated to 1 KiB on a character boundary"
    );
}
