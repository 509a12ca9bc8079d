//! Stream, metadata, merge, snapshot and directory behaviour on hand-built traces.

mod common;

use common::golden::*;
use common::*;
use klog::arg::{Arg, ArgType as T, Writer};
use klog::Level;
use klog_decode::*;
use proptest::prelude::*;

fn values(r: &Record) -> &[Value] {
    match r {
        Record::Event(Event {
            payload: Payload::Values(v),
            ..
        }) => v,
        other => panic!("not an event: {other:?}"),
    }
}

fn events(recs: &[Record]) -> Vec<&Event> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// A user type with its own postcard encoding: (i32 zigzag varint, u8).
struct Point {
    x: i32,
    y: u8,
}

impl Arg for Point {
    const TYPE: T = T::User;
    fn encoded_len(&self) -> usize {
        let inner = klog::arg::varint_len64(klog::arg::zigzag64(self.x.into())) + 1;
        klog::arg::varint_len64(inner as u64) + inner
    }
    fn encode(&self, w: &mut Writer<'_>) {
        let z = klog::arg::zigzag64(self.x.into());
        w.varint64((klog::arg::varint_len64(z) + 1) as u64);
        w.varint64(z);
        w.byte(self.y);
    }
}

fn one_cpu(defs: &[Def], s: &Stream) -> Report {
    let meta = metadata(1, false, s.subbuf_size as u32, 4, MONO_CLOCK, defs);
    decode_bytes(&meta, vec![s.read_stream()], &Options::default()).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn check_all_types(
    a: u8,
    b: u16,
    c: u32,
    d: u64,
    e: u128,
    f: usize,
    g: i8,
    h: i16,
    i: i32,
    j: i64,
    k: i128,
    l: isize,
    m: f32,
    n: f64,
    o: bool,
    p: char,
    s: &str,
    bytes: &[u8],
    pt: Point,
) {
    let nums = (
        &a, &b, &c, &d, &e, &f, &g, &h, &i, &j, &k, &l, &m, &n, &o, &p,
    );
    let rest = (&s, &bytes, &pt);
    let defs = [
        def(1, Level::Info, "{0}", "t", &tags(&nums)),
        def(2, Level::Info, "{0}", "t", &tags(&rest)),
    ];
    let mut st = Stream::new(0, 4096);
    st.sub(100, 0).event(1, 101, nums).event(2, 102, rest);
    let r = one_cpu(&defs, &st);
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    assert_eq!(r.records.len(), 2);
    let v = values(&r.records[0]);
    let want = [
        Value::U8(a),
        Value::Unsigned(b.into()),
        Value::Unsigned(c.into()),
        Value::Unsigned(d.into()),
        Value::Unsigned(e),
        Value::Unsigned(f as u128),
        Value::I8(g),
        Value::I16(h),
        Value::I32(i),
        Value::Signed(j.into()),
        Value::I128(k),
        Value::Signed(l as i128),
    ];
    assert_eq!(&v[..12], &want);
    match (&v[12], &v[13]) {
        (Value::F32(x), Value::F64(y)) => {
            assert_eq!(x.to_bits(), m.to_bits());
            assert_eq!(y.to_bits(), n.to_bits());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(&v[14..], &[Value::Bool(o), Value::Char(p)]);
    let v = values(&r.records[1]);
    assert_eq!(v[0], Value::Str(s.to_owned()));
    assert_eq!(v[1], Value::Bytes(bytes.to_vec()));
    let Value::User(u) = &v[2] else {
        panic!("{:?}", v[2])
    };
    // The user type's bytes are its postcard encoding.
    assert_eq!(postcard::from_bytes::<(i32, u8)>(u).unwrap(), (pt.x, pt.y));
}

#[test]
fn every_argument_type_round_trips() {
    check_all_types(
        0,
        1,
        2,
        3,
        4,
        5,
        0,
        0,
        0,
        0,
        0,
        0,
        0.0,
        0.0,
        false,
        '\0',
        "",
        &[],
        Point { x: 0, y: 0 },
    );
    check_all_types(
        u8::MAX,
        u16::MAX,
        u32::MAX,
        u64::MAX,
        u128::MAX,
        usize::MAX,
        i8::MIN,
        i16::MIN,
        i32::MIN,
        i64::MIN,
        i128::MIN,
        isize::MIN,
        f32::NAN,
        f64::NEG_INFINITY,
        true,
        '😀',
        "héllo \"wörld\"",
        &[0, 255, 7],
        Point { x: -300, y: 9 },
    );
}

proptest! {
    #[test]
    fn random_argument_values(
        a: u8, b: u16, c: u32, d: u64, e: u128, f: usize, g: i8, h: i16, i: i32, j: i64,
        k: i128, l: isize, m: f32, n: f64, o: bool, p: char, s: String,
        bytes in prop::collection::vec(any::<u8>(), 0..200), x: i32, y: u8,
    ) {
        check_all_types(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, &s, &bytes, Point { x, y });
    }
}

#[test]
fn timestamps_deltas_both_ways_and_ordinals() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    for version in [1, 2, 3] {
        let mut st = Stream::with_version(0, 256, version);
        // Event timestamps before the header's base (negative delta) and far after it; then
        // one before the previous event (a negative delta in version 2, positive in 1).
        st.sub(1_000_000, 0)
            .event(1, 999_000, (&0u32,))
            .event(1, 1_000_000, (&1u32,))
            .event(1, 1_000_000 + (1 << 40), (&2u32,))
            .event(1, 1_000_300, (&3u32,));
        let meta = with_version(metadata(1, false, 256, 4, MONO_CLOCK, &defs), version);
        let r = decode_bytes(&meta, vec![st.read_stream()], &Options::default()).unwrap();
        let ev = events(&r.records);
        assert_eq!(
            ev.iter()
                .map(|e| (e.ts_raw, e.seq_in_cpu))
                .collect::<Vec<_>>(),
            [
                (999_000, 0),
                (1_000_000, 1),
                (1_000_000 + (1 << 40), 2),
                (1_000_300, 3)
            ],
            "version {version}"
        );
        assert_eq!(r.stats.count(WarningKind::TimeBackwards), 1, "{}", r.stats);
        assert_eq!(r.stats.total_warnings(), 1, "{}", r.stats);
    }
}

/// The events of `st` (a one-CPU trace of format `version` with `defs`) as (ts, callsite,
/// payload), decoded by every path, which must agree: the record iterator, `fill_ref` batches
/// (the short-frame fast path), `LiveStream` fed one byte at a time and all at once, and an mmap
/// snapshot of the same sub-buffers (plus an empty one being written).
fn decode_every_way(version: u16, defs: &[Def], st: &Stream) -> Vec<(u64, u64, Payload)> {
    let n_slots = st.subs.len() + 1;
    let meta_bytes = with_version(
        metadata(
            1,
            true,
            st.subbuf_size as u32,
            n_slots as u32,
            MONO_CLOCK,
            defs,
        ),
        version,
    );
    let meta = parse_metadata(&meta_bytes, &mut Stats::default()).unwrap();
    assert_eq!(meta.header.version, version);
    let key = |r: Record| match r {
        Record::Event(e) => Some((e.ts_raw, e.callsite, e.payload)),
        Record::Lost(_) => None,
    };
    let data = st.read_stream();
    let want: Vec<_> = CpuStream::new(&meta, st.cpu, &data)
        .filter_map(key)
        .collect();
    for max in [1, 64] {
        let mut s = CpuStream::new(&meta, st.cpu, &data);
        let (mut got, mut buf) = (Vec::new(), Vec::new());
        loop {
            buf.clear();
            s.fill_ref(&mut buf, max);
            if buf.is_empty() {
                break;
            }
            got.extend(buf.iter().filter_map(|r| key(r.to_record())));
        }
        assert_eq!(got, want, "fill_ref, batches of {max}");
    }
    for chunk in [1, data.len()] {
        let mut s = LiveStream::new(st.cpu);
        let mut got = Vec::new();
        for c in data.chunks(chunk) {
            s.push(c);
            loop {
                match s.next(&meta) {
                    Step::Record(r) => got.extend(key(r)),
                    Step::NeedMore => break,
                    Step::NeedMetadata(_) => {}
                }
            }
        }
        s.finish();
        assert_eq!(got, want, "LiveStream, chunks of {chunk}");
    }
    let mut snap = Stream::with_version(st.cpu, st.subbuf_size, version);
    snap.subs = st.subs.clone();
    let last = st.subs.last().map_or(0, |s| s.base_ts);
    snap.sub(last + 1_000_000, 0);
    let img = snap.snapshot(n_slots, 0xaa);
    let got: Vec<_> = CpuStream::snapshot(&meta, st.cpu, &img)
        .filter_map(key)
        .collect();
    assert_eq!(got, want, "snapshot");
    want
}

#[test]
fn version_2_deltas_accumulate_across_skipped_frames() {
    let defs = [
        def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8]),
        raw_def(2, "t"),
        def(3, Level::Info, "{0}", "t", &[0x77]), // unknown type tag
    ];
    for version in [1, 2, 3] {
        let mut st = Stream::with_version(0, 512, version);
        st.sub(1000, 0)
            .event(1, 1010, (&1u32,))
            .frame_at(99, klog::wire::frame::EVENT, 1100, &[1, 2, 3]) // unknown id
            .frame_at(1, 2, 1250, &[9, 9]) // reserved kind 2
            .frame_at(1, 3, 1300, &[]) // reserved kind 3
            .raw(1, 1400, &[5]) // raw frame, fmt callsite
            .event_bytes(2, 1500, &[]) // event frame, raw callsite
            .event_bytes(3, 1600, &[0x42]) // callsite with unknown arg type
            .event(1, 1601, (&2u32,))
            .raw(2, 1700, &[7])
            .event(1, 1700, (&3u32,)) // delta 0
            .frame_at(98, klog::wire::frame::RAW, 1800, &[]) // unknown id, last frame
            .sub(2000, 0)
            .event(1, 2005, (&4u32,))
            .frame_at(1, 2, 2100, &[])
            .event(1, 2150, (&5u32,));
        let got = decode_every_way(version, &defs, &st);
        let times: Vec<(u64, u64)> = got.iter().map(|(ts, id, _)| (*ts, *id)).collect();
        assert_eq!(
            times,
            [
                (1010, 1),
                (1601, 1),
                (1700, 2),
                (1700, 1),
                (2005, 1),
                (2150, 1)
            ],
            "version {version}"
        );
        let meta = with_version(metadata(1, false, 512, 4, MONO_CLOCK, &defs), version);
        let r = decode_bytes(&meta, vec![st.read_stream()], &Options::default()).unwrap();
        assert_eq!(r.stats.count(WarningKind::UnknownCallsite), 2);
        assert_eq!(r.stats.count(WarningKind::KindMismatch), 2);
        assert_eq!(r.stats.reserved_frames, 3);
        assert_eq!(r.stats.skipped_frames, 5);
        assert_eq!(r.stats.count(WarningKind::TimeBackwards), 0, "{}", r.stats);
        assert_eq!(r.stats.count(WarningKind::CorruptFrame), 0);
    }
}

