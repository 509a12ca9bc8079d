//! Exact accounting and trace identity (format version 3), end to end: real `klog!` statements
//! from 8 threads with their own sequence numbers → `RelayHandler` on tiny buffers (4 × 4 KiB)
//! → `relay::user::Recorder` → `decode_dir`. The expectation is independent of the decoder:
//! what the threads emitted (8 × N events, each (thread, seq) once) and the handler's own
//! counters.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::TempDir;
use klog::{klog, RelayConfig, RelayHandler};
use klog_decode::{decode_dir, Error, Options, Payload, Record, Report, Value, WarningKind};

/// The dispatcher is process-global: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const THREADS: u64 = 8;
const PER_THREAD: u64 = 20_000;

fn config(live: &Path, overwrite: bool) -> RelayConfig {
    RelayConfig {
        subbuf_size: 4096,
        n_subbufs: 4,
        overwrite,
        ..RelayConfig::new(live)
    }
}

/// Emits `PER_THREAD` events from each of `THREADS` threads, each carrying (thread, seq).
fn emit_all() {
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    klog!("acct thread {} seq {}", t, i);
                }
            });
        }
    });
}

/// Copies the metadata of `live` into `out` (after the handler finished, so it holds the
/// totals records).
fn copy_metadata(live: &Path, out: &Path) {
    std::fs::copy(live.join("metadata"), out.join("metadata")).unwrap();
}

/// Records what is in the buffers of `live` (after the handler finished) and the metadata
/// into `out`, as a user would.
fn record(live: &Path, out: &Path) {
    relay::user::Recorder::for_dir(live, "cpu", out)
        .unwrap()
        .run(&AtomicBool::new(true))
        .unwrap();
    copy_metadata(live, out);
}

/// The (thread, seq) pairs of the decoded events.
fn pairs(r: &Report) -> Vec<(u64, u64)> {
    r.records
        .iter()
        .filter_map(|rec| match rec {
            Record::Event(e) => match &e.payload {
                Payload::Values(v) => match v.as_slice() {
                    [Value::Unsigned(t), Value::Unsigned(i)] => Some((*t as u64, *i as u64)),
                    other => panic!("unexpected values {other:?}"),
                },
                Payload::Raw(_) => panic!("no raw records were emitted"),
            },
            Record::Lost(_) => None,
        })
        .collect()
}

