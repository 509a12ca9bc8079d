//! Output formats and filters: the CLI's decode path.
//!
//! [`write_records`] pulls records from any iterator (the lazy merge of [`crate::Trace::records`]
//! or a live follower), applies a [`Filter`] and writes them in one of the [`Format`]s through a
//! [`Sink`]. Nothing is collected: memory does not grow with the trace. The CLI prints text and
//! JSON through [`crate::write_lines`] instead, which gives the same bytes from borrowed records
//! (and the sinks here are its test oracle); Chrome output and follow mode use the sinks.
//!
//! * `text`: [`crate::TextFormatter`]'s lines.
//! * `json`: one object per line (JSON Lines):
//!   `{"ts_ns":..,"cpu":..,"level":..,"target":..,"file":..,"line":..,"message":..,"args":[..]}`;
//!   `ts_ns` is `CLOCK_MONOTONIC` nanoseconds (always absolute); integers are JSON numbers when
//!   their magnitude is at most 2^53 and decimal strings beyond (JavaScript-safe); non-finite
//!   floats are the strings `"NaN"`, `"inf"`, `"-inf"`; `&[u8]` and opaque user values are
//!   base64 strings; `klog_raw!` records carry `"raw"` (base64) instead of `message`/`args`;
//!   lost events are `{"lost":N,"cpu":c,"ts_ns":..}`.
//! * `chrome`: the Chrome / Perfetto trace-event format, `{"traceEvents":[..]}`, one instant
//!   event (`"ph":"i"`, thread scope) per record with `ts` in microseconds (relative to the first
//!   record unless absolute), `pid` 1, `tid` = CPU, `name` = message (target for raw records),
//!   `cat` = target and the level, location and arguments in `args`; one `thread_name` metadata
//!   event per CPU names the tracks `cpuN`.

use std::collections::BTreeSet;
use std::io::Write;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::error::Error;
use crate::metadata::{Callsite, Metadata};
use crate::stream::{Payload, Record, RecordRef};
use crate::text::format_record;
use crate::value::{Value, ValueRef};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Text lines.
    #[default]
    Text,
    /// JSON Lines.
    Json,
    /// Chrome / Perfetto trace-event JSON.
    Chrome,
}

/// Which records to print. Lost-event records have no level or target: they pass the level and
/// target filters (a reader should know that events are missing) but not the CPU and time ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Most verbose level shown (1 error .. 5 trace): `Some(2)` shows errors and warnings.
    pub max_level: Option<u8>,
    /// CPUs shown (all if `None`).
    pub cpus: Option<BTreeSet<u16>>,
    /// Target (module path) prefixes; a record is shown if its target starts with any of them
    /// (all if empty).
    pub targets: Vec<String>,
    /// First time shown, ns (inclusive): relative to the first record, or `CLOCK_MONOTONIC` if
    /// [`Filter::absolute`].
    pub since_ns: Option<i128>,
    /// Last time shown, ns (inclusive), same reference as `since_ns`.
    pub until_ns: Option<i128>,
    /// `since_ns` / `until_ns` are `CLOCK_MONOTONIC` times.
    pub absolute: bool,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.max_level.is_none()
            && self.cpus.is_none()
            && self.targets.is_empty()
            && self.since_ns.is_none()
            && self.until_ns.is_none()
    }

    /// Whether `rec` (at absolute time `ns`; the trace's first record at `origin`) is shown.
    pub fn accepts(&self, meta: &Metadata, rec: &Record, ns: i128, origin: i128) -> bool {
        if !self.accepts_place(rec.cpu(), ns, origin) {
            return false;
        }
        let Record::Event(e) = rec else {
            return true;
        };
        if self.max_level.is_none() && self.targets.is_empty() {
            return true;
        }
        meta.callsite(e.callsite)
            .is_some_and(|cs| self.accepts_callsite(cs))
    }

    /// [`Filter::accepts`] for a borrowed record (which carries its callsite).
    pub fn accepts_ref(&self, rec: &RecordRef<'_>, ns: i128, origin: i128) -> bool {
        if !self.accepts_place(rec.cpu(), ns, origin) {
            return false;
        }
        match rec {
            RecordRef::Event(e) => self.accepts_callsite(e.callsite),
            RecordRef::Lost(_) => true,
        }
    }

    /// The CPU and time filters.
    fn accepts_place(&self, cpu: u16, ns: i128, origin: i128) -> bool {
        if self.cpus.as_ref().is_some_and(|cpus| !cpus.contains(&cpu)) {
            return false;
        }
        if self.since_ns.is_some() || self.until_ns.is_some() {
            let t = if self.absolute { ns } else { ns - origin };
            if self.since_ns.is_some_and(|s| t < s) || self.until_ns.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }

    /// The level and target filters.
    fn accepts_callsite(&self, cs: &Callsite) -> bool {
        if self.max_level.is_some_and(|m| cs.level_raw > m) {
            return false;
        }
        self.targets.is_empty()
            || self
                .targets
                .iter()
                .any(|t| cs.module.starts_with(t.as_str()))
    }
}

