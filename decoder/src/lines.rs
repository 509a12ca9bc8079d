//! The fast text and JSON Lines output of the CLI: records that borrow their bytes from the
//! streams ([`RecordRef`], [`Trace::records_ref`](crate::Trace::records_ref)) are rendered
//! straight from their payload bytes into the output buffer, byte for byte what
//! [`TextSink`](crate::output::TextSink) and [`JsonSink`](crate::output::JsonSink) print for the
//! owned records. Per callsite, the constant part of a line (level, target, file, line, escaped
//! for JSON) is built once; timestamps go through [`FastClock`], digits through a table.
//!
//! [`write_lines`] runs it on the calling thread, or with `jobs > 1` renders batches of records
//! on worker threads while the calling thread decodes and merges: the order of the lines is the
//! merge's, so the output is the same.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{mpsc, Mutex};

use klog::ArgType;

use crate::error::Error;
use crate::metadata::{Callsite, CallsiteKind, Metadata};
use crate::num::{
    put_fraction, seconds_head, split_seconds, write_i64, write_seconds, write_u128, write_u64,
    Padded,
};
use crate::output::{base64, clamp_ns, Filter, Format, JsonValue, Written, JSON_SAFE};
use crate::render::PutPlan;
use crate::stream::{EventRef, RecordRef};
use crate::timestamps::{ClockConv, FastClock};
use crate::trace::RefRecords;
use crate::value::{decode_value_ref, ValueRef};

/// What a [`LineRenderer`] builds once per callsite.
#[derive(Debug, Clone)]
struct Entry {
    /// The callsite's address (entries are looked up by id, then checked to be for the same
    /// definition).
    addr: usize,
    /// The constant part of its lines.
    prefix: Padded,
    /// Text: the callsite's template compiled for [`LineRenderer::text_put`], if it can be.
    plan: Option<PutPlan>,
    /// Text with a `plan`: per CPU, what follows the time up to the first argument
    /// (`] cpuN LEVEL target: ` and the template's lead), built when first needed.
    heads: Vec<Option<Padded>>,
}

/// Renders [`RecordRef`]s as text or JSON lines.
#[derive(Debug, Clone)]
pub struct LineRenderer {
    json: bool,
    absolute: bool,
    clock: FastClock,
    /// Callsite ids, sorted, and what is precomputed for each.
    ids: Vec<u64>,
    entries: Vec<Entry>,
    /// Index of the last callsite looked up (consecutive events often share one).
    last: usize,
    /// The whole seconds of the last text time and their columns ([`seconds_head`]): they
    /// change once a second.
    secs: (u64, u64),
    scratch: String,
    msg: Vec<u8>,
}

impl LineRenderer {
    /// A renderer of `format` ([`Format::Text`] or [`Format::Json`]; anything else is text).
    /// `absolute`: text shows `CLOCK_MONOTONIC` seconds rather than seconds since `origin`.
    pub fn new(meta: &Metadata, clock: ClockConv, format: Format, absolute: bool) -> Self {
        let json = format == Format::Json;
        let mut ids = Vec::new();
        let mut entries = Vec::new();
        for cs in meta.callsites.values() {
            let p = if json {
                json_prefix(cs)
            } else {
                text_prefix(cs)
            };
            let plan = match (json, cs.kind, &cs.arg_types) {
                (false, CallsiteKind::Fmt, Some(types)) => cs.template.put_plan(types),
                _ => None,
            };
            ids.push(cs.id);
            entries.push(Entry {
                addr: cs as *const Callsite as usize,
                prefix: Padded::new(&p),
                plan,
                heads: Vec::new(),
            });
        }
        LineRenderer {
            json,
            absolute,
            clock: FastClock::new(clock),
            ids,
            entries,
            last: 0,
            secs: (u64::MAX, 0),
            scratch: String::new(),
            msg: Vec::new(),
        }
    }

    /// Nanoseconds of `CLOCK_MONOTONIC` for a raw timestamp.
    #[inline]
    pub fn to_ns(&mut self, raw: u64) -> i128 {
        self.clock.to_ns(raw)
    }

