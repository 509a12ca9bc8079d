//! `klog-decode record` as users stop it: SIGKILL mid-run then a second recorder, SIGTERM,
//! SIGHUP and SIGINT, a full disk, an existing trace directory, and bit flips in the recorded
//! files. A registered `RelayHandler` in this process writes numbered events; the recorders are
//! child processes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait, Rng, TempDir};
use klog::{klog, RelayConfig, RelayHandler};
use klog_decode::{decode_dir, Options, Payload, Record, Report, Value, WarningKind};

/// The dispatcher is process-global: one handler at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_klog-decode"))
}

fn open(live: &Path, n_subbufs: usize) -> Arc<RelayHandler> {
    let cfg = RelayConfig {
        subbuf_size: 4096,
        n_subbufs,
        ..RelayConfig::new(live)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    h
}

/// Emits events `from..to`, flushing every `batch` and pausing `pause` after each flush.
fn emit(h: &RelayHandler, from: u32, to: u32, batch: u32, pause: Duration) {
    emit_with(h, from, to, batch, pause, true);
}

/// [`emit`], flushing only at the end unless `flush`: a recorder then reads partly filled
/// sub-buffers when its poll times out.
fn emit_with(h: &RelayHandler, from: u32, to: u32, batch: u32, pause: Duration, flush: bool) {
    for i in from..to {
        klog!("rec event {} of {}", i, "test");
        if (i - from) % batch == batch - 1 {
            if flush {
                h.flush();
            }
            std::thread::sleep(pause);
        }
    }
    h.flush();
}

fn close(h: Arc<RelayHandler>) {
    assert!(klog::unregister().is_some());
    let st = h.finish();
    assert_eq!(st.lost.iter().sum::<u64>(), 0, "the writer dropped events");
    drop(h);
}

fn record(live: &Path, out: &Path) -> Child {
    bin()
        .arg("record")
        .arg(live)
        .arg(out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: plain kill(2) of our own child.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0);
}

/// The numbers of the "rec event {i} of test" events, failing on any event that is not exactly
/// such an event (a damaged one printed as data).
fn numbers(r: &Report) -> Vec<u32> {
    let fmt = |id: u64| r.metadata.callsites.get(&id).map(|c| c.fmt.as_str());
    r.records
        .iter()
        .filter_map(|rec| match rec {
            Record::Event(e) => {
                let Payload::Values(v) = &e.payload else {
                    panic!("unexpected payload {:?}", e.payload);
                };
                match (&v[..], fmt(e.callsite)) {
                    ([Value::Unsigned(i), Value::Str(s)], Some("rec event {0} of {1}"))
                        if s == "test" =>
                    {
                        Some(u32::try_from(*i).expect("event number out of range"))
                    }
                    _ => panic!("unexpected event {e:?} ({:?})", fmt(e.callsite)),
                }
            }
            Record::Lost(_) => None,
        })
        .collect()
}

fn decode(dir: &Path) -> Report {
    decode_dir(dir, &Options::default()).unwrap()
}

/// SIGKILL of a recorder at a random point, then a second recorder on the same live channel:
/// every event is in exactly one of the two traces (the second one starts in the middle of a
/// sub-buffer; its index carries that sub-buffer's start), or reported as damaged by the first.
#[test]
fn sigkill_then_second_recorder_loses_and_repeats_nothing() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = Rng(0x5eed_0001);
    let mut prefixes = 0;
    for round in 0..3 {
        let live = TempDir::new("kill-live");
        let out = TempDir::new("kill-out");
        let (a, b) = (out.path().join("a"), out.path().join("b"));
        let h = open(live.path(), 64);
        let first = record(live.path(), &a);
        std::thread::sleep(Duration::from_millis(300));
        const N: u32 = 12_000;
        // Killed while the writer runs, after a random part of the first third.
        let kill_after = Duration::from_millis(30 + rng.next() % 1500);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(kill_after);
                signal(&first, libc::SIGKILL);
            });
            // No flushes: the recorder reads partly filled sub-buffers, so it is killed in the
            // middle of one.
            emit_with(&h, 0, N / 3, 100, Duration::from_millis(70), false);
        });
        let o = wait(first, 20);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&o.status),
            Some(libc::SIGKILL)
        );
        // Unread events wait in the buffer meanwhile.
        emit(&h, N / 3, N / 2, 1000, Duration::ZERO);
        let second = record(live.path(), &b);
        std::thread::sleep(Duration::from_millis(300));
        emit(&h, N / 2, N, 1000, Duration::from_millis(20));
        close(h);
        let o = wait(second, 30);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

        let (ra, rb) = (decode(&a), decode(&b));
        let (na, nb) = (numbers(&ra), numbers(&rb));
        let mut seen = BTreeSet::new();
        for i in na.iter().chain(&nb) {
            assert!(seen.insert(*i), "round {round}: event {i} recorded twice");
        }
        assert_eq!(rb.stats.lost_events + ra.stats.lost_events, 0);
        // The second trace starts cleanly, in the middle of a sub-buffer or not.
        assert_eq!(rb.stats.total_warnings(), 0, "round {round}: {}", rb.stats);
        let missing: Vec<u32> = (0..N).filter(|i| !seen.contains(i)).collect();
        // The only excuse: the first recorder was killed between writing a chunk and indexing
        // it, and the first trace says so.
        if !missing.is_empty() {
            assert!(
                ra.stats.count(WarningKind::Damaged) > 0,
                "round {round}: {} events missing ({:?}..) and nothing reported\n{}\n{}",
                missing.len(),
                &missing[..missing.len().min(5)],
                ra.stats,
                rb.stats
            );
        }
        eprintln!(
            "round {round}: killed after {kill_after:?}: {} + {} events, {} missing (reported), \
             {} events of the second trace's first sub-buffer read by the first",
            na.len(),
            nb.len(),
            missing.len(),
            rb.stats.unrecorded_events
        );
        // What the first reader took of the second trace's first sub-buffer is accounted for
        // (unrecorded), with or without the writer's totals.
        let acct = rb.stats.accounting.expect("accounting");
        assert!(
            acct.unrecorded >= rb.stats.unrecorded_events,
            "round {round}: {acct:?}, {} prefix events",
            rb.stats.unrecorded_events
        );
        prefixes += u64::from(rb.stats.unrecorded_events > 0);
    }
    assert!(
        prefixes > 0,
        "no round started the second recorder mid-sub-buffer"
    );
}

