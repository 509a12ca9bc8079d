//! `klog-decode`: prints a klog trace directory (text, JSON Lines or Chrome trace JSON), follows
//! a live one, or records one.
//!
//! ```text
//! klog-decode [OPTIONS] TRACE_DIR
//! klog-decode [OPTIONS] --follow LIVE_DIR
//! klog-decode record LIVE_DIR OUT_DIR [--duration SECS] [--force]
//! ```
//!
//! Exit status: 0 when the trace decoded (warnings are counted and summarised on stderr; a valid
//! trace without events and filters that matched nothing are explained there too), 1 when
//! nothing could be decoded (not a klog trace, no metadata, unknown version, no stream, a live
//! directory without `--snapshot`, or nothing but garbage: stderr says why) or when `record`
//! failed (a write error, an existing trace), 2 for a usage error.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use klog_decode::live::{self, FollowOptions};
use klog_decode::output::{parse_level, parse_seconds, sink, write_records};
use klog_decode::{write_lines, CpuSummary, Error, Filter, Format, Options, Stats, Trace};

/// Decode a klog trace directory (`metadata` + `cpu0..cpuN-1`).
#[derive(Debug, Parser)]
#[command(
    name = "klog-decode",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Fmt::Text)]
    format: Fmt,
    /// Print CLOCK_MONOTONIC seconds instead of seconds since the first record (text and
    /// chrome); --since/--until are then CLOCK_MONOTONIC seconds too.
    #[arg(long)]
    absolute: bool,
    /// Print per-CPU statistics and warnings to stderr at the end.
    #[arg(long)]
    stats: bool,
    /// The cpuN files are mmap snapshots (whole-buffer images of an overwrite-mode channel), or
    /// TRACE_DIR is a live relay directory (the kernel's debugfs klog directory, a user-space
    /// shm directory) whose buffers are mapped and copied now. A user-space buffer's copy
    /// includes the sub-buffer being written, up to the writer's committed offset (also when
    /// the writer died); for kernel buffers and image files flush the channel first.
    #[arg(long)]
    snapshot: bool,
    /// Most verbose level shown: error, warn, info, debug, trace (warn shows errors and warnings).
    #[arg(long, value_parser = level_arg)]
    level: Option<u8>,
    /// Only these CPUs (repeatable, or a comma-separated list).
    #[arg(long, value_delimiter = ',')]
    cpu: Vec<u16>,
    /// Only targets (module paths) starting with PREFIX (repeatable: any of them).
    #[arg(long, value_name = "PREFIX")]
    target: Vec<String>,
    /// Only records at or after SECS (since the first record, or CLOCK_MONOTONIC with --absolute).
    #[arg(long, value_name = "SECS", value_parser = secs_arg, allow_hyphen_values = true)]
    since: Option<i128>,
    /// Only records at or before SECS (same reference as --since).
    #[arg(long, value_name = "SECS", value_parser = secs_arg, allow_hyphen_values = true)]
    until: Option<i128>,
    /// Follow a live relay directory (user-space shm directory of a klog RelayHandler, or the
    /// kernel's debugfs klog directory): print events as they arrive, until Ctrl-C or the
    /// channel is finalized.
    #[arg(long, value_name = "LIVE_DIR", conflicts_with_all = ["path", "snapshot"])]
    follow: Option<PathBuf>,
    /// Lateness window of --follow in milliseconds: an event is held until every CPU has shown a
    /// later timestamp or it has waited this long.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    window_ms: u64,
    /// Threads for text and JSON output: N-1 workers render lines while the main thread
    /// decodes and merges (and renders when they are behind); the output is the same as with 1.
    /// 0: one per available core (at most 64). Chrome output is always single-threaded.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// Never show a progress bar (it is shown only on a terminal, for large traces).
    #[arg(long)]
    no_progress: bool,
    /// The trace directory.
    #[arg(required_unless_present = "follow")]
    path: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Record a live relay directory into a trace directory (blktrace-style): drain every
    /// cpuN buffer (with a checksum index cpuN.idx) and copy `metadata`, until Ctrl-C, SIGTERM,
    /// SIGHUP, --duration or the channel is finalized. From user-space buffers only what is
    /// written to OUT_DIR is consumed: a recorder that is killed leaves the rest for the next
    /// reader.
    Record {
        /// The live directory (user-space shm directory or kernel debugfs klog directory).
        live: PathBuf,
        /// The trace directory to write (created if missing).
        out: PathBuf,
        /// Stop after SECS seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// OUT_DIR may already hold a trace: replace its klog files (metadata, cpuN, cpuN.idx;
        /// nothing else in the directory is touched). Without it such a directory is refused.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fmt {
    Text,
    Json,
    Chrome,
}

