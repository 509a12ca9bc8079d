//! Bad input never panics: every truncation point of a small trace, random garbage, random
//! mutations of a valid trace; output stays bounded by the input.

mod common;

use common::*;
use klog::arg::ArgType as T;
use klog::Level;
use klog_decode::*;
use proptest::prelude::*;

fn defs() -> Vec<Def> {
    vec![
        def(
            1,
            Level::Warn,
            "q {0} after {1} us flags={2:#x} {3:?}",
            "m::rx",
            &[
                T::Unsigned as u8,
                T::Signed as u8,
                T::U8 as u8,
                T::Str as u8,
            ],
        ),
        def(
            2,
            Level::Info,
            "{0:.3} {1} {2:?}",
            "m",
            &[T::F64 as u8, T::Char as u8, T::Bytes as u8],
        ),
        raw_def(3, "m::raw"),
    ]
}

fn meta() -> Vec<u8> {
    metadata(2, false, 160, 4, MONO_CLOCK, &defs())
}

/// Two CPUs, several sub-buffers each, lost counts, every frame kind.
fn streams() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for cpu in 0..2u16 {
        let mut st = Stream::new(cpu, 160);
        for k in 0..3u64 {
            let base = 1000 * k + u64::from(cpu);
            st.sub(base, if k == 1 { 2 } else { 0 })
                .event(1, base + 1, (&(k as u32), &-(k as i64), &0x1fu8, &"eth0"))
                .event(2, base + 2, (&1.5f64, &'é', &[1u8, 2, 3][..]))
                .raw(3, base + 3, &[0xde, 0xad, 0xbe, 0xef]);
        }
        out.push(st.read_stream());
    }
    out
}

fn check_bounded(r: &Report, input_len: usize) {
    assert!(
        r.records.len() <= input_len + 1,
        "{} records",
        r.records.len()
    );
    let mut bytes = 0usize;
    for rec in &r.records {
        if let Record::Event(e) = rec {
            match &e.payload {
                Payload::Raw(b) => bytes += b.len(),
                Payload::Values(v) => {
                    for x in v {
                        bytes += match x {
                            Value::Str(s) => s.len(),
                            Value::Bytes(b) | Value::User(b) => b.len(),
                            _ => 0,
                        }
                    }
                }
            }
        }
    }
    assert!(bytes <= input_len, "{bytes} payload bytes from {input_len}");
    // The text output works on anything decoded.
    for l in r.text_lines(false) {
        assert!(!l.is_empty());
    }
}

#[test]
fn full_trace_decodes_cleanly() {
    let r = decode_bytes(&meta(), streams(), &Options::default()).unwrap();
    assert_eq!(r.stats.total_warnings(), 0, "{}", r.stats);
    assert_eq!(r.stats.events, 12);
    assert_eq!(r.stats.raw_records, 6);
    assert_eq!(r.stats.lost_records, 2);
    assert_eq!(r.records.len(), 20);
}

#[test]
fn every_stream_truncation_gives_a_prefix() {
    let m = meta();
    let full = streams();
    let opts = Options::default();
    for cpu in 0..2 {
        let (want, _) = decode_stream(
            &parse_metadata(&m, &mut Stats::default()).unwrap(),
            cpu as u16,
            &full[cpu],
        );
        for cut in 0..=full[cpu].len() {
            let mut s = full.clone();
            s[cpu].truncate(cut);
            let r = decode_bytes(&m, s, &opts).unwrap();
            let got: Vec<&Record> = r.records.iter().filter(|x| x.cpu() == cpu as u16).collect();
            assert!(got.len() <= want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(*g, w, "cut {cut}");
            }
            // Cuts are reported as truncation, never as corruption.
            for k in r.stats.warning_counts.keys() {
                assert_eq!(*k, WarningKind::Truncated, "cut {cut}: {}", r.stats);
            }
            check_bounded(&r, cut + full[1 - cpu].len());
        }
    }
}

#[test]
fn every_metadata_truncation_is_an_error_or_a_subset() {
    let m = meta();
    let full = parse_metadata(&m, &mut Stats::default()).unwrap();
    for cut in 0..=m.len() {
        match decode_bytes(&m[..cut], streams(), &Options::default()) {
            Err(e) => {
                assert!(
                    matches!(e, Error::EmptyMetadata | Error::NotKlogMetadata(_)),
                    "cut {cut}: {e}"
                );
                assert!(!e.to_string().is_empty());
            }
            Ok(r) => {
                for (id, cs) in &r.metadata.callsites {
                    assert_eq!(Some(cs), full.callsites.get(id));
                }
                assert!(r.metadata.parsed_len <= cut);
            }
        }
    }
}

#[test]
fn every_snapshot_truncation_is_harmless() {
    let mut st = Stream::new(0, 160);
    for k in 0..6u64 {
        st.sub(100 * k, 0)
            .event(1, 100 * k + 5, (&1u32, &-1i64, &2u8, &"x"));
    }
    let img = st.snapshot(4, 0x55);
    let m = metadata(1, true, 160, 4, MONO_CLOCK, &defs());
    let opts = Options {
        snapshot: true,
        ..Options::default()
    };
    let full = decode_bytes(&m, vec![img.clone()], &opts).unwrap();
    assert_eq!(full.stats.events, 3, "{}", full.stats);
    for cut in 0..=img.len() {
        let r = decode_bytes(&m, vec![img[..cut].to_vec()], &opts).unwrap();
        check_bounded(&r, cut);
    }
}

