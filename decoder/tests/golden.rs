//! A small hand-made trace decoded to text; the expected lines are written by hand.

mod common;

use common::golden::*;
use common::*;
use klog_decode::{decode_bytes, decode_dir, decode_to_text, Options, WarningKind};

const EXPECTED: &str = "\
[     0.000000000] cpu0 WARN  my_mod::rx: rx queue 3 stalled after 41 us, flags=0x1f
[     0.099999500] cpu1 ERROR app: code -0007 ch 'x' bytes [1, 2, 255] {literal}
[     0.249999500] cpu0 INFO  app::sensor: temp  21.46 C, ok=true, name=\"e\\\"th0\"
[     0.299999500] cpu1 INFO  app::dump: raw 2 bytes: de ad
[     0.399999500] [cpu1: 1234 events lost]
[     0.399999600] cpu1 WARN  my_mod::rx: rx queue 4 stalled after 7 us, flags=0x0
";

const EXPECTED_ABSOLUTE_FIRST: &str =
    "[   101.000000500] cpu0 WARN  my_mod::rx: rx queue 3 stalled after 41 us, flags=0x1f";

#[test]
fn golden_text_relative() {
    let r = decode_bytes(&golden_metadata(), golden_streams(), &Options::default()).unwrap();
    let text: String = r
        .text_lines(false)
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(text, EXPECTED);
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    assert_eq!(r.stats.events, 4);
    assert_eq!(r.stats.raw_records, 1);
    assert_eq!(r.stats.lost_events, 1234);
    assert_eq!(r.stats.lost_records, 1);
    assert_eq!(r.stats.subbufs, 3);
}

#[test]
fn golden_text_absolute() {
    let r = decode_bytes(&golden_metadata(), golden_streams(), &Options::default()).unwrap();
    assert_eq!(r.text_lines(true)[0], EXPECTED_ABSOLUTE_FIRST);
    assert_eq!(
        r.text_lines(true)[4],
        "[   101.400000000] [cpu1: 1234 events lost]"
    );
}

#[test]
fn golden_dir_and_cli() {
    let dir = TempDir::new("golden");
    dir.write("metadata", &golden_metadata());
    for (i, s) in golden_streams().iter().enumerate() {
        dir.write(&format!("cpu{i}"), s);
    }
    // Library entry points.
    let mut out = Vec::new();
    let stats = decode_to_text(dir.path(), &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), EXPECTED);
    assert_eq!(stats.total_warnings(), 0);
    let r = decode_dir(dir.path(), &Options::default()).unwrap();
    assert_eq!(r.records.len(), 6);

    // The binary.
    let bin = env!("CARGO_BIN_EXE_klog-decode");
    let o = std::process::Command::new(bin)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), EXPECTED);
    assert!(o.stderr.is_empty());

    let o = std::process::Command::new(bin)
        .args(["--absolute", "--stats"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert_eq!(stdout.lines().next().unwrap(), EXPECTED_ABSOLUTE_FIRST);
    let stderr = String::from_utf8(o.stderr).unwrap();
    assert!(
        stderr.contains("events: 4, raw records: 1, lost: 1234 events in 1 records"),
        "{stderr}"
    );

    // A missing stream is a warning, not an error.
    std::fs::remove_file(dir.path().join("cpu1")).unwrap();
    let r = decode_dir(dir.path(), &Options::default()).unwrap();
    assert_eq!(r.records.len(), 2);
    assert_eq!(r.stats.count(WarningKind::StreamMissing), 1);
    let o = std::process::Command::new(bin)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 warnings"));
}

#[test]
fn cli_errors() {
    let bin = env!("CARGO_BIN_EXE_klog-decode");
    let dir = TempDir::new("cli-errors");
    let o = std::process::Command::new(bin)
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(
        e.starts_with("klog-decode: error: ") && e.contains("empty directory"),
        "{e}"
    );
    let o = std::process::Command::new(bin).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "usage error");
}
