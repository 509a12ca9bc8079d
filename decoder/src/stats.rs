//! Counters and warnings collected while decoding. Decoding never stops at a problem in the
//! data: it reports it here and goes on.

use std::collections::BTreeMap;
use std::fmt;

/// At most this many warnings are kept with their message (all are counted).
pub const MAX_KEPT_WARNINGS: usize = 256;

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningKind {
    /// The metadata stream ends inside a record (the rest was parsed).
    MetaTruncated,
    /// A metadata record whose body does not parse (skipped).
    MetaMalformed,
    /// A metadata record of an unknown kind (skipped).
    MetaUnknownRecord,
    /// A second header record, or a callsite id defined twice differently (first kept).
    MetaDuplicate,
    /// Missing, unusable or inconsistent clock records.
    Clock,
    /// A `cpuN` file that the header announces is missing or unreadable.
    StreamMissing,
    /// A `cpuN` file beyond the header's `n_cpus` (ignored).
    StreamExtra,
    /// A stream that does not start with a sub-buffer header, or whose headers name another CPU.
    StreamHeader,
    /// A sub-buffer whose length disagrees with the next header's `prev_padding`.
    SubbufSize,
    /// Sub-buffer sequence numbers that skip (sub-buffers missing from a `read()` stream).
    SeqGap,
    /// A frame naming a callsite id the metadata does not define (skipped by length).
    UnknownCallsite,
    /// A frame whose kind disagrees with its callsite's (skipped by length).
    KindMismatch,
    /// A callsite with an unknown argument type tag: its frames are skipped by length.
    BadArgTypes,
    /// A corrupt frame: the decoder resynchronised at the next sub-buffer header.
    CorruptFrame,
    /// The stream ends inside a frame or a header.
    Truncated,
    /// Timestamps going backwards within one CPU (order kept).
    TimeBackwards,
    /// mmap snapshot: the sub-buffer being written (highest `seq`), skipped.
    TornSubbuf,
    /// mmap snapshot: a slot skipped (no header, wrong CPU, `seq` that does not fit).
    SlotSkipped,
    /// A format string that does not parse or names a missing argument.
    BadFormat,
    /// A stream (or a sub-buffer) whose trace id is not the metadata's: refused.
    TraceId,
    /// Bytes of a `read()` stream before its first sub-buffer header (the recording started in
    /// the middle of a sub-buffer): not decoded, counted as unrecorded.
    Unrecorded,
    /// Recorded bytes that fail their checksum in the recorder's index (`cpuN.idx`), or that
    /// the index does not cover: the sub-buffers holding them are not decoded.
    Damaged,
}

impl WarningKind {
    /// Short stable name.
    pub fn as_str(self) -> &'static str {
        use WarningKind::*;
        match self {
            MetaTruncated => "metadata-truncated",
            MetaMalformed => "metadata-malformed",
            MetaUnknownRecord => "metadata-unknown-record",
            MetaDuplicate => "metadata-duplicate",
            Clock => "clock",
            StreamMissing => "stream-missing",
            StreamExtra => "stream-extra",
            StreamHeader => "stream-header",
            SubbufSize => "subbuf-size",
            SeqGap => "seq-gap",
            UnknownCallsite => "unknown-callsite",
            KindMismatch => "kind-mismatch",
            BadArgTypes => "bad-arg-types",
            CorruptFrame => "corrupt-frame",
            Truncated => "truncated",
            TimeBackwards => "time-backwards",
            TornSubbuf => "torn-subbuf",
            SlotSkipped => "slot-skipped",
            BadFormat => "bad-format",
            TraceId => "trace-id",
            Unrecorded => "unrecorded",
            Damaged => "damaged",
        }
    }
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reported problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What kind.
    pub kind: WarningKind,
    /// The CPU stream it is about, if any.
    pub cpu: Option<u16>,
    /// Byte offset in that stream (or in `metadata`), if meaningful.
    pub offset: Option<u64>,
    /// Human-readable description.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        match (self.cpu, self.offset) {
            (Some(c), Some(o)) => write!(f, " (cpu{c} @{o})")?,
            (Some(c), None) => write!(f, " (cpu{c})")?,
            (None, Some(o)) => write!(f, " (metadata @{o})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

/// Counters and warnings of a decode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `klog!` events decoded.
    pub events: u64,
    /// `klog_raw!` records decoded.
    pub raw_records: u64,
    /// Lost-event records produced (headers with a non-zero `lost`).
    pub lost_records: u64,
    /// Events reported lost by those headers, summed.
    pub lost_events: u64,
    /// Sub-buffers walked.
    pub subbufs: u64,
    /// Bytes skipped while resynchronising after corruption.
    pub corrupt_bytes: u64,
    /// Frames of the reserved kinds 2 and 3, skipped by length as the format says.
    pub reserved_frames: u64,
    /// Frames skipped by length (unknown callsite, kind mismatch, bad argument types).
    pub skipped_frames: u64,
    /// Bytes before a stream's first sub-buffer header (a recording that started in the middle
    /// of a sub-buffer), not decoded.
    pub unrecorded_bytes: u64,
    /// Events of a recorded stream's prefix (`cpuN.idx`): read by an earlier reader, decoded
    /// only for the time reference, never printed (part of the accounting's `unrecorded`).
    pub unrecorded_events: u64,
    /// Recorded bytes not decoded as damaged (failed checksum, not indexed, and the rest of
    /// their sub-buffers).
    pub damaged_bytes: u64,
    /// The trace's event accounting (set on a whole trace's statistics, not per stream).
    pub accounting: Option<Accounting>,
    /// Every warning, counted by kind.
    pub warning_counts: BTreeMap<WarningKind, u64>,
    /// The first [`MAX_KEPT_WARNINGS`] warnings with their messages.
    pub warnings: Vec<Warning>,
}

