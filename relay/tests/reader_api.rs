//! The reader API of a user-space relay channel, in one process: `read`, `sendfile`, `poll`
//! (timeouts and wakeups), `mmap` with `buf_mapped`/`buf_unmapped`, `subbufs_consumed`, and
//! readers outliving the channel.

mod support;

use std::fs::File;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use relay::core::Buf;
use relay::user::{Channel, ChannelCallbacks, Global, RelayFile};
use relay::{Callbacks, NoOverwrite, Poll};
use support::*;

/// Reads until `read` returns 0, in chunks of `chunk` bytes.
fn read_all(f: &mut RelayFile, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        assert!(n <= chunk);
        out.extend_from_slice(&buf[..n]);
    }
}

/// `sendfile` into a regular file returns exactly what `read` returns: two identical channels
/// get the same writes (with flushes, so sub-buffers end in padding, and with drops), one is
/// drained with `read`, the other with `sendfile` using the same counts. Both streams are the
/// accepted messages back to back, padding stripped.
#[test]
fn sendfile_matches_read_padding_stripped() {
    let dir = TempDir::new("sendfile_matches_read_padding_stripped");
    let open = |base: &str| {
        Channel::open(Some(base), Some(dir.path()), 512, 4, Global(NoOverwrite)).unwrap()
    };
    let (a, b) = (open("a"), open("b"));
    let (mut fa, mut fb) = (a.open_file(0).unwrap(), b.open_file(0).unwrap());
    let out_path = dir.path().join("sendfile.out");
    let out = File::create(&out_path).unwrap();

    let mut read_bytes = Vec::new();
    let mut expected = Vec::new();
    let mut seq = 0u64;
    let mut drops = 0;
    let chunks = [1usize, 7, 100, 199, 511, 512, 513, 4096];
    for round in 0..60 {
        for _ in 0..(round * 7 % 23) {
            let m = encode(0, seq);
            seq += 1;
            let (ok_a, ok_b) = (a.write(&m), b.write(&m));
            assert_eq!(ok_a, ok_b, "identical channels must accept identically");
            if ok_a {
                expected.extend_from_slice(&m);
            } else {
                drops += 1;
            }
        }
        if round % 3 == 0 {
            a.flush();
            b.flush();
        }
        let chunk = chunks[round % chunks.len()];
        // Sometimes leave data behind for the next round.
        let calls = if round % 4 == 1 { 2 } else { usize::MAX };
        let mut buf = vec![0u8; chunk];
        for _ in 0..calls {
            let n = fa.read(&mut buf).unwrap();
            let m = fb.sendfile(out.as_fd(), chunk).unwrap();
            assert_eq!(m, n, "round {round}: sendfile({chunk}) vs read({chunk})");
            if n == 0 {
                break;
            }
            read_bytes.extend_from_slice(&buf[..n]);
        }
    }
    // The last round drained everything.
    let left = (
        read_all(&mut fa, 300).len(),
        fb.sendfile(out.as_fd(), usize::MAX).unwrap(),
    );
    assert_eq!(left, (0, 0), "left over after the last round");
    drop(out);
    let sent = std::fs::read(&out_path).unwrap();
    assert!(drops > 0, "the scenario should include drops");
    assert_eq!(sent.len(), read_bytes.len());
    assert!(
        sent == read_bytes,
        "sendfile output differs from read output"
    );
    assert!(read_bytes == expected, "read is not the accepted messages");
    parse_all(&sent).unwrap();
    assert_eq!(a.stats()[0].dropped_msgs, drops);
}

