//! Recorded streams with the recorder's index (`cpuN.idx`, docs/FORMAT.md "Recorded traces"):
//! every chunk's CRC-32C is verified; damaged or unindexed bytes are cut out together with the
//! rest of the sub-buffers they touch (decoding resumes at the next sub-buffer header), and a
//! prefix (the start of the first sub-buffer, read by an earlier reader) is put in front of the
//! stream so that its header and frame times are known.

use std::ops::Range;

use klog::wire::{SubbufHeader, SUBBUF_HEADER_LEN, SUBBUF_MAGIC};
use relay::user::index::{crc32c, Index};

use crate::stats::{Stats, WarningKind};

/// A stream prepared from its index.
#[derive(Debug)]
pub struct Prepared {
    /// The bytes to decode, when they differ from the file's (prefix added, damage cut out).
    pub data: Option<Vec<u8>>,
    /// Length of the prefix at the start of the bytes to decode.
    pub prefix: usize,
}

/// One problem found, in file offsets.
struct Bad {
    range: Range<usize>,
    why: String,
    /// Bytes into its sub-buffer where `range` starts, when the index knows it.
    subbuf_offset: Option<usize>,
}

fn header_at(data: &[u8], at: usize, cpu: u16) -> Option<SubbufHeader> {
    SubbufHeader::parse(data.get(at..)?).filter(|h| h.cpu == cpu)
}

/// The last header of `cpu` starting at or before `at`.
fn header_before(data: &[u8], at: usize, cpu: u16) -> usize {
    let end = (at + SUBBUF_MAGIC.len()).min(data.len());
    let mut i = end;
    while let Some(rel) = data[..i].windows(4).rposition(|w| w == SUBBUF_MAGIC) {
        if header_at(data, rel, cpu).is_some() {
            return rel;
        }
        i = rel + 3;
        if rel == 0 {
            break;
        }
    }
    0
}

/// The first header of `cpu` at or after `at` (the end of the data if none).
fn header_after(data: &[u8], at: usize, cpu: u16) -> usize {
    let mut i = at;
    while let Some(rel) = data
        .get(i..)
        .and_then(|d| d.windows(4).position(|w| w == SUBBUF_MAGIC))
    {
        if header_at(data, i + rel, cpu).is_some() {
            return i + rel;
        }
        i += rel + 1;
    }
    data.len()
}