#[test]
fn version_1_and_2_traces_decode_the_same() {
    let v1 = decode_bytes(
        &golden_metadata_version(1),
        golden_streams_version(1),
        &Options::default(),
    )
    .unwrap();
    let v2 = decode_bytes(
        &golden_metadata_version(2),
        golden_streams_version(2),
        &Options::default(),
    )
    .unwrap();
    assert_ne!(golden_streams_version(1), golden_streams_version(2));
    assert_eq!(v1.records, v2.records);
    assert_eq!(v1.stats, v2.stats);
    assert_eq!(v1.stats.total_warnings(), 0, "{}", v1.stats);
    for absolute in [false, true] {
        assert_eq!(v1.text_lines(absolute), v2.text_lines(absolute));
    }
    // A version-2 stream read as version 1 (or the reverse) gets other times.
    let mixed = decode_bytes(
        &golden_metadata_version(1),
        golden_streams_version(2),
        &Options::default(),
    )
    .unwrap();
    assert_ne!(mixed.records, v2.records);
}

#[test]
fn merge_is_by_timestamp_then_cpu_then_stream_order() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    let meta = metadata(3, false, 256, 4, MONO_CLOCK, &defs);
    let mut c0 = Stream::new(0, 256);
    c0.sub(0, 0)
        .event(1, 10, (&100u32,))
        .event(1, 20, (&101u32,))
        .event(1, 20, (&102u32,))
        .event(1, 30, (&103u32,));
    let mut c1 = Stream::new(1, 256);
    // Goes backwards: reported, not reordered.
    c1.sub(0, 0)
        .event(1, 20, (&200u32,))
        .event(1, 5, (&201u32,));
    let mut c2 = Stream::new(2, 256);
    c2.sub(0, 0).event(1, 20, (&300u32,));
    let r = decode_bytes(
        &meta,
        vec![c0.read_stream(), c1.read_stream(), c2.read_stream()],
        &Options::default(),
    )
    .unwrap();
    let order: Vec<(u16, u64, u128)> = events(&r.records)
        .iter()
        .map(|e| {
            let Payload::Values(v) = &e.payload else {
                panic!()
            };
            let Value::Unsigned(tag) = v[0] else { panic!() };
            (e.cpu, e.ts_raw, tag)
        })
        .collect();
    assert_eq!(
        order,
        [
            (0, 10, 100),
            (0, 20, 101),
            (0, 20, 102),
            (1, 20, 200),
            (1, 5, 201),
            (2, 20, 300),
            (0, 30, 103),
        ]
    );
    assert_eq!(r.stats.count(WarningKind::TimeBackwards), 1);
    assert_eq!(r.stats.warnings[0].cpu, Some(1));
    // The list merge agrees with the streaming one.
    let trace = Trace::from_bytes(
        &meta,
        vec![c0.read_stream(), c1.read_stream(), c2.read_stream()],
        &Options::default(),
    )
    .unwrap();
    let lists: Vec<Vec<Record>> = trace
        .cpu_streams()
        .into_iter()
        .map(|s| s.collect())
        .collect();
    assert_eq!(merge(lists), r.records);
}

