//! The fixed structures of docs/FORMAT.md: sub-buffer header, metadata records. One place for
//! their layout; the handler writes them and `klog-decode` reads them.

#[cfg(feature = "std")]
use std::vec::Vec;

/// Sub-buffer header magic: "KLG1".
pub const SUBBUF_MAGIC: [u8; 4] = *b"KLG1";
/// Length of the sub-buffer header.
pub const SUBBUF_HEADER_LEN: usize = 32;
/// Header flag: the channel is in overwrite mode.
pub const FLAG_OVERWRITE: u16 = 1;
/// Header flag: first sub-buffer after open or reset.
pub const FLAG_FIRST: u16 = 2;
/// Metadata header magic.
pub const META_MAGIC: [u8; 8] = *b"KLOGMETA";
/// Format version (this document's).
pub const VERSION: u16 = 1;

/// Metadata record kinds.
pub mod record {
    /// Trace header.
    pub const HEADER: u8 = 1;
    /// Clock reference.
    pub const CLOCK: u8 = 2;
    /// Callsite definition.
    pub const CALLSITE: u8 = 3;
}

/// Frame kinds (low two bits of a frame's `head`).
pub mod frame {
    /// `klog!` event.
    pub const EVENT: u64 = 0;
    /// `klog_raw!` record.
    pub const RAW: u64 = 1;
}

/// A sub-buffer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubbufHeader {
    /// Buffer's CPU.
    pub cpu: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// Sub-buffer sequence number on this buffer.
    pub seq: u64,
    /// Raw timestamp at the start of the sub-buffer.
    pub base_ts: u64,
    /// Padding of the previous sub-buffer.
    pub prev_padding: u32,
    /// Frames lost on this buffer since the previous header.
    pub lost: u32,
}

impl SubbufHeader {
    /// The 32 header bytes.
    pub fn to_bytes(&self) -> [u8; SUBBUF_HEADER_LEN] {
        let mut b = [0u8; SUBBUF_HEADER_LEN];
        b[0..4].copy_from_slice(&SUBBUF_MAGIC);
        b[4..6].copy_from_slice(&self.cpu.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.base_ts.to_le_bytes());
        b[24..28].copy_from_slice(&self.prev_padding.to_le_bytes());
        b[28..32].copy_from_slice(&self.lost.to_le_bytes());
        b
    }

    /// Parses a header; `None` if `b` is short or the magic is wrong.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; SUBBUF_HEADER_LEN] = b.get(..SUBBUF_HEADER_LEN)?.try_into().ok()?;
        if b[0..4] != SUBBUF_MAGIC {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Some(SubbufHeader {
            cpu: u16_at(4),
            flags: u16_at(6),
            seq: u64_at(8),
            base_ts: u64_at(16),
            prev_padding: u32_at(24),
            lost: u32_at(28),
        })
    }
}

/// The metadata header record's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeader {
    /// Number of per-CPU streams.
    pub n_cpus: u16,
    /// Overwrite mode.
    pub overwrite: bool,
    /// Sub-buffer size.
    pub subbuf_size: u32,
    /// Sub-buffers per buffer.
    pub n_subbufs: u32,
}

#[cfg(feature = "std")]
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(feature = "std")]
fn str_field(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends one record: `varint len` + `kind` + body.
#[cfg(feature = "std")]
fn record(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::vec![kind];
    body(&mut b);
    varint(out, b.len() as u64);
    out.extend_from_slice(&b);
}

/// Appends the header record.
#[cfg(feature = "std")]
pub fn meta_header(out: &mut Vec<u8>, h: &MetaHeader) {
    record(out, record::HEADER, |b| {
        b.extend_from_slice(&META_MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&h.n_cpus.to_le_bytes());
        b.push(h.overwrite as u8);
        b.extend_from_slice(&h.subbuf_size.to_le_bytes());
        b.extend_from_slice(&h.n_subbufs.to_le_bytes());
    })
}

/// Appends a clock record.
#[cfg(feature = "std")]
pub fn meta_clock(out: &mut Vec<u8>, source: u8, r: &crate::clock::ClockRef) {
    record(out, record::CLOCK, |b| {
        b.push(source);
        b.extend_from_slice(&r.raw.to_le_bytes());
        b.extend_from_slice(&r.mono_ns.to_le_bytes());
        b.extend_from_slice(&r.ticks_per_sec.to_le_bytes());
    })
}

/// Appends a callsite definition.
#[cfg(feature = "std")]
pub fn meta_callsite(out: &mut Vec<u8>, id: u32, m: &crate::callsite::Meta, types: &[u8]) {
    record(out, record::CALLSITE, |b| {
        varint(b, id as u64);
        b.push(m.level as u8);
        b.push(m.kind as u8);
        str_field(b, m.fmt);
        str_field(b, m.module);
        str_field(b, m.file);
        varint(b, m.line as u64);
        varint(b, types.len() as u64);
        b.extend_from_slice(types);
    })
}
