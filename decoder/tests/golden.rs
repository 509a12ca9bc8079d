//! A small hand-made trace decoded to text; the expected lines are written by hand.

mod common;

use common::*;
use klog::ArgType as T;
use klog::Level;
use klog_decode::{decode_bytes, decode_dir, decode_to_text, Options, WarningKind};

const CLOCK: &[(u8, u64, u64, u64)] = &[(MONO, 0, 100_000_000_000, 1_000_000_000)];

pub fn golden_metadata() -> Vec<u8> {
    metadata(
        2,
        false,
        256,
        4,
        CLOCK,
        &[
            def(
                1,
                Level::Warn,
                "rx queue {0} stalled after {1} us, flags={2:#x}",
                "my_mod::rx",
                &[T::Unsigned as u8, T::Unsigned as u8, T::Unsigned as u8],
            ),
            def(
                2,
                Level::Info,
                "temp {0:>6.2} C, ok={1}, name={2:?}",
                "app::sensor",
                &[T::F64 as u8, T::Bool as u8, T::Str as u8],
            ),
            def(
                3,
                Level::Error,
                "code {0:+05} ch {1:?} bytes {2:?} {{literal}}",
                "app",
                &[T::Signed as u8, T::Char as u8, T::Bytes as u8],
            ),
            raw_def(4, "app::dump"),
        ],
    )
}

pub fn golden_streams() -> Vec<Vec<u8>> {
    let mut c0 = Stream::new(0, 256);
    c0.sub(1_000_000_000, 0)
        .event(1, 1_000_000_500, (&3u32, &41u64, &0x1fu16))
        .event(2, 1_250_000_000, (&21.456f64, &true, &"e\"th0"));
    let mut c1 = Stream::new(1, 256);
    c1.sub(1_100_000_000, 0)
        .event(3, 1_100_000_000, (&-7i32, &'x', &[1u8, 2, 255][..]))
        .raw(4, 1_300_000_000, &[0xde, 0xad])
        .sub(1_400_000_000, 1234)
        .event(1, 1_400_000_100, (&4u32, &7u64, &0u16));
    vec![c0.read_stream(), c1.read_stream()]
}

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
