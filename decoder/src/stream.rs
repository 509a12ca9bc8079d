//! One per-CPU stream: sub-buffers of frames (docs/FORMAT.md, "Per-CPU streams", "Frames").
//!
//! [`CpuStream`] is an iterator of [`Record`]s over the bytes of one stream, in either shape:
//! * a `read()` stream ([`CpuStream::new`]): sub-buffers back to back with their padding
//!   stripped, as relay's `read()` returns them and `relay::user::Recorder` stores them;
//! * an mmap snapshot ([`CpuStream::snapshot`]): the whole buffer, `n_subbufs × subbuf_size`
//!   bytes, of an overwrite-mode channel (see [`crate::snapshot`]).
//!
//! Problems are warnings in [`CpuStream::stats`]; the iterator never panics and allocates only
//! for the values it returns.

use std::collections::VecDeque;

use klog::wire::{self, SubbufHeader};

use crate::cursor::{unzigzag, word_varint, Cursor, ReadError};
use crate::metadata::{Callsite, CallsiteKind, Metadata};
use crate::snapshot::{self, SlotPlan};
use crate::stats::{Stats, WarningKind};
use crate::value::{check_args, decode_value_ref, varint_args, varints_fit, Value};

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// CPU (buffer) it was recorded on.
    pub cpu: u16,
    /// Raw timestamp (clock of the clock records).
    pub ts_raw: u64,
    /// Ordinal of the event among the events of its CPU stream (0, 1, 2, ...).
    pub seq_in_cpu: u64,
    /// Callsite id (look it up in [`Metadata::callsites`]).
    pub callsite: u64,
    /// Arguments or raw bytes.
    pub payload: Payload,
}

/// What an event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A `klog!` event's arguments, in callsite order.
    Values(Vec<Value>),
    /// A `klog_raw!` record's bytes.
    Raw(Vec<u8>),
}

impl Event {
    /// Event or raw record.
    pub fn kind(&self) -> CallsiteKind {
        match self.payload {
            Payload::Values(_) => CallsiteKind::Fmt,
            Payload::Raw(_) => CallsiteKind::Raw,
        }
    }
}

/// Events a sub-buffer header reports lost (its `lost` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// CPU (buffer).
    pub cpu: u16,
    /// Number of frames dropped since the previous header.
    pub count: u64,
    /// Raw timestamp of the header (the loss happened before it).
    pub at_ts: u64,
}

/// One item of a decoded stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An event or raw record.
    Event(Event),
    /// Lost events.
    Lost(Lost),
}

impl Record {
    /// CPU of the record.
    pub fn cpu(&self) -> u16 {
        match self {
            Record::Event(e) => e.cpu,
            Record::Lost(l) => l.cpu,
        }
    }

    /// Raw timestamp of the record.
    pub fn ts_raw(&self) -> u64 {
        match self {
            Record::Event(e) => e.ts_raw,
            Record::Lost(l) => l.at_ts,
        }
    }
}

/// An event whose payload borrows the stream's bytes: what [`CpuStream::next_ref`] returns, so
/// that the fast output path decodes the arguments straight from the frame without allocating.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// CPU (buffer) it was recorded on.
    pub cpu: u16,
    /// Raw timestamp.
    pub ts_raw: u64,
    /// Ordinal of the event among the events of its CPU stream.
    pub seq_in_cpu: u64,
    /// The callsite (defined: frames of unknown callsites are skipped).
    pub callsite: &'a Callsite,
    /// A [`CallsiteKind::Fmt`] event's argument bytes, checked to decode with the callsite's
    /// types with nothing left over; a [`CallsiteKind::Raw`] record's bytes.
    pub payload: &'a [u8],
}

/// One item of a decoded stream, borrowing its bytes (see [`EventRef`]).
#[derive(Debug, Clone, Copy)]
pub enum RecordRef<'a> {
    /// An event or raw record.
    Event(EventRef<'a>),
    /// Lost events.
    Lost(Lost),
}

impl RecordRef<'_> {
    /// CPU of the record.
    #[inline]
    pub fn cpu(&self) -> u16 {
        match self {
            RecordRef::Event(e) => e.cpu,
            RecordRef::Lost(l) => l.cpu,
        }
    }

    /// Raw timestamp of the record.
    #[inline]
    pub fn ts_raw(&self) -> u64 {
        match self {
            RecordRef::Event(e) => e.ts_raw,
            RecordRef::Lost(l) => l.at_ts,
        }
    }

    /// The owned [`Record`] (decodes the arguments into [`Value`]s).
    pub fn to_record(&self) -> Record {
        match self {
            RecordRef::Lost(l) => Record::Lost(*l),
            RecordRef::Event(e) => Record::Event(Event {
                cpu: e.cpu,
                ts_raw: e.ts_raw,
                seq_in_cpu: e.seq_in_cpu,
                callsite: e.callsite.id,
                payload: e.owned_payload(),
            }),
        }
    }
}

impl EventRef<'_> {
    /// The payload as owned values or bytes.
    pub fn owned_payload(&self) -> Payload {
        match (self.callsite.kind, &self.callsite.arg_types) {
            (CallsiteKind::Fmt, Some(types)) => {
                let mut b = self.payload;
                let mut values = Vec::with_capacity(types.len());
                for &ty in types {
                    // The frame was checked with the same decoder: this does not fail.
                    let Ok((v, rest)) = decode_value_ref(ty, b) else {
                        break;
                    };
                    values.push(v.to_value());
                    b = rest;
                }
                Payload::Values(values)
            }
            (CallsiteKind::Fmt, None) => Payload::Values(Vec::new()),
            (CallsiteKind::Raw, _) => Payload::Raw(self.payload.to_vec()),
        }
    }
}

/// A sub-buffer header must follow its predecessor's seq by at most this much to be taken for
/// one (a larger jump is more likely frame bytes that happen to start with the magic).
pub const MAX_SEQ_GAP: u64 = 1 << 32;

/// Why a frame could not be decoded.
pub(crate) enum FrameErr {
    /// The data ends inside the frame.
    Truncated,
    /// The frame is malformed.
    Corrupt(String),
}

