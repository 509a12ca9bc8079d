//! The recorder's sidecar index (`cpuN.idx`, docs/FORMAT.md "Recorded traces"): per chunk the
//! recorder wrote, its file offset, length, CRC-32C and the relay read position where it started;
//! plus, when a recording starts in the middle of a sub-buffer, that sub-buffer's bytes before the
//! start. Written and parsed here so that the recorder and the decoder share one definition.
//!
//! Layout (little-endian): the magic `KLOGIDX1`, then records `kind: u32, len: u32, body[len],
//! crc: u32` where `crc` is the CRC-32C of `kind`, `len` and `body`. A torn last record (a recorder
//! killed while appending it) is ignored.

/// Magic at the start of an index file.
pub const IDX_MAGIC: [u8; 8] = *b"KLOGIDX1";
/// Record kind: where the recording started (and the prefix of that sub-buffer).
pub const KIND_START: u32 = 1;
/// Record kind: one chunk of the recorded file.
pub const KIND_CHUNK: u32 = 2;
/// Flag: the read position is known.
pub const FLAG_POS: u32 = 1;
/// Flag (start record): the body ends with the prefix bytes.
pub const FLAG_PREFIX: u32 = 2;

/// Bytes of a chunk record's body.
const CHUNK_BODY: usize = 40;
/// Bytes of a start record's body before the prefix.
const START_BODY: usize = 20;
/// A record body larger than this is corrupt (a prefix is at most one sub-buffer).
const MAX_BODY: usize = 1 << 30;

static CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    // Castagnoli polynomial, reflected.
    const POLY: u32 = 0x82f6_3b78;
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// Continues a CRC-32C (`crc` of the bytes so far, 0 to start) over `bytes`.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2 (checked just above).
        return !unsafe { crc_sse42(!crc, bytes) };
    }
    !crc_table_driven(!crc, bytes)
}

fn crc_table_driven(mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

/// The CRC32 instruction computes CRC-32C: 8 bytes per instruction (decoding a large trace
/// verifies every byte, so the table's byte at a time would dominate).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc_sse42(mut c: u32, bytes: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut words = bytes.chunks_exact(8);
    let mut c64 = u64::from(c);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        c64 = _mm_crc32_u64(c64, u64::from_le_bytes(a));
    }
    c = c64 as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    c
}

/// The CRC-32C (Castagnoli, as iSCSI and ext4 use) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_append(0, bytes)
}

/// A read position as stored in the index (`None`: the relay file could not tell).
pub type IdxPos = Option<(u64, u64)>;

/// One chunk the recorder wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the chunk in the recorded file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// CRC-32C of its bytes.
    pub crc: u32,
    /// Relay read position (sub-buffers consumed, bytes consumed in the current one) where the
    /// chunk started.
    pub pos: IdxPos,
}

/// A parsed index file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// The read position where the recording started.
    pub start: IdxPos,
    /// The bytes of the first sub-buffer before the start (empty when it started at a
    /// sub-buffer boundary or the position is unknown).
    pub prefix: Vec<u8>,
    /// The chunks, in file order.
    pub chunks: Vec<Chunk>,
    /// Records whose own checksum failed or whose body does not parse (their chunks are
    /// missing from `chunks`).
    pub bad_records: usize,
    /// Bytes at the end that do not form a whole record (a recorder stopped while appending).
    pub torn_tail: usize,
}

fn put_pos(out: &mut Vec<u8>, pos: IdxPos) -> u32 {
    let (s, o) = pos.unwrap_or((0, 0));
    out.extend_from_slice(&s.to_le_bytes());
    out.extend_from_slice(&o.to_le_bytes());
    if pos.is_some() {
        FLAG_POS
    } else {
        0
    }
}

fn record(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(12 + body.len());
    r.extend_from_slice(&kind.to_le_bytes());
    r.extend_from_slice(&(body.len() as u32).to_le_bytes());
    r.extend_from_slice(body);
    let crc = crc32c(&r);
    r.extend_from_slice(&crc.to_le_bytes());
    r
}

