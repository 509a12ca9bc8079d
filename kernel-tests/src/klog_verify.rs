//! `relay-kcheck klog-verify`: checks the decoded text of a klog_example.ko run (what
//! `klog-decode` prints for a trace of `echo "N T" > /sys/kernel/debug/klog_example/run`)
//! against the exact event set the module emits, and the `--stats` output that goes with it.
//!
//! ```text
//! relay-kcheck klog-verify TEXT --events N --timer T --cpus C [--stats FILE] [--no-debug]
//!                          [--snapshot] [--target MODULE] [--name NAME]
//! ```
//!
//! The module's statements (examples/kernel/klog_example.rs), rendered independently here:
//!
//! ```text
//! cpuC INFO  klog_example: example cpu C seq S x=0x<S * 2654435761 mod 2^32, hex>
//! cpuC DEBUG klog_example: example debug cpu C seq S name=kthread         (S % 16 == 0)
//! cpu0 WARN  klog_example: timer tick K on cpu 0 (<K - 1, right-aligned in 5>)
//! ```
//!
//! * full run (default): on every `cpuC` (C < `--cpus`) the INFO/DEBUG events are exactly
//!   INFO 0, DEBUG 0, INFO 1, ..., INFO N-1 in that order (DEBUG only for S % 16 == 0, none with
//!   `--no-debug`); the T timer events are on cpu0, numbered 0..T-1 in order; no lost-event
//!   lines; timestamps never decrease in the merged output; with `--stats`: the decoder counted
//!   exactly these events, lost none and warned about nothing.
//! * `--snapshot` (an mmap snapshot of an overwrite-mode channel that wrapped): each CPU's
//!   events are a non-empty contiguous suffix of that sequence ending with the run's last event
//!   (the newest events are there, nothing torn or out of place) that does not reach back to
//!   INFO 0 (the oldest were overwritten); timer events, if any, a suffix of 0..T-1; with
//!   `--stats`: the only warnings are one torn sub-buffer per CPU.
//!
//! Prints `check: NAME: ok` or `check: NAME: FAIL reason` (default NAME `klog-verify`) and
//! diagnostics indented by two spaces; exits 0 only when the check passed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The multiplier of the example's `x=` value (Knuth's multiplicative hash).
const HASH_MUL: u64 = 2_654_435_761;

/// What the run should have produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Events per CPU (the `N` of `N T`).
    pub events: u32,
    /// Timer events on CPU 0 (the `T`).
    pub timer: u32,
    /// CPUs that ran the kthreads (cpu0..cpuC-1).
    pub cpus: u16,
    /// Whether the DEBUG statement was enabled.
    pub debug: bool,
    /// An mmap snapshot of a wrapped overwrite-mode channel rather than a full recording.
    pub snapshot: bool,
    /// The target (module path) of every line.
    pub target: String,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            events: 0,
            timer: 0,
            cpus: 1,
            debug: true,
            snapshot: false,
            target: "klog_example".into(),
        }
    }
}

/// A kthread event of the example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ev {
    /// `example cpu C seq S x=...` (INFO).
    Info(u32),
    /// `example debug cpu C seq S name=kthread` (DEBUG).
    Debug(u32),
}

/// What one text line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A kthread event.
    Ev(Ev),
    /// `timer tick K on cpu C (...)` (WARN).
    Timer(u32),
    /// `[cpuC: N events lost]`.
    Lost(u64),
}

/// One parsed text line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The timestamp, ns (as printed: 9 decimals).
    pub ts_ns: i128,
    /// The `cpuN` label.
    pub cpu: u16,
    /// What it is.
    pub kind: Kind,
}

/// The example's `x=` value of `seq`, computed without the decoder: `seq * 2654435761 mod 2^32`.
pub fn hash_x(seq: u32) -> u64 {
    (u64::from(seq) * HASH_MUL) % (1 << 32)
}

/// `[   12.345678901]` → ns.
fn parse_ts(s: &str) -> Result<i128, String> {
    let t = s.trim_start();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (int, frac) = t
        .split_once('.')
        .ok_or_else(|| format!("timestamp {s:?} has no '.'"))?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.len() != 9 || !digits(frac) || int.len() > 20 {
        return Err(format!("malformed timestamp {s:?}"));
    }
    let v = int.parse::<i128>().map_err(|e| e.to_string())? * 1_000_000_000
        + frac.parse::<i128>().map_err(|e| e.to_string())?;
    Ok(if neg { -v } else { v })
}

