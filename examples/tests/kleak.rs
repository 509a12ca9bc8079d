//! kleak in user space: `kleak-user` traces its allocations with klog, `kleak-report` must name
//! exactly the deliberate leaks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("klog-examples-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(bin: &str, args: &[&Path]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("run the binary");
    eprintln!(
        "{bin}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The rows of the "outstanding allocations by site" table: (site, count, bytes).
fn table(stdout: &str) -> Vec<(String, u64, u64)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("outstanding allocations by site"))
        .skip(2)
        .take_while(|l| l.starts_with("  ") && !l.trim_start().starts_with("total"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn kleak_report_names_exactly_the_deliberate_leaks() {
    let dir = TempDir::new("kleak");
    let out = run(env!("CARGO_BIN_EXE_kleak-user"), &[&dir.0]);
    assert!(out.status.success());
    let expect = dir.0.join("expected-leaks");
    let out = run(
        env!("CARGO_BIN_EXE_kleak-report"),
        &[Path::new("--expect"), &expect, &dir.0],
    );
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table(&stdout),
        vec![
            ("cache_fill".to_string(), 1, 4096),
            ("parse_request".to_string(), 2, 600),
            ("session_new".to_string(), 3, 288),
        ]
    );
    assert!(
        stdout.contains(" 0 lost events, 0 decoder warnings"),
        "{stdout}"
    );

    // A wrong expectation fails.
    let wrong = dir.0.join("wrong");
    std::fs::write(&wrong, "cache_fill 1 4096\nparse_request 2 600\n").unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_kleak-report"),
        &[Path::new("--expect"), &wrong, &dir.0],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("mismatch: session_new"));
}

#[test]
fn kleak_report_rejects_a_directory_that_is_no_trace() {
    let dir = TempDir::new("kleak-empty");
    std::fs::create_dir_all(&dir.0).unwrap();
    let out = run(env!("CARGO_BIN_EXE_kleak-report"), &[&dir.0]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(env!("CARGO_BIN_EXE_kleak-report"), &[]);
    assert_eq!(out.status.code(), Some(2));
}
