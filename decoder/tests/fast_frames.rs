//! The frame fast path of `CpuStream::fill_ref` (frames read from one word, arguments checked
//! in one word) against `CpuStream::next_ref` as the oracle: the same records, counters and
//! warnings on streams of every frame shape around its limits (one- and multi-byte lengths,
//! heads and time deltas; payloads of up to and over 8 bytes; arguments that are not varints)
//! mixed with malformed frames, at the ends of sub-buffers and of the data; in traces of both
//! format versions (time deltas relative to the sub-buffer's base, or accumulated from frame to
//! frame).

mod common;

use common::*;
use klog::arg::ArgType as T;
use klog::wire;
use klog::Level;
use klog_decode::*;

/// Test-local draws on top of the shared xorshift.
trait Draw {
    fn below(&mut self, n: u64) -> u64;
    /// A value of a random bit length (so its varint has a random length).
    fn sized(&mut self) -> u64;
}

impl Draw for Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn sized(&mut self) -> u64 {
        let bits = self.below(65) as u32;
        self.next().checked_shr(64 - bits).unwrap_or(0)
    }
}

const SUBBUF: usize = 512;

fn defs() -> Vec<Def> {
    let u = T::Unsigned as u8;
    let s = T::Signed as u8;
    vec![
        def(1, Level::Info, "a {0} b {1}", "m", &[u, u]),
        def(2, Level::Warn, "{0} {1} {2}", "m", &[s, u, s]),
        def(3, Level::Info, "one {0}", "m", &[u]),
        // Heads of two and three bytes.
        def(40, Level::Debug, "x {0} y {1}", "m", &[u, s]),
        def(5000, Level::Trace, "far {0}", "m", &[u]),
        // Not all varints: the general check.
        def(6, Level::Info, "{0} {1}", "m", &[u, T::Str as u8]),
        def(7, Level::Info, "none", "m", &[]),
        def(8, Level::Info, "{0}", "m", &[T::U8 as u8]),
        def(
            9,
            Level::Info,
            "eight {0} {1} {2} {3} {4} {5} {6} {7}",
            "m",
            &[u; 8],
        ),
        raw_def(10, "m::raw"),
    ]
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A payload for callsite `id`: well-formed, or (sometimes) a byte short or over.
fn payload(rng: &mut Rng, id: u64) -> Vec<u8> {
    let mut p = Vec::new();
    let n = match id {
        1 | 40 => 2,
        2 => 3,
        3 | 5000 => 1,
        9 => 8,
        6 => {
            varint(&mut p, rng.sized());
            p.extend_from_slice(&[3, b'a', b'b', b'c']);
            0
        }
        8 => {
            p.push(rng.next() as u8);
            0
        }
        _ => 0,
    };
    for _ in 0..n {
        // Mostly short arguments, as in real traces.
        let v = if rng.below(4) == 0 {
            rng.sized()
        } else {
            rng.below(1 << 14)
        };
        varint(&mut p, v);
    }
    match rng.below(20) {
        0 => p.push(rng.next() as u8),
        1 => {
            p.pop();
        }
        // A non-canonical (padded) varint at the end: the same value.
        2 => {
            if let Some(last) = p.last_mut() {
                *last |= 0x80;
                p.push(0);
            }
        }
        _ => {}
    }
    p
}

/// One frame (or malformed bytes) at about `ts`, its time delta relative to `reference`: the
/// sub-buffer's base (version 1), or the time of the previous frame (version 2, `cumulative`:
/// `reference` advances).
fn frame_bytes(rng: &mut Rng, ts: &mut u64, reference: &mut u64, cumulative: bool) -> Vec<u8> {
    let ids = [1u64, 2, 3, 40, 5000, 6, 7, 8, 9, 10, 77];
    let id = ids[rng.below(ids.len() as u64) as usize];
    *ts += match rng.below(8) {
        0 => rng.sized() >> 20,
        1 => 0,
        _ => rng.below(1 << 12),
    };
    // Sometimes back in time (a warning), or before the header.
    let delta = match rng.below(50) {
        0 => -(rng.below(1000) as i64),
        _ => ts.wrapping_sub(*reference) as i64,
    };
    if cumulative {
        *reference = reference.wrapping_add(delta as u64);
    }
    let kind = match rng.below(40) {
        0 => 2,
        1 => 3,
        2 => wire::frame::RAW,
        _ if id == 10 => wire::frame::RAW,
        _ => wire::frame::EVENT,
    };
    let p = if id == 10 {
        (0..rng.below(12)).map(|_| rng.next() as u8).collect()
    } else {
        payload(rng, id)
    };
    let mut body = Vec::new();
    varint(&mut body, (id << 2) | kind);
    varint(&mut body, zigzag(delta));
    body.extend_from_slice(&p);
    let mut len = body.len() as u64;
    match rng.below(60) {
        0 => len = 0,
        1 => len += 1,
        2 => len = len.saturating_sub(1),
        3 => len += 1000,              // past the sub-buffer
        4 => len = rng.below(len + 1), // inside the head, delta or arguments
        _ => {}
    }
    let mut out = Vec::new();
    // A length in two bytes: the general path.
    if rng.below(30) == 0 && len < 0x80 {
        out.extend_from_slice(&[len as u8 | 0x80, 0]);
    } else {
        varint(&mut out, len);
    }
    out.extend_from_slice(&body);
    if rng.below(100) == 0 {
        out = (0..rng.below(10)).map(|_| rng.next() as u8).collect();
    }
    out
}

fn stream(rng: &mut Rng, cpu: u16, version: u16) -> Vec<u8> {
    let mut s = Stream::with_version(cpu, SUBBUF, version);
    let mut ts = 1_000_000u64;
    for _ in 0..30 {
        let mut reference = ts;
        s.sub(reference, rng.below(3) as u32);
        let mut used = 0;
        loop {
            let f = frame_bytes(
                rng,
                &mut ts,
                &mut reference,
                version != wire::VERSION_BASE_DELTAS,
            );
            if used + f.len() > SUBBUF - wire::SUBBUF_HEADER_LEN {
                break;
            }
            used += f.len();
            s.bytes(&f);
        }
    }
    let mut data = s.read_stream();
    // Cut inside the last frames sometimes.
    if rng.below(2) == 0 {
        let cut = rng.below(12) as usize;
        data.truncate(data.len() - cut);
    }
    data
}

#[test]
fn fill_ref_matches_next_ref() {
    for version in [
        wire::VERSION_BASE_DELTAS,
        wire::VERSION_PREV_DELTAS,
        wire::VERSION,
    ] {
        fill_ref_matches_next_ref_in(version);
    }
}

fn fill_ref_matches_next_ref_in(version: u16) {
    let meta_bytes = with_version(
        metadata(1, false, SUBBUF as u32, 8, MONO_CLOCK, &defs()),
        version,
    );
    let meta = parse_metadata(&meta_bytes, &mut Stats::default()).expect("metadata");
    assert_eq!(meta.header.version, version);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ u64::from(version));
    let mut fast_frames = 0u64;
    for round in 0..200 {
        let data = stream(&mut rng, 0, version);
        let mut oracle = CpuStream::new(&meta, 0, &data);
        let mut want = Vec::new();
        while let Some(r) = oracle.next_ref() {
            want.push(r.to_record());
        }
        for max in [1usize, 3, 64] {
            let mut s = CpuStream::new(&meta, 0, &data);
            let mut got = Vec::new();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                s.fill_ref(&mut buf, max);
                if buf.is_empty() {
                    break;
                }
                got.extend(buf.iter().map(|r| r.to_record()));
            }
            assert_eq!(got, want, "version {version} round {round} max {max}");
            assert_eq!(
                s.stats(),
                oracle.stats(),
                "version {version} round {round} max {max}"
            );
        }
        fast_frames += oracle.stats().events;
    }
    // Enough well-formed events for the fast path to matter.
    assert!(fast_frames > 10_000, "version {version}: {fast_frames}");
}