/// A decimal number without sign or leading zeros (as `{}` prints an unsigned integer).
fn parse_dec(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// The number between `prefix` and the next space (or the end) of `s`, and the rest.
fn num_after<'a>(s: &'a str, prefix: &str) -> Option<(u64, &'a str)> {
    let r = s.strip_prefix(prefix)?;
    let end = r.find(' ').unwrap_or(r.len());
    Some((parse_dec(&r[..end])?, &r[end..]))
}

/// Parses one line of `klog-decode`'s text output for the example; every line must be one of
/// the example's statements rendered exactly (see the module docs).
pub fn parse_line(line: &str, target: &str) -> Result<Line, String> {
    let bad = |why: &str| format!("{why}: {line:?}");
    let rest = line.strip_prefix('[').ok_or_else(|| bad("no '['"))?;
    let (ts, rest) = rest.split_once("] ").ok_or_else(|| bad("no ']'"))?;
    let ts_ns = parse_ts(ts).map_err(|e| bad(&e))?;
    if let Some(l) = rest.strip_prefix("[cpu") {
        let (cpu, l) = l
            .split_once(": ")
            .ok_or_else(|| bad("malformed lost line"))?;
        let count = l
            .strip_suffix(" events lost]")
            .and_then(parse_dec)
            .ok_or_else(|| bad("malformed lost line"))?;
        let cpu = parse_dec(cpu)
            .and_then(|c| u16::try_from(c).ok())
            .ok_or_else(|| bad("malformed lost line"))?;
        return Ok(Line {
            ts_ns,
            cpu,
            kind: Kind::Lost(count),
        });
    }
    let (cpu, rest) = num_after(rest, "cpu").ok_or_else(|| bad("no cpuN label"))?;
    let cpu = u16::try_from(cpu).map_err(|_| bad("cpu out of range"))?;
    let rest = rest.strip_prefix(' ').ok_or_else(|| bad("no level"))?;
    let (level, rest) = rest.split_at_checked(6).ok_or_else(|| bad("no level"))?;
    let msg = rest
        .strip_prefix(target)
        .and_then(|r| r.strip_prefix(": "))
        .ok_or_else(|| bad(&format!("target is not {target:?}")))?;
    let (kind, expect, msg_cpu) = match level {
        "INFO  " => {
            let (c, r) = num_after(msg, "example cpu ").ok_or_else(|| bad("not an INFO event"))?;
            let (s, _) = num_after(r, " seq ").ok_or_else(|| bad("not an INFO event"))?;
            let s = u32::try_from(s).map_err(|_| bad("seq out of range"))?;
            (
                Kind::Ev(Ev::Info(s)),
                format!("example cpu {c} seq {s} x=0x{:x}", hash_x(s)),
                c,
            )
        }
        "DEBUG " => {
            let (c, r) =
                num_after(msg, "example debug cpu ").ok_or_else(|| bad("not a DEBUG event"))?;
            let (s, _) = num_after(r, " seq ").ok_or_else(|| bad("not a DEBUG event"))?;
            let s = u32::try_from(s).map_err(|_| bad("seq out of range"))?;
            (
                Kind::Ev(Ev::Debug(s)),
                format!("example debug cpu {c} seq {s} name=kthread"),
                c,
            )
        }
        "WARN  " => {
            let (k, r) = num_after(msg, "timer tick ").ok_or_else(|| bad("not a timer event"))?;
            let (c, _) = num_after(r, " on cpu ").ok_or_else(|| bad("not a timer event"))?;
            let k = u32::try_from(k).map_err(|_| bad("tick out of range"))?;
            (
                Kind::Timer(k),
                format!("timer tick {k} on cpu {c} ({:>5})", i64::from(k) - 1),
                c,
            )
        }
        _ => return Err(bad("unexpected level")),
    };
    if msg != expect {
        return Err(bad(&format!("message differs from {expect:?}")));
    }
    // The CPU in the message is where the statement ran: it must be the buffer's.
    if msg_cpu != u64::from(cpu) {
        return Err(bad(&format!("event of another CPU in cpu{cpu}'s stream")));
    }
    Ok(Line { ts_ns, cpu, kind })
}

/// The kthread events one CPU emits, in order.
pub fn expected_events(spec: &Spec) -> Vec<Ev> {
    let mut v = Vec::with_capacity(spec.events as usize * 17 / 16 + 1);
    for s in 0..spec.events {
        v.push(Ev::Info(s));
        if spec.debug && s % 16 == 0 {
            v.push(Ev::Debug(s));
        }
    }
    v
}