    /// The index of `cs`'s entry (`None` for a callsite of other metadata).
    #[inline]
    fn find(&mut self, cs: &Callsite) -> Option<usize> {
        if self.ids.get(self.last) != Some(&cs.id) {
            self.last = self.ids.binary_search(&cs.id).ok()?;
        }
        let e = self.entries.get(self.last)?;
        // The same callsite, not another metadata's definition with the same id.
        (e.addr == cs as *const Callsite as usize).then_some(self.last)
    }

    /// Appends the constant part of `cs`'s lines.
    #[inline]
    fn prefix(&self, idx: Option<usize>, cs: &Callsite, out: &mut Vec<u8>) {
        match idx.and_then(|i| self.entries.get(i)) {
            Some(e) => e.prefix.append(out),
            None if self.json => out.extend_from_slice(&json_prefix(cs)),
            None => out.extend_from_slice(&text_prefix(cs)),
        }
    }

    /// Appends the message of an event of `cs` with arguments `payload`.
    #[inline]
    fn message(&mut self, cs: &Callsite, payload: &[u8], out: &mut Vec<u8>) {
        let types: &[ArgType] = cs.arg_types.as_deref().unwrap_or(&[]);
        cs.template
            .render_payload(types, payload, out, &mut self.scratch);
    }

    /// Appends the line (with its newline) for `rec` at absolute time `ns`; `origin` is the
    /// trace's first record's.
    #[inline]
    pub fn render(&mut self, rec: &RecordRef<'_>, ns: i128, origin: i128, out: &mut Vec<u8>) {
        let mut b = LineBuf::from(std::mem::take(out));
        self.render_buf(rec, ns, origin, &mut b);
        *out = b.into_vec();
    }

    /// [`LineRenderer::render`] into a [`LineBuf`].
    #[inline]
    fn render_buf(&mut self, rec: &RecordRef<'_>, ns: i128, origin: i128, out: &mut LineBuf) {
        if self.json {
            out.append(|v| self.json_line(rec, ns, v))
        } else {
            let shown = if self.absolute { ns } else { ns - origin };
            if let RecordRef::Event(e) = rec {
                if let Some(i) = self.find(e.callsite) {
                    if self.text_put(i, e, shown, out) {
                        return;
                    }
                }
            }
            out.append(|v| self.text_line(rec, shown, v))
        }
    }