/// A frame that decoded: its timestamp, callsite and (checked) payload.
pub(crate) type Frame<'m, 'd> = (u64, &'m Callsite, &'d [u8]);

/// What a frame's `ts_delta` is added to (docs/FORMAT.md, "Frames"): in version 1 the
/// sub-buffer's `base_ts`; in version 2 the time of the previous frame of the sub-buffer
/// (`base_ts` before the first), which every frame whose head and delta are read advances
/// (frames that are then skipped too).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeRef {
    /// The reference: `base_ts`, or (version 2) the time of the last frame read.
    at: u64,
    /// Version 2: each frame's time becomes the next one's reference.
    cumulative: bool,
}

impl TimeRef {
    /// The reference at the start of a sub-buffer whose header says `base_ts`.
    #[inline]
    pub(crate) fn new(meta: &Metadata, base_ts: u64) -> Self {
        TimeRef {
            at: base_ts,
            cumulative: meta.header.cumulative_deltas(),
        }
    }

    /// The time of a frame whose (zigzag) `ts_delta` is `delta`; advances the reference in
    /// version 2. One add and one store (a select) per frame.
    #[inline(always)]
    fn frame_ts(&mut self, delta: u64) -> u64 {
        let ts = self.at.wrapping_add(unzigzag(delta) as u64);
        if self.cumulative {
            self.at = ts;
        }
        ts
    }
}

/// Callsite lookups of the frames of one stream, remembering the last one (consecutive frames
/// often share one).
#[derive(Debug)]
pub(crate) struct Callsites<'m> {
    meta: &'m Metadata,
    /// The last callsite looked up, with its [`varint_args`] if it is an event's.
    last: Option<(u64, &'m Callsite, Option<usize>)>,
}

impl<'m> Callsites<'m> {
    pub(crate) fn new(meta: &'m Metadata) -> Self {
        Callsites { meta, last: None }
    }

    /// The callsite `id` and, if its events' arguments are all varint integers, their number.
    #[inline]
    fn get(&mut self, id: u64) -> Option<(&'m Callsite, Option<usize>)> {
        match self.last {
            Some((i, cs, n)) if i == id => Some((cs, n)),
            _ => {
                let cs = self.meta.callsite(id)?;
                let n = match (cs.kind, &cs.arg_types) {
                    (CallsiteKind::Fmt, Some(types)) => varint_args(types),
                    _ => None,
                };
                self.last = Some((id, cs, n));
                Some((cs, n))
            }
        }
    }
}

/// Decodes the frame at `pos` (which must end by `sub_end`); returns the frame, if it is one to
/// report, and where the next frame starts. The arguments are checked, not copied. Once the
/// frame's head and `ts_delta` are read, its time is taken from `time` (and advances it in
/// version 2), whatever happens to the frame next.
#[inline]
pub(crate) fn decode_frame<'m, 'd>(
    callsites: &mut Callsites<'m>,
    cpu: u16,
    data: &'d [u8],
    pos: usize,
    sub_end: usize,
    time: &mut TimeRef,
    stats: &mut Stats,
) -> Result<(Option<Frame<'m, 'd>>, usize), FrameErr> {
    let corrupt = |m: &str| FrameErr::Corrupt(m.to_owned());
    let mut c = Cursor::at(data, pos);
    let len = match c.varint() {
        Ok(l) => l,
        Err(ReadError::Eof) if data.len() < sub_end => return Err(FrameErr::Truncated),
        Err(_) => return Err(corrupt("frame length varint overflows")),
    };
    if len == 0 {
        return Err(corrupt("zero-length frame"));
    }
    let body_start = c.pos();
    let end = (body_start as u64).saturating_add(len);
    if end > sub_end as u64 {
        return Err(FrameErr::Corrupt(format!(
            "frame of {len} bytes runs past the end of its sub-buffer"
        )));
    }
    if end > data.len() as u64 {
        return Err(FrameErr::Truncated);
    }
    let end = end as usize;
    let mut b = Cursor::new(&data[body_start..end]);
    let head = b
        .varint()
        .map_err(|_| corrupt("frame head does not fit the frame"))?;
    let delta = b
        .varint()
        .map_err(|_| corrupt("frame timestamp does not fit the frame"))?;
    let payload = b.rest();
    let ts_raw = time.frame_ts(delta);
    let id = head >> 2;
    let kind = head & 3;
    if kind != wire::frame::EVENT && kind != wire::frame::RAW {
        stats.reserved_frames += 1;
        return Ok((None, end));
    }
    let off = Some(pos as u64);
    let Some((cs, varints)) = callsites.get(id) else {
        stats.skipped_frames += 1;
        stats.warn(
            WarningKind::UnknownCallsite,
            Some(cpu),
            off,
            format_args!("frame names callsite {id}, which the metadata does not define; skipped"),
        );
        return Ok((None, end));
    };
    let want = if kind == wire::frame::EVENT {
        CallsiteKind::Fmt
    } else {
        CallsiteKind::Raw
    };
    if cs.kind != want {
        stats.skipped_frames += 1;
        stats.warn(
            WarningKind::KindMismatch,
            Some(cpu),
            off,
            format_args!("{want:?} frame for {:?} callsite {id}; skipped", cs.kind),
        );
        return Ok((None, end));
    }
    if want == CallsiteKind::Fmt {
        let Some(types) = &cs.arg_types else {
            // Reported once with the definition.
            stats.skipped_frames += 1;
            return Ok((None, end));
        };
        if varints.is_some_and(|n| args_fit_word(n, data, end - payload.len(), payload.len())) {
            return Ok((Some((ts_raw, cs, payload)), end));
        }
        match check_args(types, payload) {
            Ok(0) => {}
            Ok(left) => {
                return Err(FrameErr::Corrupt(format!(
                    "callsite {id}: {left} bytes after the last argument"
                )))
            }
            Err(e) => return Err(FrameErr::Corrupt(format!("callsite {id}: {e}"))),
        }
    }
    Ok((Some((ts_raw, cs, payload)), end))
}