/// `poll` with a timeout: a partly written sub-buffer is not readable, so poll returns `Empty`
/// after waiting the whole timeout (while `read` would return the bytes). A sub-buffer that is
/// exactly full is still the current one; the next write switches and makes it readable.
#[test]
fn poll_timeout_empty_on_partial_then_readable() {
    let chan = Channel::open(None, None, 4096, 4, Global(NoOverwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    assert_eq!(f.poll_now().unwrap(), Poll::Empty);
    assert!(chan.write(&[1; 100]));
    assert_eq!(f.poll_now().unwrap(), Poll::Empty);
    let t0 = Instant::now();
    assert_eq!(
        f.poll(Some(Duration::from_millis(150))).unwrap(),
        Poll::Empty
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(145) && waited < Duration::from_secs(5),
        "poll(150ms) returned after {waited:?}"
    );
    // Exactly fill the sub-buffer: relay switches only when a write does not fit.
    assert!(chan.write(&[2; 3996]));
    assert_eq!(f.poll_now().unwrap(), Poll::Empty);
    assert!(chan.write(&[3; 1]));
    let t0 = Instant::now();
    assert_eq!(
        f.poll(Some(Duration::from_secs(10))).unwrap(),
        Poll::Readable
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "readable poll waited"
    );
    let got = read_all(&mut f, 10_000);
    let mut want = vec![1; 100];
    want.extend([2; 3996]);
    want.push(3);
    assert!(got == want, "read after switch: {} bytes", got.len());
    assert_eq!(f.poll_now().unwrap(), Poll::Empty);
    assert_eq!(
        f.poll(Some(Duration::from_millis(20))).unwrap(),
        Poll::Empty
    );
}

/// Runs `poll(timeout)` on another thread, checks that it is still blocked after `settle`
/// (and after `not_enough`, which must not wake it), then runs `act` and returns what `poll`
/// returned and how long it took after `act`.
fn poll_woken_by(
    f: &RelayFile,
    timeout: Option<Duration>,
    not_enough: impl FnOnce(),
    act: impl FnOnce(),
) -> (Poll, Duration) {
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || {
            let r = f.poll(timeout).unwrap();
            let _ = tx.send((r, Instant::now()));
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            rx.try_recv().is_err(),
            "poll returned before anything happened"
        );
        not_enough();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            rx.try_recv().is_err(),
            "poll returned after a write that completed no sub-buffer"
        );
        let t0 = Instant::now();
        act();
        let (r, at) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("poller was not woken");
        (r, at.saturating_duration_since(t0))
    })
}

/// A thread blocked in `poll(None)` wakes up when a write completes a sub-buffer (and not on a
/// write that does not).
#[test]
fn blocked_poller_woken_by_write_completing_subbuf() {
    let chan = Channel::open(None, None, 1024, 4, Global(NoOverwrite)).unwrap();
    let f = chan.open_file(0).unwrap();
    let (r, after) = poll_woken_by(
        &f,
        None,
        || assert!(chan.write(&[1; 1000])),
        || assert!(chan.write(&[2; 100])),
    );
    assert_eq!(r, Poll::Readable);
    assert!(after < Duration::from_secs(5), "{after:?}");
}

/// A poller with a long timeout is woken as soon as a sub-buffer completes.
#[test]
fn poller_with_timeout_woken_early() {
    let chan = Channel::open(None, None, 1024, 4, Global(NoOverwrite)).unwrap();
    let f = chan.open_file(0).unwrap();
    let (r, after) = poll_woken_by(
        &f,
        Some(Duration::from_secs(30)),
        || assert!(chan.write(&[1; 10])),
        || {
            for _ in 0..11 {
                assert!(chan.write(&[2; 100]));
            }
        },
    );
    assert_eq!(r, Poll::Readable);
    assert!(after < Duration::from_secs(5), "{after:?}");
}

