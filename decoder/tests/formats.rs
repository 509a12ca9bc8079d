//! JSON Lines and Chrome trace output, filters, `--stats` and exit codes of the CLI, on the
//! hand-made golden trace; the expected outputs are written by hand.

mod common;

use std::process::{Command, Output};

use common::golden::*;
use common::*;
use klog::Level;

fn golden_dir() -> TempDir {
    let dir = TempDir::new("formats");
    dir.write("metadata", &golden_metadata());
    for (i, s) in golden_streams().iter().enumerate() {
        dir.write(&format!("cpu{i}"), s);
    }
    dir
}

fn run(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_klog-decode"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Clock: raw 0 = CLOCK_MONOTONIC 100 s, raw in ns.
const EXPECTED_JSON: &str = r#"{"ts_ns":101000000500,"cpu":0,"level":"WARN","target":"my_mod::rx","file":"src/lib.rs","line":42,"message":"rx queue 3 stalled after 41 us, flags=0x1f","args":[3,41,31]}
{"ts_ns":101100000000,"cpu":1,"level":"ERROR","target":"app","file":"src/lib.rs","line":42,"message":"code -0007 ch 'x' bytes [1, 2, 255] {literal}","args":[-7,"x","AQL/"]}
{"ts_ns":101250000000,"cpu":0,"level":"INFO","target":"app::sensor","file":"src/lib.rs","line":42,"message":"temp  21.46 C, ok=true, name=\"e\\\"th0\"","args":[21.456,true,"e\"th0"]}
{"ts_ns":101300000000,"cpu":1,"level":"INFO","target":"app::dump","file":"src/lib.rs","line":42,"raw":"3q0="}
{"lost":1234,"cpu":1,"ts_ns":101400000000}
{"ts_ns":101400000100,"cpu":1,"level":"WARN","target":"my_mod::rx","file":"src/lib.rs","line":42,"message":"rx queue 4 stalled after 7 us, flags=0x0","args":[4,7,0]}
"#;

#[test]
fn golden_json() {
    let d = golden_dir();
    let out = stdout(&run(&["--format", "json"], d.path()));
    assert_eq!(out, EXPECTED_JSON);
    for line in out.lines() {
        let _: serde_json::Value = serde_json::from_str(line).unwrap();
    }
    // --absolute does not change JSON (ts_ns is always CLOCK_MONOTONIC).
    assert_eq!(
        stdout(&run(&["--format", "json", "--absolute"], d.path())),
        EXPECTED_JSON
    );
}

const EXPECTED_CHROME: &str = r#"{"displayTimeUnit":"ns","traceEvents":[{"args":{"name":"klog"},"name":"process_name","ph":"M","pid":1},
{"args":{"name":"cpu0"},"name":"thread_name","ph":"M","pid":1,"tid":0},
{"args":{"name":"cpu1"},"name":"thread_name","ph":"M","pid":1,"tid":1},
{"name":"rx queue 3 stalled after 41 us, flags=0x1f","cat":"my_mod::rx","ph":"i","s":"t","ts":0.0,"pid":1,"tid":0,"args":{"level":"WARN","target":"my_mod::rx","file":"src/lib.rs","line":42,"args":[3,41,31]}},
{"name":"code -0007 ch 'x' bytes [1, 2, 255] {literal}","cat":"app","ph":"i","s":"t","ts":99999.5,"pid":1,"tid":1,"args":{"level":"ERROR","target":"app","file":"src/lib.rs","line":42,"args":[-7,"x","AQL/"]}},
{"name":"temp  21.46 C, ok=true, name=\"e\\\"th0\"","cat":"app::sensor","ph":"i","s":"t","ts":249999.5,"pid":1,"tid":0,"args":{"level":"INFO","target":"app::sensor","file":"src/lib.rs","line":42,"args":[21.456,true,"e\"th0"]}},
{"name":"app::dump","cat":"app::dump","ph":"i","s":"t","ts":299999.5,"pid":1,"tid":1,"args":{"level":"INFO","target":"app::dump","file":"src/lib.rs","line":42,"raw":"3q0="}},
{"name":"1234 events lost","cat":"klog","ph":"i","s":"t","ts":399999.5,"pid":1,"tid":1,"args":{"lost":1234}},
{"name":"rx queue 4 stalled after 7 us, flags=0x0","cat":"my_mod::rx","ph":"i","s":"t","ts":399999.6,"pid":1,"tid":1,"args":{"level":"WARN","target":"my_mod::rx","file":"src/lib.rs","line":42,"args":[4,7,0]}}
]}
"#;