fn ev_name(e: &Ev) -> String {
    match e {
        Ev::Info(s) => format!("INFO seq {s}"),
        Ev::Debug(s) => format!("DEBUG seq {s}"),
    }
}

/// Where `got` departs from `want` (both one CPU's events), for a diagnostic: counts of
/// missing, duplicated and unexpected events and the first position that differs.
fn describe_mismatch(cpu: u16, got: &[Ev], want: &[Ev]) -> String {
    let mut count: BTreeMap<Ev, i64> = BTreeMap::new();
    for e in want {
        *count.entry(*e).or_default() -= 1;
    }
    for e in got {
        *count.entry(*e).or_default() += 1;
    }
    let missing: Vec<&Ev> = count
        .iter()
        .filter(|(_, &n)| n < 0)
        .map(|(e, _)| e)
        .collect();
    let extra: Vec<&Ev> = count
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(e, _)| e)
        .collect();
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let mut s = format!(
        "cpu{cpu}: {} events, expected {}; {} missing, {} duplicated or unexpected; first difference at #{first}: got {}, expected {}",
        got.len(),
        want.len(),
        missing.len(),
        extra.len(),
        got.get(first).map_or("nothing".into(), ev_name),
        want.get(first).map_or("nothing".into(), ev_name),
    );
    if let Some(e) = missing.first() {
        let _ = write!(s, "; first missing: {}", ev_name(e));
    }
    if let Some(e) = extra.first() {
        let _ = write!(s, "; first unexpected: {}", ev_name(e));
    }
    s
}

/// Checks the text (`klog-decode TRACE` output) against `spec`; every problem found is listed.
pub fn verify_text(text: &str, spec: &Spec) -> Result<String, Vec<String>> {
    let mut errs = Vec::new();
    let mut per_cpu: BTreeMap<u16, Vec<Ev>> = BTreeMap::new();
    let mut timer: Vec<u32> = Vec::new();
    let mut last_ts: Option<i128> = None;
    let mut lines = 0usize;
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        lines += 1;
        let p = match parse_line(l, &spec.target) {
            Ok(p) => p,
            Err(e) => {
                errs.push(format!("line {}: {e}", i + 1));
                continue;
            }
        };
        if let Some(prev) = last_ts.filter(|&t| p.ts_ns < t) {
            errs.push(format!(
                "line {}: timestamp {} ns is before the previous line's {prev} ns",
                i + 1,
                p.ts_ns
            ));
        }
        last_ts = Some(p.ts_ns);
        if p.cpu >= spec.cpus {
            errs.push(format!(
                "line {}: cpu{} but only {} CPUs ran: {l:?}",
                i + 1,
                p.cpu,
                spec.cpus
            ));
            continue;
        }
        match p.kind {
            Kind::Ev(e) => per_cpu.entry(p.cpu).or_default().push(e),
            Kind::Timer(k) if p.cpu == 0 => timer.push(k),
            Kind::Timer(_) => errs.push(format!("line {}: timer event not on cpu0: {l:?}", i + 1)),
            Kind::Lost(n) => errs.push(format!("line {}: {n} events lost on cpu{}", i + 1, p.cpu)),
        }
    }
    let want = expected_events(spec);
    let mut kept_min = usize::MAX;
    for cpu in 0..spec.cpus {
        let got = per_cpu.get(&cpu).map_or(&[][..], |v| v.as_slice());
        if !spec.snapshot {
            if got != want.as_slice() {
                errs.push(describe_mismatch(cpu, got, &want));
            }
            continue;
        }
        // A snapshot: a non-empty proper suffix of the run's events.
        kept_min = kept_min.min(got.len());
        if got.is_empty() {
            errs.push(format!("cpu{cpu}: no events in the snapshot"));
        } else if got.len() >= want.len() {
            errs.push(format!(
                "cpu{cpu}: {} events, the whole run ({}): nothing was overwritten",
                got.len(),
                want.len()
            ));
        } else if !want.ends_with(got) {
            let start = want.len() - got.len();
            errs.push(format!(
                "snapshot: {}",
                describe_mismatch(cpu, got, &want[start..])
            ));
        }
    }
    let timer_ok = if spec.snapshot {
        timer.len() <= spec.timer as usize
            && timer
                .iter()
                .zip(spec.timer - timer.len() as u32..)
                .all(|(a, b)| *a == b)
    } else {
        timer.iter().copied().eq(0..spec.timer)
    };
    if !timer_ok {
        let show: Vec<String> = timer.iter().take(12).map(|k| k.to_string()).collect();
        errs.push(format!(
            "timer events {} (first: {}), expected {}0..{}",
            timer.len(),
            show.join(","),
            if spec.snapshot { "a suffix of " } else { "" },
            spec.timer
        ));
    }
    if errs.is_empty() {
        let events: usize = per_cpu.values().map(Vec::len).sum();
        Ok(if spec.snapshot {
            format!(
                "{lines} lines: the newest {}..{} of {} events on each of {} CPUs, {} timer events",
                kept_min,
                per_cpu.values().map(Vec::len).max().unwrap_or(0),
                want.len(),
                spec.cpus,
                timer.len()
            )
        } else {
            format!(
                "{lines} lines: {events} kthread events on {} CPUs and {} timer events, exactly as expected",
                spec.cpus,
                timer.len()
            )
        })
    } else {
        Err(errs)
    }
}