/// Whether the `len` payload bytes at `data[start..]` are the common case of `n` short varints
/// that [`varints_fit`] accepts, checked in one word (`false`: ask [`check_args`]).
#[inline(always)]
fn args_fit_word(n: usize, data: &[u8], start: usize, len: usize) -> bool {
    data.get(start..start.wrapping_add(8))
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .is_some_and(|w| varints_fit(n, len, u64::from_le_bytes(w)))
}

/// The frame at `pos` if it is the common kind, read from one 8-byte load (and the payload's
/// check from a second): a one-byte length, a head and time delta that end within the first
/// 8 bytes, an event of a defined callsite whose arguments pass [`args_fit_word`]. What it
/// returns is what [`decode_frame`] returns for that frame (which, for these frames, warns
/// and counts nothing), and `time` advances as it would; `None` for any other frame, for
/// `decode_frame` to decode (`time` untouched).
#[inline(always)]
fn short_frame<'m, 'd>(
    callsites: &mut Callsites<'m>,
    data: &'d [u8],
    pos: usize,
    sub_end: usize,
    time: &mut TimeRef,
) -> Option<(Frame<'m, 'd>, usize)> {
    let w = u64::from_le_bytes(data.get(pos..pos.wrapping_add(8))?.try_into().ok()?);
    let len = (w & 0xff) as usize;
    let end = pos + 1 + len;
    if w & 0x80 != 0 || end > sub_end || end > data.len() {
        return None;
    }
    // The bytes above the word read as zeros (varint ends): each varint must end within the
    // bytes that are there, and within the frame (so `len` is not 0).
    let (head, hn) = word_varint(w >> 8)?;
    if hn > 6 {
        return None;
    }
    let (delta, dn) = word_varint(w >> (8 * (1 + hn)))?;
    if 1 + hn + dn > 8 || hn + dn > len {
        return None;
    }
    if head & 3 != wire::frame::EVENT {
        return None;
    }
    let (cs, Some(n)) = callsites.get(head >> 2)? else {
        return None;
    };
    let start = pos + 1 + hn + dn;
    if !args_fit_word(n, data, start, end - start) {
        return None;
    }
    let payload = data.get(start..end)?;
    Some(((time.frame_ts(delta), cs, payload), end))
}

/// The current sub-buffer of a `read()` stream.
#[derive(Debug, Clone, Copy)]
struct Sub {
    seq: u64,
    start: usize,
    /// Entered at a frame boundary of the previous one (not after a resync).
    clean: bool,
}

#[derive(Debug)]
struct ReadState {
    pos: usize,
    sub: Option<Sub>,
    /// The time reference of the next frame of the current sub-buffer.
    time: TimeRef,
    last_seq: Option<u64>,
    /// A resync may accept a header whose seq does not follow (once per stream).
    lenient_left: bool,
}

#[derive(Debug)]
struct SnapState {
    plans: Vec<SlotPlan>,
    next: usize,
    /// Position, end and time reference of the slot being walked.
    cur: Option<(usize, usize, TimeRef)>,
    /// The slot being walked ends at the writer's committed offset ([`SlotPlan::committed`]).
    cur_committed: bool,
    tail: Vec<Lost>,
}

#[derive(Debug)]
enum Walk {
    Read(ReadState),
    Snap(SnapState),
}

/// Iterator over the records of one per-CPU stream.
#[derive(Debug)]
pub struct CpuStream<'a> {
    meta: &'a Metadata,
    data: &'a [u8],
    cpu: u16,
    walk: Walk,
    pending: VecDeque<Lost>,
    stats: Stats,
    ordinal: u64,
    last_ts: Option<u64>,
    done: bool,
    /// The end-of-stream lost count (from the totals record) was considered.
    tail_checked: bool,
    callsites: Callsites<'a>,
    /// Sub-buffer header magic and length of the trace's format version.
    magic: [u8; 4],
    hlen: usize,
    /// Frames before this offset are a recorded stream's prefix (read by an earlier reader):
    /// decoded for the time reference only, counted in `unrecorded_events`, never returned.
    hide_before: usize,
}

impl<'a> CpuStream<'a> {
    /// A `read()` stream of buffer `cpu` (sub-buffers back to back, padding stripped).
    pub fn new(meta: &'a Metadata, cpu: u16, data: &'a [u8]) -> Self {
        Self::with_walk(
            meta,
            cpu,
            data,
            Walk::Read(ReadState {
                pos: 0,
                sub: None,
                time: TimeRef::new(meta, 0),
                last_seq: None,
                lenient_left: true,
            }),
        )
    }

    /// An mmap snapshot of buffer `cpu`: the whole buffer image of an overwrite-mode channel.
    pub fn snapshot(meta: &'a Metadata, cpu: u16, data: &'a [u8]) -> Self {
        Self::snapshot_live(meta, cpu, data, None)
    }

    /// [`CpuStream::snapshot`] of a live buffer whose control block gave the writer's committed
    /// position (`live`): the sub-buffer being written is decoded up to it instead of skipped.
    pub fn snapshot_live(
        meta: &'a Metadata,
        cpu: u16,
        data: &'a [u8],
        live: Option<snapshot::LiveEnd>,
    ) -> Self {
        let mut s = Self::with_walk(
            meta,
            cpu,
            data,
            Walk::Snap(SnapState {
                plans: Vec::new(),
                next: 0,
                cur: None,
                cur_committed: false,
                tail: Vec::new(),
            }),
        );
        let (plans, tail) = snapshot::plan(meta, &mut s.cpu, data, live, &mut s.stats);
        if let Walk::Snap(st) = &mut s.walk {
            st.plans = plans;
            st.tail = tail;
        }
        s
    }

    fn with_walk(meta: &'a Metadata, cpu: u16, data: &'a [u8], walk: Walk) -> Self {
        CpuStream {
            meta,
            data,
            cpu,
            walk,
            pending: VecDeque::new(),
            stats: Stats::default(),
            ordinal: 0,
            last_ts: None,
            done: false,
            tail_checked: false,
            callsites: Callsites::new(meta),
            magic: meta.header.subbuf_magic(),
            hlen: meta.header.subbuf_header_len(),
            hide_before: 0,
        }
    }