/// Parses a level name (`error`, `warn`, `info`, `debug`, `trace`, case-insensitive) or number
/// (1..5) into its byte.
pub fn parse_level(s: &str) -> Option<u8> {
    let l = s.to_ascii_lowercase();
    Some(match l.as_str() {
        "error" | "1" => 1,
        "warn" | "warning" | "2" => 2,
        "info" | "3" => 3,
        "debug" | "4" => 4,
        "trace" | "5" => 5,
        _ => return None,
    })
}

/// Parses seconds (`12`, `0.5`, `1.000000001`, `-3`) into nanoseconds, exactly.
pub fn parse_seconds(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !ok(int) || !ok(frac) || frac.len() > 9 || int.len() > 20 {
        return None;
    }
    let i: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    let ns = i * 1_000_000_000 + f;
    Some(if neg { -ns } else { ns })
}

/// Receives the records to print.
pub trait Sink {
    /// Before the first record.
    fn begin(&mut self, _out: &mut Vec<u8>) {}
    /// One record at absolute `ns` (`origin`: the trace's first record).
    fn record(&mut self, meta: &Metadata, rec: &Record, ns: i128, origin: i128, out: &mut Vec<u8>);
    /// After the last record.
    fn end(&mut self, _out: &mut Vec<u8>) {}
}

/// Text lines (see [`crate::TextFormatter`]).
#[derive(Debug, Default)]
pub struct TextSink {
    /// Print `CLOCK_MONOTONIC` seconds.
    pub absolute: bool,
    line: String,
}

impl TextSink {
    /// A text sink.
    pub fn new(absolute: bool) -> Self {
        TextSink {
            absolute,
            line: String::with_capacity(256),
        }
    }
}

impl Sink for TextSink {
    fn record(&mut self, meta: &Metadata, rec: &Record, ns: i128, origin: i128, out: &mut Vec<u8>) {
        self.line.clear();
        let shown = if self.absolute { ns } else { ns - origin };
        format_record(meta, rec, shown, &mut self.line);
        self.line.push('\n');
        out.extend_from_slice(self.line.as_bytes());
    }
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(char::from(A[(n >> (18 - 6 * k)) as usize & 63]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Largest integer magnitude printed as a JSON number (JavaScript's safe integers).
pub(crate) const JSON_SAFE: u128 = 1 << 53;

/// A value as JSON.
pub(crate) struct JsonValue<'a>(pub(crate) ValueRef<'a>);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let int = |s: S, v: i128| {
            if v.unsigned_abs() <= JSON_SAFE {
                s.serialize_i64(v as i64)
            } else {
                s.collect_str(&v)
            }
        };
        let float = |s: S, v: f64, text: &dyn std::fmt::Display| {
            if v.is_finite() {
                s.serialize_f64(v)
            } else if v.is_nan() {
                s.serialize_str("NaN")
            } else {
                s.collect_str(text)
            }
        };
        match self.0 {
            ValueRef::U8(v) => s.serialize_u8(v),
            ValueRef::Unsigned(v) if v <= JSON_SAFE => s.serialize_u64(v as u64),
            ValueRef::Unsigned(v) => s.collect_str(&v),
            ValueRef::I8(v) => s.serialize_i8(v),
            ValueRef::I16(v) => s.serialize_i16(v),
            ValueRef::I32(v) => s.serialize_i32(v),
            ValueRef::Signed(v) | ValueRef::I128(v) => int(s, v),
            // f32 → f64 is exact; serde_json prints the shortest f64 that round-trips, which
            // for a widened f32 can be longer than the f32's own shortest form: print the f32's.
            ValueRef::F32(v) if v.is_finite() => {
                let short: f64 = v.to_string().parse().unwrap_or(f64::from(v));
                s.serialize_f64(short)
            }
            ValueRef::F32(v) => float(s, f64::from(v), &v),
            ValueRef::F64(v) => float(s, v, &v),
            ValueRef::Bool(v) => s.serialize_bool(v),
            ValueRef::Char(c) => s.serialize_char(c),
            ValueRef::Str(v) => s.serialize_str(v),
            ValueRef::Bytes(b) | ValueRef::User(b) => s.serialize_str(&base64(b)),
        }
    }
}

struct JsonArgs<'a>(&'a [Value]);