/// `flush` wakes a blocked poller, and the flushed partial sub-buffer is then readable.
#[test]
fn blocked_poller_woken_by_flush() {
    let chan = Channel::open(None, None, 1024, 4, Global(NoOverwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    let (r, _) = poll_woken_by(&f, None, || assert!(chan.write(&[5; 300])), || chan.flush());
    assert_eq!(r, Poll::Readable);
    assert_eq!(read_all(&mut f, 4096), vec![5; 300]);
    assert_eq!(f.poll_now().unwrap(), Poll::Empty);
}

/// `close` wakes a blocked poller with `Finalized`; the partial sub-buffer is still readable.
#[test]
fn blocked_poller_woken_by_close() {
    let chan = Channel::open(None, None, 1024, 4, Global(NoOverwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    let chan = std::cell::RefCell::new(Some(chan));
    let (r, _) = poll_woken_by(
        &f,
        None,
        || assert!(chan.borrow().as_ref().unwrap().write(&[6; 300])),
        || {
            chan.borrow_mut().take().unwrap().close();
        },
    );
    assert_eq!(r, Poll::Finalized);
    assert_eq!(read_all(&mut f, 4096), vec![6; 300]);
    assert_eq!(f.poll(None).unwrap(), Poll::Finalized);
}

/// Counts `buf_mapped`/`buf_unmapped` calls (in counters the test keeps its own handle on);
/// one global buffer; no-overwrite.
#[derive(Default, Clone)]
struct MapCounter(Arc<(AtomicUsize, AtomicUsize)>);

impl MapCounter {
    fn counts(&self) -> (usize, usize) {
        (
            self.0 .0.load(Ordering::SeqCst),
            self.0 .1.load(Ordering::SeqCst),
        )
    }
}

impl Callbacks for MapCounter {
    fn buf_mapped(&self, buf: &Buf) {
        assert_eq!(buf.cpu(), 0);
        self.0 .0.fetch_add(1, Ordering::SeqCst);
    }
    fn buf_unmapped(&self, buf: &Buf) {
        assert_eq!(buf.cpu(), 0);
        self.0 .1.fetch_add(1, Ordering::SeqCst);
    }
}

impl ChannelCallbacks for MapCounter {}

/// An in-process `mmap` fires `buf_mapped`, dropping the mapping fires `buf_unmapped`; a
/// rejected length fires nothing; the shared `mapped` counter follows every mapping; the mapping
/// shows the written bytes, survives the channel's close, and unmapping it afterwards still
/// reaches the client's callback.
#[test]
fn mmap_fires_buf_mapped_and_unmapped() {
    let dir = TempDir::new("mmap_fires_buf_mapped_and_unmapped");
    let page = relay::user::sys::page_size();
    let (size, n) = (page, 4);
    let cb = MapCounter::default();
    let chan = Channel::open(Some("m"), Some(dir.path()), size, n, Global(cb.clone())).unwrap();
    let f = chan.open_file(0).unwrap();
    assert!(chan.write(&[7; 50]));
    assert_eq!(cb.counts(), (0, 0));

    let m1 = f.mmap(size * n).unwrap();
    assert_eq!(cb.counts(), (1, 0));
    assert_eq!(f.stats().unwrap().mapped, 1);
    assert_eq!(m1.len(), size * n);
    assert_eq!(&m1.as_slice()[..50], &[7; 50]);

    let m2 = f.mmap(size * n).unwrap();
    assert_eq!(cb.counts(), (2, 0));
    let e = f.mmap(size).err().expect("partial mapping must fail");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(cb.counts(), (2, 0), "a failed mmap fires no callback");
    assert_eq!(f.stats().unwrap().mapped, 2);

    drop(m1);
    assert_eq!(cb.counts(), (2, 1));
    assert_eq!(f.stats().unwrap().mapped, 1);

    // A mapping made through the file path (as another process would) is counted too.
    let by_path = RelayFile::open(chan.paths()[0].as_ref().unwrap()).unwrap();
    let m3 = by_path.mmap(size * n).unwrap();
    assert_eq!(f.stats().unwrap().mapped, 2);
    // The writer's later bytes show up in every mapping (sub-buffer 0, after the first 50).
    assert!(chan.write(&[8; 20]));
    assert_eq!(&m3.as_slice()[50..70], &[8; 20]);
    assert_eq!(&m2.as_slice()[50..70], &[8; 20]);
    drop(m3);
    assert_eq!(f.stats().unwrap().mapped, 1);

    // Close the channel with m2 still mapped.
    let report = chan.close();
    assert_eq!(report.stats[0].mapped, 1);
    assert_eq!(&m2.as_slice()[..50], &[7; 50]);
    let before = cb.counts();
    drop(m2);
    assert_eq!(
        cb.counts(),
        (before.0, before.1 + 1),
        "buf_unmapped after close"
    );
    assert_eq!(f.stats().unwrap().mapped, 0);
    drop(by_path);
    drop(f);
    let (mapped, unmapped) = cb.counts();
    assert_eq!(
        mapped, unmapped,
        "every buf_mapped is matched by a buf_unmapped"
    );
}

/// The buffer memory outlives the channel while a reader has it open: after `close` (files
/// unlinked) both an in-process reader and a reader opened by path see `Finalized` and read
/// everything that was written, and a mapping still shows the data.
#[test]
fn buffer_outlives_closed_channel() {
    let dir = TempDir::new("buffer_outlives_closed_channel");
    let (size, n) = (1024, 4);
    let chan = Channel::open(Some("c"), Some(dir.path()), size, n, Global(NoOverwrite)).unwrap();
    let path = chan.paths()[0].clone().unwrap();
    let mut f1 = chan.open_file(0).unwrap();
    let mut f2 = RelayFile::open(&path).unwrap();
    let map = f2.mmap(size * n).unwrap();
    let mut expected = Vec::new();
    let mut seq = 0;
    while expected.len() < size * 5 / 2 {
        let m = encode(0, seq);
        seq += 1;
        assert!(chan.write(&m));
        expected.extend_from_slice(&m);
    }
    assert_eq!(f1.stats().unwrap().readers, 2);
    let report = chan.close();
    assert_eq!(report.stats[0].dropped_msgs, 0);
    assert!(!path.exists(), "close removes the file");
    assert_eq!(f1.poll_now().unwrap(), Poll::Finalized);
    assert_eq!(f2.poll_now().unwrap(), Poll::Finalized);
    // Both readers share one read position (relay has one per buffer); one consumes at a
    // time, so the second reads once the first is done (dropped).
    let mut got = vec![0u8; 1000];
    let k = f1.read(&mut got).unwrap();
    assert_eq!(k, 1000);
    got.truncate(k);
    assert_eq!(f1.stats().unwrap().readers, 2);
    drop(f1);
    got.extend(read_all(&mut f2, 333));
    assert!(
        got == expected,
        "read after close: {} of {}",
        got.len(),
        expected.len()
    );
    assert_eq!(f2.read(&mut [0u8; 10]).unwrap(), 0);
    let first = encode(0, 0);
    assert_eq!(&map.as_slice()[..first.len()], &first[..]);
    let st = f2.stats().unwrap();
    assert!(st.finalized);
    assert_eq!(st.mapped, 1);
    drop(map);
    assert_eq!(f2.stats().unwrap().readers, 1);
}

/// Dropping the channel (instead of `close`) also finalizes and unlinks, leaving readers their
/// data.
#[test]
fn dropping_channel_finalizes() {
    let dir = TempDir::new("dropping_channel_finalizes");
    let chan = Channel::open(Some("d"), Some(dir.path()), 1024, 2, Global(NoOverwrite)).unwrap();
    let path = chan.paths()[0].clone().unwrap();
    let mut f = RelayFile::open(&path).unwrap();
    assert!(chan.write(b"still here"));
    drop(chan);
    assert!(!path.exists());
    assert_eq!(f.poll_now().unwrap(), Poll::Finalized);
    assert_eq!(read_all(&mut f, 3), b"still here");
}

/// `subbufs_consumed` on a reader moves the read position as relay_subbufs_consumed does:
/// whole sub-buffers are skipped, counts above `n_subbufs` are ignored, counts above what was
/// produced clamp to it, and the next read starts at the beginning of the new sub-buffer.
#[test]
fn subbufs_consumed_moves_read_position() {
    let chan = Channel::open(None, None, 1024, 4, Global(NoOverwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    assert!(chan.write(&[1; 100]));
    chan.flush();
    assert!(chan.write(&[2; 200]));
    chan.flush();
    assert!(chan.write(&[3; 50]));
    f.subbufs_consumed(5).unwrap(); // > n_subbufs: ignored
    assert_eq!(f.stats().unwrap().subbufs_consumed, 0);
    f.subbufs_consumed(1).unwrap();
    assert_eq!(f.stats().unwrap().subbufs_consumed, 1);
    let mut want = vec![2; 200];
    want.extend([3; 50]);
    assert_eq!(read_all(&mut f, 64), want);

    assert!(chan.write(&[4; 60]));
    // Nothing complete is unconsumed: the count cannot move, the position stays.
    f.subbufs_consumed(3).unwrap();
    assert_eq!(read_all(&mut f, 64), vec![4; 60]);

    chan.flush();
    assert!(chan.write(&[5; 70]));
    chan.flush();
    assert!(chan.write(&[6; 10]));
    let mut first = [0u8; 30];
    assert_eq!(f.read(&mut first).unwrap(), 30);
    assert_eq!(first, [5; 30]);
    assert_eq!(f.stats().unwrap().subbufs_consumed, 3);
    // 3 > produced - consumed = 1: clamps to produced; the reader restarts at the beginning of
    // the current sub-buffer (relay.c would keep its stale byte position there).
    f.subbufs_consumed(3).unwrap();
    assert_eq!(f.stats().unwrap().subbufs_consumed, 4);
    assert_eq!(read_all(&mut f, 1000), vec![6; 10]);
    assert_eq!(f.stats().unwrap().subbufs_consumed, 4);
}

/// `read_prefix` returns the read position with the bytes of its sub-buffer before it (what an
/// earlier reader consumed), nothing at a sub-buffer start, and nothing once the writer has
/// reused the slot (overwrite mode laps it).
#[test]
fn read_prefix_is_the_consumed_start_of_the_current_subbuf() {
    let chan = Channel::open(None, None, 256, 2, Global(relay::Overwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    let (pos, bytes) = f.read_prefix().unwrap();
    assert_eq!((pos.unwrap().subbuf, pos.unwrap().offset), (0, 0));
    assert!(bytes.is_empty());
    assert!(chan.write(&[1; 40]));
    assert!(chan.write(&[2; 20]));
    let mut first = [0u8; 50];
    assert_eq!(f.read(&mut first).unwrap(), 50);
    let (pos, bytes) = f.read_prefix().unwrap();
    let pos = pos.unwrap();
    assert_eq!((pos.subbuf, pos.offset), (0, 50));
    assert_eq!(bytes, first);
    // The position does not move: the next read continues after the prefix.
    assert_eq!(read_all(&mut f, 64), vec![2; 10]);
    // The writer laps the slot of the position: its start is gone.
    chan.flush();
    for _ in 0..3 {
        assert!(chan.write(&[3; 200]));
        chan.flush();
    }
    let (_, bytes) = f.read_prefix().unwrap();
    assert!(bytes.is_empty());
}
