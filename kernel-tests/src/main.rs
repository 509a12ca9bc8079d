//! `relay-kcheck`: runs inside the QEMU test guest, as root, against the project's Rust relay
//! kernel module and the test module `rsrelay_test.ko` (control protocol:
//! kernel-tests/PROTOCOL.md).
//!
//! ```text
//! relay-kcheck <check>...   check: diff mmap sendfile poll lifetime stress bench all-but-lifetime
//! relay-kcheck klog-verify TEXT --events N --timer T --cpus C [--stats FILE] [--no-debug] [--snapshot]
//! ```
//!
//! Every check prints `check: <name>: ok` or `check: <name>: FAIL <reason>` (diagnostics are
//! indented by two spaces); the exit status is 0 only if everything passed. The debugfs
//! directory is `$RSRELAY_TEST_DIR` (default /sys/kernel/debug/rsrelay_test).
//!
//! `klog-verify` checks the decoded text of a klog_example.ko run (see `klog_verify.rs`); it
//! needs no kernel and also runs on the host.

#[path = "../../relay/tests/model/mod.rs"]
mod model;

mod checks;
#[cfg(test)]
mod csim;
mod diff;
mod klog_verify;
mod proto;
mod seqs;
mod stress_rec;
mod sys;
mod util;

use std::process::ExitCode;

use proto::Ctl;

const CHECKS: [&str; 7] = [
    "diff", "mmap", "sendfile", "poll", "lifetime", "stress", "bench",
];

fn usage() -> String {
    format!(
        "usage: relay-kcheck <check>...\n       relay-kcheck klog-verify TEXT --events N --timer T --cpus C [--stats FILE] [--no-debug] [--snapshot]\n  checks: {} all-but-lifetime\n  env: RSRELAY_TEST_DIR (default {}), RSRELAY_TEST_KO (lifetime: module to re-insert)",
        CHECKS.join(" "),
        proto::DEFAULT_DIR
    )
}

fn run(name: &str, ctl: &Ctl) -> Result<(), String> {
    let ctl_file = ctl.base().join("ctl");
    if !ctl_file.exists() {
        return Err(format!(
            "{} missing (is rsrelay_test.ko loaded and debugfs mounted?)",
            ctl_file.display()
        ));
    }
    match name {
        "diff" => diff::check(ctl),
        "mmap" => checks::mmap::check(ctl),
        "sendfile" => checks::sendfile::check(ctl),
        "poll" => checks::poll::check(ctl),
        "lifetime" => checks::lifetime::check(ctl),
        "stress" => checks::stress::check(ctl),
        "bench" => checks::bench::check(ctl),
        _ => Err(format!("unknown check {name:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "klog-verify") {
        return ExitCode::from(klog_verify::main(&args[1..]));
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let mut names: Vec<&str> = Vec::new();
    for a in &args {
        match a.as_str() {
            "all-but-lifetime" => names.extend(CHECKS.iter().filter(|c| **c != "lifetime")),
            c if CHECKS.contains(&c) => names.push(c),
            other => {
                eprintln!("relay-kcheck: unknown check {other:?}\n{}", usage());
                return ExitCode::from(2);
            }
        }
    }
    if names.is_empty() {
        eprintln!("{}", usage());
        return ExitCode::from(2);
    }
    let ctl = Ctl::from_env();
    util::diag(&format!(
        "relay-kcheck: {} in {}, {} CPUs online",
        names.join(" "),
        ctl.base().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    let mut failed = Vec::new();
    for name in &names {
        let r = std::panic::catch_unwind(|| run(name, &ctl))
            .unwrap_or_else(|p| Err(format!("panic: {}", diff::panic_text(&*p))));
        util::result_line(name, &r);
        if r.is_err() {
            failed.push(*name);
        }
    }
    if failed.is_empty() {
        println!("relay-kcheck: all {} checks passed", names.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "relay-kcheck: {} of {} checks failed: {}",
            failed.len(),
            names.len(),
            failed.join(" ")
        );
        ExitCode::FAILURE
    }
}
