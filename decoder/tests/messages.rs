//! What `klog-decode` says on stderr (the real binary): why nothing was decoded (without
//! `--stats`), a live directory given as a recorded trace, filters that matched nothing, and no
//! path printed twice in one message.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use common::golden::*;
use common::*;
use klog::{klog, RelayConfig, RelayHandler};

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klog-decode"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn golden_dir() -> TempDir {
    let dir = TempDir::new("messages");
    dir.write("metadata", &golden_metadata());
    for (i, s) in golden_streams().iter().enumerate() {
        dir.write(&format!("cpu{i}"), s);
    }
    dir
}

/// Every line of `e` names `path` at most once.
fn path_at_most_once(e: &str, path: &Path) {
    let p = path.display().to_string();
    for line in e.lines() {
        assert!(line.matches(&p).count() <= 1, "path twice: {line}");
    }
}

#[test]
fn a_live_directory_without_snapshot_gets_a_hint() {
    let tmp = TempDir::new("live-hint");
    let live = tmp.path().join("live");
    let h = Arc::new(RelayHandler::open(&RelayConfig::new(&live)).unwrap());
    h.flush();
    let o = run(&[], &live);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.starts_with("klog-decode: error: "), "{e}");
    assert!(e.contains("live relay directory"), "{e}");
    assert!(e.contains("--snapshot"), "{e}");
    assert!(e.contains("record"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    path_at_most_once(&e, &live);
    assert!(o.stdout.is_empty());
    // With --snapshot it decodes (nothing logged: says so, exit 0).
    let o = run(&["--snapshot"], &live);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("no events"), "{e}");
    drop(h);
}

#[test]
fn why_nothing_was_decoded_without_stats() {
    let d = TempDir::new("why");
    d.write("metadata", &golden_metadata());
    // Empty streams: a valid trace without events (exit 0), but stderr says why.
    d.write("cpu0", b"");
    d.write("cpu1", b"");
    let o = run(&[], d.path());
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(o.stdout.is_empty());
    assert!(e.contains("no events"), "{e}");
    assert!(e.contains("empty"), "{e}");
    path_at_most_once(&e, d.path());
    // Headers only: sub-buffers without events.
    let mut st = Stream::new(0, 4096);
    st.sub(0, 0);
    d.write("cpu0", &st.read_stream());
    let o = run(&[], d.path());
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let hdr = format!("1 sub-buffers ({} bytes)", klog::wire::SUBBUF_HEADER_LEN);
    assert!(e.contains(&hdr), "{e}");
    assert!(e.contains("hold no events"), "{e}");
    // Everything lost.
    let mut st = Stream::new(0, 4096);
    st.sub(0, 77);
    d.write("cpu0", &st.read_stream());
    let e = stderr(&run(&[], d.path()));
    assert!(e.contains("77 events were lost"), "{e}");
    // Garbage: an error that names the problem (the first warning) without --stats, and the
    // directory once (a missing stream is named by its file name).
    std::fs::remove_file(d.path().join("cpu0")).unwrap();
    d.write("cpu1", &[0x55; 300]);
    let o = run(&[], d.path());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("first: stream-missing (cpu0): cpu0: "), "{e}");
    path_at_most_once(&e, d.path());
    d.write("cpu1", b"");
    d.write("cpu0", &[0x55; 300]);
    let o = run(&[], d.path());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("nothing could be decoded"), "{e}");
    assert!(e.contains("first: stream-header (cpu0"), "{e}");
    assert!(e.contains("--stats for details"), "{e}");
    path_at_most_once(&e, d.path());
}

#[test]
fn filters_that_match_nothing_are_noted() {
    let d = golden_dir();
    let notes = |args: &[&str]| {
        let o = run(args, d.path());
        let e = stderr(&o);
        assert!(o.status.success(), "{e}");
        let lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        (lines, e)
    };
    // No filter, a matching filter: no note.
    let (l, e) = notes(&[]);
    assert_eq!(l.len(), 6);
    assert_eq!(e, "");
    let (_, e) = notes(&["--cpu", "1", "--target", "app", "--level", "warn"]);
    assert_eq!(e, "");
    // A CPU the trace does not have (while another CPU matches).
    let (l, e) = notes(&["--cpu", "0,7"]);
    assert_eq!(l.len(), 2);
    assert!(
        e.contains("note: --cpu 7 matched nothing: the trace has no cpu7 (it has cpu0, cpu1)"),
        "{e}"
    );
    assert!(!e.contains("--cpu 0"), "{e}");
    // A target prefix no callsite has.
    let (_, e) = notes(&["--target", "app", "--target", "nope::"]);
    assert!(e.contains("note: --target nope:: matched nothing"), "{e}");
    assert!(e.contains("app::sensor"), "lists the targets: {e}");
    assert!(!e.contains("--target app "), "{e}");
    // A time range outside the trace: nothing shown, and why.
    let (l, e) = notes(&["--since", "5"]);
    assert!(
        l.is_empty() && e.contains("note: --since/--until matched nothing: the records span 0.000000 .. 0.400000 s (since the first record)"),
        "{l:?} {e}"
    );
    // Filters that each match but not together.
    let (l, e) = notes(&["--cpu", "0", "--target", "app::dump"]);
    assert!(l.is_empty(), "{l:?}");
    assert!(
        e.contains("no record passes --level, --cpu and --target together"),
        "{e}"
    );
}

#[test]
fn a_level_no_callsite_has_is_noted() {
    let tmp = TempDir::new("level");
    let live = tmp.path().join("live");
    let cfg = RelayConfig {
        global: true,
        ..RelayConfig::new(&live)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    klog!("an info event {}", 1u8);
    h.flush();
    let o = run(&["--snapshot", "--level", "warn"], &live);
    klog::unregister();
    h.finish();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(o.stdout.is_empty());
    assert!(
        e.contains("note: --level warn matched nothing: no callsite is that severe"),
        "{e}"
    );
}

#[test]
fn follow_says_when_nothing_arrived() {
    let tmp = TempDir::new("follow-none");
    let live = tmp.path().join("live");
    let cfg = RelayConfig {
        global: true,
        ..RelayConfig::new(&live)
    };
    let h = RelayHandler::open(&cfg).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_klog-decode"))
        .arg("--follow")
        .arg(&live)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the channel once the follower has its file open (it then drains and stops).
    let mine = relay::user::RelayFile::open(live.join("cpu0")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while mine.stats().unwrap().readers < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never opened cpu0"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    drop(h);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(o.stdout.is_empty());
    assert!(e.contains("no events: nothing was logged"), "{e}");
    path_at_most_once(&e, &live);
}