fn mutate(data: &mut [u8], edits: &[(usize, u8)]) {
    if data.is_empty() {
        return;
    }
    for &(i, v) in edits {
        let n = data.len();
        data[i % n] = v;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_streams(
        a in prop::collection::vec(any::<u8>(), 0..2048),
        b in prop::collection::vec(any::<u8>(), 0..2048),
        snapshot: bool,
    ) {
        let opts = Options { snapshot, ..Options::default() };
        let n = a.len() + b.len();
        let r = decode_bytes(&meta(), vec![a, b], &opts).unwrap();
        check_bounded(&r, n);
    }

    #[test]
    fn random_metadata(m in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_bytes(&m, streams(), &Options::default());
        let mut s = Stats::default();
        let _ = parse_metadata(&m, &mut s);
    }

    /// Random metadata behind a valid header (so parsing goes past the first record).
    #[test]
    fn random_metadata_records(tail in prop::collection::vec(any::<u8>(), 0..1024)) {
        let mut m = metadata(2, false, 160, 4, &[], &[]);
        m.extend_from_slice(&tail);
        if let Ok(r) = decode_bytes(&m, streams(), &Options::default()) {
            check_bounded(&r, streams().iter().map(Vec::len).sum());
        }
    }

    #[test]
    fn mutated_trace(
        edits0 in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        edits1 in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        medits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        snapshot: bool,
    ) {
        let mut s = streams();
        mutate(&mut s[0], &edits0);
        mutate(&mut s[1], &edits1);
        let mut m = meta();
        mutate(&mut m, &medits);
        let n = s[0].len() + s[1].len();
        let opts = Options { snapshot, ..Options::default() };
        if let Ok(r) = decode_bytes(&m, s, &opts) {
            check_bounded(&r, n);
        }
    }

    /// Valid headers with random frame bytes between them: exercises header detection,
    /// resync and the sub-buffer checks rather than the first-header rejection.
    #[test]
    fn headers_around_garbage(
        chunks in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..100), 0u64..4, any::<u32>(), 0u32..3),
            1..12,
        ),
        cpu in 0u16..2,
        snapshot: bool,
    ) {
        let mut data = Vec::new();
        let mut seq = 0;
        for (frames, step, pad, lost) in &chunks {
            let h = klog::wire::SubbufHeader {
                cpu,
                flags: 0,
                seq,
                base_ts: seq * 100,
                prev_padding: pad % 200,
                lost: *lost,
                trace_id: common::TRACE_ID,
            };
            data.extend_from_slice(&h.to_bytes());
            data.extend_from_slice(frames);
            seq += step;
        }
        let n = data.len();
        let opts = Options { snapshot, ..Options::default() };
        let mut s = vec![Vec::new(), Vec::new()];
        s[usize::from(cpu)] = data;
        let r = decode_bytes(&meta(), s, &opts).unwrap();
        check_bounded(&r, n);
    }
}

#[test]
fn huge_claimed_lengths_do_not_allocate() {
    // A frame claiming 2^63 bytes, a string claiming 2^40 bytes, a metadata record claiming
    // 2^60 bytes: all rejected by bounds checks before any allocation.
    let mut st = Stream::new(0, 160);
    st.sub(0, 0)
        .bytes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    let r = decode_bytes(&meta(), vec![st.read_stream()], &Options::default()).unwrap();
    assert!(r.records.is_empty());
    let mut st = Stream::new(0, 160);
    st.sub(0, 0)
        .event_bytes(1, 0, &[1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
    let r = decode_bytes(&meta(), vec![st.read_stream()], &Options::default()).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.stats.count(WarningKind::CorruptFrame), 1);
    let mut m = meta();
    m.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 3]);
    let mut s = Stats::default();
    let md = parse_metadata(&m, &mut s).unwrap();
    assert_eq!(md.callsites.len(), 3);
    assert_eq!(s.count(WarningKind::MetaTruncated), 1);
}

/// Totals records claiming impossible counts (a damaged metadata stream) are decoded without
/// overflow, and the accounting does not call itself exact.
#[test]
fn absurd_totals_do_not_overflow() {
    for next_seq in [0, 3, u64::MAX] {
        let mut m = meta();
        for cpu in 0..2 {
            klog::wire::meta_totals(
                &mut m,
                &klog::wire::Totals {
                    cpu,
                    flags: klog::wire::TOTALS_OVERWRITTEN,
                    written: u64::MAX,
                    lost: u64::MAX,
                    lost_pending: u64::MAX,
                    overwritten: u64::MAX,
                    next_seq,
                    cur_frames: u64::MAX,
                },
            );
        }
        let r = decode_bytes(&m, streams(), &Options::default()).unwrap();
        let a = r.stats.accounting.unwrap();
        assert!(!a.exact, "{a}");
        assert_eq!(a.decoded, r.stats.events + r.stats.raw_records, "{a}");
    }
}