/// The counters of `klog-decode --stats` (stderr) that the checks use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// `events: X`.
    pub events: u64,
    /// `lost: X events`.
    pub lost_events: u64,
    /// `in X records`.
    pub lost_records: u64,
    /// `warnings: X`.
    pub warnings: u64,
    /// The per-kind counts listed under `warnings:`.
    pub by_kind: BTreeMap<String, u64>,
}

/// Parses the summary lines of `klog-decode --stats`.
pub fn parse_stats(text: &str) -> Result<DecodeStats, String> {
    let mut st = DecodeStats::default();
    let mut seen_events = false;
    let mut seen_warnings = false;
    for l in text.lines() {
        if let Some(r) = l.strip_prefix("events: ") {
            // events: X, raw records: Y, lost: Z events in W records
            let f: Vec<&str> = r.split([',', ' ']).filter(|w| !w.is_empty()).collect();
            let num = |i: usize| f.get(i).and_then(|w| w.parse::<u64>().ok());
            match (num(0), f.get(4), num(5), num(8)) {
                (Some(e), Some(&"lost:"), Some(le), Some(lr)) => {
                    st.events = e;
                    st.lost_events = le;
                    st.lost_records = lr;
                    seen_events = true;
                }
                _ => return Err(format!("malformed stats line {l:?}")),
            }
        } else if let Some(r) = l.strip_prefix("warnings: ") {
            st.warnings = r
                .trim()
                .parse()
                .map_err(|_| format!("malformed stats line {l:?}"))?;
            seen_warnings = true;
        } else if seen_warnings && l.starts_with("  ") && !l.starts_with("  - ") {
            if let Some((k, n)) = l.trim().split_once(": ") {
                if let Ok(n) = n.parse::<u64>() {
                    st.by_kind.insert(k.to_string(), n);
                }
            }
        }
    }
    if !seen_events || !seen_warnings {
        return Err("no `events:` / `warnings:` summary in the stats".into());
    }
    Ok(st)
}

/// Checks the decoder's statistics against `spec` (`events` = the text's event lines).
pub fn verify_stats(st: &DecodeStats, spec: &Spec, events: u64) -> Vec<String> {
    let mut errs = Vec::new();
    if st.events != events {
        errs.push(format!(
            "stats: the decoder counted {} events, the text has {events}",
            st.events
        ));
    }
    if st.lost_events != 0 || st.lost_records != 0 {
        errs.push(format!(
            "stats: lost {} events in {} records",
            st.lost_events, st.lost_records
        ));
    }
    if spec.snapshot {
        // One torn sub-buffer (the one started by the flush) per CPU, nothing else.
        let torn = st.by_kind.get("torn-subbuf").copied().unwrap_or(0);
        if torn != u64::from(spec.cpus) || st.warnings != torn {
            errs.push(format!(
                "stats: {} warnings ({:?}), expected exactly one torn-subbuf per CPU",
                st.warnings, st.by_kind
            ));
        }
    } else if st.warnings != 0 {
        errs.push(format!(
            "stats: {} warnings ({:?})",
            st.warnings, st.by_kind
        ));
    }
    errs
}

/// Text + optional stats: `Ok(summary)` or every problem found.
pub fn verify(text: &str, stats: Option<&str>, spec: &Spec) -> Result<String, Vec<String>> {
    let mut res = verify_text(text, spec);
    if let Some(s) = stats {
        let events = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains(" events lost]"))
            .count() as u64;
        let errs = match parse_stats(s) {
            Ok(st) => verify_stats(&st, spec, events),
            Err(e) => vec![e],
        };
        if !errs.is_empty() {
            match &mut res {
                Ok(_) => res = Err(errs),
                Err(v) => v.extend(errs),
            }
        }
    }
    res
}

