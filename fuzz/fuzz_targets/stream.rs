//! The sub-buffer / frame stream parser (read() streams and mmap snapshots) on arbitrary bytes,
//! with a fixed valid metadata stream (a few callsites of every argument type) so that frames
//! get past the callsite lookup. The first input byte picks the shape, the sub-buffer size and
//! the format version (1: time deltas relative to the sub-buffer's base; 2: to the previous
//! frame, so the fast batch path must accumulate them exactly as the record path does; 3: as 2,
//! with 40-byte headers carrying a trace id, here 0).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn metadata(subbuf_size: u32, version: u16) -> Vec<u8> {
    // Hand-encoded (see docs/FORMAT.md, "metadata stream"): header, clock, callsites.
    let mut out = Vec::new();
    let rec = |out: &mut Vec<u8>, kind: u8, body: &[u8]| {
        out.push((body.len() + 1) as u8);
        out.push(kind);
        out.extend_from_slice(body);
    };
    let mut h = b"KLOGMETA".to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.push(0);
    h.extend_from_slice(&subbuf_size.to_le_bytes());
    h.extend_from_slice(&4u32.to_le_bytes());
    if version >= 3 {
        h.extend_from_slice(&0u64.to_le_bytes()); // trace id
    }
    rec(&mut out, 1, &h);
    let mut c = vec![0u8];
    c.extend_from_slice(&0u64.to_le_bytes());
    c.extend_from_slice(&0u64.to_le_bytes());
    c.extend_from_slice(&1_000_000_000u64.to_le_bytes());
    rec(&mut out, 2, &c);
    let defs: [(u8, u8, &str, &[u8]); 4] = [
        (1, 0, "a {0} {1:x} {2:?} {3:>8.3}", &[1, 3, 8, 5]),
        (
            2,
            0,
            "b {0} {1} {2:?} {3} {4:#b} {5:e}",
            &[0, 2, 9, 6, 12, 4],
        ),
        (3, 1, "", &[]),
        (4, 0, "c {0:?} {1} {2:+} {3}", &[7, 10, 13, 11]),
    ];
    for (id, kind, fmt, tags) in defs {
        let mut b = vec![id, 3, kind, fmt.len() as u8];
        b.extend_from_slice(fmt.as_bytes());
        b.extend_from_slice(&[1, b'm', 1, b'f', 7, tags.len() as u8]);
        b.extend_from_slice(tags);
        rec(&mut out, 3, &b);
    }
    out
}

fn metas() -> &'static [klog_decode::Metadata] {
    static M: OnceLock<Vec<klog_decode::Metadata>> = OnceLock::new();
    M.get_or_init(|| {
        [64u32, 256, 4096]
            .iter()
            .flat_map(|&ss| [1u16, 2, 3].map(|v| (ss, v)))
            .map(|(ss, v)| {
                let m = klog_decode::parse_metadata(
                    &metadata(ss, v),
                    &mut klog_decode::Stats::default(),
                )
                .expect("valid metadata");
                assert_eq!(m.header.version, v);
                m
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // Sub-buffer size by `sel % 3`, version by bits 2-3 (3 picks version 3 too).
    let meta = &metas()[usize::from(sel % 3) * 3 + usize::from(sel >> 2 & 3).min(2)];
    let cpu = u16::from(sel >> 7);
    let (recs, stats) = if sel & 0x40 != 0 {
        klog_decode::decode_snapshot(meta, cpu, rest)
    } else {
        klog_decode::decode_stream(meta, cpu, rest)
    };
    // Bounded output: every record comes from at least one byte of input, or a header.
    assert!(recs.len() <= rest.len());
    assert!(stats.corrupt_bytes <= rest.len() as u64);
    // Rendering never panics either.
    let mut line = String::new();
    for r in &recs {
        line.clear();
        klog_decode::format_record(meta, r, 0, &mut line);
    }
    // The borrowed-record path gives the same records, statistics and text / JSON lines.
    let mut s = if sel & 0x40 != 0 {
        klog_decode::CpuStream::snapshot(meta, cpu, rest)
    } else {
        klog_decode::CpuStream::new(meta, cpu, rest)
    };
    let clock = klog_decode::ClockConv::IDENTITY;
    let mut text = klog_decode::LineRenderer::new(meta, clock, klog_decode::Format::Text, false);
    let mut json = klog_decode::LineRenderer::new(meta, clock, klog_decode::Format::Json, false);
    let mut json_sink = klog_decode::output::JsonSink::new();
    let mut n = 0;
    let (mut got, mut want) = (Vec::new(), Vec::new());
    while let Some(r) = s.next_ref() {
        let owned = r.to_record();
        // Debug rather than ==: a NaN argument is not equal to itself.
        assert_eq!(format!("{:?}", recs.get(n)), format!("{:?}", Some(&owned)));
        n += 1;
        line.clear();
        klog_decode::format_record(meta, &owned, 0, &mut line);
        line.push('\n');
        got.clear();
        text.render(&r, 0, 0, &mut got);
        assert_eq!(got, line.as_bytes());
        got.clear();
        want.clear();
        json.render(&r, 0, 0, &mut got);
        klog_decode::output::Sink::record(&mut json_sink, meta, &owned, 0, 0, &mut want);
        assert_eq!(got, want);
    }
    assert_eq!(n, recs.len());
    assert_eq!(s.stats(), &stats);
    // Batches (`fill_ref`, what the merge uses) give them too.
    let mut s = if sel & 0x40 != 0 {
        klog_decode::CpuStream::snapshot(meta, cpu, rest)
    } else {
        klog_decode::CpuStream::new(meta, cpu, rest)
    };
    let (mut buf, mut n) = (Vec::new(), 0);
    loop {
        buf.clear();
        s.fill_ref(&mut buf, 1 + usize::from(sel >> 3 & 7));
        if buf.is_empty() {
            break;
        }
        for r in &buf {
            let want = recs.get(n).map(|w| format!("{w:?}"));
            assert_eq!(want, Some(format!("{:?}", r.to_record())));
            n += 1;
        }
    }
    assert_eq!(n, recs.len());
    assert_eq!(s.stats(), &stats);
});
