//! Crash forensics: `klog-decode --snapshot` of a live user-space directory includes the
//! sub-buffer being written, up to the committed offset in the buffer's control block — for a
//! writer killed by SIGKILL in the middle of logging (a real child process) and after a flush —
//! and reports a torn last frame instead of decoding it.

mod common;

use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use klog::arg::ArgType as T;
use klog::wire;
use klog::{klog, Level, RelayConfig, RelayHandler};
use klog_decode::snapshot::LiveEnd;
use klog_decode::{CpuStream, Record, Stats, Value, WarningKind};

/// Set in the environment of the re-executed test binary that plays the crashing writer.
const CHILD_DIR: &str = "KLOG_CRASH_TEST_LIVE_DIR";
const CHILD_PROGRESS: &str = "KLOG_CRASH_TEST_PROGRESS";

fn decode(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klog-decode"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

/// Sequence numbers of the `crash seq {}` events in JSON Lines output.
fn seqs(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["message"].as_str()?.starts_with("crash seq ")).then(|| v["args"][0].as_u64())?
        })
        .collect()
}

/// The writer (only when re-executed by [`sigkill_mid_logging_keeps_the_newest_events`]): an
/// overwrite-mode flight recorder that logs numbered events until it is killed, recording the
/// last number whose `klog!` returned in the progress file after each event.
#[test]
fn crash_writer_child() {
    let (Some(dir), Some(progress)) = (
        std::env::var_os(CHILD_DIR),
        std::env::var_os(CHILD_PROGRESS),
    ) else {
        return; // a normal test run: nothing to do
    };
    let cfg = RelayConfig {
        overwrite: true,
        subbuf_size: 4096,
        n_subbufs: 4,
        ..RelayConfig::new(dir)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h).unwrap();
    let out = std::fs::OpenOptions::new()
        .write(true)
        .open(progress)
        .unwrap();
    for i in 1u64.. {
        klog!("crash seq {}", i);
        out.write_all_at(&i.to_le_bytes(), 0).unwrap();
    }
}

fn read_progress(p: &Path) -> u64 {
    let b = std::fs::read(p).unwrap();
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

#[test]
fn sigkill_mid_logging_keeps_the_newest_events() {
    let tmp = TempDir::new("crash");
    let live = tmp.path().join("live");
    let progress = tmp.path().join("progress");
    std::fs::write(&progress, 0u64.to_le_bytes()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_writer_child", "--exact", "--test-threads=1"])
        .env(CHILD_DIR, &live)
        .env(CHILD_PROGRESS, &progress)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it lap its 4 sub-buffers many times (about 300 events each), then kill it wherever
    // it is: inside klog!, between events or in a sub-buffer switch.
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_progress(&progress) < 30_000 {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the writer exited ({st}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "the writer made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    let last = read_progress(&progress);

    let out = decode(&["--snapshot", "--format", "json"], &live);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let got = seqs(&out.stdout);
    // The last event that completed before the kill is there, nothing newer than the one that
    // may have completed after it, and nothing twice.
    assert!(
        got.contains(&last),
        "event {last} (the last completed) missing; newest decoded: {:?}; {err}",
        got.iter().max()
    );
    assert!(got.iter().all(|&s| s <= last + 1), "{:?}", got.iter().max());
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "an event decoded twice");
    // A whole buffer's worth of the newest events (one CPU's 4 sub-buffers at least).
    assert!(got.len() > 500, "{} events", got.len());
    assert!(!err.contains("corrupt"), "{err}");
    assert!(!err.contains("torn"), "{err}");
}

#[test]
fn snapshot_after_flush_has_no_warning() {
    let tmp = TempDir::new("flushed");
    let live = tmp.path().join("live");
    let cfg = RelayConfig {
        overwrite: true,
        subbuf_size: 4096,
        n_subbufs: 8,
        global: true,
        ..RelayConfig::new(&live)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    for i in 0..1000u64 {
        klog!("crash seq {}", i);
    }
    h.flush();
    let out = decode(&["--snapshot", "--format", "json"], &live);
    klog::unregister();
    h.finish();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err, "", "a flushed snapshot is complete: no warning");
    assert_eq!(seqs(&out.stdout), (0..1000).collect::<Vec<_>>());
}

/// 4 slots × 128 bytes; sub-buffers seq 0..=5 written, seq 5 (slot 1) is being written and
/// holds v=50 and v=51.
fn image() -> (Stream, Vec<u8>, Vec<u8>) {
    let mut st = Stream::new(0, 128);
    for seq in 0..6u64 {
        let base = 1000 * seq;
        st.sub(base, 0);
        st.event(1, base + 1, (&(seq as u32 * 10),));
        st.event(1, base + 2, (&(seq as u32 * 10 + 1),));
    }
    let img = st.snapshot(4, 0xaa);
    let defs = [def(1, Level::Info, "v={0}", "snap", &[T::Unsigned as u8])];
    let meta = metadata(1, true, 128, 4, MONO_CLOCK, &defs);
    (st, img, meta)
}

fn walk(img: &[u8], meta: &[u8], live: Option<LiveEnd>) -> (Vec<u64>, Stats) {
    let meta = klog_decode::parse_metadata(meta, &mut Stats::default()).unwrap();
    let mut s = CpuStream::snapshot_live(&meta, 0, img, live);
    let vals = s
        .by_ref()
        .filter_map(|r| match r {
            Record::Event(e) => match &e.payload {
                klog_decode::Payload::Values(v) => match v[0] {
                    Value::Unsigned(x) => Some(x as u64),
                    _ => None,
                },
                _ => None,
            },
            Record::Lost(_) => None,
        })
        .collect();
    (vals, s.into_stats())
}

#[test]
fn committed_offset_includes_the_newest_subbuffer_and_reports_a_torn_frame() {
    let (st, img, meta) = image();
    let full = wire::SUBBUF_HEADER_LEN + st.subs[5].frames.len();
    // Without the control block (an image on disk): the newest slot is skipped, as before.
    let (v, stats) = walk(&img, &meta, None);
    assert_eq!(v, [20, 21, 30, 31, 40, 41]);
    assert_eq!(stats.count(WarningKind::TornSubbuf), 1);
    // With the committed offset: its frames are there, no warning.
    let live = LiveEnd {
        slot: 1,
        committed: full,
    };
    let (v, stats) = walk(&img, &meta, Some(live));
    assert_eq!(v, [20, 21, 30, 31, 40, 41, 50, 51]);
    assert_eq!(stats.total_warnings(), 0, "{stats}");
    // The writer stopped inside the last frame (a reservation published before it was filled):
    // reported as torn, never decoded.
    let cut = LiveEnd {
        slot: 1,
        committed: full - 1,
    };
    let (v, stats) = walk(&img, &meta, Some(cut));
    assert_eq!(v, [20, 21, 30, 31, 40, 41, 50]);
    assert_eq!(stats.count(WarningKind::TornSubbuf), 1, "{stats}");
    assert_eq!(stats.count(WarningKind::CorruptFrame), 0, "{stats}");
    assert!(stats.warnings[0].message.contains("torn"), "{stats}");
    // A position of another slot (the copy raced the writer): the old rule.
    let other = LiveEnd {
        slot: 2,
        committed: full,
    };
    let (v, stats) = walk(&img, &meta, Some(other));
    assert_eq!(v, [20, 21, 30, 31, 40, 41]);
    assert_eq!(stats.count(WarningKind::TornSubbuf), 1);
}