/// Command-line entry: `args` after `klog-verify`. Returns the process exit status.
pub fn main(args: &[String]) -> u8 {
    let usage = "usage: relay-kcheck klog-verify TEXT --events N --timer T --cpus C \
                 [--stats FILE] [--no-debug] [--snapshot] [--target MODULE] [--name NAME]";
    let mut spec = Spec::default();
    let mut text_path = None;
    let mut stats_path = None;
    let mut name = "klog-verify".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |what: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{what} needs a value"))
        };
        let r: Result<(), String> = (|| {
            match a.as_str() {
                "--events" => spec.events = val(a)?.parse().map_err(|e| format!("{a}: {e}"))?,
                "--timer" => spec.timer = val(a)?.parse().map_err(|e| format!("{a}: {e}"))?,
                "--cpus" => spec.cpus = val(a)?.parse().map_err(|e| format!("{a}: {e}"))?,
                "--stats" => stats_path = Some(val(a)?),
                "--target" => spec.target = val(a)?,
                "--name" => name = val(a)?,
                "--no-debug" => spec.debug = false,
                "--snapshot" => spec.snapshot = true,
                s if !s.starts_with("--") && text_path.is_none() => text_path = Some(s.to_string()),
                s => return Err(format!("unexpected argument {s:?}")),
            }
            Ok(())
        })();
        if let Err(e) = r {
            eprintln!("relay-kcheck klog-verify: {e}\n{usage}");
            return 2;
        }
    }
    let Some(text_path) = text_path else {
        eprintln!("{usage}");
        return 2;
    };
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let res = read(&text_path).map_err(|e| vec![e]).and_then(|text| {
        let stats = stats_path
            .as_deref()
            .map(read)
            .transpose()
            .map_err(|e| vec![e])?;
        verify(&text, stats.as_deref(), &spec)
    });
    match res {
        Ok(summary) => {
            println!("  {name}: {summary}");
            println!("check: {name}: ok");
            0
        }
        Err(errs) => {
            for e in errs.iter().take(20) {
                println!("  {e}");
            }
            if errs.len() > 20 {
                println!("  ... {} more problems", errs.len() - 20);
            }
            println!("check: {name}: FAIL {} problems: {}", errs.len(), errs[0]);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ts: u64, cpu: u16, s: u32) -> String {
        format!(
            "[{:>16}] cpu{cpu} INFO  klog_example: example cpu {cpu} seq {s} x=0x{:x}",
            format!("{}.{:09}", ts / 1_000_000_000, ts % 1_000_000_000),
            hash_x(s)
        )
    }

    fn debug(ts: u64, cpu: u16, s: u32) -> String {
        format!(
            "[{:>16}] cpu{cpu} DEBUG klog_example: example debug cpu {cpu} seq {s} name=kthread",
            format!("{}.{:09}", ts / 1_000_000_000, ts % 1_000_000_000)
        )
    }

    fn tick(ts: u64, k: u32) -> String {
        format!(
            "[{:>16}] cpu0 WARN  klog_example: timer tick {k} on cpu 0 ({:>5})",
            format!("{}.{:09}", ts / 1_000_000_000, ts % 1_000_000_000),
            i64::from(k) - 1
        )
    }

    /// A complete run's text: `n` events on `cpus` CPUs, `t` timer events, ascending times.
    fn run_text(n: u32, t: u32, cpus: u16, debug_on: bool) -> Vec<String> {
        let mut v = Vec::new();
        let mut ts = 0u64;
        for s in 0..n {
            for c in 0..cpus {
                ts += 10;
                v.push(info(ts, c, s));
                if debug_on && s % 16 == 0 {
                    ts += 1;
                    v.push(debug(ts, c, s));
                }
            }
            if s < t {
                ts += 3;
                v.push(tick(ts, s));
            }
        }
        v
    }

    fn spec(n: u32, t: u32, cpus: u16) -> Spec {
        Spec {
            events: n,
            timer: t,
            cpus,
            ..Spec::default()
        }
    }

    fn check(lines: &[String], s: &Spec) -> Result<String, Vec<String>> {
        verify_text(&(lines.join("\n") + "\n"), s)
    }

    #[test]
    fn hash_matches_wrapping_u32() {
        assert_eq!(hash_x(0), 0);
        assert_eq!(hash_x(1), 0x9e37_79b1);
        assert_eq!(hash_x(2), 0x3c6e_f362);
        for s in [3u32, 500, 65_535, u32::MAX] {
            assert_eq!(hash_x(s), u64::from(s.wrapping_mul(2_654_435_761)));
        }
    }

    #[test]
    fn parses_the_three_statements_exactly() {
        let l = parse_line(
            "[     0.000123456] cpu2 INFO  klog_example: example cpu 2 seq 1 x=0x9e3779b1",
            "klog_example",
        )
        .unwrap();
        assert_eq!(
            l,
            Line {
                ts_ns: 123_456,
                cpu: 2,
                kind: Kind::Ev(Ev::Info(1))
            }
        );
        let l = parse_line(
            "[    12.000000001] cpu3 DEBUG klog_example: example debug cpu 3 seq 32 name=kthread",
            "klog_example",
        )
        .unwrap();
        assert_eq!(l.ts_ns, 12_000_000_001);
        assert_eq!(l.kind, Kind::Ev(Ev::Debug(32)));
        let l = parse_line(
            "[     1.500000000] cpu0 WARN  klog_example: timer tick 0 on cpu 0 (   -1)",
            "klog_example",
        )
        .unwrap();
        assert_eq!(l.kind, Kind::Timer(0));
        let l = parse_line(
            "[     1.500000000] cpu0 WARN  klog_example: timer tick 12 on cpu 0 (   11)",
            "klog_example",
        )
        .unwrap();
        assert_eq!(l.kind, Kind::Timer(12));
        let l = parse_line("[     2.000000000] [cpu1: 17 events lost]", "klog_example").unwrap();
        assert_eq!((l.cpu, l.kind), (1, Kind::Lost(17)));
    }

    #[test]
    fn rejects_misrendered_lines() {
        let t = "klog_example";
        for bad in [
            // wrong hash
            "[     0.000000010] cpu0 INFO  klog_example: example cpu 0 seq 1 x=0x9e3779b2",
            // decimal instead of {:#x}
            "[     0.000000010] cpu0 INFO  klog_example: example cpu 0 seq 1 x=2654435761",
            // hash not reduced mod 2^32
            "[     0.000000010] cpu0 INFO  klog_example: example cpu 0 seq 2 x=0x13c6ef362",
            // level padding
            "[     0.000000010] cpu0 INFO klog_example: example cpu 0 seq 0 x=0x0",
            // wrong level for the statement
            "[     0.000000010] cpu0 DEBUG klog_example: example cpu 0 seq 0 x=0x0",
            // timer padding ({:>5})
            "[     0.000000010] cpu0 WARN  klog_example: timer tick 0 on cpu 0 (-1)",
            "[     0.000000010] cpu0 WARN  klog_example: timer tick 3 on cpu 0 (    3)",
            // event of cpu 1 in cpu0's stream
            "[     0.000000010] cpu0 INFO  klog_example: example cpu 1 seq 0 x=0x0",
            // wrong target
            "[     0.000000010] cpu0 INFO  other: example cpu 0 seq 0 x=0x0",
            // torn: a truncated line
            "[     0.000000010] cpu0 INFO  klog_example: example cpu 0 seq",
            // timestamp with 6 decimals
            "[     0.000010] cpu0 INFO  klog_example: example cpu 0 seq 0 x=0x0",
            // leading zero
            "[     0.000000010] cpu0 INFO  klog_example: example cpu 0 seq 01 x=0x9e3779b1",
            "[     0.000000010] cpu0 DEBUG klog_example: example debug cpu 0 seq 0 name=kthrea",
            "garbage",
        ] {
            assert!(parse_line(bad, t).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn a_complete_run_passes() {
        let s = spec(40, 5, 4);
        let r = check(&run_text(40, 5, 4, true), &s).unwrap();
        assert!(r.contains("172 kthread events"), "{r}");
    }

    #[test]
    fn missing_duplicate_and_reordered_events_fail() {
        let s = spec(40, 5, 2);
        let good = run_text(40, 5, 2, true);
        // A missing INFO event.
        let mut v = good.clone();
        let i = v.iter().position(|l| l.contains("cpu 1 seq 7 ")).unwrap();
        v.remove(i);
        let e = check(&v, &s).unwrap_err();
        assert!(e[0].contains("cpu1") && e[0].contains("1 missing"), "{e:?}");
        // A duplicate.
        let mut v = good.clone();
        let i = v.iter().position(|l| l.contains("cpu 0 seq 9 ")).unwrap();
        v.insert(i, v[i].clone());
        let e = check(&v, &s).unwrap_err();
        assert!(e[0].contains("1 duplicated"), "{e:?}");
        // Two events of one CPU swapped (timestamps kept ascending).
        let mut v = good.clone();
        let a = v.iter().position(|l| l.contains("cpu 0 seq 3 ")).unwrap();
        let b = v.iter().position(|l| l.contains("cpu 0 seq 4 ")).unwrap();
        let (ta, tb) = (v[a][..19].to_string(), v[b][..19].to_string());
        let (la, lb) = (v[a][19..].to_string(), v[b][19..].to_string());
        v[a] = ta + &lb;
        v[b] = tb + &la;
        let e = check(&v, &s).unwrap_err();
        assert!(e[0].contains("first difference at #"), "{e:?}");
        // An event on the wrong CPU's stream (relabelled).
        let mut v = good.clone();
        let i = v.iter().position(|l| l.contains("cpu1 INFO")).unwrap();
        v[i] = v[i].replacen("cpu1 INFO", "cpu0 INFO", 1);
        assert!(check(&v, &s).is_err());
        // A CPU beyond --cpus.
        assert!(check(&run_text(40, 5, 3, true), &s).is_err());
        // Too few events per CPU.
        assert!(check(&run_text(39, 5, 2, true), &s).is_err());
    }

    #[test]
    fn debug_events_only_where_expected() {
        let s = spec(40, 0, 1);
        // A debug line for seq 5 (not a multiple of 16).
        let mut v = run_text(40, 0, 1, true);
        let i = v.iter().position(|l| l.contains("seq 5 ")).unwrap();
        v.insert(i + 1, debug(0, 0, 5).replace("0.000000000", "0.000000051"));
        // keep ascending timestamps: rebuild the line with the INFO's time
        v[i + 1] = format!("{}{}", &v[i][..19], &debug(0, 0, 5)[19..]);
        let e = check(&v, &s).unwrap_err();
        assert!(e[0].contains("first unexpected: DEBUG seq 5"), "{e:?}");
        // Debug disabled: no DEBUG line may appear, and a run without them passes.
        let off = Spec {
            debug: false,
            ..s.clone()
        };
        assert!(check(&run_text(40, 0, 1, false), &off).is_ok());
        assert!(check(&run_text(40, 0, 1, true), &off).is_err());
        assert!(check(&run_text(40, 0, 1, false), &s).is_err());
    }

    #[test]
    fn timer_events_numbered_in_order() {
        let s = spec(20, 6, 1);
        assert!(check(&run_text(20, 6, 1, true), &s).is_ok());
        assert!(check(&run_text(20, 5, 1, true), &s).is_err());
        let mut v = run_text(20, 6, 1, true);
        let i = v.iter().position(|l| l.contains("timer tick 2 ")).unwrap();
        v.remove(i);
        assert!(check(&v, &s).is_err());
        // A timer event on cpu1.
        let s2 = spec(20, 6, 2);
        let mut v = run_text(20, 6, 2, true);
        let i = v.iter().position(|l| l.contains("timer tick 4 ")).unwrap();
        v[i] = v[i]
            .replace("cpu0 WARN", "cpu1 WARN")
            .replace("on cpu 0", "on cpu 1");
        let e = check(&v, &s2).unwrap_err();
        assert!(e.iter().any(|e| e.contains("not on cpu0")), "{e:?}");
    }

    #[test]
    fn timestamps_must_not_decrease_and_lost_lines_fail() {
        let s = spec(20, 0, 2);
        let mut v = run_text(20, 0, 2, true);
        v[5] = v[5].replacen("[     0.", "[     9.", 1);
        let e = check(&v, &s).unwrap_err();
        assert!(e.iter().any(|e| e.contains("before the previous")), "{e:?}");
        let mut v = run_text(20, 0, 2, true);
        let last = v.last().unwrap()[..19].to_string();
        v.push(format!("{last}[cpu1: 3 events lost]"));
        let e = check(&v, &s).unwrap_err();
        assert!(e[0].contains("3 events lost"), "{e:?}");
    }

    #[test]
    fn snapshot_wants_a_proper_suffix_per_cpu() {
        let s = Spec {
            snapshot: true,
            ..spec(100, 0, 2)
        };
        let all = run_text(100, 0, 2, true);
        // The newest events: a suffix of each CPU's sequence (the merged text keeps cutting
        // per CPU at different points).
        let cut = |from0: u32, from1: u32| -> Vec<String> {
            all.iter()
                .filter(|l| {
                    let p = parse_line(l, "klog_example").unwrap();
                    let Kind::Ev(Ev::Info(q) | Ev::Debug(q)) = p.kind else {
                        return true;
                    };
                    q >= if p.cpu == 0 { from0 } else { from1 }
                })
                .cloned()
                .collect()
        };
        let r = check(&cut(60, 71), &s).unwrap();
        assert!(r.contains("the newest"), "{r}");
        // A DEBUG line whose INFO was overwritten is still a suffix.
        let mut v = cut(64, 80);
        let i = v.iter().position(|l| l.contains("cpu0 INFO")).unwrap();
        v.remove(i);
        assert!(check(&v, &s).is_ok());
        // Nothing overwritten: the check must notice.
        assert!(check(&all, &s).is_err());
        // The newest event missing (not flushed): fails.
        let mut v = cut(60, 71);
        let i = v.iter().rposition(|l| l.contains("cpu 1 seq 99 ")).unwrap();
        v.remove(i);
        let e = check(&v, &s).unwrap_err();
        assert!(e[0].contains("cpu1"), "{e:?}");
        // A hole (an old event in the middle of the kept range missing).
        let mut v = cut(60, 71);
        let i = v.iter().position(|l| l.contains("cpu 0 seq 80 ")).unwrap();
        v.remove(i);
        assert!(check(&v, &s).is_err());
        // A CPU without events.
        let v: Vec<String> = cut(60, 71)
            .into_iter()
            .filter(|l| !l.contains("] cpu1 "))
            .collect();
        assert!(check(&v, &s).is_err());
        // A torn (truncated) line.
        let mut v = cut(60, 71);
        let n = v.len() / 2;
        let cut_at = v[n].len() - 3;
        v[n].truncate(cut_at);
        assert!(check(&v, &s).is_err());
    }

    const STATS_OK: &str =
        "  cpu        bytes  subbufs     events      raw     lost lost_rec  warnings
 cpu0         1234        1        171        0        0        0         0
total         1234        1        171        0        0        0         0
records decoded: 171, shown: 171
events: 171, raw records: 0, lost: 0 events in 0 records
sub-buffers: 4, frames skipped: 0 (+0 reserved), corrupt bytes skipped: 0
warnings: 0
";

    #[test]
    fn stats_are_parsed_and_checked() {
        let st = parse_stats(STATS_OK).unwrap();
        assert_eq!(
            (st.events, st.lost_events, st.lost_records, st.warnings),
            (171, 0, 0, 0)
        );
        let s = spec(40, 5, 4);
        let text = run_text(40, 5, 4, true).join("\n");
        // 4 CPUs × (40 + 3 debug) + 5 timer events = 177 lines, not 171.
        let e = verify(&text, Some(STATS_OK), &s).unwrap_err();
        assert!(
            e[0].contains("counted 171 events, the text has 177"),
            "{e:?}"
        );
        let good = STATS_OK.replace("events: 171", "events: 177");
        assert!(verify(&text, Some(&good), &s).is_ok());
        let lost = good.replace(
            "lost: 0 events in 0 records",
            "lost: 12 events in 1 records",
        );
        assert!(verify(&text, Some(&lost), &s).is_err());
        let warned = good.replace(
            "warnings: 0",
            "warnings: 1\n  seq-gap: 1\n  - seq-gap (cpu1): x",
        );
        let e = verify(&text, Some(&warned), &s).unwrap_err();
        assert!(e[0].contains("seq-gap"), "{e:?}");
        assert!(parse_stats("events: many").is_err());
        assert!(parse_stats("nothing here").is_err());
        // Snapshot: one torn sub-buffer per CPU is expected, anything else is not.
        let snap = Spec {
            snapshot: true,
            ..spec(40, 0, 2)
        };
        let torn = "events: 10, raw records: 0, lost: 0 events in 0 records\nwarnings: 2\n  torn-subbuf: 2\n  - torn-subbuf (cpu0 @0): slot 1\n";
        let st = parse_stats(torn).unwrap();
        assert!(verify_stats(&st, &snap, 10).is_empty());
        let st = parse_stats(&torn.replace("torn-subbuf: 2", "torn-subbuf: 1\n  slot-skipped: 1"))
            .unwrap();
        assert!(!verify_stats(&st, &snap, 10).is_empty());
    }
}