#[test]
fn lost_counts_become_records_at_the_header() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    let mut st = Stream::new(0, 128);
    st.sub(10, 3)
        .event(1, 11, (&1u32,))
        .sub(20, 0)
        .event(1, 21, (&2u32,))
        .sub(30, 77)
        .event(1, 31, (&3u32,));
    let r = one_cpu(&defs, &st);
    let kinds: Vec<String> = r
        .records
        .iter()
        .map(|rec| match rec {
            Record::Lost(l) => format!("lost {} @{}", l.count, l.at_ts),
            Record::Event(e) => format!("ev @{}", e.ts_raw),
        })
        .collect();
    assert_eq!(
        kinds,
        ["lost 3 @10", "ev @11", "ev @21", "lost 77 @30", "ev @31"]
    );
    assert_eq!((r.stats.lost_events, r.stats.lost_records), (80, 2));
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    assert_eq!(
        r.text_lines(false)[3],
        "[     0.000000020] [cpu0: 77 events lost]"
    );
}

#[test]
fn unknown_callsite_reserved_kind_and_kind_mismatch_are_skipped_by_length() {
    let defs = [
        def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8]),
        raw_def(2, "t"),
        def(3, Level::Info, "{0}", "t", &[0x77]), // unknown type tag
    ];
    let mut st = Stream::new(0, 512);
    st.sub(0, 0)
        .event(1, 1, (&1u32,))
        .event_bytes(99, 2, &[1, 2, 3]) // unknown id
        .frame_at(1, 2, 3, &[9, 9]) // reserved kind 2
        .frame_at(1, 3, 3, &[]) // reserved kind 3
        .raw(1, 4, &[5]) // raw frame, fmt callsite
        .event_bytes(2, 5, &[]) // event frame, raw callsite
        .event_bytes(3, 6, &[0x42]) // callsite with unknown arg type
        .event(1, 7, (&2u32,));
    let r = one_cpu(&defs, &st);
    assert_eq!(events(&r.records).len(), 2);
    assert_eq!(values(&r.records[1]), &[Value::Unsigned(2)]);
    assert_eq!(r.stats.count(WarningKind::UnknownCallsite), 1);
    assert_eq!(r.stats.count(WarningKind::KindMismatch), 2);
    assert_eq!(r.stats.count(WarningKind::BadArgTypes), 1); // once, with the definition
    assert_eq!(r.stats.reserved_frames, 2);
    assert_eq!(r.stats.skipped_frames, 4);
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 0);
}

