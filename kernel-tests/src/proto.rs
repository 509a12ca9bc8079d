//! Client side of the `rsrelay_test` control protocol (kernel-tests/PROTOCOL.md): commands
//! written to `ctl`, and parsers for the read-only files `last`, `stats`, `stress`, `bench`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Default location of the test module's debugfs directory.
pub const DEFAULT_DIR: &str = "/sys/kernel/debug/rsrelay_test";

/// One control command (one `write(2)` to `ctl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `open S N H O`
    Open {
        s: usize,
        n: usize,
        h: usize,
        overwrite: bool,
    },
    /// `write CPU LEN SEED`
    Write {
        cpu: usize,
        len: usize,
        seed: u8,
    },
    /// `reserve CPU LEN SEED`
    Reserve {
        cpu: usize,
        len: usize,
        seed: u8,
    },
    Flush,
    Reset,
    /// `consumed CPU N`
    Consumed {
        cpu: usize,
        n: usize,
    },
    Close,
    /// `stress MS LEN`
    Stress {
        ms: u64,
        len: usize,
    },
    StressWait,
    /// `bench LEN ITERS`
    Bench {
        len: usize,
        iters: u64,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Open { s, n, h, overwrite } => {
                write!(f, "open {s} {n} {h} {}", u8::from(*overwrite))
            }
            Command::Write { cpu, len, seed } => write!(f, "write {cpu} {len} {seed}"),
            Command::Reserve { cpu, len, seed } => write!(f, "reserve {cpu} {len} {seed}"),
            Command::Flush => f.write_str("flush"),
            Command::Reset => f.write_str("reset"),
            Command::Consumed { cpu, n } => write!(f, "consumed {cpu} {n}"),
            Command::Close => f.write_str("close"),
            Command::Stress { ms, len } => write!(f, "stress {ms} {len}"),
            Command::StressWait => f.write_str("stress_wait"),
            Command::Bench { len, iters } => write!(f, "bench {len} {iters}"),
        }
    }
}

/// Which relay implementation a file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The kernel's C relay (`c/cpuN`).
    C,
    /// This project's Rust relay module (`rust/cpuN`).
    Rust,
}

impl Side {
    pub fn dir(self) -> &'static str {
        match self {
            Side::C => "c",
            Side::Rust => "rust",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

/// The test module's debugfs directory.
#[derive(Clone, Debug)]
pub struct Ctl {
    base: PathBuf,
}

impl Ctl {
    /// `$RSRELAY_TEST_DIR`, else [`DEFAULT_DIR`].
    pub fn from_env() -> Ctl {
        let base = std::env::var_os("RSRELAY_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        Ctl { base }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Send one command: the exact bytes of `cmd` (no trailing newline) in a single `write(2)`.
    pub fn send(&self, cmd: &Command) -> io::Result<()> {
        let text = cmd.to_string();
        let path = self.base.join("ctl");
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
        loop {
            match f.write(text.as_bytes()) {
                Ok(n) if n == text.len() => return Ok(()),
                Ok(n) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("`{text}`: short write to ctl ({n} of {} bytes)", text.len()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::new(e.kind(), format!("`{text}`: {e}"))),
            }
        }
    }

    /// `c/cpuN` or `rust/cpuN`.
    pub fn cpu_path(&self, side: Side, cpu: usize) -> PathBuf {
        self.base.join(side.dir()).join(format!("cpu{cpu}"))
    }

    /// Open `c/cpuN` / `rust/cpuN` read-only.
    pub fn open_cpu(&self, side: Side, cpu: usize) -> io::Result<File> {
        let p = self.cpu_path(side, cpu);
        File::open(&p).map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", p.display())))
    }

    /// Number of `cpuN` files in `c/` or `rust/`; they must be exactly `cpu0..cpuK-1`.
    pub fn count_cpus(&self, side: Side) -> Result<usize, String> {
        let dir = self.base.join(side.dir());
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
        let mut ids = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| format!("read_dir {}: {e}", dir.display()))?;
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if let Some(num) = name.strip_prefix("cpu") {
                match num.parse::<usize>() {
                    Ok(i) => ids.push(i),
                    Err(_) => return Err(format!("unexpected file {}/{name}", dir.display())),
                }
            }
        }
        ids.sort_unstable();
        if ids.is_empty() {
            return Err(format!("no cpu* files in {}", dir.display()));
        }
        if ids.iter().enumerate().any(|(i, &id)| i != id) {
            return Err(format!(
                "{}: cpu files are not cpu0..: {ids:?}",
                dir.display()
            ));
        }
        Ok(ids.len())
    }

    /// Number of CPUs: `c/` and `rust/` must agree.
    pub fn count_both(&self) -> Result<usize, String> {
        let c = self.count_cpus(Side::C)?;
        let r = self.count_cpus(Side::Rust)?;
        if c != r {
            return Err(format!("c/ has {c} cpu files, rust/ has {r}"));
        }
        Ok(c)
    }

    /// Whole contents of a read-only control file (`last`, `stats`, `stress`, `bench`).
    pub fn read_text(&self, name: &str) -> Result<String, String> {
        let p = self.base.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("read {}: {e}", p.display()))
    }

    /// `last`, parsed.
    pub fn last(&self) -> Result<(bool, bool), String> {
        parse_last(&self.read_text("last")?)
    }
}

fn fields<T: std::str::FromStr>(line: &str, n: usize, what: &str) -> Result<Vec<T>, String> {
    let v: Vec<&str> = line.split_whitespace().collect();
    if v.len() != n {
        return Err(format!(
            "{what}: expected {n} fields, got {} in {line:?}",
            v.len()
        ));
    }
    v.iter()
        .map(|s| {
            s.parse::<T>()
                .map_err(|_| format!("{what}: bad number {s:?} in {line:?}"))
        })
        .collect()
}

fn flag(v: u64, what: &str) -> Result<bool, String> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(format!("{what}: expected 0 or 1, got {v}")),
    }
}