fn level_arg(s: &str) -> Result<u8, String> {
    parse_level(s).ok_or_else(|| format!("unknown level {s:?} (error, warn, info, debug, trace)"))
}

fn secs_arg(s: &str) -> Result<i128, String> {
    parse_seconds(s).ok_or_else(|| format!("not a number of seconds: {s:?}"))
}

/// Ctrl-C, SIGTERM and SIGHUP set the returned flag (a second one ends the process at once).
fn stop_on_sigint() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if s.swap(true, Ordering::AcqRel) {
            std::process::exit(130);
        }
    });
    stop
}

/// Traces at least this large get a progress bar (on a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

fn print_stats(stats: &Stats, per_cpu: &[CpuSummary], decoded: u64, shown: u64) {
    let mut e = io::stderr().lock();
    let _ = writeln!(
        e,
        "{:>5} {:>12} {:>8} {:>10} {:>8} {:>10} {:>8} {:>9}",
        "cpu", "bytes", "subbufs", "events", "raw", "lost", "lost_rec", "warnings"
    );
    for c in per_cpu {
        let s = &c.stats;
        let _ = writeln!(
            e,
            "{:>5} {:>12} {:>8} {:>10} {:>8} {:>10} {:>8} {:>9}",
            format!("cpu{}", c.cpu),
            c.bytes,
            s.subbufs,
            s.events,
            s.raw_records,
            s.lost_events,
            s.lost_records,
            s.total_warnings()
        );
    }
    let bytes: u64 = per_cpu.iter().map(|c| c.bytes).sum();
    let _ = writeln!(
        e,
        "{:>5} {:>12} {:>8} {:>10} {:>8} {:>10} {:>8} {:>9}",
        "total",
        bytes,
        stats.subbufs,
        stats.events,
        stats.raw_records,
        stats.lost_events,
        stats.lost_records,
        stats.total_warnings()
    );
    let _ = writeln!(e, "records decoded: {decoded}, shown: {shown}");
    let _ = writeln!(e, "{stats}");
}

fn warn_summary(stats: &Stats) {
    if stats.total_warnings() > 0 {
        eprintln!(
            "klog-decode: {} warnings (--stats for details)",
            stats.total_warnings()
        );
    }
}