fn resync_defs() -> [Def; 1] {
    [def(
        1,
        Level::Info,
        "{0} {1}",
        "t",
        &[T::Unsigned as u8, T::Bool as u8],
    )]
}

/// Three sub-buffers of format `version`; `corrupt` damages sub-buffer 1.
fn resync_stream(version: u16, corrupt: impl FnOnce(&mut Stream)) -> Stream {
    let mut st = Stream::with_version(0, 128, version);
    st.sub(0, 0)
        .event(1, 1, (&1u32, &true))
        .event(1, 2, (&2u32, &true));
    st.sub(10, 0).event(1, 11, (&3u32, &true));
    corrupt(&mut st);
    st.event(1, 17, (&4u32, &true));
    st.sub(20, 5)
        .event(1, 21, (&5u32, &false))
        .event(1, 26, (&6u32, &false));
    st
}

/// [`resync_stream`] of the current version, decoded: the sub-buffers other than the damaged
/// one must decode.
fn resync_case(corrupt: impl FnOnce(&mut Stream)) -> Report {
    one_cpu(&resync_defs(), &resync_stream(klog::wire::VERSION, corrupt))
}

fn tags_of(r: &Report) -> Vec<u128> {
    events(&r.records)
        .iter()
        .map(|e| match &e.payload {
            Payload::Values(v) => match v[0] {
                Value::Unsigned(t) => t,
                _ => panic!(),
            },
            _ => panic!(),
        })
        .collect()
}

#[test]
fn corrupt_frames_resync_at_the_next_header() {
    // Argument decode failure (bool byte 7).
    let r = resync_case(|s| {
        s.event_bytes(1, 12, &[3, 7]);
    });
    assert_eq!(tags_of(&r), [1, 2, 3, 5, 6]);
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1, "{}", r.stats);
    assert!(r.stats.corrupt_bytes > 0);
    assert_eq!(
        r.stats.lost_events, 5,
        "the next header's lost count survives"
    );
    // Length varint overflow.
    let r = resync_case(|s| {
        s.bytes(&[0xff; 11]);
    });
    assert_eq!(tags_of(&r), [1, 2, 3, 5, 6]);
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1);
    // Length running past the sub-buffer.
    let r = resync_case(|s| {
        s.bytes(&[0xff, 0x7f]);
    });
    assert_eq!(tags_of(&r), [1, 2, 3, 5, 6]);
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1);
    // Bytes left after the last argument.
    let r = resync_case(|s| {
        s.event_bytes(1, 12, &[3, 1, 0]);
    });
    assert_eq!(tags_of(&r), [1, 2, 3, 5, 6]);
    // Zero-length frame.
    let r = resync_case(|s| {
        s.bytes(&[0]);
    });
    assert_eq!(tags_of(&r), [1, 2, 3, 5, 6]);
    // Frame bytes that look like a header of the wrong CPU are not taken for one.
    let r = resync_case(|s| {
        let mut fake = klog::wire::SubbufHeader {
            cpu: 5,
            flags: 0,
            seq: 2,
            base_ts: 0,
            prev_padding: 0,
            lost: 9,
            trace_id: TRACE_ID,
        }
        .to_bytes()
        .to_vec();
        fake.truncate(20);
        s.bytes(&fake);
    });
    assert_eq!(tags_of(&r), [1, 2, 3, 5, 6]);
    assert_eq!(r.stats.lost_events, 5);
    // Undamaged: everything, no warnings.
    let r = resync_case(|_| {});
    assert_eq!(tags_of(&r), [1, 2, 3, 4, 5, 6]);
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
}

