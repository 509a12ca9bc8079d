//! A writer process and a reader process sharing relay buffer files.
//!
//! The reader is this test binary re-executed with a filter for one of the `child_*` tests,
//! which act as the child body when `RELAY_IT_CHILD` is set (and do nothing otherwise). The
//! child prints `READY`/`RESULT ...` lines and stores the `(tid, seq)` of every message it
//! received in a file; the parent checks them against what its `write` calls returned.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use relay::user::{Channel, ChannelCallbacks, RelayFile};
use relay::{NoOverwrite, Poll};
use support::*;

const LONG: Duration = Duration::from_secs(60);

fn mp_params(dir: &Path, base: &str, n_bufs: usize) -> Vec<(&'static str, String)> {
    vec![
        ("dir", dir.display().to_string()),
        ("base", base.to_string()),
        ("nbufs", n_bufs.to_string()),
    ]
}

fn result_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("result{i}"))
}

/// Writer threads of phase 2 (tids `1..=WRITERS`; phase 1 is tid 0). More threads than CPUs,
/// so per-CPU writes migrate.
const WRITERS: usize = 3;

/// The writer side shared by the read and mmap tests: phase 1 (one thread, tid 0) fills the
/// buffers with more than they hold while the child waits, so drops are certain; then `GO`;
/// then phase 2: `WRITERS` threads write `n2` messages in all while the child reads
/// concurrently. Returns the ledger, one row per tid.
fn write_phases<C: ChannelCallbacks>(
    chan: &Channel<C>,
    child: &mut ChildProc,
    n2: usize,
) -> Ledger {
    let geo = chan.geometry();
    let capacity = geo.size() * chan.n_bufs();
    let mut phase1 = Vec::new();
    let mut buf = [0u8; MAX_LEN];
    let mut bytes = 0;
    // More bytes than all buffers together can hold: by pigeonhole some buffer must refuse.
    while bytes <= capacity + geo.subbuf_size() * chan.n_bufs() {
        let n = encode_into(0, phase1.len() as u64, &mut buf);
        phase1.push(chan.write(&buf[..n]));
        bytes += n;
    }
    let phase1_dropped: usize = chan.stats().iter().map(|s| s.dropped_msgs).sum();
    assert!(
        phase1_dropped > 0,
        "wrote {bytes} bytes into {capacity} bytes of buffers without a reader, yet nothing was \
         dropped"
    );
    assert_eq!(
        phase1_dropped,
        phase1.iter().filter(|&&a| !a).count(),
        "dropped_msgs must count exactly the writes that returned false"
    );
    child.send("GO");
    let mut accepted = vec![phase1];
    std::thread::scope(|s| {
        let hs: Vec<_> = (1..=WRITERS as u32)
            .map(|tid| {
                s.spawn(move || {
                    let mut buf = [0u8; MAX_LEN];
                    (0..(n2 / WRITERS) as u64)
                        .map(|seq| {
                            let n = encode_into(tid, seq, &mut buf);
                            let ok = chan.write(&buf[..n]);
                            if seq % 512 == 0 {
                                // Let the reader run on a loaded machine, so that not
                                // everything is dropped.
                                std::thread::yield_now();
                            }
                            ok
                        })
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        accepted.extend(hs.into_iter().map(|h| h.join().unwrap()));
    });
    Ledger { accepted }
}

/// The value of `key=value` in a child's summary line.
fn field(summary: &str, key: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {summary}"))
        .parse()
        .unwrap()
}

/// Bytes of the messages whose write returned true.
fn accepted_bytes(ledger: &Ledger) -> u64 {
    let mut total = 0;
    for (tid, row) in ledger.accepted.iter().enumerate() {
        for (seq, &ok) in row.iter().enumerate() {
            if ok {
                total += msg_len(tid as u32, seq as u64) as u64;
            }
        }
    }
    total
}

/// Parent of the read-path test: no-overwrite channel, child reads every buffer file with
/// poll + read until the channel is closed.
fn read_path<C: ChannelCallbacks>(test: &str, callbacks: C, global: bool) {
    let dir = TempDir::new(test);
    let chan = Channel::open(Some("cpu"), Some(dir.path()), 4096, 8, callbacks).unwrap();
    let n_bufs = chan.n_bufs();
    assert_eq!(n_bufs == 1, global);
    let mut child = ChildProc::spawn("child_read_path", &mp_params(dir.path(), "cpu", n_bufs));
    child.expect_line("READY", LONG);

    let n2 = scaled(60_000);
    let ledger = write_phases(&chan, &mut child, n2);
    let report = chan.close();
    let summary = child.expect_line("RESULT", LONG);
    child.wait_success(LONG);

    let mut delivered = Vec::new();
    for i in 0..n_bufs {
        let msgs = load_msgs(&result_path(dir.path(), i));
        check_order(i, &msgs).unwrap();
        delivered.extend(msgs);
    }
    let n_delivered = ledger.check_delivery(&delivered).unwrap();
    let dropped: usize = report.stats.iter().map(|s| s.dropped_msgs).sum();
    let dropped_bytes: usize = report.stats.iter().map(|s| s.dropped_bytes).sum();
    let (rejected, rejected_bytes) = ledger.rejected();
    assert_eq!(n_delivered + dropped, ledger.written(), "{summary}");
    assert_eq!((dropped, dropped_bytes), (rejected, rejected_bytes));
    assert_eq!(field(&summary, "delivered"), n_delivered as u64);
    assert_eq!(field(&summary, "bytes"), accepted_bytes(&ledger));
    assert!(n_delivered > 0);
    eprintln!(
        "{test}: written {} delivered {n_delivered} dropped {dropped} ({summary})",
        ledger.written()
    );
}

/// (a) read path, one global buffer.
#[test]
fn read_path_global_buffer() {
    read_path("read_path_global_buffer", Global(NoOverwrite), true);
}

/// (a) read path, per-CPU buffers: the writer threads migrate between CPUs, the child reads each
/// buffer file in its own thread; order is checked per (writer, buffer).
#[test]
fn read_path_per_cpu_buffers() {
    read_path("read_path_per_cpu_buffers", NoOverwrite, false);
}

/// Child of the read-path tests.
#[test]
fn child_read_path() {
    let Some(p) = child_params() else { return };
    let dir = PathBuf::from(&p["dir"]);
    let n_bufs: usize = p["nbufs"].parse().unwrap();
    let files: Vec<RelayFile> = (0..n_bufs)
        .map(|i| RelayFile::open(dir.join(format!("{}{i}", p["base"]))).expect("open relay file"))
        .collect();
    println!("READY");
    assert_eq!(child_wait_line(), "GO");
    let results: Vec<(usize, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .into_iter()
            .enumerate()
            .map(|(i, mut f)| {
                let dir = &dir;
                s.spawn(move || {
                    let mut parser = StreamParser::new();
                    let mut chunk = vec![0u8; 8192];
                    loop {
                        let state = f.poll(Some(Duration::from_millis(200))).unwrap();
                        loop {
                            let n = f.read(&mut chunk).unwrap();
                            if n == 0 {
                                break;
                            }
                            parser
                                .feed(&chunk[..n], false)
                                .unwrap_or_else(|e| panic!("buffer {i}: {e}"));
                        }
                        if state == Poll::Finalized {
                            break;
                        }
                    }
                    parser.finish().unwrap();
                    check_order(i, &parser.msgs).unwrap();
                    assert_eq!(f.stats().unwrap().lapped_subbufs, 0);
                    save_msgs(&result_path(dir, i), &parser.msgs);
                    (parser.msgs.len(), parser.bytes)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let msgs: usize = results.iter().map(|r| r.0).sum();
    let bytes: u64 = results.iter().map(|r| r.1).sum();
    println!("RESULT delivered={msgs} bytes={bytes} per_buffer={results:?}");
}

/// (b) mmap path: the child maps the whole buffer and consumes complete sub-buffers, using the
/// padding header the relay documentation's `subbuf_start` writes, and reports them consumed with
/// `subbufs_consumed` so the writer can go on. Every byte of every sub-buffer is accounted for:
/// header + messages + padding = subbuf_size.
#[test]
fn mmap_path_padding_header() {
    let dir = TempDir::new("mmap_path_padding_header");
    let (size, n) = (4096, 8);
    let chan = Channel::open(
        Some("cpu"),
        Some(dir.path()),
        size,
        n,
        PaddingHeader { global: true },
    )
    .unwrap();
    assert!(chan.is_global());
    let mut child = ChildProc::spawn("child_mmap", &mp_params(dir.path(), "cpu", 1));
    child.expect_line("READY", LONG);
    let ledger = write_phases(&chan, &mut child, scaled(60_000));
    // Make the last partial sub-buffer complete so the mmap consumer can see it.
    chan.flush();
    let report = chan.close();
    let summary = child.expect_line("RESULT", LONG);
    child.wait_success(LONG);

    let field = |k: &str| field(&summary, k);
    let delivered = load_msgs(&result_path(dir.path(), 0));
    check_order(0, &delivered).unwrap();
    let n_delivered = ledger.check_delivery(&delivered).unwrap();
    let st = &report.stats[0];
    let (rejected, rejected_bytes) = ledger.rejected();
    assert_eq!(n_delivered + st.dropped_msgs, ledger.written());
    assert_eq!(
        (st.dropped_msgs, st.dropped_bytes),
        (rejected, rejected_bytes)
    );
    assert_eq!(field("msg_bytes"), accepted_bytes(&ledger));
    assert_eq!(field("subbufs"), st.subbufs_produced as u64);
    assert_eq!(
        field("msg_bytes") + field("pad_bytes") + PAD_HDR as u64 * field("subbufs"),
        field("subbufs") * size as u64,
        "every byte of every sub-buffer is header, message or padding"
    );
    eprintln!(
        "mmap_path: written {} delivered {n_delivered} dropped {} ({summary})",
        ledger.written(),
        st.dropped_msgs
    );
}

/// Child of the mmap test.
#[test]
fn child_mmap() {
    let Some(p) = child_params() else { return };
    let path = PathBuf::from(&p["dir"]).join(format!("{}0", p["base"]));
    let f = RelayFile::open(&path).unwrap();
    let geo = f.geometry().unwrap();
    let (size, n) = (geo.subbuf_size(), geo.n_subbufs());
    let map = f.mmap(size * n).expect("whole-buffer mmap");
    assert!(map.len() >= size * n);
    println!("READY");
    assert_eq!(child_wait_line(), "GO");

    let mut consumed = 0usize;
    let mut msgs = Vec::new();
    let (mut msg_bytes, mut pad_bytes) = (0u64, 0u64);
    let mut process = |k: usize, msgs: &mut Vec<(u32, u64)>| {
        let sb = &map.as_slice()[(k % n) * size..(k % n + 1) * size];
        let pad = u32::from_ne_bytes(sb[..PAD_HDR].try_into().unwrap()) as usize;
        assert!(
            pad <= size - PAD_HDR,
            "sub-buffer {k}: padding header {pad} too large"
        );
        let got = parse_all(&sb[PAD_HDR..size - pad])
            .unwrap_or_else(|e| panic!("sub-buffer {k} (padding {pad}): {e}"));
        msg_bytes += (size - PAD_HDR - pad) as u64;
        pad_bytes += pad as u64;
        msgs.extend(got);
    };
    loop {
        match f.poll(Some(Duration::from_millis(200))).unwrap() {
            // Readable: sub-buffer `consumed` is complete (its header written: poll takes a
            // consistent snapshot after the switch, header included).
            Poll::Readable => {
                process(consumed, &mut msgs);
                f.subbufs_consumed(1).unwrap();
                consumed += 1;
            }
            Poll::Empty => {}
            Poll::Finalized => {
                // After close every write happened before; the counters are final.
                let produced = f.stats().unwrap().subbufs_produced;
                assert!(produced >= consumed && produced - consumed <= n);
                while consumed < produced {
                    process(consumed, &mut msgs);
                    f.subbufs_consumed(1).unwrap();
                    consumed += 1;
                }
                break;
            }
        }
    }
    let st = f.stats().unwrap();
    assert_eq!(st.subbufs_consumed, consumed);
    assert_eq!(st.mapped, 1);
    drop(map);
    assert_eq!(f.stats().unwrap().mapped, 0);
    save_msgs(&result_path(path.parent().unwrap(), 0), &msgs);
    println!(
        "RESULT delivered={} subbufs={consumed} msg_bytes={msg_bytes} pad_bytes={pad_bytes}",
        msgs.len()
    );
}

/// (c) a mapping of any length other than the whole buffer fails with EINVAL; a reader in
/// another process is woken from `poll` by a write that completes a sub-buffer, and after the
/// writer closed the channel (files unlinked) it still reads everything that was written and
/// sees `Finalized`.
#[test]
fn partial_mmap_einval_and_read_after_close() {
    let dir = TempDir::new("partial_mmap_einval_and_read_after_close");
    let page = page_size();
    let (size, n) = (page, 4);
    let chan = Channel::open(Some("cpu"), Some(dir.path()), size, n, Global(NoOverwrite)).unwrap();
    let path = chan.paths()[0].clone().unwrap();
    let mut written = Vec::new();
    let mut seq = 0u64;
    let mut write = |upto_bytes: usize, written: &mut Vec<u8>| {
        let start = written.len();
        while written.len() - start + MAX_LEN <= upto_bytes {
            let m = encode(0, seq);
            assert!(chan.write(&m));
            written.extend_from_slice(&m);
            seq += 1;
        }
    };
    // Less than one sub-buffer: nothing readable yet (poll), though `read` would return it.
    write(size / 2, &mut written);
    let mut child = ChildProc::spawn(
        "child_partial_mmap_read_after_close",
        &[
            ("path", path.display().to_string()),
            ("page", page.to_string()),
        ],
    );
    child.expect_line("POLLING", LONG);
    std::thread::sleep(Duration::from_millis(150));
    // Two and a half more sub-buffers: the first switch wakes the child.
    write(size * 5 / 2, &mut written);
    child.expect_line("WOKE", LONG);
    let report = chan.close();
    assert!(!path.exists(), "close must remove the buffer file");
    assert_eq!(report.stats[0].dropped_msgs, 0);
    child.send("CLOSED");
    let summary = child.expect_line("RESULT", LONG);
    child.wait_success(LONG);
    let got = load_msgs(&dir.path().join("result0"));
    let want = parse_all(&written).unwrap();
    assert_eq!(
        got, want,
        "reader after close must get exactly what was written"
    );
    eprintln!("partial_mmap_einval_and_read_after_close: {summary}");
}

/// Child of `partial_mmap_einval_and_read_after_close`.
#[test]
fn child_partial_mmap_read_after_close() {
    let Some(p) = child_params() else { return };
    let path = PathBuf::from(&p["path"]);
    let page: usize = p["page"].parse().unwrap();
    let mut f = RelayFile::open(&path).unwrap();
    let geo = f.geometry().unwrap();
    let whole = geo.subbuf_size() * geo.n_subbufs();
    assert_eq!(whole, 4 * page);
    for bad in [0, page, whole - page, whole / 2, whole + page, 2 * whole] {
        match f.mmap(bad) {
            Ok(_) => panic!("mmap({bad}) of a {whole}-byte buffer succeeded"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "mmap({bad}): {e}"),
        }
    }
    assert_eq!(f.stats().unwrap().mapped, 0, "failed mmaps must not count");
    // mmap(2) lengths are page granular: whole - 1 covers the same pages as the whole buffer.
    drop(f.mmap(whole).expect("mmap(whole)"));
    drop(f.mmap(whole - 1).expect("mmap(whole - 1)"));
    assert_eq!(f.stats().unwrap().mapped, 0);

    assert_eq!(f.poll_now().unwrap(), Poll::Empty);
    println!("POLLING");
    let t0 = Instant::now();
    let st = f.poll(Some(Duration::from_secs(30))).unwrap();
    let waited = t0.elapsed();
    assert_eq!(st, Poll::Readable, "after {waited:?}");
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_secs(25),
        "poll should have blocked until the writer completed a sub-buffer: {waited:?}"
    );
    println!("WOKE");
    assert_eq!(child_wait_line(), "CLOSED");
    assert!(!path.exists(), "the writer's close unlinks the file");
    assert_eq!(f.poll_now().unwrap(), Poll::Finalized);
    let mut all = Vec::new();
    let mut chunk = vec![0u8; 1000];
    loop {
        let n = f.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..n]);
    }
    let msgs = parse_all(&all).unwrap();
    let t0 = Instant::now();
    assert_eq!(f.poll(None).unwrap(), Poll::Finalized);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(f.read(&mut chunk).unwrap(), 0);
    let st = f.stats().unwrap();
    assert!(st.finalized);
    save_msgs(&path.parent().unwrap().join("result0"), &msgs);
    println!("RESULT delivered={} bytes={}", msgs.len(), all.len());
}

/// A reader blocked in `poll(None)` in another process is woken by `close` and gets
/// `Finalized`, then reads the partly filled sub-buffer.
#[test]
fn close_wakes_poller_in_other_process() {
    let dir = TempDir::new("close_wakes_poller_in_other_process");
    let chan = Channel::open(Some("cpu"), Some(dir.path()), 4096, 4, Global(NoOverwrite)).unwrap();
    let path = chan.paths()[0].clone().unwrap();
    let msgs: Vec<Vec<u8>> = (0..5).map(|s| encode(0, s)).collect();
    for m in &msgs {
        assert!(chan.write(m));
    }
    let mut child = ChildProc::spawn(
        "child_close_wakes_poller",
        &[("path", path.display().to_string())],
    );
    child.expect_line("POLLING", LONG);
    std::thread::sleep(Duration::from_millis(150));
    chan.close();
    let summary = child.expect_line("RESULT", LONG);
    child.wait_success(LONG);
    assert_eq!(summary, format!("finalized delivered={}", msgs.len()));
}

/// Child of `close_wakes_poller_in_other_process`.
#[test]
fn child_close_wakes_poller() {
    let Some(p) = child_params() else { return };
    let mut f = RelayFile::open(&p["path"]).unwrap();
    println!("POLLING");
    let t0 = Instant::now();
    let st = f.poll(None).unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(50),
        "poll did not block"
    );
    assert_eq!(st, Poll::Finalized);
    let mut chunk = vec![0u8; 65536];
    let n = f.read(&mut chunk).unwrap();
    let msgs = parse_all(&chunk[..n]).unwrap();
    let want: Vec<(u32, u64)> = (0..msgs.len() as u64).map(|s| (0, s)).collect();
    assert_eq!(msgs, want);
    println!("RESULT finalized delivered={}", msgs.len());
}

fn page_size() -> usize {
    relay::user::sys::page_size()
}