    fn text_line(&mut self, rec: &RecordRef<'_>, shown: i128, out: &mut Vec<u8>) {
        out.push(b'[');
        write_seconds(out, shown);
        out.extend_from_slice(b"] ");
        let e = match rec {
            RecordRef::Lost(l) => {
                out.extend_from_slice(b"[cpu");
                write_u64(out, u64::from(l.cpu));
                out.extend_from_slice(b": ");
                write_u64(out, l.count);
                out.extend_from_slice(b" events lost]\n");
                return;
            }
            RecordRef::Event(e) => e,
        };
        out.extend_from_slice(b"cpu");
        write_u64(out, u64::from(e.cpu));
        out.push(b' ');
        let cs = e.callsite;
        let idx = self.find(cs);
        self.prefix(idx, cs, out);
        match cs.kind {
            CallsiteKind::Fmt => self.message(cs, e.payload, out),
            CallsiteKind::Raw => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"raw ");
                write_u64(out, e.payload.len() as u64);
                out.extend_from_slice(b" bytes:");
                for &x in e.payload {
                    out.extend_from_slice(&[
                        b' ',
                        HEX[usize::from(x >> 4)],
                        HEX[usize::from(x & 15)],
                    ]);
                }
            }
        }
        out.push(b'\n');
    }

    /// Appends the text line of an event of callsite entry `i` if it has a plan, the time fits
    /// the column and the arguments decode as the plan expects; `false` (and nothing
    /// appended) otherwise, for the general path.
    #[inline]
    fn text_put(&mut self, i: usize, e: &EventRef<'_>, shown: i128, out: &mut LineBuf) -> bool {
        let Some((whole, frac)) = split_seconds(shown) else {
            return false;
        };
        let Some(entry) = self.entries.get_mut(i) else {
            return false;
        };
        let Some(plan) = &entry.plan else {
            return false;
        };
        let cpu = usize::from(e.cpu);
        if entry.heads.get(cpu).is_none_or(|h| h.is_none()) {
            if cpu >= MAX_HEADS {
                return false;
            }
            let mut h = b"] cpu".to_vec();
            write_u64(&mut h, cpu as u64);
            h.push(b' ');
            h.extend_from_slice(&text_prefix(e.callsite));
            h.extend_from_slice(&plan.lead);
            if entry.heads.len() <= cpu {
                entry.heads.resize(cpu + 1, None);
            }
            entry.heads[cpu] = Some(Padded::new(&h));
        }
        let Some(Some(head)) = entry.heads.get(cpu) else {
            return false;
        };
        if self.secs.0 != whole {
            self.secs = (whole, seconds_head(whole));
        }
        // The whole line into a window of its largest size, then kept to its length.
        let d = out.room(17 + head.room() + plan.room + 1);
        d[0] = b'[';
        if let Ok(t) = <&mut [u8; 16]>::try_from(&mut d[1..17]) {
            put_fraction(t, self.secs.1, frac);
        }
        let at = head.put(d, 17);
        let Some(at) = plan.put(e.payload, d, at) else {
            return false;
        };
        d[at] = b'\n';
        out.commit(at + 1);
        true
    }

    fn json_line(&mut self, rec: &RecordRef<'_>, ns: i128, out: &mut Vec<u8>) {
        let e = match rec {
            RecordRef::Lost(l) => {
                out.extend_from_slice(b"{\"lost\":");
                write_u64(out, l.count);
                out.extend_from_slice(b",\"cpu\":");
                write_u64(out, u64::from(l.cpu));
                out.extend_from_slice(b",\"ts_ns\":");
                write_i64(out, clamp_ns(ns));
                out.extend_from_slice(b"}\n");
                return;
            }
            RecordRef::Event(e) => e,
        };
        out.extend_from_slice(b"{\"ts_ns\":");
        write_i64(out, clamp_ns(ns));
        out.extend_from_slice(b",\"cpu\":");
        write_u64(out, u64::from(e.cpu));
        let cs = e.callsite;
        let idx = self.find(cs);
        self.prefix(idx, cs, out);
        match cs.kind {
            CallsiteKind::Fmt => self.json_event(e, out),
            CallsiteKind::Raw => {
                out.extend_from_slice(b",\"raw\":\"");
                out.extend_from_slice(base64(e.payload).as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b"}\n");
    }

    fn json_event(&mut self, e: &EventRef<'_>, out: &mut Vec<u8>) {
        let cs = e.callsite;
        let types: &[ArgType] = cs.arg_types.as_deref().unwrap_or(&[]);
        // The message is rendered in place between its quotes; in the rare case that it needs
        // escaping, it is moved out and written again by serde_json.
        out.extend_from_slice(b",\"message\":\"");
        let start = out.len();
        self.message(cs, e.payload, out);
        if needs_escape(&out[start..]) {
            self.msg.clear();
            self.msg.extend_from_slice(&out[start..]);
            out.truncate(start - 1);
            json_str(out, &self.msg);
        } else {
            out.push(b'"');
        }
        out.extend_from_slice(b",\"args\":[");
        let mut b = e.payload;
        for (i, &ty) in types.iter().enumerate() {
            let Ok((v, rest)) = decode_value_ref(ty, b) else {
                break;
            };
            b = rest;
            if i > 0 {
                out.push(b',');
            }
            json_value(out, v);
        }
        out.push(b']');
    }
}

/// CPUs below this have their line heads cached (per callsite); others take the general path.
const MAX_HEADS: usize = 1024;

/// Output bytes followed by initialized room: the fast text path writes a line into the room
/// in place and keeps what it wrote, so that filling the room with zeros is paid once per
/// chunk, not once per line. The general path appends to the `Vec` ([`LineBuf::append`]).
#[derive(Debug, Default)]
struct LineBuf {
    /// The output is `buf[..len]`; the rest is room.
    buf: Vec<u8>,
    len: usize,
}

impl LineBuf {
    fn from(buf: Vec<u8>) -> LineBuf {
        LineBuf {
            len: buf.len(),
            buf,
        }
    }

    fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.len);
        self.buf
    }

    /// `n` bytes of room after the output (their contents unspecified).
    #[inline]
    fn room(&mut self, n: usize) -> &mut [u8] {
        let end = self.len + n;
        if self.buf.len() < end {
            // Room for the next few lines too (the general path drops the room).
            self.buf.resize(end + 512, 0);
        }
        &mut self.buf[self.len..end]
    }

    /// Keeps the first `n` bytes of the room as output.
    #[inline]
    fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Appends with `f` to the output as a `Vec` (the room is dropped).
    #[inline]
    fn append(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        self.buf.truncate(self.len);
        f(&mut self.buf);
        self.len = self.buf.len();
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// `LEVEL ` padded to 6 columns, the target and `": "` (see [`crate::text::format_record`]).
fn text_prefix(cs: &Callsite) -> Vec<u8> {
    let level = cs.level_name();
    let mut p = Vec::with_capacity(8 + cs.module.len());
    p.extend_from_slice(level.as_bytes());
    p.extend(std::iter::repeat_n(
        b' ',
        6usize.saturating_sub(level.len()).max(1),
    ));
    p.extend_from_slice(cs.module.as_bytes());
    p.extend_from_slice(b": ");
    p
}

/// `,"level":..,"target":..,"file":..,"line":..` (see [`crate::output::JsonSink`]).
fn json_prefix(cs: &Callsite) -> Vec<u8> {
    let mut p = Vec::new();
    let mut entry = |key: &str, v: &dyn erased::Ser| {
        p.extend_from_slice(b",\"");
        p.extend_from_slice(key.as_bytes());
        p.extend_from_slice(b"\":");
        v.write(&mut p);
    };
    entry("level", &cs.level_name().as_ref());
    entry("target", &cs.module.as_str());
    entry("file", &cs.file.as_str());
    entry("line", &cs.line);
    p
}

/// A string or number written by serde_json (for the per-callsite prefixes).
mod erased {
    pub(super) trait Ser {
        fn write(&self, out: &mut Vec<u8>);
    }

    impl<T: serde::Serialize> Ser for T {
        fn write(&self, out: &mut Vec<u8>) {
            // Writing to a Vec cannot fail, nor can strings and integers.
            let _ = serde_json::to_writer(out, self);
        }
    }
}

/// `s` (UTF-8: rendered from a template and decoded strings) as a JSON string, escaped as
/// serde_json does.
#[inline]
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    if !needs_escape(s) {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(out, &String::from_utf8_lossy(s));
    }
}