/// SIGTERM, SIGHUP and SIGINT stop `record` cleanly: it drains, writes everything and exits 0.
#[test]
fn sigterm_sighup_sigint_stop_record_exactly() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        let live = TempDir::new("sig-live");
        let out = TempDir::new("sig-out");
        let h = open(live.path(), 64);
        let rec = record(live.path(), out.path());
        std::thread::sleep(Duration::from_millis(300));
        const N: u32 = 20_000;
        emit(&h, 0, N, 200, Duration::from_millis(1));
        // Signalled right after the last flush: what is still in the buffer must be drained.
        signal(&rec, sig);
        let o = wait(rec, 20);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "signal {sig}: {:?} {e}", o.status);
        assert!(e.contains("recorded "), "signal {sig}: {e}");
        close(h);
        let r = decode(out.path());
        assert_eq!(r.stats.total_warnings(), 0, "signal {sig}: {}", r.stats);
        let mut n = numbers(&r);
        n.sort();
        assert_eq!(n, (0..N).collect::<Vec<_>>(), "signal {sig}");
    }
}

/// A recorder writing into a full file system stops promptly with a non-zero exit and a message
/// naming the file and the error, while the writer goes on writing.
#[test]
fn full_disk_stops_record_promptly() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("full-live");
    let mnt = TempDir::new("full-mnt");
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(st.success(), "mount failed");
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _u = Umount(mnt.path());
    let h = open(live.path(), 256);
    let rec = record(live.path(), &mnt.path().join("trace"));
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let o = std::thread::scope(|s| {
        s.spawn(|| {
            // Keeps writing (about 40 bytes an event) until the recorder is gone.
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                emit(&h, i, i + 2000, 2000, Duration::from_millis(1));
                i += 2000;
            }
        });
        let o = wait(rec, 30);
        stop.store(true, std::sync::atomic::Ordering::Release);
        o
    });
    let took = t0.elapsed();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("No space left on device"), "{e}");
    assert!(
        e.contains(&mnt.path().join("trace").display().to_string()),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}: {e}");

    // The disk is full before the first metadata copy, and the writer is idle: `record` does not
    // wait for data (or a Ctrl-C it would ignore) but stops at once, naming the metadata file.
    let filler = mnt.path().join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &[0u8; 4096]).is_ok() {}
    drop(f);
    let t0 = Instant::now();
    let rec = record(live.path(), &mnt.path().join("trace2"));
    let o = wait(rec, 20);
    let took = t0.elapsed();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(e.contains("No space left on device"), "{e}");
    assert!(e.contains("trace2/"), "{e}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {e}");
    assert!(klog::unregister().is_some());
    h.finish();
}

/// `record` refuses a directory that already holds a trace; `--force` replaces only klog's files.
#[test]
fn record_refuses_an_existing_trace_unless_forced() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("exist-live");
    let out = TempDir::new("exist-out");
    out.write("metadata", b"old metadata");
    out.write("cpu0", b"old stream");
    out.write("notes.txt", b"mine");
    let h = open(live.path(), 64);
    let o = bin()
        .arg("record")
        .arg(live.path())
        .arg(out.path())
        .args(["--duration", "0.2"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("already holds a trace") && e.contains("--force"),
        "{e}"
    );
    assert!(e.contains(&out.path().display().to_string()), "{e}");
    assert_eq!(
        std::fs::read(out.path().join("metadata")).unwrap(),
        b"old metadata"
    );
    assert_eq!(
        std::fs::read(out.path().join("cpu0")).unwrap(),
        b"old stream"
    );

    let rec = bin()
        .arg("record")
        .arg(live.path())
        .arg(out.path())
        .arg("--force")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    emit(&h, 0, 1000, 100, Duration::ZERO);
    close(h);
    let o = wait(rec, 20);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(out.path().join("notes.txt")).unwrap(),
        b"mine"
    );
    let mut n = numbers(&decode(out.path()));
    n.sort();
    assert_eq!(n, (0..1000).collect::<Vec<_>>());
}

