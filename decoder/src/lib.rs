//! Decoder for klog traces (`docs/FORMAT.md`, versions 1 to 3: a frame's `ts_delta` relative
//! to its sub-buffer's `base_ts`, or to the previous frame of the sub-buffer; version 3 adds
//! the trace id, which ties streams to their metadata, and end-of-trace totals, which make the
//! [`Accounting`] of every emitted event exact).
//!
//! A trace is a directory holding a `metadata` stream (header, clock references, callsite
//! definitions) and one relay stream per CPU (`cpu0..cpuN-1`). The pipeline:
//!
//! * [`metadata::parse_metadata`] → [`Metadata`];
//! * one [`CpuStream`] per CPU: an iterator of [`Record`]s (events, raw records, lost-event
//!   notices) over a `read()` stream or an mmap snapshot, resynchronising after corruption;
//! * [`Merge`] orders the streams' records by timestamp;
//! * [`ClockConv`] turns raw timestamps into nanoseconds, [`Template`] renders format strings
//!   with the decoded [`Value`]s, [`TextFormatter`] prints lines.
//!
//! [`Trace`] ties them together for a directory or bytes in memory; [`decode_dir`] and
//! [`decode_to_text`] are the one-call entry points.
//!
//! The CLI's text and JSON output take a faster path with the same results: [`CpuStream::next_ref`]
//! yields [`RecordRef`]s that borrow their argument bytes from the stream (checked, not decoded
//! into [`Value`]s), [`RefMerge`] orders them with a winner tree over `(ts, cpu, ordinal)` keys,
//! and [`write_lines`] renders each line straight from the payload bytes with per-callsite
//! prefixes and compiled templates ([`Template::render_payload`]) — optionally on worker
//! threads (`--jobs`), the calling thread decoding and merging. Within that path the common
//! shapes have shortcuts that hand everything unusual to the general code, and tests compare
//! the two: frames with a one-byte length and varint arguments are parsed from one 8-byte word
//! (`stream::short_frame`), and text lines whose template is literals and bare `{}` of varint
//! integers are written in one reserved window from a per-callsite plan (`render::PutPlan`). Decoding never panics on bad input: what is
//! wrong is counted in [`Stats`] as warnings; only a trace that cannot be read at all (no
//! metadata, unknown version, ...) is an [`Error`]. Other outputs (JSON, Chrome trace) and
//! follow mode consume [`Trace::records`] / [`CpuStream`] the same way [`TextFormatter`] does.
#![warn(missing_docs)]

mod cursor;
pub mod error;
pub mod lines;
pub mod live;
pub mod merge;
pub mod metadata;
mod num;
pub mod output;
pub mod recorded;
pub mod render;
pub mod snapshot;
pub mod stats;
pub mod stream;
pub mod text;
pub mod timestamps;
pub mod trace;
pub mod value;

pub use error::Error;
pub use lines::{write_lines, LineRenderer};
pub use merge::{merge, Merge, RefMerge};
pub use metadata::{
    parse_metadata, Callsite, CallsiteKind, ClockRecord, ClockSource, Metadata, Mode, TraceHeader,
};
pub use output::{write_records, Filter, Format, Sink};
pub use render::{format_value, render, Template};
pub use stats::{Accounting, Stats, Warning, WarningKind};
pub use stream::{
    decode_snapshot, decode_stream, CpuStream, Event, EventRef, LiveStream, Lost, Payload, Record,
    RecordRef, Step,
};
pub use text::{format_record, TextFormatter};
pub use timestamps::{format_seconds, ClockConv, FastClock};
pub use trace::{
    decode_bytes, decode_dir, decode_to_text, decode_to_text_with, CpuSummary, Options, Records,
    RefRecords, Report, StreamData, Trace,
};
pub use value::{decode_args, decode_value, decode_value_ref, ArgError, Value, ValueRef};