    /// Hides the frames (and lost counts) of the first `len` bytes: a recorded stream's prefix.
    pub fn hide_prefix(mut self, len: usize) -> Self {
        self.hide_before = len;
        self
    }

    /// The CPU the stream's records are labelled with (the headers' CPU).
    pub fn cpu(&self) -> u16 {
        self.cpu
    }

    /// Bytes of the stream walked so far (the end once the iterator is done).
    pub fn position(&self) -> usize {
        if self.done {
            return self.data.len();
        }
        match &self.walk {
            Walk::Read(st) => st.pos.min(self.data.len()),
            Walk::Snap(st) => st.cur.map_or(0, |c| c.0).min(self.data.len()),
        }
    }

    /// Counters and warnings so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The final counters (drain the iterator first).
    pub fn into_stats(self) -> Stats {
        self.stats
    }

    fn subbuf_size(&self) -> Option<usize> {
        let s = self.meta.header.subbuf_size as usize;
        (s > self.hlen).then_some(s)
    }

    /// Whether `h` can be this stream's next header. `strict`: its seq must follow the last one.
    fn plausible(&self, h: &SubbufHeader, last_seq: Option<u64>, strict: bool) -> bool {
        if h.cpu != self.cpu || !self.same_trace(h) {
            return false;
        }
        if let Some(ss) = self.subbuf_size() {
            if h.prev_padding as usize > ss - self.hlen {
                return false;
            }
        }
        match last_seq {
            Some(last) if strict => h.seq > last && h.seq - last <= MAX_SEQ_GAP,
            _ => true,
        }
    }

    /// Whether header `h` carries the metadata's trace id (always, before version 3).
    fn same_trace(&self, h: &SubbufHeader) -> bool {
        self.meta.header.trace_id.is_none_or(|id| id == h.trace_id)
    }

    /// The next plausible header at or after `from`.
    fn scan(&mut self, from: usize) -> Option<(usize, SubbufHeader)> {
        let Walk::Read(st) = &self.walk else {
            return None;
        };
        let last_seq = st.last_seq;
        let mut lenient = None;
        let mut i = from;
        while let Some(rel) = self
            .data
            .get(i..)
            .and_then(|d| d.windows(4).position(|w| w == self.magic))
        {
            let at = i + rel;
            if let Some(h) = self.meta.header.parse_subbuf(&self.data[at..]) {
                if self.plausible(&h, last_seq, true) {
                    return Some((at, h));
                }
                if lenient.is_none() && self.plausible(&h, last_seq, false) {
                    lenient = Some((at, h));
                }
            }
            i = at + 1;
        }
        let Walk::Read(st) = &mut self.walk else {
            return None;
        };
        if lenient.is_some() && st.lenient_left {
            st.lenient_left = false;
            return lenient;
        }
        None
    }

    /// Starts the sub-buffer whose header `h` is at `pos`.
    fn enter(&mut self, pos: usize, h: SubbufHeader, clean: bool) {
        let cpu = Some(self.cpu);
        let ss = self.subbuf_size();
        let Walk::Read(st) = &mut self.walk else {
            return;
        };
        if let (Some(prev), true) = (st.sub, clean) {
            if prev.seq.checked_add(1) == Some(h.seq) && prev.clean {
                if let Some(ss) = ss {
                    let got = pos - prev.start;
                    let want = ss.saturating_sub(h.prev_padding as usize);
                    if got != want {
                        self.stats.warn(
                            WarningKind::SubbufSize,
                            cpu,
                            Some(prev.start as u64),
                            format_args!(
                                "sub-buffer seq {} holds {got} bytes, the next header says \
                                 {want} (subbuf_size {ss} - prev_padding {})",
                                prev.seq, h.prev_padding
                            ),
                        );
                    }
                }
            } else if h.seq > prev.seq.saturating_add(1) {
                self.stats.warn(
                    WarningKind::SeqGap,
                    cpu,
                    Some(pos as u64),
                    format_args!(
                        "sub-buffers seq {}..={} missing (overwritten before they were read?)",
                        prev.seq + 1,
                        h.seq - 1
                    ),
                );
            } else {
                self.stats.warn(
                    WarningKind::SeqGap,
                    cpu,
                    Some(pos as u64),
                    format_args!(
                        "sub-buffer seq goes from {} to {} (corrupt header?)",
                        prev.seq, h.seq
                    ),
                );
            }
        }
        self.stats.subbufs += 1;
        if pos >= self.hide_before {
            push_lost(
                &mut self.stats,
                &mut self.pending,
                self.cpu,
                h.lost,
                h.base_ts,
            );
        }
        st.sub = Some(Sub {
            seq: h.seq,
            start: pos,
            clean,
        });
        st.time = TimeRef::new(self.meta, h.base_ts);
        st.last_seq = Some(h.seq);
        st.pos = pos + self.hlen;
    }

    /// The frames dropped after the stream's last header, from the trace's totals record: a
    /// lost-event record at the end of the stream, if the stream reaches the current
    /// sub-buffer (else they are in headers it does not have).
    fn tail_lost(&mut self) -> Option<Lost> {
        let Walk::Read(st) = &self.walk else {
            return None;
        };
        let t = self.meta.totals.get(&self.cpu)?;
        if t.lost_pending == 0 || st.last_seq?.checked_add(1) != Some(t.next_seq) {
            return None;
        }
        self.stats.lost_records += 1;
        // Saturating: a damaged totals record may claim anything.
        self.stats.lost_events = self.stats.lost_events.saturating_add(t.lost_pending);
        Some(Lost {
            cpu: self.cpu,
            count: t.lost_pending,
            at_ts: self.last_ts.unwrap_or(st.time.at),
        })
    }