/// `last`: `C R\n` → (C returned a slot, Rust returned a slot).
pub fn parse_last(text: &str) -> Result<(bool, bool), String> {
    let line = text.trim();
    let v: Vec<u64> = fields(line, 2, "last")?;
    Ok((flag(v[0], "last")?, flag(v[1], "last")?))
}

/// One line of `stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatLine {
    pub cpu: u64,
    pub produced: u64,
    pub consumed: u64,
    pub dropped_msgs: u64,
    pub dropped_bytes: u64,
    pub toobig_msgs: u64,
    pub last_toobig: u64,
}

/// `stats`: one line per Rust buffer, 7 numbers each.
pub fn parse_stats(text: &str) -> Result<Vec<StatLine>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let v: Vec<u64> = fields(line, 7, "stats")?;
        out.push(StatLine {
            cpu: v[0],
            produced: v[1],
            consumed: v[2],
            dropped_msgs: v[3],
            dropped_bytes: v[4],
            toobig_msgs: v[5],
            last_toobig: v[6],
        });
    }
    if out.is_empty() {
        return Err("stats: empty".into());
    }
    Ok(out)
}

/// One line of `stress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterLine {
    pub writer: u64,
    pub attempted: u64,
    pub written: u64,
    pub dropped: u64,
}

/// `stress`: `writer_id attempted written dropped` per line; writer ids must be unique.
pub fn parse_stress(text: &str) -> Result<Vec<WriterLine>, String> {
    let mut out: Vec<WriterLine> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let v: Vec<u64> = fields(line, 4, "stress")?;
        if out.iter().any(|w| w.writer == v[0]) {
            return Err(format!("stress: writer {} listed twice", v[0]));
        }
        out.push(WriterLine {
            writer: v[0],
            attempted: v[1],
            written: v[2],
            dropped: v[3],
        });
    }
    if out.is_empty() {
        return Err("stress: empty".into());
    }
    Ok(out)
}

/// `bench`: `len iters c_ns_per_write rust_ns_per_write`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchLine {
    pub len: u64,
    pub iters: u64,
    pub c_ns: f64,
    pub rust_ns: f64,
}

pub fn parse_bench(text: &str) -> Result<BenchLine, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() != 1 {
        return Err(format!(
            "bench: expected one line, got {}: {text:?}",
            lines.len()
        ));
    }
    let v: Vec<&str> = lines[0].split_whitespace().collect();
    if v.len() != 4 {
        return Err(format!("bench: expected 4 fields in {:?}", lines[0]));
    }
    let int = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("bench: bad integer {s:?} in {:?}", lines[0]))
    };
    let float = |s: &str| match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("bench: bad time {s:?} in {:?}", lines[0])),
    };
    Ok(BenchLine {
        len: int(v[0])?,
        iters: int(v[1])?,
        c_ns: float(v[2])?,
        rust_ns: float(v[3])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_text() {
        let c = Command::Open {
            s: 4096,
            n: 4,
            h: 4,
            overwrite: true,
        };
        assert_eq!(c.to_string(), "open 4096 4 4 1");
        assert_eq!(
            Command::Write {
                cpu: 2,
                len: 10,
                seed: 255
            }
            .to_string(),
            "write 2 10 255"
        );
        assert_eq!(Command::StressWait.to_string(), "stress_wait");
        assert_eq!(
            Command::Consumed { cpu: 1, n: 1 }.to_string(),
            "consumed 1 1"
        );
    }

    #[test]
    fn last_file() {
        assert_eq!(parse_last("1 0\n"), Ok((true, false)));
        assert_eq!(parse_last("0 1"), Ok((false, true)));
        assert!(parse_last("1\n").is_err());
        assert!(parse_last("2 1\n").is_err());
        assert!(parse_last("").is_err());
    }

    #[test]
    fn stress_file() {
        let t = "0 100 90 10\n1 5 5 0\n100 7 0 7\n";
        let w = parse_stress(t).expect("valid");
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[2],
            WriterLine {
                writer: 100,
                attempted: 7,
                written: 0,
                dropped: 7
            }
        );
        assert!(parse_stress("").is_err());
        assert!(parse_stress("0 1 2\n").is_err());
        assert!(parse_stress("0 1 1 0\n0 1 1 0\n").is_err());
        assert!(parse_stress("0 1 x 0\n").is_err());
    }

    #[test]
    fn bench_file() {
        let b = parse_bench("16 200000 12.3 11.9\n").expect("valid");
        assert_eq!((b.len, b.iters), (16, 200000));
        assert!((b.c_ns - 12.3).abs() < 1e-9 && (b.rust_ns - 11.9).abs() < 1e-9);
        let b = parse_bench("64 10 20 30").expect("integers are fine");
        assert_eq!(b.rust_ns, 30.0);
        assert!(parse_bench("16 200000 12.3\n").is_err());
        assert!(parse_bench("16 200000 nan 1\n").is_err());
        assert!(parse_bench("1 2 3 4\n1 2 3 4\n").is_err());
    }

    #[test]
    fn stats_file() {
        let s = parse_stats("0 10 9 1 48 0 0\n1 0 0 0 0 0 0\n").expect("valid");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].dropped_bytes, 48);
        assert!(parse_stats("0 1 2 3\n").is_err());
    }
}