#[test]
fn golden_chrome() {
    let d = golden_dir();
    let out = stdout(&run(&["--format", "chrome"], d.path()));
    assert_eq!(out, EXPECTED_CHROME);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ev = v["traceEvents"].as_array().unwrap();
    assert_eq!(ev.len(), 3 + 6);
    assert!(ev[3..].iter().all(|e| e["ph"] == "i" && e["pid"] == 1));
    // Absolute: CLOCK_MONOTONIC microseconds.
    let abs = stdout(&run(&["--format", "chrome", "--absolute"], d.path()));
    let v: serde_json::Value = serde_json::from_str(&abs).unwrap();
    assert_eq!(v["traceEvents"][3]["ts"], 101000000.5);
}

/// Every argument type, with values at the edges of the JSON encoding.
#[test]
fn json_typed_arguments() {
    let a = (
        &u128::MAX,
        &(1u64 << 53),
        &((1u64 << 53) + 1),
        &i64::MIN,
        &-5i128,
        &1.1f32,
        &f64::NAN,
        &f64::NEG_INFINITY,
    );
    let b = (
        &-300i16,
        &255u8,
        &-128i8,
        &i32::MIN,
        &'é',
        &true,
        &"",
        &[0u8; 0][..],
    );
    let meta = metadata(
        1,
        false,
        512,
        4,
        MONO_CLOCK,
        &[
            def(
                1,
                Level::Debug,
                "{0} {1} {2} {3} {4} {5} {6} {7}",
                "t::a",
                &tags(&a),
            ),
            def(
                2,
                Level::Trace,
                "{0} {1} {2} {3} {4} {5} {6:?} {7:?}",
                "t::b",
                &tags(&b),
            ),
        ],
    );
    let mut s = Stream::new(0, 512);
    s.sub(10, 0).event(1, 10, a).event(2, 11, b);
    let d = TempDir::new("typed");
    d.write("metadata", &meta);
    d.write("cpu0", &s.read_stream());
    let out = stdout(&run(&["--format", "json"], d.path()));
    let want = concat!(
        r#"{"ts_ns":10,"cpu":0,"level":"DEBUG","target":"t::a","file":"src/lib.rs","line":42,"#,
        r#""message":"340282366920938463463374607431768211455 9007199254740992 9007199254740993 -9223372036854775808 -5 1.1 NaN -inf","#,
        r#""args":["340282366920938463463374607431768211455",9007199254740992,"9007199254740993","-9223372036854775808",-5,1.1,"NaN","-inf"]}"#,
        "\n",
        r#"{"ts_ns":11,"cpu":0,"level":"TRACE","target":"t::b","file":"src/lib.rs","line":42,"#,
        r#""message":"-300 255 -128 -2147483648 é true \"\" []","#,
        r#""args":[-300,255,-128,-2147483648,"é",true,"",""]}"#,
        "\n"
    );
    assert_eq!(out, want);
}

fn messages(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l[l.find("] ").unwrap() + 2..].to_owned())
        .collect()
}