    /// Skips corrupt bytes from `bad` to the next plausible header (or the end). `truncated`:
    /// the frame at `bad` runs past the end of the data, which is a truncation (not corruption)
    /// if no header follows. Decoding resumes at a header, never inside the damaged sub-buffer,
    /// so no reported time depends on the `ts_delta`s of skipped bytes (version 2).
    fn resync(&mut self, bad: usize, why: &str, truncated: bool) {
        let cpu = Some(self.cpu);
        match self.scan(bad + 1) {
            Some((at, h)) => {
                self.stats.corrupt_bytes += (at - bad) as u64;
                self.stats.warn(
                    WarningKind::CorruptFrame,
                    cpu,
                    Some(bad as u64),
                    format_args!(
                        "{why}; skipped {} bytes to the sub-buffer header of seq {}",
                        at - bad,
                        h.seq
                    ),
                );
                self.enter(at, h, false);
            }
            None if truncated => {
                self.stats.warn(
                    WarningKind::Truncated,
                    cpu,
                    Some(bad as u64),
                    format_args!(
                        "the stream ends inside a frame ({} bytes left)",
                        self.data.len().saturating_sub(bad)
                    ),
                );
                self.done = true;
            }
            None => {
                let n = self.data.len().saturating_sub(bad);
                self.stats.corrupt_bytes += n as u64;
                self.stats.warn(
                    WarningKind::CorruptFrame,
                    cpu,
                    Some(bad as u64),
                    format_args!("{why}; no sub-buffer header follows, skipped the last {n} bytes"),
                );
                self.done = true;
            }
        }
    }

    #[inline]
    fn next_read(&mut self) -> Option<RecordRef<'a>> {
        loop {
            if let Some(l) = self.pending.pop_front() {
                return Some(RecordRef::Lost(l));
            }
            let Walk::Read(st) = &self.walk else {
                return None;
            };
            let (pos, sub) = (st.pos, st.sub);
            if self.done || pos >= self.data.len() {
                if !self.tail_checked {
                    self.tail_checked = true;
                    if let Some(l) = self.tail_lost() {
                        self.pending.push_back(l);
                        continue;
                    }
                }
                self.done = true;
                return None;
            }
            let cpu = Some(self.cpu);
            let Some(sub) = sub else {
                // Start of the stream: it must begin with a header.
                if self.data.len() < self.hlen {
                    self.stats.warn(
                        WarningKind::Truncated,
                        cpu,
                        Some(0),
                        format_args!(
                            "stream of {} bytes, shorter than a sub-buffer header",
                            self.data.len()
                        ),
                    );
                    self.done = true;
                    return None;
                }
                match self.meta.header.parse_subbuf(self.data) {
                    Some(h) if self.same_trace(&h) => {
                        if h.cpu != self.cpu {
                            self.stats.warn(
                                WarningKind::StreamHeader,
                                cpu,
                                Some(0),
                                format_args!(
                                    "the stream of cpu{} holds headers of cpu{}; labelled cpu{}",
                                    self.cpu, h.cpu, h.cpu
                                ),
                            );
                            self.cpu = h.cpu;
                        }
                        self.enter(0, h, true);
                    }
                    h => {
                        let head = &self.data[..4];
                        let found = match h {
                            // Another trace's header: the stream is not this trace's.
                            Some(_) => None,
                            None => self.scan(0),
                        };
                        match found {
                            // A recording that started in the middle of a sub-buffer: the bytes
                            // before the first header were consumed from the buffer but cannot
                            // be cut into frames. Not corruption; counted as unrecorded.
                            Some((at, h)) if !head.starts_with(b"KLG") => {
                                self.stats.unrecorded_bytes += at as u64;
                                self.stats.warn(
                                    WarningKind::Unrecorded,
                                    cpu,
                                    Some(0),
                                    format_args!(
                                        "the stream starts inside a sub-buffer: {at} bytes \
                                         before the first header (seq {}) not decoded, their \
                                         events counted as unrecorded",
                                        h.seq
                                    ),
                                );
                                self.enter(at, h, false);
                            }
                            found => {
                                let why = match h {
                                    Some(h) => format!(
                                        "trace id {:016x} in the first sub-buffer header, not \
                                         the metadata's {:016x}",
                                        h.trace_id,
                                        self.meta.header.trace_id.unwrap_or(0)
                                    ),
                                    None if head.starts_with(b"KLG") => format!(
                                        "sub-buffer magic {:?}: not the header of format \
                                         version {} (unsupported format version)",
                                        String::from_utf8_lossy(head),
                                        self.meta.header.version
                                    ),
                                    None => format!(
                                        "the stream does not start with a sub-buffer header \
                                         ({head:02x?})"
                                    ),
                                };
                                let kind = if h.is_some() {
                                    WarningKind::TraceId
                                } else {
                                    WarningKind::StreamHeader
                                };
                                self.stats.warn(kind, cpu, Some(0), format_args!("{why}"));
                                match found {
                                    Some((at, h)) => {
                                        self.stats.corrupt_bytes += at as u64;
                                        self.enter(at, h, false);
                                    }
                                    None => {
                                        self.stats.corrupt_bytes += self.data.len() as u64;
                                        self.done = true;
                                    }
                                }
                            }
                        }
                    }
                }
                continue;
            };
            // A frame boundary: the next sub-buffer's header, or a frame. No frame starts with
            // the magic (its third byte, 0x47, would be a ts_delta of -36: a frame is never
            // older than its reference, the sub-buffer's header or the previous frame), so the
            // magic here is a header; its seq is checked in `enter`.
            if self.data[pos..].starts_with(&self.magic) {
                match self.meta.header.parse_subbuf(&self.data[pos..]) {
                    Some(h) if self.plausible(&h, None, false) => {
                        self.enter(pos, h, true);
                        continue;
                    }
                    Some(h) => {
                        let why = if self.same_trace(&h) {
                            format!(
                                "sub-buffer header of cpu{} with prev_padding {} in the stream \
                                 of cpu{}",
                                h.cpu, h.prev_padding, self.cpu
                            )
                        } else {
                            format!(
                                "sub-buffer header (seq {}) of another trace, id {:016x}",
                                h.seq, h.trace_id
                            )
                        };
                        self.resync(pos, &why, false);
                        continue;
                    }
                    None => {} // fewer bytes left than a header: a truncated header
                }
            }
            let sub_end = match self.subbuf_size() {
                Some(ss) => sub.start.saturating_add(ss),
                None => usize::MAX,
            };
            let Walk::Read(st) = &mut self.walk else {
                return None;
            };
            match decode_frame(
                &mut self.callsites,
                self.cpu,
                self.data,
                pos,
                sub_end,
                &mut st.time,
                &mut self.stats,
            ) {
                Ok((frame, next)) => {
                    st.pos = next;
                    if pos < self.hide_before {
                        self.stats.unrecorded_events += u64::from(frame.is_some());
                    } else if let Some(f) = frame {
                        return Some(self.event(f));
                    }
                }
                Err(FrameErr::Corrupt(why)) => self.resync(pos, &why, false),
                Err(FrameErr::Truncated) => {
                    self.resync(pos, "frame runs past the end of the data", true)
                }
            }
        }
    }

    fn next_snap(&mut self) -> Option<RecordRef<'a>> {
        loop {
            if let Some(l) = self.pending.pop_front() {
                return Some(RecordRef::Lost(l));
            }
            let Walk::Snap(st) = &mut self.walk else {
                return None;
            };
            if self.done {
                return None;
            }
            let Some((pos, end, mut time)) = st.cur else {
                match st.plans.get(st.next) {
                    Some(p) => {
                        st.next += 1;
                        st.cur_committed = p.committed;
                        st.cur = Some((
                            p.start + self.hlen,
                            p.end,
                            TimeRef::new(self.meta, p.base_ts),
                        ));
                        self.stats.subbufs += 1;
                        push_lost(
                            &mut self.stats,
                            &mut self.pending,
                            self.cpu,
                            p.lost,
                            p.base_ts,
                        );
                    }
                    None => {
                        for l in std::mem::take(&mut st.tail) {
                            self.stats.lost_records += 1;
                            self.stats.lost_events += l.count;
                            self.pending.push_back(l);
                        }
                        self.done = true;
                    }
                }
                continue;
            };
            if pos >= end {
                st.cur = None;
                continue;
            }
            let res = decode_frame(
                &mut self.callsites,
                self.cpu,
                self.data,
                pos,
                end,
                &mut time,
                &mut self.stats,
            );
            let Walk::Snap(st) = &mut self.walk else {
                return None;
            };
            match res {
                Ok((frame, next)) => {
                    st.cur = Some((next, end, time));
                    if let Some(f) = frame {
                        return Some(self.event(f));
                    }
                }
                Err(e) => {
                    st.cur = None;
                    if st.cur_committed && frame_crosses(self.data, pos, end) {
                        // The writer stopped inside this frame's reservation (it died, or is
                        // still writing it): its bytes are not all there.
                        self.stats.warn(
                            WarningKind::TornSubbuf,
                            Some(self.cpu),
                            Some(pos as u64),
                            format_args!(
                                "the last frame of the sub-buffer being written is torn (its \
                                 writer stopped inside it): {} bytes not decoded",
                                end - pos
                            ),
                        );
                        continue;
                    }
                    let why = match e {
                        FrameErr::Corrupt(w) => w,
                        FrameErr::Truncated => "frame runs past the end of the data".into(),
                    };
                    self.stats.corrupt_bytes += (end - pos) as u64;
                    self.stats.warn(
                        WarningKind::CorruptFrame,
                        Some(self.cpu),
                        Some(pos as u64),
                        format_args!("{why}; skipped the rest of the slot ({} bytes)", end - pos),
                    );
                }
            }
        }
    }
}