impl Stats {
    /// Records a warning (the message is only formatted if it is kept).
    pub fn warn(
        &mut self,
        kind: WarningKind,
        cpu: Option<u16>,
        offset: Option<u64>,
        message: fmt::Arguments<'_>,
    ) {
        *self.warning_counts.entry(kind).or_insert(0) += 1;
        if self.warnings.len() < MAX_KEPT_WARNINGS {
            self.warnings.push(Warning {
                kind,
                cpu,
                offset,
                message: message.to_string(),
            });
        }
    }

    /// Warnings of one kind.
    pub fn count(&self, kind: WarningKind) -> u64 {
        self.warning_counts.get(&kind).copied().unwrap_or(0)
    }

    /// All warnings.
    pub fn total_warnings(&self) -> u64 {
        self.warning_counts.values().sum()
    }

    /// Adds `other`'s counters and warnings to these.
    pub fn absorb(&mut self, other: &Stats) {
        self.events += other.events;
        self.raw_records += other.raw_records;
        self.lost_records += other.lost_records;
        // Saturating: a damaged totals record's end-of-stream loss may claim anything.
        self.lost_events = self.lost_events.saturating_add(other.lost_events);
        self.subbufs += other.subbufs;
        self.corrupt_bytes += other.corrupt_bytes;
        self.reserved_frames += other.reserved_frames;
        self.skipped_frames += other.skipped_frames;
        self.unrecorded_bytes += other.unrecorded_bytes;
        self.unrecorded_events += other.unrecorded_events;
        self.damaged_bytes += other.damaged_bytes;
        for (k, n) in &other.warning_counts {
            *self.warning_counts.entry(*k).or_insert(0) += n;
        }
        let room = MAX_KEPT_WARNINGS.saturating_sub(self.warnings.len());
        self.warnings
            .extend(other.warnings.iter().take(room).cloned());
    }
}

/// Where every emitted event went (docs/FORMAT.md, "Accounting"):
/// `emitted == decoded + lost + overwritten + unrecorded`, always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Events (`klog!` and `klog_raw!`) the writer was asked to record.
    pub emitted: u64,
    /// Events decoded from this trace.
    pub decoded: u64,
    /// Events the writer dropped (buffer full, nested context without room, ...).
    pub lost: u64,
    /// Events in sub-buffers the flight recorder overwrote before they were read.
    pub overwritten: u64,
    /// Events written but not in this trace for another reason: read by an earlier reader,
    /// still in the buffer when the recording stopped, in a refused or damaged stream.
    pub unrecorded: u64,
    /// Every buffer's totals record was found (the writer finished) and agrees with the
    /// streams: the numbers are exact. Otherwise they are lower bounds.
    pub exact: bool,
}

/// The one-line form `klog-decode --stats` prints.
impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accounting: emitted={} decoded={} lost={} overwritten={} unrecorded={} exact={}",
            self.emitted,
            self.decoded,
            self.lost,
            self.overwritten,
            self.unrecorded,
            if self.exact { "yes" } else { "no" }
        )
    }
}

/// A multi-line summary (for `--stats`).
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "events: {}, raw records: {}, lost: {} events in {} records",
            self.events, self.raw_records, self.lost_events, self.lost_records
        )?;
        writeln!(
            f,
            "sub-buffers: {}, frames skipped: {} (+{} reserved), corrupt bytes skipped: {}, \
             unrecorded bytes: {}",
            self.subbufs,
            self.skipped_frames,
            self.reserved_frames,
            self.corrupt_bytes,
            self.unrecorded_bytes
        )?;
        if self.unrecorded_events + self.damaged_bytes > 0 {
            writeln!(
                f,
                "read by an earlier reader: {} events, damaged bytes not decoded: {}",
                self.unrecorded_events, self.damaged_bytes
            )?;
        }
        if let Some(a) = &self.accounting {
            writeln!(f, "{a}")?;
        }
        write!(f, "warnings: {}", self.total_warnings())?;
        for (k, n) in &self.warning_counts {
            write!(f, "\n  {k}: {n}")?;
        }
        for w in &self.warnings {
            write!(f, "\n  - {w}")?;
        }
        let kept = self.warnings.len() as u64;
        if self.total_warnings() > kept {
            write!(f, "\n  ({} more not shown)", self.total_warnings() - kept)?;
        }
        Ok(())
    }
}
