//! The user-space flight recorder: an overwrite-mode klog handler, an mmap snapshot at the end;
//! the snapshot must hold the newest events of every thread and not the oldest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use klog_decode::{decode_dir, Options, Payload, Record, Value, WarningKind};

#[test]
fn snapshot_holds_the_newest_events_and_not_the_oldest() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("klog-examples-flight-{}", std::process::id()));
    const EVENTS: u64 = 40_000;
    // One thread per CPU the test may run on (the program pins them), at most 2.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let out = Command::new(env!("CARGO_BIN_EXE_flight-recorder"))
        .args(["--threads", &threads.to_string()])
        .args(["--events", &EVENTS.to_string(), "--out"])
        .arg(&dir)
        .output()
        .expect("run flight-recorder");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(stdout.contains(&format!("flight event {} of thread", EVENTS - 1)));

    // Decode the snapshot independently of the program's own verdict.
    let r = decode_dir(
        &dir,
        &Options {
            snapshot: true,
            ..Options::default()
        },
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // Only the sub-buffers being written (one per buffer, a bare header after the flush).
    assert_eq!(
        r.stats.total_warnings(),
        r.stats.count(WarningKind::TornSubbuf),
        "{}",
        r.stats
    );
    let mut per_thread: BTreeMap<u128, Vec<u128>> = BTreeMap::new();
    for rec in &r.records {
        let Record::Event(e) = rec else {
            panic!("{rec:?}")
        };
        let Payload::Values(v) = &e.payload else {
            panic!("{e:?}")
        };
        match v.as_slice() {
            [Value::Unsigned(i), Value::Unsigned(t)] => per_thread.entry(*t).or_default().push(*i),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(per_thread.len(), threads);
    for (t, ev) in &per_thread {
        // Newest present, oldest absent, nothing missing in between.
        assert_eq!(
            ev.last().copied(),
            Some(u128::from(EVENTS - 1)),
            "thread {t}"
        );
        assert!(ev[0] > 0, "thread {t}: event 0 survived");
        assert!(!ev.contains(&0));
        assert!(ev.windows(2).all(|w| w[1] == w[0] + 1), "thread {t}");
        assert!(ev.len() > 100, "thread {t}: only {} events", ev.len());
    }
}
