//! The fixed structures of docs/FORMAT.md: sub-buffer header, metadata records. One place for
//! their layout; the handler writes them and `klog-decode` reads them.

#[cfg(feature = "std")]
use std::vec::Vec;

/// Sub-buffer header magic of format version 3: "KLG2".
pub const SUBBUF_MAGIC: [u8; 4] = *b"KLG2";
/// Length of the sub-buffer header (format version 3).
pub const SUBBUF_HEADER_LEN: usize = 40;
/// Sub-buffer header magic of format versions 1 and 2: "KLG1" (no trace id).
pub const SUBBUF_MAGIC_V1: [u8; 4] = *b"KLG1";
/// Length of the sub-buffer header of format versions 1 and 2.
pub const SUBBUF_HEADER_LEN_V1: usize = 32;
/// Header flag: the channel is in overwrite mode.
pub const FLAG_OVERWRITE: u16 = 1;
/// Header flag: first sub-buffer after open or reset.
pub const FLAG_FIRST: u16 = 2;
/// Metadata header magic.
pub const META_MAGIC: [u8; 8] = *b"KLOGMETA";
/// Format version written by this crate (docs/FORMAT.md): 3, version 2 plus a trace id in the
/// metadata header and in every (40-byte, "KLG2") sub-buffer header, and end-of-trace totals.
pub const VERSION: u16 = 3;
/// Format version 2: a frame's `ts_delta` is relative to the previous frame of its sub-buffer;
/// 32-byte "KLG1" headers, no trace id; still decoded.
pub const VERSION_PREV_DELTAS: u16 = 2;
/// Format version 1, where every `ts_delta` is relative to the sub-buffer's `base_ts`; still
/// decoded.
pub const VERSION_BASE_DELTAS: u16 = 1;

/// The sub-buffer header magic and length of format `version`.
pub const fn subbuf_layout(version: u16) -> ([u8; 4], usize) {
    if version >= 3 {
        (SUBBUF_MAGIC, SUBBUF_HEADER_LEN)
    } else {
        (SUBBUF_MAGIC_V1, SUBBUF_HEADER_LEN_V1)
    }
}

/// Metadata record kinds.
pub mod record {
    /// Trace header.
    pub const HEADER: u8 = 1;
    /// Clock reference.
    pub const CLOCK: u8 = 2;
    /// Callsite definition.
    pub const CALLSITE: u8 = 3;
    /// End-of-trace counters of one buffer (format version 3; the last one per CPU wins).
    pub const TOTALS: u8 = 4;
}

/// Frame kinds (low two bits of a frame's `head`).
pub mod frame {
    /// `klog!` event.
    pub const EVENT: u64 = 0;
    /// `klog_raw!` record.
    pub const RAW: u64 = 1;
}

/// The `N`-byte little-endian integer at `b[i..]` (0 past the end: callers check lengths).
fn le<const N: usize>(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(i..i + N) {
        a[..N].copy_from_slice(s);
    }
    u64::from_le_bytes(a)
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
    /// The trace id of the metadata header (version 3; 0 in a version 1 or 2 header).
    pub trace_id: u64,
}

impl SubbufHeader {
    /// The 40 header bytes of format version 3.
    pub fn to_bytes(&self) -> [u8; SUBBUF_HEADER_LEN] {
        let mut b = [0u8; SUBBUF_HEADER_LEN];
        b[..SUBBUF_HEADER_LEN_V1].copy_from_slice(&self.to_bytes_v1());
        b[0..4].copy_from_slice(&SUBBUF_MAGIC);
        b[32..40].copy_from_slice(&self.trace_id.to_le_bytes());
        b
    }