#[test]
fn a_resync_restarts_times_at_the_next_header() {
    // Every decoder resumes after a corrupt frame at the next sub-buffer header (the `read()`
    // stream and follow mode) or slot (a snapshot), never inside the damaged sub-buffer: in
    // version 2 the times of the frames before the damage and after the next header are exact
    // (the skipped frames' deltas do not matter), with no other warning than the corruption.
    type Damage = (&'static str, fn(&mut Stream));
    let damage: [Damage; 4] = [
        ("arguments that do not decode", |s| {
            s.event_bytes(1, 12, &[3, 7]);
        }),
        ("length varint overflow", |s| {
            s.bytes(&[0xff; 11]);
        }),
        ("length past the sub-buffer", |s| {
            s.bytes(&[0xff, 0x7f]);
        }),
        ("zero-length frame", |s| {
            s.bytes(&[0]);
        }),
    ];
    for version in [1, 2, 3] {
        for (what, corrupt) in damage {
            let st = resync_stream(version, corrupt);
            let times: Vec<u64> = decode_every_way(version, &resync_defs(), &st)
                .iter()
                .map(|e| e.0)
                .collect();
            assert_eq!(times, [1, 2, 11, 21, 26], "version {version}: {what}");
            let meta = with_version(
                metadata(1, false, 128, 4, MONO_CLOCK, &resync_defs()),
                version,
            );
            let r = decode_bytes(&meta, vec![st.read_stream()], &Options::default()).unwrap();
            assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1, "{}", r.stats);
            assert_eq!(r.stats.total_warnings(), 1, "{what}: {}", r.stats);
        }
    }
}

#[test]
fn garbage_before_the_first_header_is_skipped() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    let mut st = Stream::new(0, 128);
    st.sub(0, 0).event(1, 1, (&1u32,));
    let meta = metadata(1, false, 128, 4, MONO_CLOCK, &defs);
    let mut data = b"junk!".to_vec();
    data.extend(st.read_stream());
    let r = decode_bytes(&meta, vec![data], &Options::default()).unwrap();
    assert_eq!(events(&r.records).len(), 1);
    // A recording that started inside a sub-buffer looks the same: the bytes before the
    // first header are counted as unrecorded, not as corruption.
    assert_eq!(r.stats.count(WarningKind::Unrecorded), 1, "{}", r.stats);
    assert_eq!(r.stats.unrecorded_bytes, 5);
    assert_eq!(r.stats.corrupt_bytes, 0);
    // A future header version is named as such.
    let mut data = st.read_stream();
    data[3] = b'9';
    let r = decode_bytes(&meta, vec![data], &Options::default()).unwrap();
    assert!(r.records.is_empty());
    assert!(
        r.stats.warnings[0]
            .message
            .contains("unsupported format version"),
        "{}",
        r.stats
    );
}

#[test]
fn headers_of_another_cpu_relabel_the_stream() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    let mut st = Stream::new(3, 128);
    st.sub(0, 0)
        .event(1, 1, (&1u32,))
        .sub(5, 0)
        .event(1, 6, (&2u32,));
    let meta = metadata(1, false, 128, 4, MONO_CLOCK, &defs);
    let r = decode_bytes(&meta, vec![st.read_stream()], &Options::default()).unwrap();
    assert_eq!(
        events(&r.records).iter().map(|e| e.cpu).collect::<Vec<_>>(),
        [3, 3]
    );
    assert_eq!(r.stats.count(WarningKind::StreamHeader), 1);
}

#[test]
fn subbuf_size_and_seq_checks() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    let mut st = Stream::new(0, 128);
    st.sub(0, 0)
        .event(1, 1, (&1u32,))
        .sub(5, 0)
        .event(1, 6, (&2u32,));
    st.subs[1].prev_padding = Some(3); // wrong
    let r = one_cpu(&defs, &st);
    assert_eq!(events(&r.records).len(), 2);
    assert_eq!(r.stats.count(WarningKind::SubbufSize), 1, "{}", r.stats);

    let mut st = Stream::new(0, 128);
    st.sub(0, 0)
        .event(1, 1, (&1u32,))
        .sub_seq(4, 5, 0)
        .event(1, 6, (&2u32,));
    let r = one_cpu(&defs, &st);
    assert_eq!(events(&r.records).len(), 2);
    assert_eq!(r.stats.count(WarningKind::SeqGap), 1, "{}", r.stats);
    assert_eq!(r.stats.count(WarningKind::SubbufSize), 0);
}

