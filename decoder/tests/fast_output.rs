//! The fast text / JSON output (`write_lines` over `Trace::records_ref`), serial and parallel,
//! against the owned-record path (`write_records` with the text and JSON sinks) as the oracle:
//! the same bytes, counts and statistics on multi-CPU traces with every argument type, lost
//! events, overwrite snapshots, corrupted and truncated input, and with filters.

mod common;

use std::collections::BTreeSet;

use common::*;
use klog::arg::ArgType as T;
use klog::Level;
use klog_decode::output::{sink, write_records, Written};
use klog_decode::*;

const SUBBUF: usize = 512;

fn defs() -> Vec<Def> {
    vec![
        def(
            1,
            Level::Warn,
            "a={0} b={1:>8} c={2:#x} d={3:?} e={4:+} f={5:08b}",
            "m::rx",
            &[
                T::Unsigned as u8,
                T::Signed as u8,
                T::U8 as u8,
                T::Str as u8,
                T::I32 as u8,
                T::I16 as u8,
            ],
        ),
        def(
            2,
            Level::Info,
            "{0:.3} {1} {2:?} {3:e} {4} {5:?}",
            "m",
            &[
                T::F64 as u8,
                T::Char as u8,
                T::Bytes as u8,
                T::F32 as u8,
                T::Bool as u8,
                T::Str as u8,
            ],
        ),
        raw_def(3, "m::raw"),
        def(
            4,
            Level::Debug,
            "big {0} {1} {2} {3:X}",
            "odd\"mod\\",
            &[
                T::Unsigned as u8,
                T::I128 as u8,
                T::I8 as u8,
                T::Unsigned as u8,
            ],
        ),
        def(
            5,
            Level::Error,
            "{1} then {0} and {0}",
            "m::tx",
            &[T::Unsigned as u8, T::Str as u8],
        ),
        def(6, Level::Trace, "no args here", "t", &[]),
        def(
            7,
            Level::Info,
            "missing {0} {1} {2}",
            "m",
            &[T::Unsigned as u8, T::Signed as u8],
        ),
        def(8, Level::Info, "bad {0} {", "m", &[T::Unsigned as u8]),
        def(
            9,
            Level::Info,
            "{0} {1}",
            "m",
            &[T::Str as u8, T::Unsigned as u8],
        ),
    ]
}

const STRS: [&str; 6] = [
    "eth0",
    "quote\"d",
    "back\\slash",
    "tab\there\n",
    "é ünï €",
    "",
];

/// Appends one random frame at `ts` to `st` (a new sub-buffer when the current one is full).
fn random_frame(st: &mut Stream, rng: &mut Rng, ts: u64, lost_every: u64) {
    let r = rng.next();
    let s = STRS[(r >> 8) as usize % STRS.len()];
    let big = (r as u128) << 64 | u128::from(rng.next());
    let payload: (u64, Vec<u8>) = match r % 12 {
        0..=2 => (
            1,
            args((
                &(r >> (r % 64)),
                &((r as i64) >> (r % 64)),
                &(r as u8),
                &s,
                &(r as i32),
                &(r as i16),
            )),
        ),
        3 => (
            2,
            args((
                &(f64::from_bits(r) * if r % 3 == 0 { 1.0 } else { 0.0 } + (r % 1000) as f64 / 7.0),
                &char::from_u32((r % 0x2000) as u32).unwrap_or('x'),
                &[r as u8, 0x22, 0x5c][..(r % 4) as usize % 3],
                &(if r % 5 == 0 {
                    f32::NAN
                } else {
                    (r % 100_000) as f32 / 3.0
                }),
                &(r % 2 == 0),
                &s,
            )),
        ),
        4 => (3, vec![r as u8; (r % 9) as usize]),
        5 => (
            4,
            args((&big, &-(big as i128 >> (r % 100)), &(r as i8), &(r >> 3))),
        ),
        6 => (5, args((&(r % 1000), &s))),
        7 => (6, Vec::new()),
        8 => (7, args((&(r % 77), &-((r % 99) as i64)))),
        9 => (8, args((&(r >> 40),))),
        10 => (9, args((&s, &(r >> (r % 64))))),
        _ => (99, args((&1u32,))), // unknown callsite
    };
    let (id, p) = payload;
    let raw = id == 3 || (r >> 32) % 97 == 0; // sometimes a raw frame of a fmt callsite
    let kind = if raw {
        klog::wire::frame::RAW
    } else {
        klog::wire::frame::EVENT
    };
    let need = frame(id, kind, 0, &p).len() + 10;
    let full = st
        .subs
        .last()
        .is_none_or(|s| klog::wire::SUBBUF_HEADER_LEN + s.frames.len() + need > SUBBUF);
    if full {
        let lost = if lost_every > 0 && rng.next() % lost_every == 0 {
            (rng.next() % 1000) as u32 + 1
        } else {
            0
        };
        st.sub(ts, lost);
    }
    if raw {
        st.raw(id, ts, &p);
    } else {
        st.event_bytes(id, ts, &p);
    }
}

