//! kleak-report: outstanding allocations of a klog trace, grouped by site (relay-apps' kleak
//! analysis, on klog).
//!
//! ```text
//! kleak-report [--expect FILE] [--verbose] TRACE_DIR
//! ```
//!
//! The trace holds events of two kinds, whoever wrote them (`kleak.ko` in the kernel,
//! `kleak-user`'s global allocator in user space):
//!
//! ```text
//! kleak alloc ptr={:#x} size={} site={}     logged after the allocation returned
//! kleak free ptr={:#x} size={}              logged before the memory is released
//! ```
//!
//! recognised by their format strings and argument types. The records of every CPU are merged
//! by timestamp and replayed: an allocation makes its pointer live, a free ends it. Because a
//! free is logged before the address can be handed out again and an allocation after it was,
//! the replay stays right when a block freed on one CPU is reused on another. What is still
//! live at the end is reported per site (count, bytes and the `klog!` callsite that logged
//! it). Frees of pointers never seen allocated (blocks from before the trace began) are only
//! counted.
//!
//! `--expect FILE` compares the outstanding allocations with `site count bytes` lines (blank
//! lines and `#` comments ignored) and fails unless they match exactly and the trace is
//! complete (no lost events, no allocation of a live pointer, no free with another size).
//!
//! Exit status: 0 success, 1 not a trace / mismatch / incomplete trace, 2 usage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use klog::ArgType;
use klog_decode::{Metadata, Options, Payload, Record, Trace, Value};

struct Args {
    dir: PathBuf,
    expect: Option<PathBuf>,
    verbose: bool,
}

fn usage() -> ExitCode {
    eprintln!("usage: kleak-report [--expect FILE] [--verbose] TRACE_DIR");
    ExitCode::from(2)
}

fn parse_args() -> Option<Args> {
    let mut dir = None;
    let mut expect = None;
    let mut verbose = false;
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--expect") => expect = Some(PathBuf::from(it.next()?)),
            Some("--verbose" | "-v") => verbose = true,
            Some("--help" | "-h") => return None,
            Some(s) if s.starts_with('-') => return None,
            _ if dir.is_none() => dir = Some(PathBuf::from(a)),
            _ => return None,
        }
    }
    Some(Args {
        dir: dir?,
        expect,
        verbose,
    })
}

/// Which callsites log allocations and frees.
#[derive(Default)]
struct Sites {
    alloc: BTreeSet<u64>,
    free: BTreeSet<u64>,
}

impl Sites {
    fn of(meta: &Metadata) -> Sites {
        let mut s = Sites::default();
        for (id, cs) in &meta.callsites {
            let Some(types) = &cs.arg_types else { continue };
            if cs.fmt.starts_with("kleak alloc ")
                && types.as_slice() == [ArgType::Unsigned, ArgType::Unsigned, ArgType::Str]
            {
                s.alloc.insert(*id);
            } else if cs.fmt.starts_with("kleak free ") && types.first() == Some(&ArgType::Unsigned)
            {
                s.free.insert(*id);
            }
        }
        s
    }
}

/// A live allocation.
struct Block {
    size: u64,
    site: String,
    callsite: u64,
    cpu: u16,
    ts_raw: u64,
}

/// Outstanding allocations of one site.
#[derive(Default, Debug, PartialEq, Eq)]
struct Group {
    count: u64,
    bytes: u64,
    callsites: BTreeSet<String>,
}

/// The result of replaying a trace.
#[derive(Default)]
struct Replay {
    allocs: u64,
    frees: u64,
    /// Frees logged on another CPU than their allocation.
    cross_cpu_frees: u64,
    unknown_frees: u64,
    /// An allocation of a pointer that was still live (a free missing from the trace).
    realloc_live: u64,
    /// A free whose size differs from the allocation's.
    size_mismatch: u64,
    /// Events of the two kinds whose arguments could not be read.
    malformed: u64,
    lost_events: u64,
    live: HashMap<u64, Block>,
}