/// Whether `s` holds a byte serde_json escapes (a control character, `"` or `\\`); eight
/// bytes at a time.
#[inline]
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Nonzero iff some byte of x is below n (n <= 128): the classic "hasless" bit trick.
    let less = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let Ok(a) = <[u8; 8]>::try_from(c) else {
            return true;
        };
        let x = u64::from_le_bytes(a);
        if less(x, 0x20) | zero(x ^ (ONES * 0x22)) | zero(x ^ (ONES * 0x5c)) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// One argument in the `args` array (see [`JsonValue`]).
#[inline]
fn json_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    let quoted = |out: &mut Vec<u8>, v: i128| {
        out.push(b'"');
        if v < 0 {
            out.push(b'-');
        }
        write_u128(out, v.unsigned_abs());
        out.push(b'"');
    };
    match v {
        ValueRef::U8(x) => write_u64(out, u64::from(x)),
        ValueRef::Unsigned(x) if x <= JSON_SAFE => write_u64(out, x as u64),
        ValueRef::Unsigned(x) => {
            out.push(b'"');
            write_u128(out, x);
            out.push(b'"');
        }
        ValueRef::I8(x) => write_i64(out, i64::from(x)),
        ValueRef::I16(x) => write_i64(out, i64::from(x)),
        ValueRef::I32(x) => write_i64(out, i64::from(x)),
        ValueRef::Signed(x) | ValueRef::I128(x) if x.unsigned_abs() <= JSON_SAFE => {
            write_i64(out, x as i64)
        }
        ValueRef::Signed(x) | ValueRef::I128(x) => quoted(out, x),
        ValueRef::Bool(x) => out.extend_from_slice(if x { b"true" } else { b"false" }),
        _ => {
            let _ = serde_json::to_writer(out, &JsonValue(v));
        }
    }
}