/// Runs one trace: the recorder drains concurrently (`concurrent`) or only after `finish`,
/// when the buffers are full (no-overwrite: everything after the 4th sub-buffer is dropped,
/// after the last header that could report it) or lapped many times (overwrite).
fn run(overwrite: bool, concurrent: bool) {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("acct-live");
    let out = TempDir::new("acct-out");
    let h = Arc::new(RelayHandler::open(&config(live.path(), overwrite)).unwrap());
    let stop = AtomicBool::new(false);
    let hs = std::thread::scope(|s| {
        let rec = concurrent.then(|| {
            let rec = relay::user::Recorder::for_dir(live.path(), "cpu", out.path()).unwrap();
            s.spawn(|| rec.run(&stop).unwrap())
        });
        klog::register(h.clone()).unwrap();
        emit_all();
        assert!(klog::unregister().is_some());
        let hs = h.finish();
        stop.store(true, Ordering::Release);
        if let Some(r) = rec {
            r.join().unwrap();
        }
        hs
    });
    if overwrite && !concurrent {
        // A snapshot of the flight recorder (nothing consumed) accounts for everything too:
        // the lapped slots are overwritten, the rest decoded.
        let r = decode_dir(
            live.path(),
            &Options {
                snapshot: true,
                ..Options::default()
            },
        )
        .unwrap();
        let got = pairs(&r);
        let distinct: HashSet<(u64, u64)> = got.iter().copied().collect();
        assert_eq!(distinct.len(), got.len(), "an event was decoded twice");
        let a = r.stats.accounting.expect("accounting");
        assert!(a.exact, "{a}\n{}", r.stats);
        assert_eq!(a.emitted, THREADS * PER_THREAD, "{a}");
        assert_eq!(a.decoded, got.len() as u64, "{a}");
        assert_eq!(a.lost, 0, "{a}");
        assert_eq!(a.decoded + a.overwritten + a.unrecorded, a.emitted, "{a}");
        assert!(a.overwritten > a.emitted / 2, "{a}");
    }
    if concurrent {
        copy_metadata(live.path(), out.path());
    } else {
        record(live.path(), out.path());
    }
    let r = decode_dir(out.path(), &Options::default()).unwrap();

    let emitted = THREADS * PER_THREAD;
    let written: u64 = hs.frames.iter().sum();
    let dropped: u64 = hs.lost.iter().sum();
    assert_eq!(written + dropped, emitted, "the handler counts every event");
    let got = pairs(&r);
    let distinct: HashSet<(u64, u64)> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "an event was decoded twice");
    assert!(
        got.iter().all(|&(t, i)| t < THREADS && i < PER_THREAD),
        "a decoded event was never emitted"
    );
    let a = r.stats.accounting.expect("accounting");
    let what = format!(
        "overwrite={overwrite} concurrent={concurrent}: {a}\n{}",
        r.stats
    );
    assert!(a.exact, "{what}");
    assert_eq!(a.emitted, emitted, "{what}");
    assert_eq!(a.decoded, got.len() as u64, "{what}");
    assert_eq!(a.lost, dropped, "{what}");
    assert_eq!(a.decoded + a.lost + a.overwritten, emitted, "{what}");
    assert_eq!(a.unrecorded, 0, "the recorder drained everything: {what}");
    if !overwrite {
        assert_eq!(a.overwritten, 0, "{what}");
    }
    if !concurrent {
        // Tiny buffers, no reader while writing: most events were dropped (no-overwrite) or
        // overwritten (overwrite); the trace says so.
        let gone = if overwrite { a.overwritten } else { a.lost };
        assert!(gone > emitted / 2, "{what}");
    }
    // The lost-event records of the trace add up to the drops, the ones after the last
    // sub-buffer header included.
    let reported: u64 = r
        .records
        .iter()
        .map(|rec| match rec {
            Record::Lost(l) => l.count,
            Record::Event(_) => 0,
        })
        .sum();
    assert_eq!(reported, dropped, "{what}");
}

#[test]
fn no_overwrite_full_at_finish_is_exact() {
    run(false, false);
}

#[test]
fn no_overwrite_with_a_live_recorder_is_exact() {
    run(false, true);
}

#[test]
fn overwrite_lapped_at_finish_is_exact() {
    run(true, false);
}

#[test]
fn overwrite_with_a_live_recorder_is_exact() {
    run(true, true);
}

/// A copy of the files of `dir`.
fn copy_dir(dir: &Path, tag: &str) -> TempDir {
    let t = TempDir::new(tag);
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), t.path().join(e.file_name())).unwrap();
    }
    t
}

/// One finished trace with a few events, recorded into `out`.
fn small_trace(live: &TempDir, out: &TempDir, tag: u64) {
    let h = Arc::new(RelayHandler::open(&config(live.path(), false)).unwrap());
    klog::register(h.clone()).unwrap();
    for i in 0..10u64 {
        klog!("run {} event {}", tag, i);
    }
    assert!(klog::unregister().is_some());
    h.finish();
    record(live.path(), out.path());
}

#[test]
fn metadata_of_another_run_is_refused() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (live_a, out_a) = (TempDir::new("id-live-a"), TempDir::new("id-out-a"));
    let (live_b, out_b) = (TempDir::new("id-live-b"), TempDir::new("id-out-b"));
    small_trace(&live_a, &out_a, 1);
    small_trace(&live_b, &out_b, 2);
    assert_eq!(
        pairs(&decode_dir(out_a.path(), &Options::default()).unwrap()).len(),
        10
    );
    // The same program, another run: metadata swapped. Every stream is refused.
    let swapped = copy_dir(out_a.path(), "id-swapped");
    std::fs::copy(
        out_b.path().join("metadata"),
        swapped.path().join("metadata"),
    )
    .unwrap();
    match decode_dir(swapped.path(), &Options::default()) {
        Err(e @ Error::TraceIdMismatch { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("metadata") && msg.contains("cpu0"), "{msg}");
        }
        other => panic!("decoded metadata of another run: {other:?}"),
    }
    // One stream of another run among the right ones: that stream is refused and reported,
    // the others decode, and its events count as unrecorded, not decoded.
    // Find a stream of b holding events and put a's in its place.
    let r_b = decode_dir(out_b.path(), &Options::default()).unwrap();
    let busy = r_b
        .records
        .iter()
        .find_map(|rec| match rec {
            Record::Event(e) => Some(e.cpu),
            _ => None,
        })
        .unwrap();
    let mixed = copy_dir(out_b.path(), "id-mixed");
    let name = format!("cpu{busy}");
    std::fs::copy(out_a.path().join(&name), mixed.path().join(&name)).unwrap();
    let r = decode_dir(mixed.path(), &Options::default()).unwrap();
    assert_eq!(r.stats.count(WarningKind::TraceId), 1, "{}", r.stats);
    let w = r
        .stats
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::TraceId)
        .unwrap();
    assert!(w.message.contains(&name), "{w}");
    let a = r.stats.accounting.unwrap();
    assert_eq!(a.emitted, 10, "{a}");
    assert_eq!(a.decoded + a.unrecorded, 10, "{a}");
    assert!(a.unrecorded > 0, "{a}");
    assert!(pairs(&r).iter().all(|&(t, _)| t == 2));
}