#[test]
fn clock_conversion() {
    let mut s = Stats::default();
    let clock = |recs: &[(u8, u64, u64, u64)], s: &mut Stats| {
        let m = metadata(1, false, 128, 2, recs, &[]);
        ClockConv::new(
            &parse_metadata(&m, &mut Stats::default()).unwrap().clocks,
            s,
        )
    };
    // One record: the rate.
    let c = clock(
        &[(TSC, 3_000_000_000, 10_000_000_000, 2_000_000_000)],
        &mut s,
    );
    assert_eq!(c.to_ns(3_000_000_000), 10_000_000_000);
    assert_eq!(c.to_ns(5_000_000_000), 11_000_000_000);
    assert_eq!(c.to_ns(1_000_000_000), 9_000_000_000);
    assert_eq!(c.to_ns(3_000_000_001), 10_000_000_000);
    // Two or more: the line through the first and the last.
    let c = clock(
        &[
            (TSC, 3_000, 10_000_000_000, 2_999_999_000),
            (TSC, 1_000_000_000, 99, 1),
            (TSC, 3_000_003_000, 11_000_000_000, 3_000_000_000),
        ],
        &mut s,
    );
    assert_eq!(c.to_ns(3_000), 10_000_000_000);
    assert_eq!(c.to_ns(1_500_003_000), 10_500_000_000);
    assert_eq!(c.to_ns(1_500_004_500), 10_500_000_500);
    assert_eq!(c.to_ns(6_000_003_000), 12_000_000_000);
    assert_eq!(c.to_ns(0), 9_999_999_000);
    assert_eq!(s.total_warnings(), 0, "{s}");
    // None: identity, with a warning.
    let c = clock(&[], &mut s);
    assert_eq!(c.to_ns(12345), 12345);
    assert_eq!(s.count(WarningKind::Clock), 1);
    // Extreme values do not overflow or panic.
    let c = clock(&[(TSC, 0, 0, 1), (TSC, u64::MAX, u64::MAX, 1)], &mut s);
    assert_eq!(c.to_ns(u64::MAX), i128::from(u64::MAX));
    let c = clock(&[(TSC, u64::MAX, 0, 0)], &mut s);
    let _ = c.to_ns(0);
    let secs = |ns: i128| {
        let mut out = String::new();
        format_seconds(&mut out, ns);
        out
    };
    assert_eq!(secs(12_345_678_901), "    12.345678901");
    assert_eq!(secs(-1_500), "    -0.000001500");
    assert_eq!(secs(0), "     0.000000000");
    assert_eq!(secs(1_234_567_890_123_456_789), "1234567890.123456789");
}