/// Output is written to `w` in chunks of about this size (serial mode).
const CHUNK: usize = 1 << 16;

/// Most threads [`write_lines`] uses (more are not useful: the calling thread's decoding and
/// merging is the bound).
pub const MAX_JOBS: usize = 64;

/// Records per batch handed to a worker (parallel mode).
pub const BATCH: usize = 2048;

/// Writes the merged `records` as text or JSON lines (`format`; times converted with `clock`),
/// keeping those `filter` accepts; the same bytes as [`crate::write_records`] with the
/// matching sink. `jobs > 1` renders on `jobs - 1` worker threads besides the calling one, which
/// decodes, merges, filters and writes (and renders too when the workers are behind); memory
/// stays bounded by a few batches of [`BATCH`] records per thread (`jobs` is capped at
/// [`MAX_JOBS`]). `tick` is called every few thousand records.
#[allow(clippy::too_many_arguments)]
pub fn write_lines<'a, W: Write>(
    meta: &'a Metadata,
    clock: ClockConv,
    records: &mut RefRecords<'a>,
    format: Format,
    absolute: bool,
    filter: &Filter,
    jobs: usize,
    mut w: W,
    tick: impl FnMut(u64),
) -> Result<Written, Error> {
    // Each thread may hold a few batches: a bound on the threads is a bound on the memory.
    let jobs = jobs.min(MAX_JOBS);
    let mut r = LineRenderer::new(meta, clock, format, absolute);
    let n = if jobs > 1 {
        parallel(&mut r, records, filter, jobs, &mut w, tick)?
    } else {
        serial(&mut r, records, filter, &mut w, tick)?
    };
    w.flush().map_err(Error::Output)?;
    Ok(n)
}

fn serial<'a, W: Write>(
    r: &mut LineRenderer,
    records: &mut RefRecords<'a>,
    filter: &Filter,
    w: &mut W,
    mut tick: impl FnMut(u64),
) -> Result<Written, Error> {
    let mut out = LineBuf::from(Vec::with_capacity(CHUNK + 4096));
    let mut n = Written::default();
    let mut origin = None;
    let all = filter.is_empty();
    while let Some(rec) = records.next_in_place() {
        let ns = r.to_ns(rec.ts_raw());
        let origin = *origin.get_or_insert(ns);
        n.decoded += 1;
        if n.decoded % 4096 == 0 {
            tick(n.decoded);
        }
        if !all && !filter.accepts_ref(rec, ns, origin) {
            continue;
        }
        n.shown += 1;
        r.render_buf(rec, ns, origin, &mut out);
        if out.len >= CHUNK {
            w.write_all(out.bytes()).map_err(Error::Output)?;
            out.clear();
        }
    }
    w.write_all(out.bytes()).map_err(Error::Output)?;
    Ok(n)
}

/// A batch of records to render, and the rendered bytes.
struct Job<'a> {
    seq: u64,
    origin: i128,
    recs: Vec<RecordRef<'a>>,
    out: LineBuf,
}

fn render_job(r: &mut LineRenderer, job: &mut Job<'_>) {
    job.out.clear();
    for rec in &job.recs {
        let ns = r.to_ns(rec.ts_raw());
        r.render_buf(rec, ns, job.origin, &mut job.out);
    }
}

/// The batches rendered and not yet written, written in order.
struct Reorder<'a> {
    next: u64,
    ready: BTreeMap<u64, Job<'a>>,
    free: Vec<Job<'a>>,
}

impl<'a> Reorder<'a> {
    fn put<W: Write>(&mut self, job: Job<'a>, w: &mut W) -> Result<(), Error> {
        self.ready.insert(job.seq, job);
        while let Some(mut j) = self.ready.remove(&self.next) {
            w.write_all(j.out.bytes()).map_err(Error::Output)?;
            self.next += 1;
            j.recs.clear();
            self.free.push(j);
        }
        Ok(())
    }
}

