//! End to end in user space: `klog!` statements → registered `RelayHandler` → relay files →
//! parsed back here by a small independent reader of docs/FORMAT.md (values decoded with the
//! real `postcard` crate). The dispatcher is process-global, so the tests serialise.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use klog::{klog, klog_raw, klog_warn, Level, RelayConfig, RelayHandler};
use relay::user::RelayFile;

static SERIAL: Mutex<()> = Mutex::new(());

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("klog-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn varint(b: &[u8], p: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*p];
        *p += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

#[derive(Debug, Clone)]
struct Def {
    level: u8,
    kind: u8,
    fmt: String,
    module: String,
    line: u64,
    types: Vec<u8>,
}

fn parse_metadata(b: &[u8]) -> (HashMap<u64, Def>, usize) {
    let mut defs = HashMap::new();
    let mut clocks = 0;
    let mut p = 0;
    while p < b.len() {
        let len = varint(b, &mut p) as usize;
        let rec = &b[p..p + len];
        p += len;
        let mut q = 1;
        let s = |rec: &[u8], q: &mut usize| {
            let n = varint(rec, q) as usize;
            let s = String::from_utf8(rec[*q..*q + n].to_vec()).unwrap();
            *q += n;
            s
        };
        match rec[0] {
            1 => {
                assert_eq!(&rec[1..9], b"KLOGMETA");
                assert_eq!(u16::from_le_bytes([rec[9], rec[10]]), 3, "format version 3");
                let id = u64::from_le_bytes(rec[22..30].try_into().unwrap());
                assert_ne!(id, 0, "a trace id");
            }
            2 => clocks += 1,
            4 => assert_eq!(rec.len(), 1 + 52, "a totals record"),
            3 => {
                let id = varint(rec, &mut q);
                let level = rec[q];
                let kind = rec[q + 1];
                q += 2;
                let fmt = s(rec, &mut q);
                let module = s(rec, &mut q);
                let _file = s(rec, &mut q);
                let line = varint(rec, &mut q);
                let n = varint(rec, &mut q) as usize;
                let types = rec[q..q + n].to_vec();
                defs.insert(
                    id,
                    Def {
                        level,
                        kind,
                        fmt,
                        module,
                        line,
                        types,
                    },
                );
            }
            k => panic!("unknown record {k}"),
        }
    }
    (defs, clocks)
}

/// One frame: (callsite id, kind, raw timestamp, payload).
type Frame = (u64, u64, u64, Vec<u8>);

/// Parses a `read()` stream: sub-buffers of `subbuf_size` minus padding, each with a header.
fn parse_stream(b: &[u8], cpu: u16) -> (Vec<Frame>, u64) {
    let mut frames = Vec::new();
    let mut lost = 0u64;
    let mut p = 0;
    let mut base = 0u64;
    let mut next_seq = 0u64;
    while p < b.len() {
        if b.len() - p >= 40 && b[p..p + 4] == *b"KLG2" {
            let h = klog::wire::SubbufHeader::parse(&b[p..]).unwrap();
            if h.seq == next_seq && h.cpu == cpu {
                assert_ne!(h.trace_id, 0);
                base = h.base_ts;
                lost += h.lost as u64;
                next_seq += 1;
                p += 40;
                continue;
            }
        }
        let len = varint(b, &mut p) as usize;
        let end = p + len;
        let head = varint(b, &mut p);
        let z = varint(b, &mut p);
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        // Format version 2 and later: relative to the previous frame of the sub-buffer.
        base = base.wrapping_add(delta as u64);
        frames.push((head >> 2, head & 3, base, b[p..end].to_vec()));
        p = end;
    }
    (frames, lost)
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut f = RelayFile::open(path).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn events_round_trip_through_relay() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("rt");
    let cfg = RelayConfig {
        subbuf_size: 4096,
        n_subbufs: 64,
        ..RelayConfig::new(&dir)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog!("before registration {}", 1u8); // dropped: no handler
    klog::register(h.clone()).unwrap();
    assert_eq!(
        klog::register(h.clone()),
        Err(klog::RegisterError::AlreadyRegistered)
    );
    const THREADS: u32 = 3;
    const N: u32 = 2000;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..N {
                    klog!("demo event {} from thread {}", i, t);
                }
                let name = "eth0";
                klog_warn!("bad checksum {:08x} in {name}", 0xbeefu32);
                klog!(
                    Level::Debug,
                    "mixed {} {} {} {:?}",
                    -5i64,
                    2.5f64,
                    true,
                    'x'
                );
                klog_raw!([1u8, 2, 3, t as u8]);
            });
        }
    });
    assert!(klog::unregister().is_some());
    klog!("after unregistration {}", 2u8); // dropped
    let stats = h.finish();
    let written: u64 = stats.frames.iter().sum();
    assert_eq!(written, (THREADS * (N + 3)) as u64);
    assert_eq!(stats.lost.iter().sum::<u64>(), 0);

    let (defs, clocks) = parse_metadata(&std::fs::read(dir.join("metadata")).unwrap());
    assert_eq!(clocks, 2, "clock record at open and at finish");
    assert_eq!(defs.len() as u32, stats.callsites);
    assert_eq!(defs.len(), 4, "four callsites fired under the handler");

    // Per thread: the demo events exactly once, and in order within each buffer (a thread that
    // migrates leaves a run of its events in each buffer it used).
    let mut got: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut seen = 0;
    for cpu in 0..h.channel().n_bufs() {
        let bytes = read_all(&dir.join(format!("cpu{cpu}")));
        let (frames, lost) = parse_stream(&bytes, cpu as u16);
        assert_eq!(lost, 0);
        let mut last_ts = 0;
        let mut next: BTreeMap<u32, u32> = BTreeMap::new();
        for (id, kind, ts, payload) in frames {
            assert!(ts >= last_ts, "timestamps never go back within a buffer");
            last_ts = ts;
            let d = &defs[&id];
            seen += 1;
            match d.fmt.as_str() {
                "demo event {0} from thread {1}" => {
                    assert_eq!((d.level, d.kind), (Level::Info as u8, 0));
                    assert_eq!(d.types, [1, 1]);
                    let (i, t): (u32, u32) = postcard::from_bytes(&payload).unwrap();
                    let e = next.entry(t).or_insert(0);
                    assert!(i >= *e, "per-thread order kept within a buffer");
                    *e = i + 1;
                    got.entry(t).or_default().push(i);
                }
                "bad checksum {0:08x} in {1}" => {
                    assert_eq!(d.level, Level::Warn as u8);
                    let (sum, name): (u32, String) = postcard::from_bytes(&payload).unwrap();
                    assert_eq!((sum, name.as_str()), (0xbeef, "eth0"));
                }
                "mixed {0} {1} {2} {3:?}" => {
                    assert_eq!(d.level, Level::Debug as u8);
                    assert_eq!(d.types, [3, 5, 6, 7]);
                    let v: (i64, f64, bool, char) = postcard::from_bytes(&payload).unwrap();
                    assert_eq!(v, (-5, 2.5, true, 'x'));
                }
                "" => {
                    assert_eq!(kind, 1, "raw frame");
                    assert_eq!(d.kind, 1);
                    assert_eq!(&payload[..3], &[1, 2, 3]);
                }
                other => panic!("unexpected callsite {other:?} at {}:{}", d.module, d.line),
            }
        }
    }
    assert_eq!(seen, THREADS * (N + 3));
    assert_eq!(got.len(), THREADS as usize);
    for (t, mut is) in got {
        is.sort_unstable();
        assert_eq!(
            is,
            (0..N).collect::<Vec<_>>(),
            "thread {t}: every event exactly once"
        );
    }
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Registration and unregistration while threads emit: no crash, nothing recorded into a
/// handler after its `unregister` returned, and every frame in the files is whole.
#[test]
fn register_unregister_under_load() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3u32 {
            let stop = &stop;
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    klog!("load {} {}", t, i);
                    i += 1;
                }
            });
        }
        for round in 0..30 {
            let dir = tempdir(&format!("load{round}"));
            let cfg = RelayConfig {
                subbuf_size: 4096,
                n_subbufs: 4,
                overwrite: round % 2 == 1,
                ..RelayConfig::new(&dir)
            };
            let h = Arc::new(RelayHandler::open(&cfg).unwrap());
            klog::register(h.clone()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
            let back = klog::unregister().unwrap();
            assert!(Arc::ptr_eq(&back, &(h.clone() as Arc<dyn klog::Handler>)));
            drop(back);
            let before = h.stats();
            std::thread::sleep(std::time::Duration::from_millis(2));
            assert_eq!(h.stats(), before, "no writes after unregister returned");
            assert_eq!(Arc::strong_count(&h), 1, "klog holds no reference");
            let _ = std::fs::remove_dir_all(&dir);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// No reader, small no-overwrite buffers: every event is either recorded or counted as lost, and
/// the `lost` fields of the sub-buffer headers add up to the losses that happened before the
/// last header (losses after it would be reported by the next one).
#[test]
fn lost_counts_are_exact() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("lost");
    let cfg = RelayConfig {
        subbuf_size: 1024,
        n_subbufs: 4,
        global: true,
        ..RelayConfig::new(&dir)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    const N: u32 = 5000;
    let mut bytes = Vec::new();
    for i in 0..N {
        klog!("lossy {}", i);
        if i == 3000 {
            // Drain once in the middle: the writer resumes and its next header reports the
            // losses so far.
            bytes = read_all(&dir.join("cpu0"));
        }
    }
    klog::unregister();
    let stats = h.finish();
    assert_eq!(stats.frames[0] + stats.lost[0], N as u64);
    assert!(
        stats.lost[0] > 0,
        "small buffers without a reader must lose events"
    );
    // The whole stream: what the mid-run drain read, then the rest.
    bytes.extend(read_all(&dir.join("cpu0")));
    let (frames, header_lost) = parse_stream(&bytes, 0);
    assert!(header_lost > 0 && header_lost <= stats.lost[0]);
    assert_eq!(
        frames.len() as u64,
        stats.frames[0],
        "every recorded frame read once"
    );
    let after: Vec<u32> = frames
        .iter()
        .map(|f| postcard::from_bytes::<u32>(&f.3).unwrap())
        .collect();
    assert!(
        after.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A user type recorded through its own `Arg` impl (delegating to a primitive), and the exact
/// bytes of a frame's head and payload.
#[test]
fn golden_frame_and_user_type() {
    struct Port(u16);
    impl klog::Arg for Port {
        const TYPE: klog::ArgType = <u16 as klog::Arg>::TYPE;
        fn encoded_len(&self) -> usize {
            self.0.encoded_len()
        }
        fn encode(&self, w: &mut klog::arg::Writer<'_>) {
            self.0.encode(w)
        }
    }
    impl std::fmt::Display for Port {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, ":{}", self.0)
        }
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("golden");
    let cfg = RelayConfig {
        subbuf_size: 4096,
        n_subbufs: 2,
        global: true,
        ..RelayConfig::new(&dir)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    klog!("golden {} {} {} {}", 300u32, -1i32, "ab", Port(8080));
    klog::unregister();
    h.finish();
    let bytes = read_all(&dir.join("cpu0"));
    let (defs, _) = parse_metadata(&std::fs::read(dir.join("metadata")).unwrap());
    let (id, def) = defs
        .iter()
        .find(|(_, d)| d.fmt.starts_with("golden"))
        .unwrap();
    assert_eq!(def.types, [1, 12, 8, 1]);
    // Header (40) | frame | header of the sub-buffer the final flush started (40).
    // Frame: len | head = id << 2 | 0 | zigzag ts delta | payload.
    let mut q = 40;
    let len = varint(&bytes, &mut q) as usize;
    assert_eq!(
        q + len,
        bytes.len() - 40,
        "one frame between the two headers"
    );
    assert_eq!(varint(&bytes, &mut q), id << 2);
    let _delta = varint(&bytes, &mut q);
    // 300 → ac 02; -1 → 01; "ab" → 02 61 62; 8080 → 90 3f.
    assert_eq!(
        &bytes[q..q + 8],
        &[0xac, 0x02, 0x01, 0x02, b'a', b'b', 0x90, 0x3f]
    );
    assert_eq!(&bytes[q + 8..q + 12], b"KLG2");
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Format version 2 makes a frame's time the sum of every `ts_delta` since its sub-buffer's
/// header, so one wrong delta (or a reference the writer advanced for a frame it did not
/// publish) shifts every later event of the sub-buffer. Each event here is bracketed by clock
/// reads taken around its `klog!`, across many small sub-buffers and gaps of every size.
#[test]
fn timestamps_lie_within_reads_around_each_event() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("bracket");
    let cfg = RelayConfig {
        subbuf_size: 512,
        n_subbufs: 4096,
        ..RelayConfig::new(&dir)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    let clock = klog::clock::Clock::choose();
    klog::register(h.clone()).unwrap();
    const N: u32 = 20_000;
    let mut brackets = Vec::with_capacity(N as usize);
    for i in 0..N {
        // Gaps from none to ~50 us: one- to three-byte deltas, and sub-buffers that fill with
        // deltas of mixed sizes.
        match i % 97 {
            0 => std::thread::sleep(std::time::Duration::from_micros(50)),
            k if k % 7 == 0 => {
                for _ in 0..k * 20 {
                    std::hint::spin_loop();
                }
            }
            _ => {}
        }
        let t0 = clock.now();
        klog!("bracket {}", i);
        brackets.push((t0, clock.now()));
    }
    assert!(klog::unregister().is_some());
    let stats = h.finish();
    assert_eq!(stats.lost.iter().sum::<u64>(), 0);

    let mut seen = 0;
    for cpu in 0..h.channel().n_bufs() {
        let (frames, _) = parse_stream(&read_all(&dir.join(format!("cpu{cpu}"))), cpu as u16);
        for (_, _, ts, payload) in frames {
            let i = varint(&payload, &mut 0) as usize;
            let (t0, t1) = brackets[i];
            assert!(
                t0 <= ts && ts <= t1,
                "event {i}: decoded time {ts} outside the reads around it [{t0}, {t1}]"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, N);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `klog!` inside an argument's encoder runs while its thread holds the emit slot, like a
/// signal handler interrupting an emit. Emitters take slots without a thread-local record, so
/// the nested statement must find its thread's token in the slot and not wait for it (which
/// would never end): with one global buffer there is no other slot, and it is counted lost.
/// `klog::flush`, which waits for slots, must skip the held one for the same reason.
#[test]
fn nested_emit_on_the_held_slot_is_lost_not_deadlocked() {
    struct Nests(u32);
    impl klog::Arg for Nests {
        const TYPE: klog::ArgType = <u32 as klog::Arg>::TYPE;
        fn encoded_len(&self) -> usize {
            self.0.encoded_len()
        }
        fn encode(&self, w: &mut klog::arg::Writer<'_>) {
            klog!("inner {}", self.0);
            // A waiting path (relay's recorded `acquire`) must see the unrecorded hold too.
            klog::flush();
            self.0.encode(w)
        }
    }
    impl std::fmt::Display for Nests {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)
        }
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir("nested");
    let cfg = RelayConfig {
        global: true,
        ..RelayConfig::new(&dir)
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    // On a thread of its own, so that a deadlock fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..3u32 {
            klog!("outer {}", Nests(i));
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("a nested klog! waited for the slot its own thread holds");
    assert!(klog::unregister().is_some());
    let stats = h.finish();
    assert_eq!(stats.frames, vec![3], "the three outer events");
    assert_eq!(stats.lost, vec![3], "the three inner ones");
    let _ = std::fs::remove_dir_all(&dir);
}