/// Whether the frame at `pos` runs past `end` (its length prefix says so, or `end` cuts the
/// prefix itself).
fn frame_crosses(data: &[u8], pos: usize, end: usize) -> bool {
    let mut c = Cursor::new(data.get(pos..end).unwrap_or_default());
    match c.varint() {
        Ok(len) => (c.pos() as u64).saturating_add(len) > (end - pos) as u64,
        Err(ReadError::Eof) => true,
        Err(_) => false,
    }
}

impl<'a> CpuStream<'a> {
    #[inline(always)]
    fn event(&self, (ts_raw, callsite, payload): Frame<'a, 'a>) -> RecordRef<'a> {
        RecordRef::Event(EventRef {
            cpu: self.cpu,
            ts_raw,
            seq_in_cpu: 0,
            callsite,
            payload,
        })
    }

    /// The next record, borrowing its payload from the stream's bytes (the same records, counters
    /// and warnings as the [`Iterator`], without decoding the arguments into [`Value`]s).
    #[inline]
    pub fn next_ref(&mut self) -> Option<RecordRef<'a>> {
        let mut rec = match self.walk {
            Walk::Read(_) => self.next_read(),
            Walk::Snap(_) => self.next_snap(),
        }?;
        let ts = rec.ts_raw();
        if let Some(last) = self.last_ts {
            if ts < last {
                self.stats.warn(
                    WarningKind::TimeBackwards,
                    Some(self.cpu),
                    None,
                    format_args!(
                        "timestamp goes back by {} ticks (after event {})",
                        last - ts,
                        self.ordinal
                    ),
                );
            }
        }
        self.last_ts = Some(ts);
        if let RecordRef::Event(e) = &mut rec {
            e.seq_in_cpu = self.ordinal;
            self.ordinal += 1;
            match e.callsite.kind {
                CallsiteKind::Fmt => self.stats.events += 1,
                CallsiteKind::Raw => self.stats.raw_records += 1,
            }
        }
        Some(rec)
    }

    /// Appends records to `buf` until it holds `max` or the stream ends: what as many
    /// [`CpuStream::next_ref`] calls return, with the same counters and warnings. The frames of
    /// the current sub-buffer of a `read()` stream are decoded in a tight loop; anything else (a
    /// header, a corrupt frame, the end, lost-event records, snapshots) takes `next_ref`.
    pub fn fill_ref(&mut self, buf: &mut Vec<RecordRef<'a>>, max: usize) {
        while buf.len() < max {
            self.fill_frames(buf, max);
            if buf.len() >= max {
                break;
            }
            match self.next_ref() {
                Some(r) => buf.push(r),
                None => break,
            }
        }
    }

    /// The plain frames at the current position of a `read()` stream (the common case of
    /// `next_read` and `next_ref`, without their per-record dispatch). Stops before a sub-buffer
    /// header, the end of the data, or a frame that does not decode (an error leaves no trace in
    /// the statistics, so `next_read` decodes it again and handles it).
    #[inline]
    fn fill_frames(&mut self, buf: &mut Vec<RecordRef<'a>>, max: usize) {
        let ss = self.subbuf_size();
        let Walk::Read(st) = &mut self.walk else {
            return;
        };
        if self.done || !self.pending.is_empty() {
            return;
        }
        let Some(sub) = st.sub else {
            return;
        };
        if st.pos < self.hide_before {
            return;
        }
        let sub_end = match ss {
            Some(ss) => sub.start.saturating_add(ss),
            None => usize::MAX,
        };
        let data = self.data;
        let mut pos = st.pos;
        // The per-record state in locals (kept in registers across the pushes), stored back
        // after the loop.
        let (mut ordinal, mut last_ts, mut n) = (self.ordinal, self.last_ts, [0u64; 2]);
        let mut time = st.time;
        let magic = self.magic;
        while buf.len() < max && pos < data.len() && !data[pos..].starts_with(&magic) {
            let (frame, next) =
                match short_frame(&mut self.callsites, data, pos, sub_end, &mut time) {
                    Some((f, next)) => (Some(f), next),
                    None => {
                        let before = time;
                        match decode_frame(
                            &mut self.callsites,
                            self.cpu,
                            data,
                            pos,
                            sub_end,
                            &mut time,
                            &mut self.stats,
                        ) {
                            Ok(r) => r,
                            Err(_) => {
                                // `next_read` decodes the frame again, from the same reference.
                                time = before;
                                break;
                            }
                        }
                    }
                };
            pos = next;
            let Some((ts_raw, callsite, payload)) = frame else {
                continue;
            };
            if let Some(last) = last_ts {
                if ts_raw < last {
                    self.stats.warn(
                        WarningKind::TimeBackwards,
                        Some(self.cpu),
                        None,
                        format_args!(
                            "timestamp goes back by {} ticks (after event {ordinal})",
                            last - ts_raw,
                        ),
                    );
                }
            }
            last_ts = Some(ts_raw);
            n[usize::from(callsite.kind == CallsiteKind::Raw)] += 1;
            buf.push(RecordRef::Event(EventRef {
                cpu: self.cpu,
                ts_raw,
                seq_in_cpu: ordinal,
                callsite,
                payload,
            }));
            ordinal += 1;
        }
        self.ordinal = ordinal;
        self.last_ts = last_ts;
        self.stats.events += n[0];
        self.stats.raw_records += n[1];
        st.pos = pos;
        st.time = time;
    }
}