/// The file header and start record of an index.
pub fn encode_start(pos: IdxPos, prefix: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(START_BODY + prefix.len());
    let mut flags = put_pos(&mut body, pos);
    if !prefix.is_empty() {
        flags |= FLAG_PREFIX;
    }
    body.extend_from_slice(&flags.to_le_bytes());
    body.extend_from_slice(prefix);
    let mut out = IDX_MAGIC.to_vec();
    out.extend(record(KIND_START, &body));
    out
}

/// A chunk record.
pub fn encode_chunk(c: &Chunk) -> Vec<u8> {
    let mut body = Vec::with_capacity(CHUNK_BODY);
    body.extend_from_slice(&c.offset.to_le_bytes());
    body.extend_from_slice(&c.len.to_le_bytes());
    body.extend_from_slice(&c.crc.to_le_bytes());
    let mut pos = Vec::with_capacity(16);
    let flags = put_pos(&mut pos, c.pos);
    body.extend_from_slice(&flags.to_le_bytes());
    body.extend_from_slice(&pos);
    record(KIND_CHUNK, &body)
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn pos_of(flags: u32, s: u64, o: u64) -> IdxPos {
    (flags & FLAG_POS != 0).then_some((s, o))
}

/// Parses an index file; `None` if it does not start with the magic.
pub fn parse(b: &[u8]) -> Option<Index> {
    let mut rest = b.strip_prefix(&IDX_MAGIC)?;
    let mut idx = Index::default();
    while !rest.is_empty() {
        let (Some(kind), Some(len)) = (le32(rest, 0), le32(rest, 4)) else {
            idx.torn_tail = rest.len();
            break;
        };
        let len = len as usize;
        if len > MAX_BODY {
            idx.bad_records += 1;
            idx.torn_tail = rest.len();
            break;
        }
        let Some(crc) = le32(rest, 8 + len) else {
            idx.torn_tail = rest.len();
            break;
        };
        let (head, body) = (&rest[..8 + len], &rest[8..8 + len]);
        rest = &rest[12 + len..];
        if crc32c(head) != crc {
            idx.bad_records += 1;
            continue;
        }
        let ok = match kind {
            KIND_START if body.len() >= START_BODY => {
                let (s, o) = (le64(body, 0)?, le64(body, 8)?);
                let flags = le32(body, 16)?;
                idx.start = pos_of(flags, s, o);
                if flags & FLAG_PREFIX != 0 {
                    idx.prefix = body[START_BODY..].to_vec();
                }
                true
            }
            KIND_CHUNK if body.len() == CHUNK_BODY => {
                let flags = le32(body, 20)?;
                idx.chunks.push(Chunk {
                    offset: le64(body, 0)?,
                    len: le64(body, 8)?,
                    crc: le32(body, 16)?,
                    pos: pos_of(flags, le64(body, 24)?, le64(body, 32)?),
                });
                true
            }
            _ => false,
        };
        if !ok {
            idx.bad_records += 1;
        }
    }
    Some(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C (RFC 3720 B.4 uses the same polynomial).
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c_append(crc32c(b"1234"), b"56789"), 0xe306_9283);
        // The instruction and the table agree at every length and alignment.
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 63, 500, 991 - start] {
                let d = &data[start..start + len];
                assert_eq!(crc32c(d), !crc_table_driven(!0, d), "{start} {len}");
            }
        }
    }

    #[test]
    fn roundtrip_and_torn_tail() {
        let mut f = encode_start(Some((7, 3)), b"abc");
        let c = Chunk {
            offset: 0,
            len: 10,
            crc: 5,
            pos: Some((7, 3)),
        };
        f.extend(encode_chunk(&c));
        let d = Chunk { pos: None, ..c };
        f.extend(encode_chunk(&d));
        let whole = parse(&f).unwrap();
        assert_eq!(whole.start, Some((7, 3)));
        assert_eq!(whole.prefix, b"abc");
        assert_eq!(whole.chunks, vec![c, d]);
        let torn = parse(&f[..f.len() - 3]).unwrap();
        assert_eq!(torn.chunks, vec![c]);
        assert_eq!(torn.torn_tail, 12 + CHUNK_BODY - 3);
        let mut flipped = f.clone();
        let at = f.len() - 20;
        flipped[at] ^= 1;
        let bad = parse(&flipped).unwrap();
        assert_eq!((bad.chunks.len(), bad.bad_records), (1, 1));
    }
}