    /// The 32 header bytes of format versions 1 and 2 (no trace id).
    pub fn to_bytes_v1(&self) -> [u8; SUBBUF_HEADER_LEN_V1] {
        let mut b = [0u8; SUBBUF_HEADER_LEN_V1];
        b[0..4].copy_from_slice(&SUBBUF_MAGIC_V1);
        b[4..6].copy_from_slice(&self.cpu.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.base_ts.to_le_bytes());
        b[24..28].copy_from_slice(&self.prev_padding.to_le_bytes());
        b[28..32].copy_from_slice(&self.lost.to_le_bytes());
        b
    }

    /// The header bytes of format `version` (40 bytes from version 3 on, else 32).
    #[cfg(feature = "std")]
    pub fn to_vec(&self, version: u16) -> Vec<u8> {
        if version >= 3 {
            self.to_bytes().to_vec()
        } else {
            self.to_bytes_v1().to_vec()
        }
    }

    /// Parses a header of either layout ("KLG2", 40 bytes, or "KLG1", 32 bytes: `trace_id` 0);
    /// `None` if `b` is short or the magic is neither.
    pub fn parse(b: &[u8]) -> Option<Self> {
        Self::parse_as(b, SUBBUF_MAGIC).or_else(|| Self::parse_as(b, SUBBUF_MAGIC_V1))
    }

