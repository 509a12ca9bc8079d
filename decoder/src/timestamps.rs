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

/// `floor(d * mul / div)` as `quot * div + rem == d * mul` for `raw >= raw0`.
#[derive(Debug, Clone, Copy)]
struct Lin {
    raw0: u64,
    base: i128,
    mul: u64,
    div: u64,
    /// `floor(2^64 / div)` (0 when `div` is 1): an estimate of `t / div` is `t * inv >> 64`.
    inv: u64,
}

/// [`ClockConv::to_ns`] with the same results, faster for raw values that mostly increase (a
/// merged trace): the quotient of the previous value is carried forward, so that a small step
/// costs a multiply and a short correction instead of a 128-bit division. Anything else (raw
/// values before the first clock record, steps back, a reversed clock) takes `to_ns`.
#[derive(Debug, Clone)]
pub struct FastClock {
    conv: ClockConv,
    lin: Option<Lin>,
    /// The last raw value converted incrementally, with its quotient and remainder.
    last: Option<(u64, u64, u64)>,
}

impl FastClock {
    /// A converter for `conv`.
    pub fn new(conv: ClockConv) -> FastClock {
        let lin = match conv.map {
            Map::Identity => None,
            Map::Rate { raw0, mono0, tps } => Some((raw0, mono0, 1_000_000_000, tps.max(1))),
            Map::Line {
                raw0,
                mono0,
                raw1,
                mono1,
            } if raw1 > raw0 && mono1 > mono0 => Some((raw0, mono0, mono1 - mono0, raw1 - raw0)),
            Map::Line { .. } => None,
        }
        .map(|(raw0, mono0, mul, div)| Lin {
            raw0,
            base: i128::from(mono0),
            mul,
            div,
            inv: if div == 1 {
                0
            } else {
                ((1u128 << 64) / u128::from(div)) as u64
            },
        });
        FastClock {
            conv,
            lin,
            last: None,
        }
    }

    /// Nanoseconds of `CLOCK_MONOTONIC` for a raw value: exactly [`ClockConv::to_ns`].
    #[inline]
    pub fn to_ns(&mut self, raw: u64) -> i128 {
        let Some(l) = self.lin else {
            return self.conv.to_ns(raw);
        };
        if raw < l.raw0 {
            return self.conv.to_ns(raw);
        }
        if l.mul == l.div {
            return l.base + i128::from(raw - l.raw0);
        }
        // In 64 bits while the quotient fits (times within 584 years of the first clock
        // record); beyond, `to_ns`.
        let step = match self.last {
            Some((last, q, r)) if raw >= last => {
                // (raw - raw0) * mul = q * div + r + (raw - last) * mul.
                (raw - last)
                    .checked_mul(l.mul)
                    .and_then(|t| t.checked_add(r))
                    .and_then(|t| {
                        let (dq, dr) = div_small(t, l.div, l.inv);
                        Some((q.checked_add(dq)?, dr))
                    })
            }
            _ => None,
        };
        match step.or_else(|| full(l, raw)) {
            Some((q, r)) => {
                self.last = Some((raw, q, r));
                // base is a u64 and q < 2^64: the sum does not overflow.
                l.base + i128::from(q)
            }
            None => {
                self.last = None;
                self.conv.to_ns(raw)
            }
        }
    }
}

/// The quotient and remainder of `(raw - raw0) * mul / div`, if the quotient fits 64 bits.
#[cold]
fn full(l: Lin, raw: u64) -> Option<(u64, u64)> {
    let p = u128::from(raw - l.raw0) * u128::from(l.mul);
    let d = u128::from(l.div);
    Some((u64::try_from(p / d).ok()?, (p % d) as u64))
}

/// `(t / div, t % div)` with the reciprocal `inv` of [`Lin`].
#[inline(always)]
fn div_small(t: u64, div: u64, inv: u64) -> (u64, u64) {
    if div == 1 {
        return (t, 0);
    }
    // inv <= 2^64 / div, so the estimate is at most t / div and short of it by less than 2.
    let mut q = ((u128::from(t) * u128::from(inv)) >> 64) as u64;
    let mut r = t - q * div;
    while r >= div {
        q += 1;
        r -= div;
    }
    (q, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn fast_clock_is_exact() {
        let rec = |raw, mono_ns, ticks_per_sec| ClockRecord {
            source: ClockSource::Tsc,
            raw,
            mono_ns,
            ticks_per_sec,
        };
        let sets: Vec<Vec<ClockRecord>> = vec![
            vec![],
            vec![rec(1000, 5000, 1_000_000_000)],
            vec![rec(1000, 5000, 2_400_000_000)],
            vec![rec(1000, 5000, 3)],
            vec![rec(1000, 5000, 0), rec(900_000_000_000, 8_000_000_000, 0)],
            vec![
                rec(4_786_069_938_693, 1_000, 2_419_200_000),
                rec(4_996_069_938_693, 87_000_000_000, 2_419_200_000),
            ],
            vec![rec(10, 10, 1), rec(u64::MAX - 5, u64::MAX - 100, 1)],
            vec![rec(1000, 9000, 1), rec(5000, 3000, 1)],
            vec![rec(5000, 3000, 1), rec(1000, 9000, 1)],
            vec![rec(1, 1, 1), rec(3, u64::MAX, 1)],
            vec![rec(100, 100, 7), rec(200, 200, 7)],
            // Quotients that outgrow 64 bits within few raw values.
            vec![rec(7, 3, 1)],
            vec![rec(0, 0, 3), rec(5, u64::MAX / 2, 3)],
            vec![rec(1 << 40, 1 << 62, 7), rec((1 << 40) + 1000, u64::MAX, 7)],
        ];
        let mut seed = 0x1234_5678_9abc_def1;
        for clocks in sets {
            let conv = ClockConv::new(&clocks, &mut Stats::default());
            let mut fast = FastClock::new(conv);
            let mut raw = clocks.first().map_or(0, |c| c.raw.saturating_sub(50));
            for i in 0..20_000u32 {
                let step = rng(&mut seed);
                raw = match i % 97 {
                    0 => step,                          // anywhere
                    1 => raw.wrapping_sub(step % 1000), // back a little
                    2 => raw.saturating_add(step >> 8), // far ahead
                    _ => raw.saturating_add(step % 5000),
                };
                assert_eq!(fast.to_ns(raw), conv.to_ns(raw), "{clocks:?} raw {raw}");
            }
            for raw in [0, 1, u64::MAX, u64::MAX - 1, 1 << 63] {
                assert_eq!(fast.to_ns(raw), conv.to_ns(raw), "{clocks:?} raw {raw}");
            }
            // Small steps across the raw value where the quotient outgrows 64 bits (the end of
            // the incremental path), and back.
            if let (Some(first), Some(l)) = (clocks.first(), fast.lin) {
                let q = |raw: u64| u128::from(raw - l.raw0) * u128::from(l.mul) / u128::from(l.div);
                if q(u64::MAX) > u128::from(u64::MAX) {
                    let (mut lo, mut hi) = (first.raw.max(l.raw0), u64::MAX);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if q(mid) > u128::from(u64::MAX) {
                            hi = mid;
                        } else {
                            lo = mid + 1;
                        }
                    }
                    for start in [lo.saturating_sub(3000), lo.saturating_sub(3), lo] {
                        let mut raw = start;
                        for _ in 0..2000 {
                            assert_eq!(fast.to_ns(raw), conv.to_ns(raw), "{clocks:?} raw {raw}");
                            raw = raw.saturating_add(rng(&mut seed) % 4);
                        }
                    }
                }
            }
        }
    }
}