/// Verifies the stream `data` of `cpu` against its index; reports what does not verify in
/// `stats` (cpu, file byte range, sub-buffers not decoded) and returns the bytes to decode.
/// `verified` is told each range checked (a mapped stream drops its pages until decoding).
pub fn prepare(
    cpu: u16,
    data: &[u8],
    idx: &Index,
    stats: &mut Stats,
    verified: &dyn Fn(Range<usize>),
) -> Prepared {
    let mut bad = Vec::new();
    if idx.bad_records > 0 {
        stats.warn(
            WarningKind::Damaged,
            Some(cpu),
            None,
            format_args!(
                "cpu{cpu}.idx: {} index records fail their own checksum; the chunks they \
                 describe count as unindexed",
                idx.bad_records
            ),
        );
    }
    let mut covered = 0usize;
    for (i, c) in idx.chunks.iter().enumerate() {
        let (Ok(off), Ok(len)) = (usize::try_from(c.offset), usize::try_from(c.len)) else {
            continue;
        };
        let end = off.saturating_add(len);
        if off < covered {
            // Overlaps what is already covered: a damaged index; the bytes are judged by the
            // chunk that covered them first.
            continue;
        }
        if off > covered {
            bad.push(Bad {
                range: covered..off.min(data.len()),
                why: "not covered by the index".into(),
                subbuf_offset: None,
            });
        }
        let subbuf_offset = c.pos.and_then(|(_, o)| usize::try_from(o).ok());
        if end > data.len() {
            bad.push(Bad {
                range: off.min(data.len())..data.len(),
                why: format!("chunk {i} ({len} bytes) runs past the end of the file"),
                subbuf_offset,
            });
        } else {
            if crc32c(&data[off..end]) != c.crc {
                bad.push(Bad {
                    range: off..end,
                    why: format!("chunk {i} fails its CRC-32C"),
                    subbuf_offset,
                });
            }
            verified(off..end);
        }
        covered = end;
    }
    if covered < data.len() {
        bad.push(Bad {
            range: covered..data.len(),
            why: "not in the index (the recorder stopped between writing and indexing them; \
                  they may be in the next recording of the same buffer)"
                .into(),
            subbuf_offset: None,
        });
    }
    bad.retain(|b| !b.range.is_empty());

    // The prefix must be the start of a sub-buffer of this CPU, as long as the position says.
    let mut prefix: &[u8] = &idx.prefix;
    if !prefix.is_empty() {
        let fits = idx.start.is_some_and(|(_, o)| o == prefix.len() as u64);
        if !fits || prefix.len() < SUBBUF_HEADER_LEN || header_at(prefix, 0, cpu).is_none() {
            stats.warn(
                WarningKind::Damaged,
                Some(cpu),
                None,
                format_args!("cpu{cpu}.idx: the prefix is not the start of a sub-buffer; ignored"),
            );
            prefix = &[];
        }
    }
    if bad.is_empty() && prefix.is_empty() {
        return Prepared {
            data: None,
            prefix: 0,
        };
    }
    let p = prefix.len();
    let mut all = Vec::with_capacity(p + data.len());
    all.extend_from_slice(prefix);
    all.extend_from_slice(data);
    // Cut out each bad range with the rest of its sub-buffers (in `all`'s offsets).
    let mut cuts: Vec<Range<usize>> = Vec::new();
    for b in &bad {
        let (a, e) = (b.range.start + p, b.range.end + p);
        let start = match b.subbuf_offset {
            Some(o) if o <= a && header_at(&all, a - o, cpu).is_some() => a - o,
            _ => header_before(&all, a, cpu),
        };
        let end = header_after(&all, e, cpu);
        let seqs = match (header_at(&all, start, cpu), header_at(&all, end, cpu)) {
            (Some(h0), Some(h1)) if h1.seq > h0.seq => {
                format!("sub-buffers seq {}..={}", h0.seq, h1.seq - 1)
            }
            (Some(h0), _) => format!("sub-buffers from seq {} on", h0.seq),
            _ => "the sub-buffers".into(),
        };
        stats.warn(
            WarningKind::Damaged,
            Some(cpu),
            Some(b.range.start as u64),
            format_args!(
                "cpu{cpu} bytes {}..{}: {}; {seqs} (file bytes {}..{}) not decoded",
                b.range.start,
                b.range.end,
                b.why,
                start.saturating_sub(p),
                end.saturating_sub(p)
            ),
        );
        match cuts.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => cuts.push(start..end),
        }
    }
    // Compacted in place: the stream is copied once (a mapped stream is decoded from memory
    // when it has a prefix or damage).
    let mut at = 0;
    let mut kept = 0;
    for c in &cuts {
        let from = c.start.max(at);
        all.copy_within(at..from, kept);
        kept += from - at;
        stats.damaged_bytes += (c.end - from) as u64;
        at = c.end.max(at);
    }
    let len = all.len();
    all.copy_within(at.min(len)..len, kept);
    kept += len - at.min(len);
    all.truncate(kept);
    // A cut inside the prefix leaves only part of it.
    let prefix = cuts.first().map_or(p, |c| p.min(c.start));
    Prepared {
        data: Some(all),
        prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay::user::index::Chunk;

    /// A stream of `n` sub-buffers of `len` bytes each (a header of `cpu` with seq `i`, then
    /// filler bytes).
    fn stream(cpu: u16, n: u64, len: usize) -> Vec<u8> {
        let mut s = Vec::new();
        for seq in 0..n {
            let mut h = vec![0x11u8; len];
            h[..SUBBUF_HEADER_LEN].fill(0);
            h[..4].copy_from_slice(&SUBBUF_MAGIC);
            h[4..6].copy_from_slice(&cpu.to_le_bytes());
            h[8..16].copy_from_slice(&seq.to_le_bytes());
            s.extend(h);
        }
        s
    }

    fn index(data: &[u8], piece: usize, len: usize) -> Index {
        let chunks = (0..data.len())
            .step_by(piece)
            .map(|off| {
                let end = (off + piece).min(data.len());
                Chunk {
                    offset: off as u64,
                    len: (end - off) as u64,
                    crc: crc32c(&data[off..end]),
                    pos: Some(((off / len) as u64, (off % len) as u64)),
                }
            })
            .collect();
        Index {
            chunks,
            ..Index::default()
        }
    }

    #[test]
    fn a_flipped_byte_cuts_exactly_its_sub_buffer() {
        let data = stream(0, 6, 200);
        let idx = index(&data, 100, 200);
        let mut stats = Stats::default();
        assert!(prepare(0, &data, &idx, &mut stats, &|_| {}).data.is_none());
        let mut bad = data.clone();
        bad[450] ^= 4; // sub-buffer 2 (bytes 400..600)
        let p = prepare(0, &bad, &idx, &mut stats, &|_| {});
        let out = p.data.unwrap();
        assert_eq!(out.len(), 1000);
        assert_eq!(&out[..400], &data[..400]);
        assert_eq!(&out[400..], &data[600..]);
        assert_eq!(stats.damaged_bytes, 200);
        assert_eq!(stats.count(WarningKind::Damaged), 1);
        let m = &stats.warnings[0].message;
        assert!(
            m.contains("bytes 400..500") && m.contains("seq 2..=2"),
            "{m}"
        );
    }

    #[test]
    fn the_prefix_goes_in_front_and_an_unindexed_tail_is_cut() {
        let full = stream(3, 4, 200);
        // Recorded from byte 50 of sub-buffer 0; the last 120 bytes were never indexed.
        let data = &full[50..];
        let mut idx = index(&data[..data.len() - 120], 100, 200);
        for c in &mut idx.chunks {
            let at = c.offset + 50;
            c.pos = Some((at / 200, at % 200));
        }
        idx.start = Some((0, 50));
        idx.prefix = full[..50].to_vec();
        let mut stats = Stats::default();
        let p = prepare(3, data, &idx, &mut stats, &|_| {});
        assert_eq!(p.prefix, 50);
        // The tail (inside sub-buffer 3) is cut with the rest of its sub-buffer.
        assert_eq!(p.data.unwrap(), &full[..600]);
        assert!(stats.warnings[0].message.contains("not in the index"));
    }

    /// Whatever the bytes and the index say, preparing never panics.
    #[test]
    fn arbitrary_inputs_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut data = stream(0, next() % 5, 64 + (next() % 100) as usize);
            for _ in 0..next() % 4 {
                if !data.is_empty() {
                    let i = next() as usize % data.len();
                    data[i] = next() as u8;
                }
            }
            let chunks = (0..next() % 6)
                .map(|_| Chunk {
                    offset: next() % 600,
                    len: next() % 300,
                    crc: next() as u32,
                    pos: (next() % 2 == 0).then(|| (next() % 8, next() % 300)),
                })
                .collect();
            let prefix = stream(0, 1, 64)[..(next() % 64) as usize].to_vec();
            let idx = Index {
                start: Some((0, next() % 70)),
                prefix,
                chunks,
                ..Index::default()
            };
            let p = prepare(0, &data, &idx, &mut Stats::default(), &|_| {});
            if let Some(d) = p.data {
                assert!(p.prefix <= d.len());
            }
        }
    }
}
