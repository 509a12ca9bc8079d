//! Stress records (kernel-tests/PROTOCOL.md): a streaming parser for one buffer's byte stream
//! and per-writer bookkeeping (seen sequence numbers, order, duplicates).

use std::collections::BTreeMap;

use crate::util::hex;

pub const MAGIC: u32 = 0x5253_5452;
pub const CHECK_KEY: u64 = 0x9e37_79b9_7f4a_7c15;
pub const HEADER_LEN: usize = 24;
/// Sequence numbers at or above this are implausible (and would make the bitmaps huge).
pub const MAX_SEQ: u64 = 1 << 32;

/// Encode one record (used by the tests; the kernel writes them for real).
#[cfg(test)]
pub fn encode(writer: u16, len: u16, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len as usize);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(seq ^ CHECK_KEY ^ writer as u64).to_le_bytes());
    let fill = (seq as u8) ^ (writer as u8);
    v.resize(len as usize, fill);
    v
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// What one writer delivered in one buffer.
#[derive(Clone, Debug, Default)]
pub struct WriterSeen {
    pub count: u64,
    pub last_seq: Option<u64>,
    /// Bitmap of seen sequence numbers.
    pub seen: Vec<u64>,
    pub max_seq: u64,
}

impl WriterSeen {
    /// Record `seq`; false if it was seen before.
    fn mark(&mut self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= w {
            self.seen.resize(w + 1, 0);
        }
        let fresh = self.seen[w] & (1 << b) == 0;
        self.seen[w] |= 1 << b;
        fresh
    }
}

/// Incremental parser of one buffer's concatenated read() output.
#[derive(Debug)]
pub struct StreamParser {
    /// Record length the test asked for (every record must have it).
    want_len: usize,
    /// Bytes of an incomplete record carried over to the next `feed`.
    carry: Vec<u8>,
    /// Offset of `carry[0]` in the stream.
    pos: u64,
    pub records: u64,
    pub writers: BTreeMap<u16, WriterSeen>,
    /// First problem found; parsing stops there.
    pub error: Option<String>,
}

impl StreamParser {
    pub fn new(want_len: usize) -> StreamParser {
        StreamParser {
            want_len: want_len.max(HEADER_LEN),
            carry: Vec::new(),
            pos: 0,
            records: 0,
            writers: BTreeMap::new(),
            error: None,
        }
    }

    fn fail(&mut self, at: u64, why: String, rec: &[u8]) {
        self.error = Some(format!(
            "torn or invalid record at stream offset {at}: {why}; bytes: {}",
            hex(rec, 64)
        ));
    }

    /// Validate one complete record `r` (exactly `want_len` bytes).
    fn record(&mut self, r: &[u8], at: u64) -> bool {
        let magic = u32_at(r, 0);
        let writer = u16_at(r, 4);
        let len = u16_at(r, 6) as usize;
        let seq = u64_at(r, 8);
        let check = u64_at(r, 16);
        let why = if magic != MAGIC {
            Some(format!("magic {magic:#010x}"))
        } else if len != self.want_len {
            Some(format!("len {len}, expected {}", self.want_len))
        } else if check != seq ^ CHECK_KEY ^ writer as u64 {
            Some(format!(
                "check {check:#x} does not match seq {seq} writer {writer}"
            ))
        } else if let Some(i) = r[HEADER_LEN..]
            .iter()
            .position(|&b| b != (seq as u8) ^ (writer as u8))
        {
            Some(format!("filler byte {} wrong", HEADER_LEN + i))
        } else if seq >= MAX_SEQ {
            Some(format!("implausible seq {seq}"))
        } else {
            None
        };
        if let Some(why) = why {
            self.fail(at, why, r);
            return false;
        }
        let w = self.writers.entry(writer).or_default();
        if let Some(last) = w.last_seq {
            if seq <= last {
                let msg = format!("writer {writer}: seq {seq} after {last} (not increasing)");
                self.fail(at, msg, r);
                return false;
            }
        }
        w.mark(seq);
        w.last_seq = Some(seq);
        w.max_seq = w.max_seq.max(seq);
        w.count += 1;
        self.records += 1;
        true
    }

    /// Feed the next read() chunk.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let rl = self.want_len;
        let mut data = data;
        if !self.carry.is_empty() {
            let need = rl - self.carry.len();
            let take = need.min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < rl {
                return;
            }
            let rec = std::mem::take(&mut self.carry);
            let at = self.pos;
            self.pos += rl as u64;
            if !self.record(&rec, at) {
                return;
            }
        }
        let mut chunks = data.chunks_exact(rl);
        for rec in &mut chunks {
            let at = self.pos;
            self.pos += rl as u64;
            if !self.record(rec, at) {
                return;
            }
        }
        self.carry.extend_from_slice(chunks.remainder());
    }

    /// End of stream: a leftover partial record is torn.
    pub fn finish(&mut self) {
        if self.error.is_none() && !self.carry.is_empty() {
            let rec = std::mem::take(&mut self.carry);
            self.fail(
                self.pos,
                format!("stream ends {} bytes into a record", rec.len()),
                &rec,
            );
        }
    }

    /// Bytes parsed so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.pos + self.carry.len() as u64
    }
}