fn unsigned(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Unsigned(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

impl Replay {
    fn run(trace: &Trace, sites: &Sites) -> (Replay, klog_decode::Stats) {
        let mut r = Replay::default();
        let mut recs = trace.records();
        for rec in recs.by_ref() {
            let e = match rec {
                Record::Event(e) => e,
                Record::Lost(l) => {
                    r.lost_events += l.count;
                    continue;
                }
            };
            let Payload::Values(v) = &e.payload else {
                continue;
            };
            if sites.alloc.contains(&e.callsite) {
                let (Some(ptr), Some(size), Some(Value::Str(site))) =
                    (unsigned(v.first()), unsigned(v.get(1)), v.get(2))
                else {
                    r.malformed += 1;
                    continue;
                };
                r.allocs += 1;
                let b = Block {
                    size,
                    site: site.clone(),
                    callsite: e.callsite,
                    cpu: e.cpu,
                    ts_raw: e.ts_raw,
                };
                if r.live.insert(ptr, b).is_some() {
                    r.realloc_live += 1;
                }
            } else if sites.free.contains(&e.callsite) {
                let Some(ptr) = unsigned(v.first()) else {
                    r.malformed += 1;
                    continue;
                };
                r.frees += 1;
                match r.live.remove(&ptr) {
                    Some(b) => {
                        if b.cpu != e.cpu {
                            r.cross_cpu_frees += 1;
                        }
                        if unsigned(v.get(1)).is_some_and(|s| s != b.size) {
                            r.size_mismatch += 1;
                        }
                    }
                    None => r.unknown_frees += 1,
                }
            }
        }
        let stats = recs.stats();
        (r, stats)
    }

    fn groups(&self, meta: &Metadata) -> BTreeMap<String, Group> {
        let mut g: BTreeMap<String, Group> = BTreeMap::new();
        for b in self.live.values() {
            let e = g.entry(b.site.clone()).or_default();
            e.count += 1;
            e.bytes = e.bytes.saturating_add(b.size);
            if let Some(cs) = meta.callsite(b.callsite) {
                e.callsites.insert(format!("{}:{}", cs.file, cs.line));
            }
        }
        g
    }

    /// Problems that make the outstanding set unreliable.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.lost_events > 0 {
            p.push(format!("{} events were lost", self.lost_events));
        }
        if self.realloc_live > 0 {
            p.push(format!(
                "{} allocations returned a pointer that was still live (a free is missing)",
                self.realloc_live
            ));
        }
        if self.size_mismatch > 0 {
            p.push(format!(
                "{} frees with a size other than the allocation's",
                self.size_mismatch
            ));
        }
        if self.malformed > 0 {
            p.push(format!(
                "{} alloc/free events with unreadable arguments",
                self.malformed
            ));
        }
        p
    }
}

/// Parses an expectation file: `site count bytes` per line.
fn parse_expect(text: &str) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let mut m = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = match f.as_slice() {
            [site, count, bytes] => count
                .parse::<u64>()
                .ok()
                .zip(bytes.parse::<u64>().ok())
                .map(|cb| (site.to_string(), cb)),
            _ => None,
        };
        let Some((site, cb)) = parsed else {
            return Err(format!(
                "line {}: expected `site count bytes`, got {line:?}",
                i + 1
            ));
        };
        if m.insert(site.clone(), cb).is_some() {
            return Err(format!("line {}: site {site} listed twice", i + 1));
        }
    }
    Ok(m)
}

/// Differences between the outstanding groups and the expectation (empty: exact match).
fn compare(groups: &BTreeMap<String, Group>, want: &BTreeMap<String, (u64, u64)>) -> Vec<String> {
    let mut d = Vec::new();
    for (site, &(count, bytes)) in want {
        match groups.get(site) {
            None => d.push(format!(
                "{site}: expected {count} blocks / {bytes} bytes, none outstanding"
            )),
            Some(g) if (g.count, g.bytes) != (count, bytes) => d.push(format!(
                "{site}: expected {count} blocks / {bytes} bytes, found {} / {}",
                g.count, g.bytes
            )),
            Some(_) => {}
        }
    }
    for (site, g) in groups {
        if !want.contains_key(site) {
            d.push(format!(
                "{site}: {} blocks / {} bytes outstanding, none expected",
                g.count, g.bytes
            ));
        }
    }
    d
}