/// `n_cpus` streams of `per_cpu` frames with close (often equal) timestamps across CPUs.
fn random_streams(seed: u64, n_cpus: u16, per_cpu: usize, lost_every: u64) -> Vec<Stream> {
    random_streams_version(seed, n_cpus, per_cpu, lost_every, klog::wire::VERSION)
}

/// [`random_streams`] with the time deltas of format `version`.
fn random_streams_version(
    seed: u64,
    n_cpus: u16,
    per_cpu: usize,
    lost_every: u64,
    version: u16,
) -> Vec<Stream> {
    let mut rng = Rng(seed);
    (0..n_cpus)
        .map(|cpu| {
            let mut st = Stream::with_version(cpu, SUBBUF, version);
            let mut ts = 1_000_000u64;
            for i in 0..per_cpu {
                ts += rng.next() % 40;
                // Once per stream, time goes back a little.
                let t = if i == per_cpu / 2 { ts - 500 } else { ts };
                random_frame(&mut st, &mut rng, t, lost_every);
            }
            st
        })
        .collect()
}

const TSC_CLOCK: &[(u8, u64, u64, u64)] = &[
    (TSC, 1_000_000, 5_000_000_000, 2_400_000_000),
    (TSC, 900_000_000, 5_374_583_333, 2_400_000_000),
];

struct Run {
    out: Vec<u8>,
    written: Written,
    stats: Stats,
    per_cpu: Vec<CpuSummary>,
}

fn oracle(trace: &Trace, format: Format, absolute: bool, filter: &Filter) -> Run {
    let mut recs = trace.records();
    let cpus: Vec<u16> = trace.streams.iter().map(|(c, _)| *c).collect();
    let mut sink = sink(format, absolute, cpus);
    let clock = trace.clock;
    let mut out = Vec::new();
    let written = write_records(
        &trace.metadata,
        recs.by_ref(),
        |raw| clock.to_ns(raw),
        filter,
        sink.as_mut(),
        &mut out,
        |_| {},
    )
    .unwrap();
    Run {
        out,
        written,
        stats: recs.stats(),
        per_cpu: recs.per_cpu(),
    }
}

fn fast(trace: &Trace, format: Format, absolute: bool, filter: &Filter, jobs: usize) -> Run {
    let mut recs = trace.records_ref();
    let mut out = Vec::new();
    let written = write_lines(
        &trace.metadata,
        trace.clock,
        &mut recs,
        format,
        absolute,
        filter,
        jobs,
        &mut out,
        |_| {},
    )
    .unwrap();
    Run {
        out,
        written,
        stats: recs.stats(),
        per_cpu: recs.per_cpu(),
    }
}

/// Every format, both time references and 1..=3 jobs give the oracle's output.
fn check(trace: &Trace, filter: &Filter) -> Run {
    let mut last = None;
    for format in [Format::Text, Format::Json] {
        for absolute in [false, true] {
            let want = oracle(trace, format, absolute, filter);
            for jobs in [1, 2, 3] {
                let got = fast(trace, format, absolute, filter, jobs);
                if got.out != want.out {
                    let (g, w) = (
                        String::from_utf8_lossy(&got.out),
                        String::from_utf8_lossy(&want.out),
                    );
                    let first = g.lines().zip(w.lines()).position(|(a, b)| a != b);
                    panic!(
                        "{format:?} absolute={absolute} jobs={jobs}: output differs at line {first:?}: \n got {:?}\nwant {:?}\n({} vs {} bytes)",
                        first.and_then(|i| g.lines().nth(i)),
                        first.and_then(|i| w.lines().nth(i)),
                        got.out.len(),
                        want.out.len()
                    );
                }
                assert_eq!(got.written, want.written, "{format:?} jobs={jobs}");
                assert_eq!(got.stats, want.stats, "{format:?} jobs={jobs}");
                assert_eq!(got.per_cpu, want.per_cpu, "{format:?} jobs={jobs}");
            }
            last = Some(want);
        }
    }
    last.unwrap()
}