    /// Parses a header with `magic` (its layout: [`SUBBUF_MAGIC`] or [`SUBBUF_MAGIC_V1`]);
    /// `None` if `b` is short or starts with anything else.
    pub fn parse_as(b: &[u8], magic: [u8; 4]) -> Option<Self> {
        let len = if magic == SUBBUF_MAGIC {
            SUBBUF_HEADER_LEN
        } else {
            SUBBUF_HEADER_LEN_V1
        };
        let b = b.get(..len)?;
        if b[0..4] != magic {
            return None;
        }
        let (u16_at, u32_at, u64_at) = (|i| le::<2>(b, i), |i| le::<4>(b, i), |i| le::<8>(b, i));
        Some(SubbufHeader {
            cpu: u16_at(4) as u16,
            flags: u16_at(6) as u16,
            seq: u64_at(8),
            base_ts: u64_at(16),
            prev_padding: u32_at(24) as u32,
            lost: u32_at(28) as u32,
            trace_id: if len == SUBBUF_HEADER_LEN {
                u64_at(32)
            } else {
                0
            },
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
    /// Random, nonzero id of this trace, repeated in every sub-buffer header (version 3).
    pub trace_id: u64,
}

/// End-of-trace counters of one buffer: the body of a [`record::TOTALS`] record
/// (docs/FORMAT.md, "Totals"). Frames are `klog!` events and `klog_raw!` records alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// The buffer (CPU; 0 for a global buffer).
    pub cpu: u16,
    /// `TOTALS_*` bits.
    pub flags: u16,
    /// Frames written into the buffer (published).
    pub written: u64,
    /// Frames the writer dropped (buffer full, no room for a nested context, ...).
    pub lost: u64,
    /// Of `lost`, the frames dropped since the latest sub-buffer header (in no header yet).
    pub lost_pending: u64,
    /// Frames in sub-buffers the writer overwrote before a reader consumed them (overwrite
    /// mode; valid with [`TOTALS_OVERWRITTEN`]).
    pub overwritten: u64,
    /// Sequence number the next sub-buffer header would get (sub-buffers started).
    pub next_seq: u64,
    /// Frames in the current sub-buffer (the one with `seq == next_seq - 1`).
    pub cur_frames: u64,
}

/// [`Totals::flags`]: `overwritten` is counted (else the writer does not know it).
pub const TOTALS_OVERWRITTEN: u16 = 1;

/// Length of a [`Totals`] record body.
pub const TOTALS_LEN: usize = 2 + 2 + 6 * 8;

impl Totals {
    /// Parses a totals record body; `None` if it is too short (longer bodies are accepted:
    /// later versions may append fields).
    pub fn parse(b: &[u8]) -> Option<Totals> {
        let b = b.get(..TOTALS_LEN)?;
        let (u16_at, u64_at) = (|i| le::<2>(b, i), |i| le::<8>(b, i));
        Some(Totals {
            cpu: u16_at(0) as u16,
            flags: u16_at(2) as u16,
            written: u64_at(4),
            lost: u64_at(12),
            lost_pending: u64_at(20),
            overwritten: u64_at(28),
            next_seq: u64_at(36),
            cur_frames: u64_at(44),
        })
    }
}

/// Where metadata records are appended: a `Vec<u8>` in user space, a fixed buffer in the
/// kernel handler. Records are written in two passes (length, then bytes) so no staging
/// buffer is needed.
pub trait Out {
    /// Appends bytes.
    fn put(&mut self, b: &[u8]);
}

#[cfg(feature = "std")]
impl Out for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// Counts bytes (the first pass of [`record`]).
struct Count(usize);

impl Out for Count {
    fn put(&mut self, b: &[u8]) {
        self.0 += b.len();
    }
}

fn varint(out: &mut dyn Out, mut v: u64) {
    let mut buf = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    out.put(&buf[..=n]);
}

fn str_field(out: &mut dyn Out, s: &str) {
    varint(out, s.len() as u64);
    out.put(s.as_bytes());
}

/// Appends one record: `varint len` + `kind` + body.
fn record(out: &mut dyn Out, kind: u8, body: impl Fn(&mut dyn Out)) {
    let mut n = Count(1);
    body(&mut n);
    varint(out, n.0 as u64);
    out.put(&[kind]);
    body(out);
}

/// Length of a record as [`record`] writes it (for callers with a bounded buffer).
pub fn record_len(body_len: usize) -> usize {
    let n = body_len + 1;
    super::arg::varint_len64(n as u64) + n
}

/// Appends the header record.
pub fn meta_header(out: &mut dyn Out, h: &MetaHeader) {
    record(out, record::HEADER, |b| {
        b.put(&META_MAGIC);
        b.put(&VERSION.to_le_bytes());
        b.put(&h.n_cpus.to_le_bytes());
        b.put(&[h.overwrite as u8]);
        b.put(&h.subbuf_size.to_le_bytes());
        b.put(&h.n_subbufs.to_le_bytes());
        b.put(&h.trace_id.to_le_bytes());
    })
}

/// Appends a totals record (one buffer's end-of-trace counters).
pub fn meta_totals(out: &mut dyn Out, t: &Totals) {
    record(out, record::TOTALS, |b| {
        b.put(&t.cpu.to_le_bytes());
        b.put(&t.flags.to_le_bytes());
        for v in [
            t.written,
            t.lost,
            t.lost_pending,
            t.overwritten,
            t.next_seq,
            t.cur_frames,
        ] {
            b.put(&v.to_le_bytes());
        }
    })
}

/// Appends a clock record: `source` 0 = CLOCK_MONOTONIC ns, 1 = TSC ticks.
pub fn meta_clock_raw(out: &mut dyn Out, source: u8, raw: u64, mono_ns: u64, ticks_per_sec: u64) {
    record(out, record::CLOCK, |b| {
        b.put(&[source]);
        b.put(&raw.to_le_bytes());
        b.put(&mono_ns.to_le_bytes());
        b.put(&ticks_per_sec.to_le_bytes());
    })
}

/// Appends a clock record.
#[cfg(feature = "std")]
pub fn meta_clock(out: &mut Vec<u8>, source: u8, r: &crate::clock::ClockRef) {
    meta_clock_raw(out, source, r.raw, r.mono_ns, r.ticks_per_sec)
}

/// Appends a callsite definition.
pub fn meta_callsite(out: &mut dyn Out, id: u32, m: &super::callsite::Meta, types: &[u8]) {
    record(out, record::CALLSITE, |b| {
        varint(b, id as u64);
        b.put(&[m.level as u8, m.kind as u8]);
        str_field(b, m.fmt);
        str_field(b, m.module);
        str_field(b, m.file);
        varint(b, m.line as u64);
        varint(b, types.len() as u64);
        b.put(types);
    })
}