/// Per-writer totals across buffers: (delivered, max seq, duplicates across buffers,
/// number of buffers the writer appeared in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterTotal {
    pub delivered: u64,
    pub max_seq: u64,
    pub duplicates: u64,
    pub buffers: usize,
}

/// Merge the per-buffer results (`StreamParser::writers` of every buffer).
pub fn merge<'a>(
    buffers: impl IntoIterator<Item = &'a BTreeMap<u16, WriterSeen>>,
) -> BTreeMap<u16, WriterTotal> {
    let mut seen: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
    let mut out: BTreeMap<u16, WriterTotal> = BTreeMap::new();
    for writers in buffers {
        for (&id, w) in writers {
            let t = out.entry(id).or_default();
            t.delivered += w.count;
            t.max_seq = t.max_seq.max(w.max_seq);
            t.buffers += 1;
            let acc = seen.entry(id).or_default();
            if acc.len() < w.seen.len() {
                acc.resize(w.seen.len(), 0);
            }
            for (a, &b) in acc.iter_mut().zip(&w.seen) {
                t.duplicates += u64::from((*a & b).count_ones());
                *a |= b;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(recs: &[(u16, u64)], len: u16) -> Vec<u8> {
        recs.iter().flat_map(|&(w, s)| encode(w, len, s)).collect()
    }

    #[test]
    fn accepts_valid_records_in_any_chunking() {
        let recs: Vec<(u16, u64)> = (0..50).map(|i| ((i % 3) as u16 * 50, i / 3)).collect();
        let s = stream(&recs, 48);
        for chunk in [1usize, 5, 47, 48, 49, 100, 4096] {
            let mut p = StreamParser::new(48);
            for c in s.chunks(chunk) {
                p.feed(c);
            }
            p.finish();
            assert_eq!(p.error, None, "chunk {chunk}");
            assert_eq!(p.records, 50);
            assert_eq!(p.writers[&0].count, 17);
            assert_eq!(p.writers[&100].count, 16);
            assert_eq!(p.position(), s.len() as u64);
        }
    }

    #[test]
    fn rejects_torn_and_corrupt_records() {
        let good = stream(&[(1, 0), (1, 1), (1, 2)], 48);
        // A record cut short and followed by the next one (a torn write).
        let mut torn = good[..48 + 20].to_vec();
        torn.extend_from_slice(&good[96..]);
        // Flipped filler byte, bad magic, bad check, wrong length field.
        let mut filler = good.clone();
        filler[48 + 30] ^= 1;
        let mut magic = good.clone();
        magic[48] ^= 1;
        let mut check = good.clone();
        check[48 + 16] ^= 1;
        let mut len = good.clone();
        len[48 + 6] = 40;
        for (name, bad) in [
            ("torn", torn),
            ("filler", filler),
            ("magic", magic),
            ("check", check),
            ("len", len),
        ] {
            let mut p = StreamParser::new(48);
            p.feed(&bad);
            p.finish();
            assert!(p.error.is_some(), "{name} accepted");
        }
        // Trailing partial record.
        let mut p = StreamParser::new(48);
        p.feed(&good[..100]);
        p.finish();
        assert!(p.error.as_deref().unwrap_or("").contains("ends 4 bytes"));
    }

    #[test]
    fn rejects_reordered_and_duplicated_seqs() {
        for recs in [[(7u16, 3u64), (7, 2)], [(7, 3), (7, 3)]] {
            let mut p = StreamParser::new(32);
            p.feed(&stream(&recs, 32));
            p.finish();
            assert!(p.error.is_some(), "{recs:?}");
        }
        // Gaps are fine (dropped records).
        let mut p = StreamParser::new(32);
        p.feed(&stream(&[(7, 0), (7, 5), (7, 9)], 32));
        p.finish();
        assert_eq!(p.error, None);
    }

    #[test]
    fn merge_counts_and_finds_cross_buffer_duplicates() {
        let mut a = StreamParser::new(24);
        a.feed(&stream(&[(1, 0), (1, 1), (2, 0)], 24));
        let mut b = StreamParser::new(24);
        b.feed(&stream(&[(1, 1), (1, 2)], 24));
        let m = merge([&a.writers, &b.writers]);
        assert_eq!(
            m[&1],
            WriterTotal {
                delivered: 4,
                max_seq: 2,
                duplicates: 1,
                buffers: 2
            }
        );
        assert_eq!(m[&2].delivered, 1);
    }
}
