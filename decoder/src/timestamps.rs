//! Raw clock values → nanoseconds of `CLOCK_MONOTONIC` (docs/FORMAT.md, "Timestamps").

use crate::metadata::{ClockRecord, ClockSource};
use crate::stats::{Stats, WarningKind};

const NS_PER_SEC: i128 = 1_000_000_000;

/// Converts raw timestamps with the trace's clock records: linear interpolation between the
/// first and the last record; with one record `mono_ns + (raw - raw0) * 1e9 / ticks_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockConv {
    map: Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    /// No usable clock record: raw values are taken as nanoseconds.
    Identity,
    /// One reference and a rate.
    Rate { raw0: u64, mono0: u64, tps: u64 },
    /// Two references.
    Line {
        raw0: u64,
        mono0: u64,
        raw1: u64,
        mono1: u64,
    },
}

impl ClockConv {
    /// Raw values taken as nanoseconds.
    pub const IDENTITY: ClockConv = ClockConv { map: Map::Identity };

    /// The conversion for a trace's clock records; problems are warnings in `stats`.
    pub fn new(clocks: &[ClockRecord], stats: &mut Stats) -> ClockConv {
        let mut warn =
            |msg: std::fmt::Arguments<'_>| stats.warn(WarningKind::Clock, None, None, msg);
        let (Some(first), Some(last)) = (clocks.first(), clocks.last()) else {
            warn(format_args!(
                "no clock record: raw timestamps shown as nanoseconds"
            ));
            return ClockConv::IDENTITY;
        };
        if let Some(c) = clocks.iter().find(|c| c.source != first.source) {
            warn(format_args!(
                "clock records of different sources ({:?} and {:?})",
                first.source, c.source
            ));
        }
        if let ClockSource::Unknown(s) = first.source {
            warn(format_args!("unknown clock source {s}"));
        }
        let rate = |c: &ClockRecord| ClockConv {
            map: Map::Rate {
                raw0: c.raw,
                mono0: c.mono_ns,
                tps: c.ticks_per_sec,
            },
        };
        if first.ticks_per_sec == 0 && (clocks.len() < 2 || last.raw == first.raw) {
            warn(format_args!(
                "clock record with 0 ticks per second: raw timestamps shown as nanoseconds"
            ));
            return ClockConv::IDENTITY;
        }
        if clocks.len() < 2 || last.raw == first.raw {
            return rate(first);
        }
        if (last.raw > first.raw) != (last.mono_ns > first.mono_ns) || last.mono_ns == first.mono_ns
        {
            warn(format_args!(
                "first and last clock records disagree (raw {}→{}, mono {}→{}); using the first's rate",
                first.raw, last.raw, first.mono_ns, last.mono_ns
            ));
            if first.ticks_per_sec == 0 {
                return ClockConv::IDENTITY;
            }
            return rate(first);
        }
        ClockConv {
            map: Map::Line {
                raw0: first.raw,
                mono0: first.mono_ns,
                raw1: last.raw,
                mono1: last.mono_ns,
            },
        }
    }

    /// Nanoseconds of `CLOCK_MONOTONIC` for a raw value (may lie outside `u64` for garbage).
    pub fn to_ns(&self, raw: u64) -> i128 {
        match self.map {
            Map::Identity => i128::from(raw),
            Map::Rate { raw0, mono0, tps } => {
                let d = i128::from(raw) - i128::from(raw0);
                // |d| < 2^64, * 1e9 < 2^94: no overflow.
                i128::from(mono0) + (d * NS_PER_SEC).div_euclid(i128::from(tps.max(1)))
            }
            Map::Line {
                raw0,
                mono0,
                raw1,
                mono1,
            } => {
                let d = i128::from(raw) - i128::from(raw0);
                let dm = i128::from(mono1) - i128::from(mono0);
                let dr = i128::from(raw1) - i128::from(raw0);
                // Each magnitude is below 2^64, so the product fits a u128: exact, floored.
                let p = d.unsigned_abs() * dm.unsigned_abs();
                let q = p / dr.unsigned_abs();
                let negative = ((d < 0) ^ (dm < 0) ^ (dr < 0)) && p != 0;
                let q = if negative && p % dr.unsigned_abs() != 0 {
                    q + 1
                } else {
                    q
                };
                let q = i128::try_from(q).unwrap_or(i128::MAX);
                i128::from(mono0).saturating_add(if negative { -q } else { q })
            }
        }
    }
}

/// `ns` as seconds with 9 decimals, right-aligned in 16 columns: `    12.345678901`.
pub fn format_seconds(out: &mut String, ns: i128) {
    let a = ns.unsigned_abs();
    let (secs, frac) = (a / 1_000_000_000, (a % 1_000_000_000) as u32);
    let mut buf = [0u8; 64];
    let mut i = buf.len();
    let mut f = frac;
    for _ in 0..9 {
        i -= 1;
        buf[i] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    i -= 1;
    buf[i] = b'.';
    let mut s = secs;
    loop {
        i -= 1;
        buf[i] = b'0' + (s % 10) as u8;
        s /= 10;
        if s == 0 {
            break;
        }
    }
    if ns < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    let len = buf.len() - i;
    for _ in len..16 {
        out.push(' ');
    }
    crate::render::push_ascii(out, &buf[i..]);
}