#[test]
fn filters() {
    let d = golden_dir();
    let m = |args: &[&str]| messages(&stdout(&run(args, d.path())));
    let all = m(&[]);
    assert_eq!(all.len(), 6);
    // Level: max verbosity (lost records always pass).
    assert_eq!(
        m(&["--level", "warn"]),
        [
            "cpu0 WARN  my_mod::rx: rx queue 3 stalled after 41 us, flags=0x1f",
            "cpu1 ERROR app: code -0007 ch 'x' bytes [1, 2, 255] {literal}",
            "[cpu1: 1234 events lost]",
            "cpu1 WARN  my_mod::rx: rx queue 4 stalled after 7 us, flags=0x0",
        ]
    );
    assert_eq!(m(&["--level", "error"]).len(), 2);
    assert_eq!(m(&["--level", "TRACE"]), all);
    // CPU: repeatable or a list.
    let cpu1 = m(&["--cpu", "1"]);
    assert_eq!(cpu1.len(), 4);
    assert!(cpu1.iter().all(|l| l.contains("cpu1")));
    assert_eq!(m(&["--cpu", "0", "--cpu", "1"]), all);
    assert_eq!(m(&["--cpu", "0,1"]), all);
    assert_eq!(m(&["--cpu", "7"]), Vec::<String>::new());
    // Target prefix (lost records pass).
    assert_eq!(
        m(&["--target", "app::"]),
        [
            "cpu0 INFO  app::sensor: temp  21.46 C, ok=true, name=\"e\\\"th0\"",
            "cpu1 INFO  app::dump: raw 2 bytes: de ad",
            "[cpu1: 1234 events lost]",
        ]
    );
    assert_eq!(m(&["--target", "app"]).len(), 4);
    assert_eq!(m(&["--target", "my_mod", "--target", "app::dump"]).len(), 4);
    // Time: relative to the first record (times keep their origin when filtered).
    let t = stdout(&run(&["--since", "0.2", "--until", "0.3"], d.path()));
    assert_eq!(
        t,
        "[     0.249999500] cpu0 INFO  app::sensor: temp  21.46 C, ok=true, name=\"e\\\"th0\"\n\
         [     0.299999500] cpu1 INFO  app::dump: raw 2 bytes: de ad\n"
    );
    assert_eq!(m(&["--since", "0.3999995"]).len(), 2, "inclusive");
    assert_eq!(m(&["--until", "0"]).len(), 1, "inclusive");
    // Absolute.
    assert_eq!(
        m(&["--absolute", "--since", "101.25", "--until", "101.3"]).len(),
        2
    );
    assert_eq!(m(&["--absolute", "--until", "100"]).len(), 0);
    // Combined, and in JSON.
    let j = stdout(&run(
        &["--format", "json", "--level", "warn", "--cpu", "1"],
        d.path(),
    ));
    assert_eq!(j.lines().count(), 3);
    // Bad values are usage errors.
    for bad in [
        &["--level", "loud"][..],
        &["--since", "abc"],
        &["--cpu", "x"],
        &["--format", "xml"],
    ] {
        let o = run(bad, d.path());
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn stats_per_cpu() {
    let d = golden_dir();
    let o = run(&["--stats", "--level", "error"], d.path());
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["cpu", "bytes", "subbufs", "events", "raw", "lost", "lost_rec", "warnings"]
    );
    let s = golden_streams();
    let row = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let b0 = s[0].len().to_string();
    let b1 = s[1].len().to_string();
    let tot = (s[0].len() + s[1].len()).to_string();
    assert_eq!(row(lines[1]), ["cpu0", &b0, "1", "2", "0", "0", "0", "0"]);
    assert_eq!(
        row(lines[2]),
        ["cpu1", &b1, "2", "2", "1", "1234", "1", "0"]
    );
    assert_eq!(
        row(lines[3]),
        ["total", &tot, "3", "4", "1", "1234", "1", "0"]
    );
    assert_eq!(lines[4], "records decoded: 6, shown: 2");
    assert!(e.contains("warnings: 0"), "{e}");
}

#[test]
fn exit_codes() {
    let fail = |dir: &std::path::Path, want: &str| {
        let o = run(&[], dir);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.starts_with("klog-decode: error: "), "{e}");
        assert!(e.contains(want), "{want:?} not in {e}");
        assert!(o.stdout.is_empty());
    };
    // Empty directory.
    let d = TempDir::new("exit-empty");
    fail(d.path(), "empty directory");
    // Unrelated files.
    d.write("notes.txt", b"hello");
    fail(d.path(), "no `metadata` file");
    // Not a directory.
    fail(&d.path().join("notes.txt"), "not a directory");
    // Missing directory.
    fail(&d.path().join("nope"), "No such file");
    // Metadata that is not klog's.
    d.write("metadata", b"\x05hello world");
    fail(d.path(), "not a klog metadata stream");
    // Wrong version: patch the header's version field (after len, kind and the magic).
    let mut m = golden_metadata();
    assert_eq!(&m[2..10], b"KLOGMETA");
    m[10] = 9;
    d.write("metadata", &m);
    fail(d.path(), "unsupported klog trace format version 9");
    // Good metadata, but no stream at all.
    d.write("metadata", &golden_metadata());
    fail(d.path(), "no cpuN stream");
    // Streams of garbage only.
    d.write("cpu0", &[0x55; 300]);
    d.write("cpu1", b"garbage");
    fail(d.path(), "nothing could be decoded");
    // One good stream: success, with the other's warnings counted.
    d.write("cpu0", &golden_streams()[0]);
    let o = run(&[], d.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    assert!(stderr(&o).contains("warnings (--stats for details)"));
    // An empty but valid trace: nothing to print, no error.
    d.write("cpu0", b"");
    d.write("cpu1", b"");
    let o = run(&[], d.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn library_filter_helpers() {
    use klog_decode::output::{base64, parse_level, parse_seconds};
    assert_eq!(parse_seconds("1.5"), Some(1_500_000_000));
    assert_eq!(parse_seconds("-0.000000001"), Some(-1));
    assert_eq!(parse_seconds(".25"), Some(250_000_000));
    assert_eq!(parse_seconds("3"), Some(3_000_000_000));
    assert_eq!(parse_seconds("1.0000000001"), None);
    assert_eq!(parse_seconds(""), None);
    assert_eq!(parse_seconds("1e3"), None);
    assert_eq!(parse_level("Warn"), Some(2));
    assert_eq!(parse_level("5"), Some(5));
    assert_eq!(parse_level("x"), None);
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}