impl Serialize for JsonArgs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            q.serialize_element(&JsonValue(v.as_ref()))?;
        }
        q.end()
    }
}

pub(crate) fn clamp_ns(ns: i128) -> i64 {
    ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// JSON Lines.
#[derive(Debug, Default)]
pub struct JsonSink {
    msg: String,
}

impl JsonSink {
    /// A JSON Lines sink.
    pub fn new() -> Self {
        Self::default()
    }
}

fn json_event<S: SerializeMap>(
    m: &mut S,
    cs: &Callsite,
    payload: &Payload,
    msg: &mut String,
    message_key: &str,
) -> Result<(), S::Error> {
    m.serialize_entry("level", &cs.level_name())?;
    m.serialize_entry("target", &cs.module)?;
    m.serialize_entry("file", &cs.file)?;
    m.serialize_entry("line", &cs.line)?;
    match payload {
        Payload::Values(v) => {
            msg.clear();
            cs.template.render_into(v, msg);
            m.serialize_entry(message_key, msg.as_str())?;
            m.serialize_entry("args", &JsonArgs(v))?;
        }
        Payload::Raw(b) => m.serialize_entry("raw", &base64(b))?,
    }
    Ok(())
}

impl Sink for JsonSink {
    fn record(&mut self, meta: &Metadata, rec: &Record, ns: i128, _: i128, out: &mut Vec<u8>) {
        let mut ser = serde_json::Serializer::new(&mut *out);
        // Writing to a Vec cannot fail, nor can these values.
        let _ = (|| {
            let mut m = ser.serialize_map(None)?;
            match rec {
                Record::Lost(l) => {
                    m.serialize_entry("lost", &l.count)?;
                    m.serialize_entry("cpu", &l.cpu)?;
                    m.serialize_entry("ts_ns", &clamp_ns(ns))?;
                }
                Record::Event(e) => {
                    m.serialize_entry("ts_ns", &clamp_ns(ns))?;
                    m.serialize_entry("cpu", &e.cpu)?;
                    match meta.callsite(e.callsite) {
                        Some(cs) => json_event(&mut m, cs, &e.payload, &mut self.msg, "message")?,
                        None => m.serialize_entry("callsite", &e.callsite)?,
                    }
                }
            }
            SerializeMap::end(m)
        })();
        out.push(b'\n');
    }
}

/// Chrome / Perfetto trace-event JSON.
#[derive(Debug, Default)]
pub struct ChromeSink {
    /// `ts` is `CLOCK_MONOTONIC` microseconds rather than relative to the first record.
    pub absolute: bool,
    first: bool,
    cpus: BTreeSet<u16>,
    msg: String,
}

impl ChromeSink {
    /// A Chrome trace sink; `cpus` get a named track each.
    pub fn new(absolute: bool, cpus: impl IntoIterator<Item = u16>) -> Self {
        ChromeSink {
            absolute,
            first: true,
            cpus: cpus.into_iter().collect(),
            msg: String::new(),
        }
    }

    fn sep(&mut self, out: &mut Vec<u8>) {
        if !self.first {
            out.push(b',');
        }
        self.first = false;
        out.push(b'\n');
    }
}

struct ChromeArgs<'a> {
    cs: &'a Callsite,
    payload: &'a Payload,
}

impl Serialize for ChromeArgs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("level", &self.cs.level_name())?;
        m.serialize_entry("target", &self.cs.module)?;
        m.serialize_entry("file", &self.cs.file)?;
        m.serialize_entry("line", &self.cs.line)?;
        match self.payload {
            Payload::Values(v) => m.serialize_entry("args", &JsonArgs(v))?,
            Payload::Raw(b) => m.serialize_entry("raw", &base64(b))?,
        }
        m.end()
    }
}