fn trace(meta: &[u8], streams: Vec<Vec<u8>>, snapshot: bool) -> Trace {
    let opts = Options {
        snapshot,
        ..Options::default()
    };
    Trace::from_bytes(meta, streams, &opts).unwrap()
}

#[test]
fn multi_cpu_every_type_and_lost_events() {
    for (seed, clocks) in [(1u64, TSC_CLOCK), (2, MONO_CLOCK), (3, &[][..])] {
        let streams = random_streams(seed, 4, 3000, 4);
        let meta = metadata(4, false, SUBBUF as u32, 8, clocks, &defs());
        let t = trace(
            &meta,
            streams.iter().map(Stream::read_stream).collect(),
            false,
        );
        let r = check(&t, &Filter::default());
        assert!(r.written.decoded > 10_000, "{}", r.written.decoded);
        assert!(r.stats.lost_records > 0, "{}", r.stats);
        assert!(
            r.stats.count(WarningKind::UnknownCallsite) > 0,
            "{}",
            r.stats
        );
        assert!(r.stats.count(WarningKind::TimeBackwards) > 0, "{}", r.stats);
    }
}

#[test]
fn version_1_and_2_traces_give_the_same_output() {
    // The same events (every frame kind, unknown callsites, lost events, time going back) as a
    // version-1 and a version-2 trace: the same lines, counts and statistics, on the fast path
    // and the oracle, from `read()` streams and from snapshots.
    for snapshot in [false, true] {
        let mut runs = Vec::new();
        // Built in version 1 (whose deltas are the longer ones, so the version-2 frames fit the
        // same sub-buffers), re-encoded for version 2.
        let streams = random_streams_version(13, 3, 3000, 6, 1);
        for version in [1, 2, 3] {
            let streams: Vec<Stream> = streams.iter().map(|s| s.reencoded(version)).collect();
            let n_slots = 8;
            let meta = with_version(
                metadata(3, snapshot, SUBBUF as u32, n_slots, TSC_CLOCK, &defs()),
                version,
            );
            let data: Vec<Vec<u8>> = streams
                .iter()
                .map(|s| {
                    if snapshot {
                        s.snapshot(n_slots as usize, 0xaa)
                    } else {
                        s.read_stream()
                    }
                })
                .collect();
            runs.push((
                data.clone(),
                check(&trace(&meta, data, snapshot), &Filter::default()),
            ));
        }
        let ((d1, v1), (d2, v2)) = (&runs[0], &runs[1]);
        assert_ne!(d1, d2, "the deltas differ");
        assert!(v1.out == v2.out, "snapshot={snapshot}");
        assert_eq!(v1.written, v2.written);
        // The same counters and warnings, but not at the same byte offsets, nor the same
        // numbers of bytes per CPU: version-2 deltas are shorter.
        let at_no_offset = |s: &Stats| {
            let mut s = s.clone();
            s.warnings.iter_mut().for_each(|w| w.offset = None);
            s
        };
        assert!(at_no_offset(&v1.stats) == at_no_offset(&v2.stats));
        let per_cpu = |r: &Run| {
            r.per_cpu
                .iter()
                .map(|c| (c.cpu, at_no_offset(&c.stats)))
                .collect::<Vec<_>>()
        };
        assert_eq!(per_cpu(v1), per_cpu(v2));
        assert!(v1.written.decoded > 100, "{}", v1.written.decoded);
        assert!(
            snapshot || v1.stats.count(WarningKind::TimeBackwards) > 0,
            "{}",
            v1.stats
        );
    }
}

#[test]
fn filters() {
    let streams = random_streams(7, 3, 2000, 8);
    let meta = metadata(3, false, SUBBUF as u32, 8, TSC_CLOCK, &defs());
    let t = trace(
        &meta,
        streams.iter().map(Stream::read_stream).collect(),
        false,
    );
    let filters = [
        Filter {
            max_level: Some(2),
            ..Filter::default()
        },
        Filter {
            cpus: Some(BTreeSet::from([0, 2])),
            targets: vec!["m::".into()],
            ..Filter::default()
        },
        Filter {
            since_ns: Some(10_000),
            until_ns: Some(20_000),
            ..Filter::default()
        },
        Filter {
            since_ns: Some(5_000_010_000),
            absolute: true,
            ..Filter::default()
        },
        Filter {
            targets: vec!["nothing".into()],
            ..Filter::default()
        },
    ];
    for f in &filters {
        check(&t, f);
    }
}

