//! The README's "Using klog" example, as written (build.rs extracts it into the
//! `readme-using-klog` binary), run as a real process: the directory it records decodes to the
//! events it logged, and no live files are left in /dev/shm.

use std::process::{Command, Stdio};

use klog_decode::{decode_dir, Options, Payload, Record, Value};

#[test]
fn readme_using_klog_records_a_decodable_trace() {
    let base = std::env::temp_dir().join(format!("klog-readme-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let dir = base.join("trace");
    let child = Command::new(env!("CARGO_BIN_EXE_readme-using-klog"))
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 events, 0 lost"), "{stdout}");

    let r = decode_dir(&dir, &Options::default()).unwrap();
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    let lines = r.text_lines(false);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].ends_with("rx queue 3 stalled after 41 us, flags=0x1f"),
        "{lines:?}"
    );
    assert!(
        lines[1].ends_with("bad checksum 0000beef in eth0"),
        "{lines:?}"
    );
    let raw: Vec<&Record> = r
        .records
        .iter()
        .filter(|rec| matches!(rec, Record::Event(e) if matches!(e.payload, Payload::Raw(_))))
        .collect();
    assert_eq!(raw.len(), 1);
    if let Record::Event(e) = raw[0] {
        assert_eq!(e.payload, Payload::Raw(vec![1, 2, 3]));
    }
    if let Record::Event(e) = &r.records[0] {
        assert_eq!(
            e.payload,
            Payload::Values(vec![
                Value::Unsigned(3),
                Value::Unsigned(41),
                Value::U8(0x1f)
            ])
        );
    }
    // The live buffers are gone: nothing left behind in /dev/shm.
    let leftover = format!("klog-{pid}-");
    if let Ok(rd) = std::fs::read_dir("/dev/shm") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(!n.starts_with(&leftover), "left behind: /dev/shm/{n}");
        }
    }
    // Running it again into the same directory is refused, and the trace is kept.
    let again = Command::new(env!("CARGO_BIN_EXE_readme-using-klog"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let e = String::from_utf8_lossy(&again.stderr);
    assert!(e.contains("already holds a klog trace"), "{e}");
    assert_eq!(
        decode_dir(&dir, &Options::default()).unwrap().records.len(),
        3
    );
    std::fs::remove_dir_all(&base).unwrap();
}
