//! `klog-decode [--absolute] [--stats] [--snapshot] PATH`: prints a klog trace directory as text.

use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use klog_decode::{Error, Options, Trace};

/// Decode a klog trace directory (`metadata` + `cpu0..cpuN-1`) into text.
#[derive(Debug, Parser)]
#[command(name = "klog-decode", version, about)]
struct Cli {
    /// Print CLOCK_MONOTONIC seconds instead of seconds since the first record.
    #[arg(long)]
    absolute: bool,
    /// Print decoding statistics and warnings to stderr.
    #[arg(long)]
    stats: bool,
    /// The cpuN files are mmap snapshots (whole-buffer images of an overwrite-mode channel).
    #[arg(long)]
    snapshot: bool,
    /// The trace directory.
    path: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = Options {
        absolute: cli.absolute,
        snapshot: cli.snapshot,
    };
    let run = || -> Result<klog_decode::Stats, Error> {
        let trace = Trace::open(&cli.path, &opts)?;
        let out = io::stdout().lock();
        trace.write_text(&opts, BufWriter::with_capacity(1 << 16, out))
    };
    match run() {
        Ok(stats) => {
            if cli.stats {
                eprintln!("{stats}");
            } else if stats.total_warnings() > 0 {
                eprintln!(
                    "klog-decode: {} warnings (--stats for details)",
                    stats.total_warnings()
                );
            }
            ExitCode::SUCCESS
        }
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("klog-decode: error: {e}");
            ExitCode::FAILURE
        }
    }
}
