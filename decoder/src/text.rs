//! The text output: one line per record.
//!
//! ```text
//! [    12.345678901] cpu2 WARN  my_mod::rx: rx queue 3 stalled after 41 us, flags=0x1f
//! [    12.345680000] cpu2 INFO  my_mod::rx: raw 3 bytes: 01 02 ff
//! [    12.400000000] [cpu1: 1234 events lost]
//! ```
//!
//! Seconds with 9 decimals right-aligned in 16 columns, relative to the first record unless
//! `absolute` (then `CLOCK_MONOTONIC` time); the level padded to 5; the target is the module path.

use std::fmt::Write;

use crate::metadata::Metadata;
use crate::render::push_u64;
use crate::stream::{Payload, Record};
use crate::timestamps::{format_seconds, ClockConv};

/// Formats records as text lines.
#[derive(Debug, Clone)]
pub struct TextFormatter<'a> {
    meta: &'a Metadata,
    clock: ClockConv,
    absolute: bool,
    origin: Option<i128>,
}

impl<'a> TextFormatter<'a> {
    /// A formatter; `absolute` prints `CLOCK_MONOTONIC` seconds instead of seconds since the
    /// first record formatted.
    pub fn new(meta: &'a Metadata, clock: ClockConv, absolute: bool) -> Self {
        TextFormatter {
            meta,
            clock,
            absolute,
            origin: None,
        }
    }

    /// Nanoseconds shown for a raw timestamp (the first call fixes the origin when relative).
    pub fn shown_ns(&mut self, ts_raw: u64) -> i128 {
        let ns = self.clock.to_ns(ts_raw);
        if self.absolute {
            ns
        } else {
            ns - *self.origin.get_or_insert(ns)
        }
    }

    /// Appends the line for `rec` (without a newline).
    pub fn format(&mut self, rec: &Record, out: &mut String) {
        let ns = self.shown_ns(rec.ts_raw());
        format_record(self.meta, rec, ns, out);
    }

    /// The line for `rec`.
    pub fn line(&mut self, rec: &Record) -> String {
        let mut s = String::new();
        self.format(rec, &mut s);
        s
    }
}

/// Appends the text line for `rec` shown at `shown_ns` (without a newline).
pub fn format_record(meta: &Metadata, rec: &Record, shown_ns: i128, out: &mut String) {
    out.push('[');
    format_seconds(out, shown_ns);
    out.push_str("] ");
    let e = match rec {
        Record::Lost(l) => {
            let _ = write!(out, "[cpu{}: {} events lost]", l.cpu, l.count);
            return;
        }
        Record::Event(e) => e,
    };
    out.push_str("cpu");
    push_u64(out, u64::from(e.cpu));
    out.push(' ');
    let Some(cs) = meta.callsite(e.callsite) else {
        let _ = write!(out, "?     <undefined callsite {}>", e.callsite);
        return;
    };
    let level = cs.level_name();
    out.push_str(&level);
    for _ in level.len()..5 {
        out.push(' ');
    }
    out.push(' ');
    out.push_str(&cs.module);
    out.push_str(": ");
    match &e.payload {
        Payload::Values(v) => {
            cs.template.render_into(v, out);
        }
        Payload::Raw(b) => {
            let _ = write!(out, "raw {} bytes:", b.len());
            for x in b {
                let _ = write!(out, " {x:02x}");
            }
        }
    }
}