/// A single flipped bit anywhere in a recorded cpuN file is reported (cpu, byte range,
/// sub-buffers) and never printed as data; the other sub-buffers still decode.
#[test]
fn flipped_bits_are_reported_not_printed() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("flip-live");
    let out = TempDir::new("flip-out");
    let h = open(live.path(), 64);
    let rec = record(live.path(), &out.path().join("orig"));
    std::thread::sleep(Duration::from_millis(300));
    const N: u32 = 20_000;
    emit(&h, 0, N, 500, Duration::from_millis(5));
    close(h);
    let o = wait(rec, 20);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let orig = out.path().join("orig");
    assert_eq!(numbers(&decode(&orig)).len(), N as usize);
    let files: Vec<String> = (0..64)
        .map(|c| format!("cpu{c}"))
        .filter(|f| orig.join(f).exists() && std::fs::metadata(orig.join(f)).unwrap().len() > 0)
        .collect();
    let mut rng = Rng(0xb17f_11b5);
    for k in 0..40 {
        let f = &files[rng.next() as usize % files.len()];
        let mut bytes = std::fs::read(orig.join(f)).unwrap();
        let at = rng.next() as usize % bytes.len();
        bytes[at] ^= 1 << (rng.next() % 8);
        let t = out.path().join(format!("flip{k}"));
        std::fs::create_dir(&t).unwrap();
        for e in std::fs::read_dir(&orig).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), t.join(e.file_name())).unwrap();
        }
        std::fs::write(t.join(f), &bytes).unwrap();
        let r = decode(&t);
        let n = numbers(&r);
        let mut seen = BTreeSet::new();
        for i in &n {
            assert!(
                *i < N && seen.insert(*i),
                "{f} bit flip at {at}: event {i} printed wrong"
            );
        }
        assert!(
            r.stats.count(WarningKind::Damaged) > 0,
            "{f} bit flip at {at} not reported: {}",
            r.stats
        );
        let w = r
            .stats
            .warnings
            .iter()
            .find(|w| w.kind == WarningKind::Damaged)
            .unwrap();
        assert!(
            w.message.contains("CRC-32C") && w.message.contains("sub-buffers"),
            "{w}"
        );
        // Only the damaged sub-buffer (4 KiB, a few hundred events) is lost, or nothing when
        // the bit is in a sub-buffer without events (a final flush's bare header).
        let lost = N as usize - n.len();
        assert!(
            lost <= 600,
            "{f} bit flip at {at}: {lost} events not decoded: {w}"
        );
        std::fs::remove_dir_all(&t).unwrap();
    }

    // A recorder stopped after writing its last chunk but before indexing it: those bytes may
    // also be in the next recording, so they are reported and not decoded.
    let f = &files[0];
    let idx = std::fs::read(orig.join(format!("{f}.idx"))).unwrap();
    let rec_len = 12 + 40; // a chunk record: kind, len, 40-byte body, crc
    let t = out.path().join("unindexed");
    std::fs::create_dir(&t).unwrap();
    for e in std::fs::read_dir(&orig).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), t.join(e.file_name())).unwrap();
    }
    std::fs::write(t.join(format!("{f}.idx")), &idx[..idx.len() - rec_len]).unwrap();
    let r = decode(&t);
    assert!(numbers(&r).len() <= N as usize);
    let w = r
        .stats
        .warnings
        .iter()
        .find(|w| w.kind == WarningKind::Damaged)
        .expect("the unindexed tail is reported");
    assert!(w.message.contains("not in the index"), "{w}");
}

/// One consuming reader: a second `record`, or a `--follow`, on a live directory that a `record`
/// is draining fails at once, naming the holder's pid.
#[test]
fn a_second_consumer_is_refused_naming_the_holder() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("two-live");
    let out = TempDir::new("two-out");
    let h = open(live.path(), 64);
    let first = record(live.path(), &out.path().join("a"));
    std::thread::sleep(Duration::from_millis(300));
    let holder = first.id().to_string();
    for args in [
        vec![
            "record".into(),
            live.path().into(),
            out.path().join("b").into_os_string(),
        ],
        vec!["--follow".into(), live.path().into()],
    ] {
        let t0 = Instant::now();
        let c = bin().args(&args).stderr(Stdio::piped()).spawn().unwrap();
        // Refused at once, or killed here (and failing below) if it was let in. An exited child
        // is a zombie until waited for, so the kill cannot hit another process.
        std::thread::sleep(Duration::from_millis(500));
        signal(&c, libc::SIGKILL);
        let o = wait(c, 10);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(e.contains(&holder), "{args:?}: {e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
    emit(&h, 0, 1000, 100, Duration::ZERO);
    close(h);
    let o = wait(first, 20);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut n = numbers(&decode(&out.path().join("a")));
    n.sort();
    assert_eq!(n, (0..1000).collect::<Vec<_>>());
}