impl Iterator for CpuStream<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        self.next_ref().map(|r| r.to_record())
    }
}

/// Reports the `lost` count of a sub-buffer header (if any) as a record and in the statistics.
fn push_lost(stats: &mut Stats, pending: &mut VecDeque<Lost>, cpu: u16, lost: u32, at_ts: u64) {
    if lost > 0 {
        stats.lost_records += 1;
        stats.lost_events += u64::from(lost);
        pending.push_back(Lost {
            cpu,
            count: u64::from(lost),
            at_ts,
        });
    }
}

/// Decodes a whole `read()` stream.
pub fn decode_stream(meta: &Metadata, cpu: u16, data: &[u8]) -> (Vec<Record>, Stats) {
    let mut s = CpuStream::new(meta, cpu, data);
    let recs = s.by_ref().collect();
    (recs, s.into_stats())
}

/// Decodes a whole mmap snapshot.
pub fn decode_snapshot(meta: &Metadata, cpu: u16, data: &[u8]) -> (Vec<Record>, Stats) {
    let mut s = CpuStream::snapshot(meta, cpu, data);
    let recs = s.by_ref().collect();
    (recs, s.into_stats())
}

/// What [`LiveStream::next`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A record.
    Record(Record),
    /// The bytes end inside a header or frame (or are used up): push more.
    NeedMore,
    /// A frame names a callsite the metadata does not define (yet): re-read the metadata and
    /// call `next` again (the second time the frame is skipped if the id is still unknown).
    NeedMetadata(u64),
}

/// An incremental `read()`-stream decoder for follow mode: bytes are pushed as they are read
/// from a live relay file (in any chunks), records come out as soon as their frame is complete.
/// Memory: the unconsumed bytes (at most about a sub-buffer).
#[derive(Debug)]
pub struct LiveStream {
    cpu: u16,
    buf: Vec<u8>,
    pos: usize,
    /// (time reference of the next frame, end of the sub-buffer in `buf`, seq) of the current
    /// sub-buffer.
    sub: Option<(TimeRef, usize, u64)>,
    /// The frame position and id already reported by `NeedMetadata`.
    asked: Option<(usize, u64)>,
    stats: Stats,
    ordinal: u64,
    last_ts: Option<u64>,
    /// Latest timestamp seen (records or sub-buffer headers): nothing older will come.
    pub watermark: Option<u64>,
    /// The sub-buffer header magic of the metadata's version (set by `next`).
    magic: [u8; 4],
}

impl LiveStream {
    /// A decoder for the stream of buffer `cpu`.
    pub fn new(cpu: u16) -> Self {
        LiveStream {
            cpu,
            buf: Vec::new(),
            pos: 0,
            sub: None,
            asked: None,
            stats: Stats::default(),
            ordinal: 0,
            last_ts: None,
            watermark: None,
            magic: wire::SUBBUF_MAGIC,
        }
    }

    /// The CPU.
    pub fn cpu(&self) -> u16 {
        self.cpu
    }