#[test]
fn metadata_records_and_errors() {
    let defs = [
        def(1, Level::Info, "{0}", "a::b", &[T::Unsigned as u8]),
        raw_def(7, "c"),
        def(9, Level::Trace, "{0} {1}", "d", &[T::Unsigned as u8]), // uses 2 args, has 1
    ];
    let m = metadata(4, true, 4096, 8, &[(TSC, 1, 2, 3), (TSC, 4, 5, 6)], &defs);
    let mut s = Stats::default();
    let meta = parse_metadata(&m, &mut s).unwrap();
    assert_eq!(
        meta.header,
        TraceHeader {
            version: klog::wire::VERSION,
            n_cpus: 4,
            mode: Mode::Overwrite,
            subbuf_size: 4096,
            n_subbufs: 8,
            trace_id: Some(TRACE_ID),
        }
    );
    assert_eq!(meta.clocks.len(), 2);
    assert_eq!(
        meta.clocks[1],
        ClockRecord {
            source: ClockSource::Tsc,
            raw: 4,
            mono_ns: 5,
            ticks_per_sec: 6
        }
    );
    let cs = meta.callsite(1).unwrap();
    assert_eq!(
        (
            cs.level(),
            cs.kind,
            cs.module.as_str(),
            cs.file.as_str(),
            cs.line
        ),
        (
            Some(Level::Info),
            CallsiteKind::Fmt,
            "a::b",
            "src/lib.rs",
            42
        )
    );
    assert_eq!(cs.arg_types.as_deref(), Some(&[T::Unsigned][..]));
    assert_eq!(meta.callsite(7).unwrap().kind, CallsiteKind::Raw);
    assert_eq!(s.count(WarningKind::BadFormat), 1);
    assert_eq!(meta.parsed_len, m.len());

    // Unknown record kinds are skipped; a truncated last record is a warning.
    let mut m2 = m.clone();
    m2.extend_from_slice(&[3, 0x55, 1, 2]);
    m2.extend_from_slice(&[10, 2, 0, 0]);
    let mut s = Stats::default();
    let meta2 = parse_metadata(&m2, &mut s).unwrap();
    assert_eq!(meta2.callsites.len(), 3);
    assert_eq!(s.count(WarningKind::MetaUnknownRecord), 1);
    assert_eq!(s.count(WarningKind::MetaTruncated), 1);
    assert_eq!(meta2.parsed_len, m.len() + 4);

    assert!(meta.header.cumulative_deltas());
    // Version 1 is still read: deltas relative to the sub-buffer's base.
    let mut v1 = m.clone();
    set_version(&mut v1, 1);
    let meta1 = parse_metadata(&v1, &mut Stats::default()).unwrap();
    assert_eq!(meta1.header.version, 1);
    assert!(!meta1.header.cumulative_deltas());
    assert_eq!(meta1.callsites, meta.callsites);

    // Other versions: a clear error.
    for (version, found) in [(4u16, 4u16), (0, 0), (0x0100, 0x0100)] {
        let mut bad = m.clone();
        set_version(&mut bad, version);
        let e = parse_metadata(&bad, &mut Stats::default()).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { found: f } if f == found),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "unsupported klog trace format version {found} (this decoder reads versions 1 \
                 to 3)"
            )
        );
    }
    // Wrong magic.
    let mut bad = m.clone();
    bad[2] = b'X';
    let e = parse_metadata(&bad, &mut Stats::default()).unwrap_err();
    assert!(e.to_string().contains("not a klog metadata stream"), "{e}");
    // Not a header first; empty; text.
    let mut bad = vec![2u8, 2, 0];
    bad.extend_from_slice(&m);
    assert!(matches!(
        parse_metadata(&bad, &mut Stats::default()),
        Err(Error::NotKlogMetadata(_))
    ));
    assert!(matches!(
        parse_metadata(&[], &mut Stats::default()),
        Err(Error::EmptyMetadata)
    ));
    assert!(matches!(
        parse_metadata(b"hello, world\n", &mut Stats::default()),
        Err(Error::NotKlogMetadata(_))
    ));
}

#[test]
fn directory_errors() {
    let opts = Options::default();
    let dir = TempDir::new("errors");
    let e = decode_dir(dir.path(), &opts).unwrap_err();
    assert!(matches!(e, Error::EmptyDir(_)), "{e}");
    assert!(e.to_string().contains("empty directory"));

    let e = decode_dir(dir.path().join("nope"), &opts).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("nope"));

    dir.write("notes.txt", b"hello");
    dir.write("cpu0", b"whatever");
    let e = decode_dir(dir.path(), &opts).unwrap_err();
    assert!(matches!(e, Error::MissingMetadata { .. }), "{e}");
    assert!(
        e.to_string().contains("no `metadata` file") && e.to_string().contains("notes.txt"),
        "{e}"
    );

    let e = decode_dir(dir.path().join("notes.txt"), &opts).unwrap_err();
    assert!(matches!(e, Error::NotADirectory(_)), "{e}");

    dir.write("metadata", b"not klog at all, just text");
    let e = decode_dir(dir.path(), &opts).unwrap_err();
    assert!(matches!(e, Error::NotKlogMetadata(_)), "{e}");

    // A valid metadata with garbage streams and an extra cpu file decodes with warnings.
    dir.write("metadata", &metadata(1, false, 128, 4, MONO_CLOCK, &[]));
    dir.write("cpu3", b"");
    let r = decode_dir(dir.path(), &opts).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.stats.count(WarningKind::StreamExtra), 1);
    assert_eq!(r.stats.count(WarningKind::Truncated), 1, "{}", r.stats);
}

/// Overwrite-mode buffer of 4 slots × 128 bytes; sub-buffers seq 0..=5 written, so the image
/// holds seq 2..=5 and seq 5 is the one being written.
fn snapshot_stream() -> Stream {
    let mut st = Stream::new(1, 128);
    for seq in 0..6u64 {
        let base = 1000 * seq;
        st.sub(base, if seq == 3 { 4 } else { 0 });
        st.event(1, base + 1, (&(seq as u32 * 10),));
        if seq % 2 == 0 {
            st.event(1, base + 2, (&(seq as u32 * 10 + 1),));
        }
    }
    st
}

fn snapshot_report(img: Vec<u8>) -> Report {
    let defs = [def(1, Level::Info, "v={0}", "snap", &[T::Unsigned as u8])];
    let meta = metadata(2, true, 128, 4, MONO_CLOCK, &defs);
    let opts = Options {
        snapshot: true,
        ..Options::default()
    };
    decode_bytes(&meta, vec![Vec::new(), img], &opts).unwrap()
}