#[test]
fn streams_labelled_with_the_same_cpu_tie_like_the_heap() {
    // Both files hold cpu0's headers: equal (ts, cpu) keys across two sources.
    let mut rng = Rng(11);
    let mk = |rng: &mut Rng| {
        let mut st = Stream::new(0, SUBBUF);
        for i in 0..3000u64 {
            random_frame(&mut st, rng, 1000 + i / 3, 0);
        }
        st.read_stream()
    };
    let streams = vec![mk(&mut rng), mk(&mut rng), mk(&mut rng)];
    let meta = metadata(3, false, SUBBUF as u32, 8, MONO_CLOCK, &defs());
    let t = trace(&meta, streams, false);
    let r = check(&t, &Filter::default());
    assert!(r.stats.count(WarningKind::StreamHeader) > 0, "{}", r.stats);
}

#[test]
fn overwrite_snapshot() {
    let streams = random_streams(5, 2, 1500, 3);
    let n_slots = 6;
    let meta = metadata(2, true, SUBBUF as u32, n_slots, MONO_CLOCK, &defs());
    let imgs: Vec<Vec<u8>> = streams
        .iter()
        .map(|s| s.snapshot(n_slots as usize, 0xaa))
        .collect();
    let t = trace(&meta, imgs, true);
    let r = check(&t, &Filter::default());
    assert!(r.written.decoded > 0);
    assert!(r.stats.count(WarningKind::TornSubbuf) > 0, "{}", r.stats);
}

#[test]
fn corrupted_and_truncated_input() {
    let streams = random_streams(9, 2, 2500, 5);
    let meta = metadata(2, false, SUBBUF as u32, 8, TSC_CLOCK, &defs());
    let clean: Vec<Vec<u8>> = streams.iter().map(Stream::read_stream).collect();
    let mut rng = Rng(99);
    for round in 0..12 {
        let mut s = clean.clone();
        for b in s.iter_mut() {
            for _ in 0..(1 + round * 3) {
                let i = rng.next() as usize % b.len();
                b[i] = rng.next() as u8;
            }
        }
        if round % 3 == 0 {
            let n = s[1].len();
            s[1].truncate(n - 1 - rng.next() as usize % (n / 2));
        }
        let t = trace(&meta, s, false);
        let r = check(&t, &Filter::default());
        assert!(r.stats.total_warnings() > 0, "round {round}");
    }
    // Garbage only.
    let garbage: Vec<u8> = (0..50_000).map(|_| rng.next() as u8).collect();
    let t = trace(&meta, vec![garbage.clone(), garbage], false);
    check(&t, &Filter::default());
}

fn run_cli(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_klog-decode"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn cli_jobs_give_the_serial_output() {
    // Streams above the mmap threshold, so that pages are released while workers render.
    let streams = random_streams(21, 2, 60_000, 50);
    let meta = metadata(2, false, SUBBUF as u32, 8, TSC_CLOCK, &defs());
    let dir = TempDir::new("jobs");
    dir.write("metadata", &meta);
    for (i, s) in streams.iter().enumerate() {
        let b = s.read_stream();
        if i == 0 {
            assert!(b.len() as u64 >= klog_decode::trace::MMAP_MIN_LEN);
        }
        dir.write(&format!("cpu{i}"), &b);
    }
    for format in ["text", "json", "chrome"] {
        let serial = run_cli(&["--stats", "--format", format], dir.path());
        assert!(serial.status.success());
        assert!(!serial.stdout.is_empty());
        for jobs in ["2", "3", "0"] {
            let par = run_cli(&["--stats", "--format", format, "--jobs", jobs], dir.path());
            assert_eq!(par.status.code(), serial.status.code());
            assert!(par.stdout == serial.stdout, "{format} --jobs {jobs}");
            assert_eq!(
                String::from_utf8_lossy(&par.stderr),
                String::from_utf8_lossy(&serial.stderr),
                "{format} --jobs {jobs}"
            );
        }
    }
    // Output closed early: no error, no panic.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_klog-decode"))
        .args(["--jobs", "2"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