    /// Counters and warnings so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Appends bytes read from the relay file.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= 1 << 16) {
            self.buf.drain(..self.pos);
            if let Some(s) = &mut self.sub {
                s.1 = s.1.saturating_sub(self.pos);
            }
            self.asked = self
                .asked
                .and_then(|(p, id)| p.checked_sub(self.pos).map(|p| (p, id)));
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The end of the data: bytes left over are a truncated frame.
    pub fn finish(&mut self) {
        let left = self.buf.len() - self.pos;
        if left > 0 {
            self.stats.warn(
                WarningKind::Truncated,
                Some(self.cpu),
                None,
                format_args!("the stream ends inside a frame or header ({left} bytes left)"),
            );
            self.pos = self.buf.len();
        }
    }

    fn skip_to_magic(&mut self, from: usize, why: &str) {
        let at = self.buf[from.min(self.buf.len())..]
            .windows(4)
            .position(|w| w == self.magic)
            .map(|r| from + r);
        // Keep a possible partial magic at the end.
        let to = at.unwrap_or_else(|| self.buf.len().saturating_sub(3).max(self.pos));
        let skipped = to - self.pos;
        if skipped > 0 || at.is_some() {
            self.stats.corrupt_bytes += skipped as u64;
            self.stats.warn(
                WarningKind::CorruptFrame,
                Some(self.cpu),
                None,
                format_args!("{why}; skipped {skipped} bytes"),
            );
        }
        self.pos = to;
        if at.is_none() {
            self.sub = None;
        }
    }

    /// The next record, if the bytes pushed so far hold one.
    pub fn next(&mut self, meta: &Metadata) -> Step {
        self.magic = meta.header.subbuf_magic();
        let hlen = meta.header.subbuf_header_len();
        loop {
            let rest = &self.buf[self.pos..];
            if rest.is_empty() {
                return Step::NeedMore;
            }
            if rest.len() < 4 && self.magic.starts_with(rest) {
                return Step::NeedMore;
            }
            if rest.starts_with(&self.magic) {
                let Some(h) = meta.header.parse_subbuf(rest) else {
                    return Step::NeedMore; // fewer bytes than a header
                };
                if meta.header.trace_id.is_some_and(|id| id != h.trace_id) {
                    // Not this trace's: none of its frames are decoded.
                    let why = format!(
                        "sub-buffer header (seq {}) of another trace, id {:016x}",
                        h.seq, h.trace_id
                    );
                    self.sub = None;
                    self.skip_to_magic(self.pos + 1, &why);
                    continue;
                }
                if h.cpu != self.cpu && self.sub.is_none() && self.ordinal == 0 {
                    self.cpu = h.cpu;
                }
                if let Some((_, _, last)) = self.sub {
                    if h.seq != last.wrapping_add(1) {
                        self.stats.warn(
                            WarningKind::SeqGap,
                            Some(self.cpu),
                            None,
                            format_args!("sub-buffer seq goes from {last} to {}", h.seq),
                        );
                    }
                }
                let ss = meta.header.subbuf_size as usize;
                let end = if ss > hlen { self.pos + ss } else { usize::MAX };
                self.sub = Some((TimeRef::new(meta, h.base_ts), end, h.seq));
                self.stats.subbufs += 1;
                self.pos += hlen;
                self.watermark = Some(self.watermark.map_or(h.base_ts, |w| w.max(h.base_ts)));
                if h.lost > 0 {
                    self.stats.lost_records += 1;
                    self.stats.lost_events += u64::from(h.lost);
                    return Step::Record(Record::Lost(Lost {
                        cpu: self.cpu,
                        count: u64::from(h.lost),
                        at_ts: h.base_ts,
                    }));
                }
                continue;
            }
            let Some((mut time, sub_end, seq)) = self.sub else {
                self.skip_to_magic(self.pos, "bytes before the first sub-buffer header");
                if self.sub.is_none() && self.pos + 4 > self.buf.len() {
                    return Step::NeedMore;
                }
                continue;
            };
            // Peek at the callsite id: a definition may be newer than our copy of metadata.
            let mut c = Cursor::at(&self.buf, self.pos);
            if let (Ok(_), Ok(head)) = (c.varint(), c.varint()) {
                let id = head >> 2;
                let k = head & 3;
                if (k == wire::frame::EVENT || k == wire::frame::RAW)
                    && meta.callsite(id).is_none()
                    && self.asked != Some((self.pos, id))
                {
                    self.asked = Some((self.pos, id));
                    return Step::NeedMetadata(id);
                }
            }
            let pos = self.pos;
            match decode_frame(
                &mut Callsites::new(meta),
                self.cpu,
                &self.buf,
                pos,
                sub_end,
                &mut time,
                &mut self.stats,
            ) {
                Ok((frame, next)) => {
                    self.pos = next;
                    self.sub = Some((time, sub_end, seq));
                    let Some((ts, callsite, payload)) = frame else {
                        continue;
                    };
                    let mut rec = RecordRef::Event(EventRef {
                        cpu: self.cpu,
                        ts_raw: ts,
                        seq_in_cpu: 0,
                        callsite,
                        payload,
                    })
                    .to_record();
                    if self.last_ts.is_some_and(|l| ts < l) {
                        self.stats.warn(
                            WarningKind::TimeBackwards,
                            Some(self.cpu),
                            None,
                            format_args!("timestamp goes back (after event {})", self.ordinal),
                        );
                    }
                    self.last_ts = Some(ts);
                    self.watermark = Some(self.watermark.map_or(ts, |w| w.max(ts)));
                    if let Record::Event(e) = &mut rec {
                        e.seq_in_cpu = self.ordinal;
                        self.ordinal += 1;
                        match e.payload {
                            Payload::Values(_) => self.stats.events += 1,
                            Payload::Raw(_) => self.stats.raw_records += 1,
                        }
                    }
                    return Step::Record(rec);
                }
                Err(FrameErr::Truncated) => return Step::NeedMore,
                Err(FrameErr::Corrupt(why)) => self.skip_to_magic(pos + 1, &why),
            }
        }
    }
}