#[test]
fn snapshot_orders_slots_and_skips_the_torn_one() {
    let st = snapshot_stream();
    let r = snapshot_report(st.snapshot(4, 0xaa));
    let lines = r.text_lines(true);
    assert_eq!(
        lines,
        [
            "[     0.000002001] cpu1 INFO  snap: v=20",
            "[     0.000002002] cpu1 INFO  snap: v=21",
            "[     0.000003000] [cpu1: 4 events lost]",
            "[     0.000003001] cpu1 INFO  snap: v=30",
            "[     0.000004001] cpu1 INFO  snap: v=40",
            "[     0.000004002] cpu1 INFO  snap: v=41",
        ]
    );
    assert_eq!(r.stats.count(WarningKind::TornSubbuf), 1);
    assert_eq!(
        r.stats.total_warnings(),
        1 + 1,
        "torn + cpu0's empty image: {}",
        r.stats
    );
}

#[test]
fn snapshot_skips_inconsistent_slots() {
    let st = snapshot_stream();
    // seq 3 (slot 3) loses its header: seq 3 is skipped, and seq 2 (its end is unknown).
    let mut img = st.snapshot(4, 0xaa);
    img[3 * 128] = b'X';
    let r = snapshot_report(img);
    let ev: Vec<u64> = events(&r.records).iter().map(|e| e.ts_raw).collect();
    assert_eq!(ev, [4001, 4002]);
    assert_eq!(r.stats.count(WarningKind::SlotSkipped), 2, "{}", r.stats);

    // A duplicate seq: both copies are skipped.
    let mut img = st.snapshot(4, 0);
    let h = st.header(3).to_bytes(); // seq 3 again in slot 0 (seq 4's)
    img[..h.len()].copy_from_slice(&h);
    let r = snapshot_report(img);
    let ev: Vec<u64> = events(&r.records).iter().map(|e| e.ts_raw).collect();
    assert_eq!(ev, Vec::<u64>::new(), "{}", r.stats);
    // A slot of another CPU.
    let mut img = st.snapshot(4, 0);
    img[2 * 128 + 4] = 7;
    let r = snapshot_report(img);
    let ev: Vec<u64> = events(&r.records).iter().map(|e| e.ts_raw).collect();
    assert_eq!(ev, [3001, 4001, 4002]);
    // A corrupt frame skips the rest of its slot only.
    let mut img = st.snapshot(4, 0);
    img[2 * 128 + st.hlen()] = 0;
    let r = snapshot_report(img);
    let ev: Vec<u64> = events(&r.records).iter().map(|e| e.ts_raw).collect();
    assert_eq!(ev, [3001, 4001, 4002]);
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1);
}

#[test]
fn a_corrupt_seq_does_not_lose_the_rest_of_the_stream() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    let mut st = Stream::new(0, 128);
    for k in 0..5u64 {
        st.sub(10 * k, 0).event(1, 10 * k + 1, (&(k as u32),));
    }
    st.subs[0].seq = 1 << 50; // later headers look like they go backwards
    let r = one_cpu(&defs, &st);
    let got: Vec<u64> = events(&r.records).iter().map(|e| e.ts_raw).collect();
    // Headers are still recognised at frame boundaries; the odd seq is reported.
    assert_eq!(got, [1, 11, 21, 31, 41], "{}", r.stats);
    assert_eq!(r.stats.count(WarningKind::SeqGap), 1);
    assert_eq!(r.stats.total_warnings(), 1);

    // A corrupt seq found while resynchronising: one lenient resync is allowed, so the
    // stream goes on after the damaged sub-buffer.
    let mut st = Stream::new(0, 128);
    for k in 0..5u64 {
        st.sub(10 * k, 0).event(1, 10 * k + 1, (&(k as u32),));
    }
    st.subs[0].seq = 1 << 50;
    st.subs[1].frames[0] = 0; // zero-length frame in sub-buffer 1
    let r = one_cpu(&defs, &st);
    let got: Vec<u64> = events(&r.records).iter().map(|e| e.ts_raw).collect();
    assert_eq!(got, [1, 21, 31, 41], "{}", r.stats);
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1);
}

#[test]
fn a_frame_running_past_the_data_before_a_header_is_corruption() {
    let defs = [def(1, Level::Info, "{0}", "t", &[T::Unsigned as u8])];
    let mut st = Stream::new(0, 4096);
    st.sub(0, 0)
        .event(1, 1, (&1u32,))
        .bytes(&[200, 1]) // claims 200 bytes: beyond the data, within the sub-buffer
        .sub(10, 0)
        .event(1, 11, (&2u32,));
    st.subs[1].prev_padding = Some(0);
    let r = one_cpu(&defs, &st);
    let got: Vec<u64> = events(&r.records).iter().map(|e| e.ts_raw).collect();
    assert_eq!(got, [1, 11]);
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1, "{}", r.stats);
    assert_eq!(r.stats.count(WarningKind::Truncated), 0);
}