impl Sink for ChromeSink {
    fn begin(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");
        let ser_one = |out: &mut Vec<u8>, cpu: u16| {
            let v = serde_json::json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": cpu,
                "args": {"name": format!("cpu{cpu}")}
            });
            let _ = serde_json::to_writer(out, &v);
        };
        let _ = serde_json::to_writer(
            &mut *out,
            &serde_json::json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "klog"}}),
        );
        self.first = false;
        for cpu in self.cpus.clone() {
            self.sep(out);
            ser_one(out, cpu);
        }
    }

    fn record(&mut self, meta: &Metadata, rec: &Record, ns: i128, origin: i128, out: &mut Vec<u8>) {
        self.sep(out);
        let t = if self.absolute { ns } else { ns - origin };
        let us = t as f64 / 1000.0;
        let mut ser = serde_json::Serializer::new(&mut *out);
        let _ = (|| {
            let mut m = ser.serialize_map(None)?;
            match rec {
                Record::Lost(l) => {
                    m.serialize_entry("name", &format!("{} events lost", l.count))?;
                    m.serialize_entry("cat", "klog")?;
                    m.serialize_entry("ph", "i")?;
                    m.serialize_entry("s", "t")?;
                    m.serialize_entry("ts", &us)?;
                    m.serialize_entry("pid", &1)?;
                    m.serialize_entry("tid", &l.cpu)?;
                    m.serialize_entry("args", &serde_json::json!({ "lost": l.count }))?;
                }
                Record::Event(e) => {
                    let cs = meta.callsite(e.callsite);
                    self.msg.clear();
                    match (cs, &e.payload) {
                        (Some(cs), Payload::Values(v)) => {
                            cs.template.render_into(v, &mut self.msg);
                            if self.msg.is_empty() {
                                self.msg.push_str(&cs.module);
                            }
                        }
                        (Some(cs), Payload::Raw(_)) => self.msg.push_str(&cs.module),
                        (None, _) => self.msg.push_str("undefined callsite"),
                    }
                    m.serialize_entry("name", &self.msg)?;
                    m.serialize_entry("cat", cs.map_or("klog", |c| c.module.as_str()))?;
                    m.serialize_entry("ph", "i")?;
                    m.serialize_entry("s", "t")?;
                    m.serialize_entry("ts", &us)?;
                    m.serialize_entry("pid", &1)?;
                    m.serialize_entry("tid", &e.cpu)?;
                    if let Some(cs) = cs {
                        m.serialize_entry(
                            "args",
                            &ChromeArgs {
                                cs,
                                payload: &e.payload,
                            },
                        )?;
                    }
                }
            }
            SerializeMap::end(m)
        })();
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\n]}\n");
    }
}

/// A sink for `format`.
pub fn sink(format: Format, absolute: bool, cpus: impl IntoIterator<Item = u16>) -> Box<dyn Sink> {
    match format {
        Format::Text => Box::new(TextSink::new(absolute)),
        Format::Json => Box::new(JsonSink::new()),
        Format::Chrome => Box::new(ChromeSink::new(absolute, cpus)),
    }
}

/// Counts of a [`write_records`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Records decoded (before filtering).
    pub decoded: u64,
    /// Records written (after filtering).
    pub shown: u64,
}

/// Output is written to `w` in chunks of about this size.
const CHUNK: usize = 1 << 16;

/// Writes `records` (in order; times converted by `to_ns`) through `sink`, keeping those
/// `filter` accepts. `origin` is the absolute time of the trace's first record (`None`: the
/// first record seen). `tick` is called every few thousand records (progress).
pub fn write_records<W: Write>(
    meta: &Metadata,
    records: impl Iterator<Item = Record>,
    to_ns: impl Fn(u64) -> i128,
    filter: &Filter,
    sink: &mut dyn Sink,
    mut w: W,
    mut tick: impl FnMut(u64),
) -> Result<Written, Error> {
    let mut out = Vec::with_capacity(CHUNK + 4096);
    let mut n = Written::default();
    let mut origin = None;
    let all = filter.is_empty();
    sink.begin(&mut out);
    for rec in records {
        let ns = to_ns(rec.ts_raw());
        let origin = *origin.get_or_insert(ns);
        n.decoded += 1;
        if n.decoded % 4096 == 0 {
            tick(n.decoded);
        }
        if !all && !filter.accepts(meta, &rec, ns, origin) {
            continue;
        }
        n.shown += 1;
        sink.record(meta, &rec, ns, origin, &mut out);
        if out.len() >= CHUNK {
            w.write_all(&out).map_err(Error::Output)?;
            out.clear();
        }
    }
    sink.end(&mut out);
    w.write_all(&out).map_err(Error::Output)?;
    w.flush().map_err(Error::Output)?;
    Ok(n)
}
