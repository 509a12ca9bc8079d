//! `klog-decode record` and `klog-decode --follow` against a live klog writer in this process:
//! a registered `RelayHandler` writes user-space relay files, the CLI (a child process) drains
//! them with poll + read.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait, TempDir};
use klog::{klog, klog_raw, klog_warn, RelayConfig, RelayHandler};
use klog_decode::{decode_dir, Options, Payload, Record, Value};

/// The dispatcher is process-global: one handler at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_klog-decode"))
}

fn open(live: &TempDir) -> Arc<RelayHandler> {
    let cfg = RelayConfig {
        subbuf_size: 4096,
        n_subbufs: 64,
        ..RelayConfig::new(live.path())
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    h
}

/// Emits `n` numbered events (and a raw record every 500), flushing every `batch`.
fn emit(h: &RelayHandler, from: u32, n: u32, batch: u32, pause: Duration) {
    for i in from..from + n {
        klog!("live event {} of {}", i, "test");
        if i % 500 == 0 {
            klog_raw!(i.to_le_bytes());
        }
        if i % 1000 == 999 {
            klog_warn!("checkpoint {:#x}", i);
        }
        if (i - from) % batch == batch - 1 {
            h.flush();
            std::thread::sleep(pause);
        }
    }
    h.flush();
}

/// Stops the writer: unregister, final clock record, close the channel (finalizes the buffers).
fn close(h: Arc<RelayHandler>) {
    assert!(klog::unregister().is_some());
    let st = h.finish();
    assert_eq!(st.lost.iter().sum::<u64>(), 0);
    drop(h);
}

fn sigint(child: &Child) {
    // SAFETY: plain kill(2) of our child.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(r, 0);
}

fn numbered(records: &[Record]) -> Vec<u128> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => match &e.payload {
                Payload::Values(v) if v.len() == 2 => match v[0] {
                    Value::Unsigned(i) => Some(i),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn check_recorded(out: &std::path::Path, n: u32) {
    let r = decode_dir(out, &Options::default()).unwrap();
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    let mut idx = numbered(&r.records);
    idx.sort();
    assert_eq!(idx, (0..u128::from(n)).collect::<Vec<_>>());
    assert_eq!(r.stats.raw_records, u64::from(n.div_ceil(500)));
}

#[test]
fn record_until_the_channel_is_finalized() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("rec-live");
    let out = TempDir::new("rec-out");
    let h = open(&live);
    let child = bin()
        .arg("record")
        .arg(live.path())
        .arg(out.path().join("trace"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    const N: u32 = 5000;
    emit(&h, 0, N, 1000, Duration::from_millis(50));
    close(h);
    let o = wait(child, 20);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("recorded "), "{e}");
    check_recorded(&out.path().join("trace"), N);
}

#[test]
fn record_stops_at_duration_and_on_sigint() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("rec2-live");
    let out = TempDir::new("rec2-out");
    let h = open(&live);
    let by_duration = bin()
        .arg("record")
        .arg(live.path())
        .arg(out.path().join("a"))
        .args(["--duration", "1.5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    emit(&h, 0, 2000, 500, Duration::from_millis(20));
    // The writer is still open: the recorder stops by itself.
    let o = wait(by_duration, 20);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_recorded(&out.path().join("a"), 2000);

    close(h);

    // A new live channel, recorded until Ctrl-C. (Recording the same channel again would start
    // in the middle of the sub-buffer the first recorder read last: readers consume.)
    let live = TempDir::new("rec2-live-b");
    let h = open(&live);
    let by_signal = bin()
        .arg("record")
        .arg(live.path())
        .arg(out.path().join("b"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    emit(&h, 0, 1500, 500, Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(300));
    sigint(&by_signal);
    let o = wait(by_signal, 20);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_recorded(&out.path().join("b"), 1500);
    close(h);

    // Not a live directory.
    let o = bin()
        .arg("record")
        .arg(out.path().join("nope"))
        .arg(out.path().join("c"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no `metadata` file"));
}

fn json_events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn follow_prints_live_events_in_order() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("follow-live");
    // The handler is open but no callsite has fired: the follower's first copy of the metadata
    // defines nothing, so it must re-read it when the first frames arrive.
    let h = open(&live);
    let child = bin()
        .arg("--follow")
        .arg(live.path())
        .args(["--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    const N: u32 = 4000;
    // Writers on two threads (possibly two CPUs): the output must still be in time order.
    let h2 = h.clone();
    let t = std::thread::spawn(move || emit(&h2, N, N, 700, Duration::from_millis(30)));
    emit(&h, 0, N, 700, Duration::from_millis(30));
    t.join().unwrap();
    close(h);
    let o = wait(child, 20);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(!e.contains("warnings"), "{e}");
    let ev = json_events(&o.stdout);
    let ts: Vec<i64> = ev.iter().map(|v| v["ts_ns"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "out of order");
    let mut idx: Vec<u64> = ev
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("live event"))
        })
        .map(|v| v["args"][0].as_u64().unwrap())
        .collect();
    idx.sort();
    assert_eq!(idx, (0..u64::from(2 * N)).collect::<Vec<_>>());
    assert_eq!(ev.iter().filter(|v| v.get("raw").is_some()).count(), 2 * 8);
    assert_eq!(
        ev.iter().filter(|v| v["level"] == "WARN").count(),
        2 * (N / 1000) as usize
    );
}

#[test]
fn follow_stops_on_sigint_with_filters() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("follow2-live");
    let h = open(&live);
    emit(&h, 0, 100, 100, Duration::ZERO);
    let child = bin()
        .arg("--follow")
        .arg(live.path())
        .args(["--level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    emit(&h, 100, 2900, 1000, Duration::from_millis(30));
    std::thread::sleep(Duration::from_millis(400));
    sigint(&child);
    let o = wait(child, 20);
    close(h);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (l, i) in lines.iter().zip([999, 1999, 2999]) {
        assert!(
            l.ends_with(&format!("WARN  live: checkpoint {i:#x}")),
            "{l}"
        );
    }
}
