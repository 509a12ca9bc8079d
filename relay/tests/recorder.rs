//! `Recorder`: drains a channel's buffer files into per-CPU files on disk while writers write.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::Duration;

use relay::user::{BufRecord, Channel, Recorder};
use relay::NoOverwrite;
use support::*;

const THREADS: usize = 3;

/// `THREADS` writers write `n` messages each into `chan`; returns what `write` returned.
fn write_all(chan: &Channel<NoOverwrite>, n: usize, start: &Barrier) -> Ledger {
    let accepted = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    start.wait();
                    let mut buf = [0u8; MAX_LEN];
                    (0..n as u64)
                        .map(|seq| {
                            let len = encode_into(t as u32, seq, &mut buf);
                            chan.write(&buf[..len])
                        })
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Ledger { accepted }
}

/// Every recorded file parses into whole messages in per-writer order; together they are
/// exactly the accepted messages; the records' byte counts match the files and their drop
/// counts match the writes that returned false.
fn check_records(records: &[BufRecord], out: &Path, n_bufs: usize, ledger: &Ledger) {
    assert_eq!(records.len(), n_bufs);
    let mut delivered = Vec::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.name, format!("rec{i}"));
        assert_eq!(r.out, out.join(format!("rec{i}")));
        let bytes = std::fs::read(&r.out).unwrap();
        assert_eq!(r.bytes, bytes.len() as u64, "{}", r.name);
        let msgs = parse_all(&bytes).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        check_order(i, &msgs).unwrap();
        delivered.extend(msgs);
    }
    let n_delivered = ledger.check_delivery(&delivered).unwrap();
    let dropped: usize = records.iter().map(|r| r.dropped_msgs.unwrap()).sum();
    let dropped_bytes: usize = records.iter().map(|r| r.dropped_bytes.unwrap()).sum();
    assert_eq!(n_delivered + dropped, ledger.written());
    assert_eq!((dropped, dropped_bytes), ledger.rejected());
    assert!(records.iter().all(|r| r.lapped_subbufs == Some(0)));
    assert!(records.iter().all(|r| r.toobig_msgs == Some(0)));
    eprintln!(
        "recorded {n_delivered} of {} messages, {dropped} dropped, per buffer {:?}",
        ledger.written(),
        records.iter().map(|r| r.bytes).collect::<Vec<_>>()
    );
}

/// `Recorder::for_dir` on the channel's directory, started from another thread while the
/// writers run, stopped with the stop flag after they finished: the recording is complete.
#[test]
fn recorder_for_dir_records_while_writers_write() {
    let dir = TempDir::new("recorder_for_dir_records_while_writers_write");
    let (src, out) = (dir.sub("src"), dir.sub("out"));
    let chan = Channel::open(Some("rec"), Some(&src), 4096, 8, NoOverwrite).unwrap();
    let stop = AtomicBool::new(false);
    // The writers start at once, the recorder opens the files whenever its thread gets there.
    let start = Barrier::new(THREADS);
    let n = scaled(30_000);
    let (ledger, records) = std::thread::scope(|s| {
        let rec = s.spawn(|| {
            Recorder::for_dir(&src, "rec", &out)
                .unwrap()
                .run(&stop)
                .unwrap()
        });
        let ledger = write_all(&chan, n, &start);
        stop.store(true, Ordering::Release);
        (ledger, rec.join().unwrap())
    });
    check_records(&records, &out, chan.n_bufs(), &ledger);
    // The recorder only read: the channel is still open and usable.
    assert!(chan.write(&encode(0, 0)));
}

/// Without the stop flag, a recorder ends by itself when the channel is closed (`Finalized`)
/// and has then recorded everything.
#[test]
fn recorder_ends_when_channel_closes() {
    let dir = TempDir::new("recorder_ends_when_channel_closes");
    let (src, out) = (dir.sub("src"), dir.sub("out"));
    let chan = Channel::open(Some("rec"), Some(&src), 4096, 8, NoOverwrite).unwrap();
    let n_bufs = chan.n_bufs();
    let never = AtomicBool::new(false);
    let start = Barrier::new(THREADS + 1);
    let (ready_tx, ready_rx) = mpsc::channel();
    let n = scaled(20_000);
    let (ledger, records) = std::thread::scope(|s| {
        let rec = s.spawn(|| {
            let r = Recorder::for_dir(&src, "rec", &out).unwrap();
            ready_tx.send(()).unwrap();
            start.wait();
            r.run(&never).unwrap()
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let ledger = write_all(&chan, n, &start);
        chan.close();
        (ledger, rec.join().unwrap())
    });
    check_records(&records, &out, n_bufs, &ledger);
}

/// `for_dir` on a directory without the files fails with NotFound.
#[test]
fn recorder_for_dir_without_files() {
    let dir = TempDir::new("recorder_for_dir_without_files");
    let e = Recorder::for_dir(dir.path(), "rec", dir.path())
        .err()
        .expect("no files");
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
}