fn decode(cli: &Cli, filter: &Filter, format: Format) -> Result<ExitCode, Error> {
    let path = cli.path.as_ref().expect("clap requires PATH");
    let opts = Options {
        absolute: cli.absolute,
        snapshot: cli.snapshot,
    };
    let trace = Trace::open(path, &opts)?;
    for (p, id) in &trace.refused {
        eprintln!(
            "klog-decode: error: {}: trace id {id:016x}, not the metadata's {:016x}: stream \
             refused (it belongs to another run)",
            p.display(),
            trace.metadata.header.trace_id.unwrap_or(0)
        );
    }
    if trace.streams.is_empty() {
        eprintln!(
            "klog-decode: error: {}: no cpuN stream could be read (the metadata announces cpu0..cpu{})",
            path.display(),
            trace.metadata.header.n_cpus.saturating_sub(1)
        );
        return Ok(ExitCode::FAILURE);
    }
    let total = trace.stream_bytes();
    let bar = (!cli.no_progress && total >= PROGRESS_MIN_BYTES && io::stderr().is_terminal()).then(
        || {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        },
    );
    let clock = trace.clock;
    let out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let jobs = match cli.jobs {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut recs = trace.records_ref();
    let progress = recs.progress();
    let tick = |_| {
        if let Some(b) = &bar {
            b.set_position(progress.load(Ordering::Relaxed));
        }
    };
    let res = if format == Format::Chrome {
        // The owned-record sink, single-threaded (Chrome output is one JSON array: a separator
        // state, and the cost is serde's); the records come from the same merge.
        let cpus: Vec<u16> = trace.streams.iter().map(|(c, _)| *c).collect();
        let mut sink = sink(format, cli.absolute, cpus);
        write_records(
            &trace.metadata,
            std::iter::from_fn(|| recs.next_in_place().map(|r| r.to_record())),
            |raw| clock.to_ns(raw),
            filter,
            sink.as_mut(),
            out,
            tick,
        )
    } else {
        write_lines(
            &trace.metadata,
            clock,
            &mut recs,
            format,
            cli.absolute,
            filter,
            jobs,
            out,
            tick,
        )
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let written = match res {
        Ok(w) => w,
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS)
        }
        Err(e) => return Err(e),
    };
    let (stats, per_cpu) = (recs.stats(), recs.per_cpu());
    drop(recs);
    let events = stats.events + stats.raw_records;
    if cli.stats {
        print_stats(&stats, &per_cpu, written.decoded, written.shown);
    } else if events > 0 {
        warn_summary(&stats);
    }
    if events == 0 {
        let why = why_nothing(&stats, &per_cpu, cli.stats, Some(path));
        if stats.total_warnings() > 0 {
            eprintln!(
                "klog-decode: error: {}: nothing could be decoded: {why}",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        // A valid trace without events is no error, but say why the output is empty.
        eprintln!("klog-decode: {}: no events: {why}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    for note in filter_notes(&trace, filter, &per_cpu, written.shown) {
        eprintln!("klog-decode: note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a trace decoded to no event, for the one-line message on stderr.
fn why_nothing(
    stats: &Stats,
    per_cpu: &[CpuSummary],
    with_stats: bool,
    dir: Option<&Path>,
) -> String {
    let bytes: u64 = per_cpu.iter().map(|c| c.bytes).sum();
    let warnings = stats.total_warnings();
    if warnings > 0 {
        let kinds: Vec<String> = stats
            .warning_counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let mut m = format!("{warnings} warnings ({})", kinds.join(", "));
        if let Some(w) = stats.warnings.first() {
            // The message already names the directory: its files by their names only.
            let w = w.to_string();
            let w = match dir {
                Some(d) => w.replace(&format!("{}/", d.display()), ""),
                None => w,
            };
            m.push_str(&format!("; first: {w}"));
        }
        if !with_stats {
            m.push_str("; --stats for details");
        }
        return m;
    }
    if bytes == 0 {
        return "the cpuN streams are empty (nothing was recorded: the program logged nothing \
                while it was recorded, or its buffers were never flushed or read)"
            .into();
    }
    if stats.lost_events > 0 {
        return format!(
            "{} events were lost (dropped by the writer) and none was recorded",
            stats.lost_events
        );
    }
    format!(
        "{} sub-buffers ({bytes} bytes) hold no events (the program logged nothing while it was \
         recorded)",
        stats.subbufs
    )
}

/// Notes about filters that matched nothing: each `--cpu`, `--target` and `--level` that no
/// record of the trace can match (from the streams and the metadata), and, when nothing at all
/// was shown, which filter rejected everything (a second pass over the records).
fn filter_notes(trace: &Trace, filter: &Filter, per_cpu: &[CpuSummary], shown: u64) -> Vec<String> {
    if filter.is_empty() {
        return Vec::new();
    }
    let meta = &trace.metadata;
    let mut notes = Vec::new();
    if let Some(cpus) = &filter.cpus {
        let have: Vec<String> = per_cpu.iter().map(|c| format!("cpu{}", c.cpu)).collect();
        for &c in cpus {
            match per_cpu.iter().find(|s| s.cpu == c) {
                None => notes.push(format!(
                    "--cpu {c} matched nothing: the trace has no cpu{c} (it has {})",
                    have.join(", ")
                )),
                Some(s) if s.stats.events + s.stats.raw_records == 0 => {
                    notes.push(format!("--cpu {c} matched nothing: no events on cpu{c}"))
                }
                Some(_) => {}
            }
        }
    }
    let mut targets: Vec<&str> = meta.callsites.values().map(|c| c.module.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    for t in &filter.targets {
        if !targets.iter().any(|m| m.starts_with(t.as_str())) {
            let mut list: Vec<&str> = targets.iter().take(8).copied().collect();
            if targets.len() > 8 {
                list.push("…");
            }
            notes.push(format!(
                "--target {t} matched nothing: no callsite's target starts with it (targets in \
                 the trace: {})",
                list.join(", ")
            ));
        }
    }
    if let Some(max) = filter.max_level {
        if !meta
            .callsites
            .values()
            .any(|c| (1..=max).contains(&c.level_raw))
        {
            notes.push(format!(
                "--level {} matched nothing: no callsite is that severe",
                level_name(max)
            ));
        }
    }
    if shown == 0 && notes.is_empty() {
        notes.push(why_none_shown(trace, filter));
    }
    notes
}

fn level_name(l: u8) -> &'static str {
    match l {
        1 => "error",
        2 => "warn",
        3 => "info",
        4 => "debug",
        _ => "trace",
    }
}

/// Which filter rejected every record: each part of `filter` is tried alone on every record.
fn why_none_shown(trace: &Trace, filter: &Filter) -> String {
    let time = Filter {
        since_ns: filter.since_ns,
        until_ns: filter.until_ns,
        absolute: filter.absolute,
        ..Filter::default()
    };
    let rest = Filter {
        since_ns: None,
        until_ns: None,
        ..filter.clone()
    };
    let (mut n_time, mut n_rest) = (0u64, 0u64);
    let mut span: Option<(i128, i128)> = None;
    let mut recs = trace.records_ref();
    let mut origin = None;
    while let Some(r) = recs.next_in_place() {
        let ns = trace.clock.to_ns(r.ts_raw());
        let o = *origin.get_or_insert(ns);
        let t = if filter.absolute { ns } else { ns - o };
        span = Some(span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        n_time += u64::from(time.accepts_ref(r, ns, o));
        n_rest += u64::from(rest.accepts_ref(r, ns, o));
    }
    let secs = |ns: i128| format!("{:.6}", ns as f64 / 1e9);
    match span {
        Some((a, b)) if n_time == 0 => format!(
            "--since/--until matched nothing: the records span {} .. {} s{}",
            secs(a),
            secs(b),
            if filter.absolute {
                " (CLOCK_MONOTONIC)"
            } else {
                " (since the first record)"
            }
        ),
        _ if n_rest == 0 => "no record passes --level, --cpu and --target together".into(),
        _ => "no record passes all the filters together (each alone matches some)".into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::Record {
        live,
        out,
        duration,
        force,
    }) = &cli.cmd
    {
        let stop = stop_on_sigint();
        let dur = match duration.map(Duration::try_from_secs_f64) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => {
                eprintln!(
                    "klog-decode: error: --duration must be a non-negative number of seconds"
                );
                return ExitCode::from(2);
            }
        };
        let opts = live::RecordOptions {
            duration: dur,
            force: *force,
        };
        return match live::record(live, out, &stop, &opts) {
            Ok(r) => {
                eprintln!("{r}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("klog-decode: error: record: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let filter = Filter {
        max_level: cli.level,
        cpus: (!cli.cpu.is_empty()).then(|| cli.cpu.iter().copied().collect::<BTreeSet<_>>()),
        targets: cli.target.clone(),
        since_ns: cli.since,
        until_ns: cli.until,
        absolute: cli.absolute,
    };
    let format = match cli.format {
        Fmt::Text => Format::Text,
        Fmt::Json => Format::Json,
        Fmt::Chrome => Format::Chrome,
    };
    let res = match &cli.follow {
        Some(dir) => {
            let stop = stop_on_sigint();
            let fo = FollowOptions {
                format,
                absolute: cli.absolute,
                filter: filter.clone(),
                window: Duration::from_millis(cli.window_ms),
            };
            live::follow(dir, &fo, &stop, io::stdout().lock()).map(|stats| {
                if cli.stats {
                    eprintln!("{stats}");
                } else {
                    warn_summary(&stats);
                }
                if stats.events + stats.raw_records == 0 {
                    let per_cpu = Vec::new();
                    let why = match stats.total_warnings() {
                        0 => "nothing was logged while it was followed".to_owned(),
                        _ => why_nothing(&stats, &per_cpu, cli.stats, Some(dir)),
                    };
                    eprintln!("klog-decode: {}: no events: {why}", dir.display());
                }
                ExitCode::SUCCESS
            })
        }
        None => decode(&cli, &filter, format),
    };
    match res {
        Ok(code) => code,
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("klog-decode: error: {e}");
            ExitCode::FAILURE
        }
    }
}