/// [`write_lines`] with workers, each rendering with a copy of `r`.
fn parallel<'a, W: Write>(
    r: &mut LineRenderer,
    records: &mut RefRecords<'a>,
    filter: &Filter,
    jobs: usize,
    w: &mut W,
    mut tick: impl FnMut(u64),
) -> Result<Written, Error> {
    // Batches sent and not yet written, at most: bounds the memory (a batch holds BATCH
    // records and their lines).
    let limit = 2 * jobs as u64 + 2;
    let (job_tx, job_rx) = mpsc::sync_channel::<Job<'a>>(jobs);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<Job<'a>>();
    std::thread::scope(|sc| {
        for _ in 1..jobs {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            let mut r = r.clone();
            sc.spawn(move || {
                loop {
                    // A worker that panicked cannot leave the receiver inconsistent: go on.
                    let next = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(p) => p.into_inner().recv(),
                    };
                    let Ok(mut job) = next else { break };
                    render_job(&mut r, &mut job);
                    if done_tx.send(job).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        // Owned by this closure: dropped on return (also on an error), which ends the workers.
        let job_tx = job_tx;
        let done_rx = done_rx;
        let mut ro = Reorder {
            next: 0,
            ready: BTreeMap::new(),
            free: Vec::new(),
        };
        let mut seq = 0u64;
        let mut n = Written::default();
        let mut origin = None;
        let all = filter.is_empty();
        let new_job = |free: &mut Vec<Job<'a>>, seq: u64, origin: i128| match free.pop() {
            Some(mut j) => {
                j.seq = seq;
                j.origin = origin;
                j
            }
            None => Job {
                seq,
                origin,
                recs: Vec::with_capacity(BATCH),
                out: LineBuf::from(Vec::with_capacity(BATCH * 128)),
            },
        };
        let mut cur: Option<Job<'a>> = None;
        let mut finished = false;
        while !finished {
            let rec = records.next_ref();
            if let Some(rec) = rec {
                n.decoded += 1;
                if n.decoded % 4096 == 0 {
                    tick(n.decoded);
                }
                let o = match origin {
                    Some(o) => o,
                    None => *origin.insert(r.to_ns(rec.ts_raw())),
                };
                if !all && !filter.accepts_ref(&rec, r.to_ns(rec.ts_raw()), o) {
                    continue;
                }
                n.shown += 1;
                let job = cur.get_or_insert_with(|| new_job(&mut ro.free, seq, o));
                job.recs.push(rec);
                if job.recs.len() < BATCH {
                    continue;
                }
            } else {
                finished = true;
            }
            let Some(job) = cur.take() else { continue };
            seq += 1;
            match job_tx.try_send(job) {
                Ok(()) => {}
                // The workers are behind (or gone): render this batch here.
                Err(mpsc::TrySendError::Full(mut job))
                | Err(mpsc::TrySendError::Disconnected(mut job)) => {
                    render_job(r, &mut job);
                    ro.put(job, w)?;
                }
            }
            while let Ok(j) = done_rx.try_recv() {
                ro.put(j, w)?;
            }
            while seq - ro.next > limit {
                match done_rx.recv() {
                    Ok(j) => ro.put(j, w)?,
                    Err(_) => break,
                }
            }
        }
        drop(job_tx);
        while ro.next < seq {
            match done_rx.recv() {
                Ok(j) => ro.put(j, w)?,
                Err(_) => break,
            }
        }
        Ok(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_check_matches_the_byte_test() {
        let slow = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40 {
            for _ in 0..500 {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly printable, sometimes one of the escaped or boundary bytes.
                        match x % 16 {
                            0 => [0u8, 0x1f, 0x20, b'"', b'\\', 0x21, 0x5b, 0x5d, 0x7f, 0xff]
                                [(x >> 8) as usize % 10],
                            _ => 0x20 + (x >> 8) as u8 % 0x5f,
                        }
                    })
                    .collect();
                assert_eq!(needs_escape(&s), slow(&s), "{s:?}");
            }
        }
    }
}
