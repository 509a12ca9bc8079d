//! `klog::record` in a real process stopped by a real signal: the test binary re-runs itself as
//! the recording application (`KLOG_RECORD_CHILD=DIR`), which logs numbered events until it is
//! signalled. The trace must hold every event the application reported as logged, the process
//! must still die of the signal, and the live buffers must be gone.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use klog_decode::{decode_dir, Options, Payload, Record, Value};

fn child(dir: &str) -> ! {
    let rec = klog::record(dir).expect("klog::record");
    let mut i = 0u64;
    loop {
        klog::klog!("app event {}", i);
        i += 1;
        if i % 1000 == 0 {
            // Everything before `i` was logged.
            println!("{i}");
            std::thread::sleep(Duration::from_millis(5));
        }
        if i == u64::MAX {
            drop(rec);
            std::process::exit(0);
        }
    }
}

#[test]
fn record_guard_finishes_the_trace_on_sigterm_sigint_sighup() {
    if let Ok(dir) = std::env::var("KLOG_RECORD_CHILD") {
        child(&dir);
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let base =
            std::env::temp_dir().join(format!("klog-record-api-{}-{sig}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("trace");
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "record_guard_finishes_the_trace_on_sigterm_sigint_sighup",
                "--nocapture",
            ])
            .env("KLOG_RECORD_CHILD", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = c.id();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        let mut logged = 0u64;
        // Signalled after the application has logged at least 20000 events.
        for l in lines.by_ref() {
            let l = l.unwrap();
            if let Ok(n) = l.trim().parse::<u64>() {
                logged = n;
                if n >= 20_000 {
                    break;
                }
            }
        }
        // SAFETY: plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
        let st = c.wait().unwrap();
        assert_eq!(st.signal(), Some(sig), "{st:?}");
        let r = decode_dir(&dir, &Options::default()).unwrap();
        assert_eq!(r.stats.total_warnings(), 0, "signal {sig}: {}", r.stats);
        let mut n: Vec<u128> = r
            .records
            .iter()
            .filter_map(|rec| match rec {
                Record::Event(e) => match &e.payload {
                    Payload::Values(v) => match v[..] {
                        [Value::Unsigned(i)] => Some(i),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            })
            .collect();
        n.sort();
        let got = n.len() as u64;
        assert!(
            got >= logged,
            "signal {sig}: {got} events recorded, {logged} logged"
        );
        assert_eq!(n, (0..got as u128).collect::<Vec<_>>(), "signal {sig}");
        let leftover = format!("klog-{pid}-");
        for e in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(&leftover), "left behind: /dev/shm/{name}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