fn report(a: &Args) -> Result<bool, String> {
    let trace = Trace::open(&a.dir, &Options::default()).map_err(|e| e.to_string())?;
    let sites = Sites::of(&trace.metadata);
    if sites.alloc.is_empty() {
        return Err(format!(
            "{}: no `kleak alloc` callsite in the metadata (not a kleak trace?)",
            a.dir.display()
        ));
    }
    let (r, stats) = Replay::run(&trace, &sites);
    let groups = r.groups(&trace.metadata);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kleak-report: {}: {} allocations, {} frees ({} on another CPU, {} of blocks allocated \
         before the trace), {} lost events, {} decoder warnings",
        a.dir.display(),
        r.allocs,
        r.frees,
        r.cross_cpu_frees,
        r.unknown_frees,
        r.lost_events,
        stats.total_warnings()
    );
    if groups.is_empty() {
        let _ = writeln!(out, "no outstanding allocations");
    } else {
        let _ = writeln!(out, "outstanding allocations by site:");
        let _ = writeln!(
            out,
            "  {:<20} {:>8} {:>10}  callsite",
            "site", "count", "bytes"
        );
        for (site, g) in &groups {
            let cs: Vec<&str> = g.callsites.iter().map(String::as_str).collect();
            let _ = writeln!(
                out,
                "  {site:<20} {:>8} {:>10}  {}",
                g.count,
                g.bytes,
                cs.join(", ")
            );
        }
        let (n, b) = groups.values().fold((0u64, 0u64), |(n, b), g| {
            (n.saturating_add(g.count), b.saturating_add(g.bytes))
        });
        let _ = writeln!(out, "  {:<20} {n:>8} {b:>10}", "total");
    }
    if a.verbose && !r.live.is_empty() {
        let mut blocks: Vec<(&u64, &Block)> = r.live.iter().collect();
        blocks.sort_by_key(|(_, b)| b.ts_raw);
        let _ = writeln!(out, "outstanding blocks (oldest first):");
        for (ptr, b) in blocks {
            let ns = trace.clock.to_ns(b.ts_raw);
            let _ = writeln!(
                out,
                "  {ptr:#018x} {:>8} bytes  {:<20} cpu{} at {}.{:09} s",
                b.size,
                b.site,
                b.cpu,
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000)
            );
        }
    }
    let problems = r.problems();
    for p in &problems {
        let _ = writeln!(out, "warning: {p}");
    }
    print!("{out}");
    let Some(path) = &a.expect else {
        return Ok(true);
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let want = parse_expect(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let diff = compare(&groups, &want);
    for d in &diff {
        println!("mismatch: {d}");
    }
    let ok = diff.is_empty() && problems.is_empty();
    if ok {
        println!(
            "kleak-report: the outstanding allocations match {} exactly",
            path.display()
        );
    } else if diff.is_empty() {
        println!("kleak-report: the trace is incomplete; the match is not trustworthy");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let Some(a) = parse_args() else {
        return usage();
    };
    match report(&a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kleak-report: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_file_parses_and_rejects_garbage() {
        let m = parse_expect("# leaks\nrx 3 768\n\nconn 2 192\n").unwrap();
        assert_eq!(m.get("rx"), Some(&(3, 768)));
        assert_eq!(m.len(), 2);
        assert!(parse_expect("rx 3\n").is_err());
        assert!(parse_expect("rx x 1\n").is_err());
        assert!(parse_expect("rx 1 1\nrx 2 2\n").is_err());
    }

    #[test]
    fn compare_is_exact() {
        let mut g = BTreeMap::new();
        g.insert(
            "a".to_string(),
            Group {
                count: 2,
                bytes: 20,
                callsites: BTreeSet::new(),
            },
        );
        let mut want = BTreeMap::new();
        want.insert("a".to_string(), (2, 20));
        assert!(compare(&g, &want).is_empty());
        want.insert("b".to_string(), (1, 1));
        assert_eq!(compare(&g, &want).len(), 1);
        want.remove("b");
        want.insert("a".to_string(), (2, 21));
        assert_eq!(compare(&g, &want).len(), 1);
        assert_eq!(compare(&g, &BTreeMap::new()).len(), 1);
    }
}
