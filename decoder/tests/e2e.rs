//! End to end: real `klog!` statements → `RelayHandler` → relay files drained by
//! `relay::user::Recorder` (as a recorded trace is made) → `decode_dir`. The expected messages
//! come from `format!` with the same format strings and values.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use common::TempDir;
use klog::{klog, klog_raw, klog_warn, RelayConfig, RelayHandler};
use klog_decode::{
    decode_bytes, decode_dir, decode_to_text, Options, Payload, Record, Value, WarningKind,
};

/// Records the live trace in `live` as a user would (drain every buffer into `out`, copy the
/// metadata) and decodes the recording.
fn record_and_decode(live: &TempDir, out: &TempDir) -> klog_decode::Report {
    relay::user::Recorder::for_dir(live.path(), "cpu", out.path())
        .unwrap()
        .run(&AtomicBool::new(true))
        .unwrap();
    std::fs::copy(live.path().join("metadata"), out.path().join("metadata")).unwrap();
    decode_dir(out.path(), &Options::default()).unwrap()
}

/// The dispatcher is process-global: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn klog_statements_decode_to_their_format_output() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("e2e-live");
    let out = TempDir::new("e2e-out");
    let cfg = RelayConfig {
        subbuf_size: 1024,
        n_subbufs: 256,
        ..RelayConfig::new(live.path())
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    let mut expected = Vec::new();
    const N: u32 = 300;
    for i in 0..N {
        klog_warn!(
            "rx queue {} stalled after {} us, flags={:#x}",
            i % 8,
            i * 3,
            i as u16
        );
        expected.push(format!(
            "WARN  e2e: rx queue {} stalled after {} us, flags={:#x}",
            i % 8,
            i * 3,
            i as u16
        ));
        let (t, n, c) = (
            f64::from(i) / 7.0,
            -i64::from(i),
            char::from(b'a' + (i % 26) as u8),
        );
        klog!(
            "name={:?} temp={:>9.3} neg={:+} c={} {:e}",
            "eth0",
            t,
            n,
            c,
            t
        );
        expected.push(format!(
            "INFO  e2e: name={:?} temp={:>9.3} neg={:+} c={} {:e}",
            "eth0", t, n, c, t
        ));
        if i % 100 == 0 {
            klog_raw!(i.to_le_bytes());
            let b = i.to_le_bytes();
            expected.push(format!(
                "INFO  e2e: raw 4 bytes: {:02x} {:02x} {:02x} {:02x}",
                b[0], b[1], b[2], b[3]
            ));
        }
    }
    assert!(klog::unregister().is_some());
    let hs = h.finish();
    assert_eq!(hs.lost.iter().sum::<u64>(), 0);

    let r = record_and_decode(&live, &out);
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    assert_eq!(r.stats.events, u64::from(2 * N));
    assert_eq!(r.stats.raw_records, 3);
    assert_eq!(
        r.stats.events + r.stats.raw_records,
        hs.frames.iter().sum::<u64>()
    );
    // Strip "[ time] cpuN " and compare the rest (one thread: program order is time order, but
    // equal nanosecond timestamps on two CPUs may swap, so compare as multisets too).
    let strip = |l: &str| {
        let rest = &l[l.find("] cpu").unwrap() + 2..];
        rest[rest.find(' ').unwrap() + 1..].to_owned()
    };
    let mut got: Vec<String> = r.text_lines(false).iter().map(|l| strip(l)).collect();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Raw payloads are exact; timestamps never go backwards in the merged output of one thread.
    let raws: Vec<Vec<u8>> = r
        .records
        .iter()
        .filter_map(|x| match x {
            Record::Event(e) => match &e.payload {
                Payload::Raw(b) => Some(b.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        raws,
        [0u32, 100, 200].map(|i| i.to_le_bytes().to_vec()).to_vec()
    );
    let ts: Vec<u64> = r.records.iter().map(Record::ts_raw).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    let lines = r.text_lines(false);
    if std::env::var_os("E2E_SHOW").is_some() {
        for l in lines.iter().take(7) {
            eprintln!("{l}");
        }
        eprintln!("{}", r.stats);
    }
    assert!(
        lines[0].starts_with("[     0.000000000] cpu"),
        "{}",
        lines[0]
    );

    let mut text = Vec::new();
    decode_to_text(out.path(), &mut text).unwrap();
    assert_eq!(
        String::from_utf8(text).unwrap().lines().count(),
        expected.len()
    );
}

/// An overwrite-mode channel that wrapped several times, flushed, then mapped: the snapshot
/// holds a contiguous run of the newest events.
#[test]
fn mmap_snapshot_of_a_real_overwrite_channel() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("e2e-snap");
    let (ss, n) = (1024usize, 8usize);
    let cfg = RelayConfig {
        subbuf_size: ss,
        n_subbufs: n,
        overwrite: true,
        global: true,
        ..RelayConfig::new(live.path())
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    const N: u64 = 5000;
    for i in 0..N {
        klog!("event {} of {}", i, N);
    }
    assert!(klog::unregister().is_some());
    h.flush();
    let f = relay::user::RelayFile::open(live.path().join("cpu0")).unwrap();
    let img = f.mmap(ss * n).unwrap().as_slice().to_vec();
    let meta = std::fs::read(live.path().join("metadata")).unwrap();
    let opts = Options {
        snapshot: true,
        ..Options::default()
    };
    let r = decode_bytes(&meta, vec![img], &opts).unwrap();
    assert_eq!(r.stats.count(WarningKind::TornSubbuf), 1, "{}", r.stats);
    assert_eq!(r.stats.total_warnings(), 1, "{}", r.stats);
    let idx: Vec<u128> = r
        .records
        .iter()
        .map(|x| match x {
            Record::Event(e) => match &e.payload {
                Payload::Values(v) => match v[0] {
                    Value::Unsigned(i) => i,
                    _ => panic!("{v:?}"),
                },
                _ => panic!(),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    // The newest events, in order, without holes; n - 1 sub-buffers' worth of them.
    assert_eq!(idx.last().copied(), Some(u128::from(N - 1)));
    assert!(idx.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(idx.len() > (n - 2) * ss / 16, "{} events", idx.len());
    assert_eq!(r.stats.subbufs, n as u64 - 1);
    // `--snapshot` of the live directory maps the relay files itself: the same events, and no
    // warning, since the control block says the newest sub-buffer (started by the flush) is
    // empty rather than torn.
    let live_r = decode_dir(live.path(), &opts).unwrap();
    assert_eq!(live_r.records, r.records);
    assert_eq!(live_r.stats.total_warnings(), 0, "{}", live_r.stats);
    h.finish();
}

/// `Arg` impls whose `MAX_LEN` or `encoded_len` understate the encoding: such an event is not
/// written (nothing outside the reserved room is touched, no half frame is published) and is
/// counted as lost; the events before and after it decode, and the trace shows the loss.
#[test]
fn understated_argument_sizes_lose_the_event_not_the_stream() {
    /// Claims at most 2 bytes (short-frame path), writes 101.
    struct ShortLiar(u8);
    impl klog::Arg for ShortLiar {
        const TYPE: klog::ArgType = klog::ArgType::Bytes;
        const MAX_LEN: usize = 2;
        fn encoded_len(&self) -> usize {
            2
        }
        fn encode(&self, w: &mut klog::arg::Writer<'_>) {
            w.varint64(100);
            w.bytes(&[self.0; 100]);
        }
    }
    /// Unbounded and claims 200 bytes (general path), writes 2: a length prefix that would
    /// frame 198 stray bytes.
    struct LongLiar(u8);
    impl klog::Arg for LongLiar {
        const TYPE: klog::ArgType = klog::ArgType::Bytes;
        fn encoded_len(&self) -> usize {
            200
        }
        fn encode(&self, w: &mut klog::arg::Writer<'_>) {
            w.varint64(1);
            w.byte(self.0);
        }
    }
    impl std::fmt::Display for ShortLiar {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)
        }
    }
    impl std::fmt::Display for LongLiar {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)
        }
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let live = TempDir::new("e2e-liar");
    let out = TempDir::new("e2e-liar-out");
    let cfg = RelayConfig {
        subbuf_size: 4096,
        n_subbufs: 4,
        global: true,
        ..RelayConfig::new(live.path())
    };
    let h = Arc::new(RelayHandler::open(&cfg).unwrap());
    klog::register(h.clone()).unwrap();
    klog!("before {}", 1u32);
    klog!("short liar {}", ShortLiar(7));
    klog!("middle {}", 2u32);
    klog!("long liar {}", LongLiar(8));
    klog!("after {}", 3u32);
    assert!(klog::unregister().is_some());
    let hs = h.finish();
    assert_eq!(hs.frames, [3]);
    assert_eq!(hs.lost, [2]);
    let r = record_and_decode(&live, &out);
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    let lines: Vec<String> = r
        .text_lines(false)
        .iter()
        .map(|l| l[l.find("] ").unwrap() + 2..].to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "cpu0 INFO  e2e: before 1",
            "cpu0 INFO  e2e: middle 2",
            "cpu0 INFO  e2e: after 3",
            "[cpu0: 2 events lost]",
        ]
    );
}
