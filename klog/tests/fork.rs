//! `fork()` while logging: a child never hangs in `klog!` (even when a parent thread held the
//! emit slot at the fork), never writes into the parent's buffers or metadata, leaves the
//! parent's files alone when it drops a handler, and can log again after registering a handler
//! of its own.
//!
//! Real processes: the children are forked from this test while a parent thread emits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use klog::{klog, klog_raw, RelayConfig, RelayHandler};

/// A directory of this test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("klog-fork-{tag}-{}", std::process::id()));
        std::fs::create_dir(&d).expect("fresh test directory");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Waits for `pid` up to `limit`; kills it and returns `None` if it is still running.
fn wait_child(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: polls our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What each child does: log (disabled: must return at once), flush and finish the parent's
/// handler (must not touch its buffers), drop an unregistered handler of the parent's (must
/// not remove its files), then log into a handler of its own. Exit code 0 on success.
fn child(parent: &RelayHandler, spare: RelayHandler, own_dir: &Path) -> i32 {
    for i in 0..1000u32 {
        klog!("child event {}", i);
        klog_raw!(*b"CHILDRAW");
    }
    klog::flush();
    parent.flush();
    parent.finish();
    drop(spare);
    if klog::unregister().is_some() {
        return 3;
    }
    let cfg = RelayConfig {
        subbuf_size: 4096,
        n_subbufs: 4,
        ..RelayConfig::new(own_dir)
    };
    let Ok(h) = RelayHandler::open(&cfg) else {
        return 4;
    };
    let h = Arc::new(h);
    if klog::register(h.clone()).is_err() {
        return 5;
    }
    for i in 0..10u32 {
        klog!("child re-registered {}", i);
    }
    klog::unregister();
    let st = h.finish();
    let meta = std::fs::read(own_dir.join("metadata")).unwrap_or_default();
    if st.frames.iter().sum::<u64>() != 10 || !contains(&meta, b"child re-registered") {
        return 6;
    }
    0
}

#[test]
fn fork_storm_while_a_thread_logs() {
    let live = Dir::new("live");
    let spare_dir = Dir::new("spare");
    let own = Dir::new("own");
    // One global buffer: one emit slot, which the logging thread holds most of the time, so
    // many forks happen while it is held.
    let cfg = RelayConfig {
        subbuf_size: 64 * 1024,
        n_subbufs: 4,
        global: true,
        overwrite: true,
        ..RelayConfig::new(&live.0)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    let stop = AtomicBool::new(false);
    let forks = 100;
    let mut hung = 0;
    let mut failed = Vec::new();
    /// Stops the logging thread also when an assertion fails (the scope joins it).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop = Stop(&stop);
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                klog!("parent event {}", i);
                i += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        for k in 0..forks {
            let spare = RelayHandler::open(&RelayConfig {
                subbuf_size: 4096,
                n_subbufs: 4,
                ..RelayConfig::new(spare_dir.0.join(format!("s{k}")))
            })
            .unwrap();
            let own_dir = own.0.join(format!("c{k}"));
            // The child only runs `child` and leaves with `_exit`.
            // SAFETY: so it never returns into the (multi-threaded) test harness.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let code = child(&h, spare, &own_dir);
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(code) };
            }
            match wait_child(pid, Duration::from_secs(10)) {
                None => hung += 1,
                Some(0) => {}
                Some(c) => failed.push(c),
            }
            if hung > 0 || !failed.is_empty() {
                break;
            }
            // The spare handler's files survived the child's drop of its copy.
            let sd = spare_dir.0.join(format!("s{k}"));
            assert!(sd.join("metadata").is_file() && sd.join("cpu0").is_file());
            drop(spare);
            assert!(!sd.exists(), "the parent's drop removes them");
        }
    });
    assert_eq!(hung, 0, "children hung in klog! after fork");
    assert!(failed.is_empty(), "child exit codes {failed:?}");
    klog::unregister();
    h.finish();
    // Nothing of the children reached the parent's trace.
    let meta = std::fs::read(live.0.join("metadata")).unwrap();
    assert!(contains(&meta, b"parent event"));
    assert!(
        !contains(&meta, b"child"),
        "a child defined a callsite in the parent's metadata"
    );
    let data = std::fs::read(live.0.join("cpu0")).unwrap();
    assert!(
        !contains(&data, b"CHILDRAW"),
        "a child wrote into the parent's buffer"
    );
}