#[test]
fn a_recording_that_starts_inside_a_subbuffer_is_counted() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("mid-live");
    let out = TempDir::new("mid-out");
    let cfg = RelayConfig {
        global: true, // one buffer: every event in cpu0
        subbuf_size: 4096,
        n_subbufs: 64,
        ..RelayConfig::new(live.path())
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    const N: u64 = 2000;
    for i in 0..N {
        klog!("mid thread {} seq {}", 0u64, i);
    }
    assert!(klog::unregister().is_some());
    let hs = h.finish();
    assert_eq!(hs.lost.iter().sum::<u64>(), 0);
    // An earlier reader consumed the first 100 bytes: the recording starts inside the first
    // sub-buffer.
    const EARLY: usize = 100;
    let mut f = relay::user::RelayFile::open(live.path().join("cpu0")).unwrap();
    let mut early = vec![0u8; EARLY];
    assert_eq!(f.read(&mut early).unwrap(), EARLY);
    drop(f);
    record(live.path(), out.path());
    // The recorder's index carries the first EARLY bytes of that sub-buffer (its header and the
    // frames the early reader took): every event after them is decoded, those are unrecorded.
    let r = decode_dir(out.path(), &Options::default()).unwrap();
    let got = pairs(&r);
    let first = r.stats.unrecorded_events;
    assert!(first > 0 && first < 20, "{}", r.stats);
    assert_eq!(
        got.iter().map(|p| p.1).collect::<Vec<_>>(),
        (first..N).collect::<Vec<_>>()
    );
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    let a = r.stats.accounting.unwrap();
    assert!(a.exact, "{a}");
    assert_eq!(
        (a.emitted, a.decoded, a.unrecorded),
        (N, N - first, first),
        "{a}"
    );
    // Without the index (a trace recorded otherwise), decoding starts at the next header.
    std::fs::remove_file(out.path().join("cpu0.idx")).unwrap();
    let r = decode_dir(out.path(), &Options::default()).unwrap();
    let got = pairs(&r);
    // Everything from the second sub-buffer on is decoded, in order.
    assert!(got.len() as u64 > N / 2, "{}", r.stats);
    let first = got[0].1;
    assert!(first > 0);
    assert_eq!(
        got.iter().map(|p| p.1).collect::<Vec<_>>(),
        (first..N).collect::<Vec<_>>()
    );
    assert_eq!(r.stats.count(WarningKind::Unrecorded), 1, "{}", r.stats);
    assert_eq!(r.stats.corrupt_bytes, 0, "{}", r.stats);
    // The recorded file starts where the early reader stopped, a sub-buffer minus EARLY bytes
    // before the first header it holds.
    let skipped = r.stats.unrecorded_bytes;
    assert!(skipped > 0 && skipped < 4096, "{}", r.stats);
    let a = r.stats.accounting.unwrap();
    assert!(a.exact, "{a}");
    assert_eq!(a.emitted, N, "{a}");
    assert_eq!(a.decoded, N - first, "{a}");
    assert_eq!(a.unrecorded, first, "{a}");
    assert!(
        !r.stats.warnings.iter().any(|w| w.message.contains("..=")),
        "{}",
        r.stats
    );
}
