//! reserve-check's parser on the format written by a user-space relay channel with `reserve`
//! and the same header callback as reserve_example.ko.

use std::process::Command;

#[test]
fn selftest_accepts_the_format_and_rejects_an_altered_header() {
    let out = Command::new(env!("CARGO_BIN_EXE_reserve-check"))
        .args(["selftest", "--records", "8000"])
        .output()
        .expect("run reserve-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(stdout.contains("8000 records"));
    assert!(stdout.contains("altered header rejected"));
}

#[test]
fn kernel_mode_fails_cleanly_without_the_module() {
    let out = Command::new(env!("CARGO_BIN_EXE_reserve-check"))
        .args(["kernel", "/nonexistent/reserve_example"])
        .output()
        .expect("run reserve-check");
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(env!("CARGO_BIN_EXE_reserve-check"))
        .output()
        .expect("run reserve-check");
    assert_eq!(out.status.code(), Some(2));
}
