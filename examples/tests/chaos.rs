//! The fault-injection suite: real processes (`chaos-writer`, `klog-decode`), real signals,
//! fork storms, a small tmpfs, two readers, reopened and swapped traces, bit flips. Every event
//! carries its thread and a per-thread sequence number (see `chaos-writer`), so each case checks
//! the decoded trace against what was emitted, independently of the writer's and the decoder's
//! own counters, and against the accounting line of `klog-decode --stats`:
//! `emitted = decoded + lost + overwritten + unrecorded`, exact once the writer finished.
//!
//! Every process runs under a timeout (a hang fails the case); random points come from a seed
//! printed by each case (`CHAOS_SEED=N` replays it). Cases that need a mount (a small tmpfs)
//! skip with a message when `mount` is not permitted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const WRITER: &str = env!("CARGO_BIN_EXE_chaos-writer");
const DEMO: &str = env!("CARGO_BIN_EXE_klog-demo");

#[path = "../src/chaos_events.rs"]
mod chaos_events;
use chaos_events::{mix, NAMES};
const CHILD_T: u64 = chaos_events::CHILD_T as u64;

/// The `klog-decode` binary of this build's profile. It belongs to another package, which
/// `cargo test -p klog-examples` does not build, so it is built here (a no-op when it is fresh).
/// `KLOG_DECODE` overrides it.
fn klog_decode() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("KLOG_DECODE") {
            return PathBuf::from(p);
        }
        let dir = Path::new(WRITER).parent().expect("bin dir");
        let release = dir.file_name().is_some_and(|n| n == "release");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut c = Command::new(env!("CARGO"));
        c.args([
            "build",
            "--quiet",
            "-p",
            "klog-decode",
            "--bin",
            "klog-decode",
        ])
        .arg("--manifest-path")
        .arg(&manifest);
        if release {
            c.arg("--release");
        }
        let st = c.status().expect("run cargo build -p klog-decode");
        assert!(st.success(), "cargo build -p klog-decode: {st}");
        dir.join("klog-decode")
    })
}

// ---------------------------------------------------------------------------------------------
// Scratch space, processes, randomness.

/// A scratch directory (and a live directory in /dev/shm), removed when the case passes; kept
/// for inspection when it fails.
struct Scratch {
    dir: PathBuf,
    shm: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let id = format!("klog-chaos-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        let shm = Path::new("/dev/shm").join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&shm);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&shm).unwrap();
        Scratch { dir, shm }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }
    /// A live directory on tmpfs (not created: the writer creates it).
    fn live(&self, p: &str) -> PathBuf {
        self.shm.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Live leftovers take memory: always removed.
        let _ = std::fs::remove_dir_all(&self.shm);
        if std::thread::panicking() {
            eprintln!("chaos: kept {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A child process with its stdout and stderr in files; killed if still running when dropped.
struct Proc {
    name: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
    status: Option<ExitStatus>,
}

fn spawn(s: &Scratch, name: &str, cmd: &mut Command) -> Proc {
    let out = s.path(&format!("{name}.stdout"));
    let err = s.path(&format!("{name}.stderr"));
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    Proc {
        name: name.to_string(),
        child,
        out,
        err,
        status: None,
    }
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own, not yet reaped, child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }
    /// Closes its stdin (a `--hold` writer then closes its channel and exits).
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }
    fn try_wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.status {
                return Some(st);
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                self.status = Some(st);
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    /// Waits for the exit; a hang fails the case (after killing the process).
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        match self.try_wait_for(timeout) {
            Some(st) => st,
            None => {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                panic!(
                    "{} hangs: still running after {timeout:?}\nstderr: {}",
                    self.name,
                    self.stderr()
                );
            }
        }
    }
    fn running(&mut self) -> bool {
        self.try_wait_for(Duration::ZERO).is_none()
    }
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// A status that is a normal exit or a death by one of `allowed` (never by another signal:
/// SIGBUS, SIGSEGV, SIGABRT, ...).
fn assert_no_foreign_signal(what: &str, st: ExitStatus, allowed: &[i32], stderr: &str) {
    if let Some(sig) = st.signal() {
        assert!(
            allowed.contains(&sig),
            "{what} died by signal {sig} (allowed: {allowed:?})\nstderr: {stderr}"
        );
    }
}

/// splitmix64, seeded from `CHAOS_SEED` or the clock; the seed is printed.
struct Rng(u64);

impl Rng {
    fn new(case: &str) -> Rng {
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("chaos {case}: seed {seed} (CHAOS_SEED={seed} replays it)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

// ---------------------------------------------------------------------------------------------
// The writer.

fn writer() -> Command {
    Command::new(WRITER)
}

/// A writer on a live channel (`--live DIR --hold`), its channel open.
struct LiveWriter {
    p: Proc,
    live: PathBuf,
    counts: PathBuf,
    progress: PathBuf,
}

/// Starts `chaos-writer ARGS --live s.live(name) --hold` and waits until its channel is open
/// (every cpuN file exists once an event went through it).
fn live_writer(s: &Scratch, name: &str, args: &[&str]) -> LiveWriter {
    let live = s.live(name);
    let counts = s.path(&format!("{name}.counts"));
    let progress = s.path(&format!("{name}.progress"));
    let mut p = spawn(
        s,
        name,
        writer()
            .args(args)
            .arg("--live")
            .arg(&live)
            .arg("--hold")
            .arg("--counts")
            .arg(&counts)
            .arg("--progress")
            .arg(&progress),
    );
    wait_progress(&mut p, &progress, 1);
    LiveWriter {
        p,
        live,
        counts,
        progress,
    }
}

impl LiveWriter {
    /// Waits until the writer has emitted everything; returns the total.
    fn emitted(&self) -> u64 {
        wait_for("the writer's counts", Duration::from_secs(120), || {
            self.counts.exists()
        });
        read_counts(&self.counts).iter().sum()
    }
    /// Closes the channel (stdin) and expects a clean exit.
    fn close(&mut self) {
        self.p.close_stdin();
        let st = self.p.wait(Duration::from_secs(60));
        assert!(st.success(), "writer: {st}\n{}", self.p.stderr());
    }
}

/// Waits for `p` (at most `timeout`), which must fail: a non-zero exit or a death by one of
/// `allowed`, no other signal. Returns its stderr.
fn expect_failure(p: &mut Proc, timeout: Duration, allowed: &[i32], what: &str) -> String {
    let st = p.wait(timeout);
    let err = p.stderr();
    assert_no_foreign_signal(&p.name, st, allowed, &err);
    assert!(!st.success(), "{}: {what}\n{err}", p.name);
    err
}

/// [`expect_failure`] with a clear disk-full message.
fn expect_disk_full(p: &mut Proc, timeout: Duration, allowed: &[i32], what: &str) {
    let err = expect_failure(p, timeout, allowed, what);
    assert!(
        mentions(&err, &["no space", "full"]),
        "{}: a clear disk-full error: {err}",
        p.name
    );
}

/// Runs `cmd`, which must be refused ([`expect_failure`] within 30 s); returns its stderr.
fn refused(s: &Scratch, name: &str, cmd: &mut Command, what: &str) -> String {
    expect_failure(&mut spawn(s, name, cmd), Duration::from_secs(30), &[], what)
}

/// `thread T emitted N` lines of a counts file.
fn read_counts(path: &Path) -> Vec<u64> {
    let s = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (the writer wrote no counts)", path.display()));
    s.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["thread", _, "emitted", n] => n.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

/// The `forks N hung H failed F` line of a counts file.
fn read_storm(path: &Path) -> (u64, u64, u64) {
    let s = std::fs::read_to_string(path).unwrap();
    for l in s.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if let ["forks", f, "hung", h, "failed", x] = w.as_slice() {
            return (f.parse().unwrap(), h.parse().unwrap(), x.parse().unwrap());
        }
    }
    panic!("no forks line in {}", path.display())
}

/// Per thread `(started, done)` from a progress file.
fn read_progress(path: &Path) -> Vec<(u64, u64)> {
    let b = std::fs::read(path).unwrap_or_default();
    b.chunks_exact(64)
        .map(|c| {
            let w = |i: usize| u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap());
            (w(0), w(1))
        })
        .collect()
}

/// Waits until the writer's threads have emitted `n` events in total.
fn wait_progress(p: &mut Proc, path: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done: u64 = read_progress(path).iter().map(|x| x.1).sum();
        if done >= n {
            return;
        }
        if !p.running() {
            panic!(
                "writer ended before emitting {n} events: {:?}\nstderr: {}",
                p.status,
                p.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "writer emitted {done} of {n} events in 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `p` has every `cpuN` file of `live` open (a recorder started before the writer
/// closes its channel must have opened the buffers to drain them), or has exited.
fn wait_opened(p: &mut Proc, live: &Path) {
    let cpus: BTreeSet<PathBuf> = std::fs::read_dir(live)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str()?.strip_prefix("cpu"))
                        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                })
                .collect()
        })
        .unwrap_or_default();
    let fds = format!("/proc/{}/fd", p.pid());
    wait_for(
        "the recorder to open the buffers",
        Duration::from_secs(30),
        || {
            let open: BTreeSet<PathBuf> = std::fs::read_dir(&fds)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| std::fs::read_link(e.path()).ok())
                        .collect()
                })
                .unwrap_or_default();
            !p.running() || cpus.iter().all(|c| open.contains(c))
        },
    );
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding and checking.

/// The accounting line of `klog-decode --stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Accounting {
    emitted: u64,
    decoded: u64,
    lost: u64,
    overwritten: u64,
    unrecorded: u64,
    exact: bool,
}

fn parse_accounting(stderr: &str) -> Option<Accounting> {
    let line = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("accounting:"))?;
    let mut kv = BTreeMap::new();
    for w in line.split_whitespace() {
        if let Some((k, v)) = w.split_once('=') {
            kv.insert(k.to_string(), v.to_string());
        }
    }
    let n = |k: &str| kv.get(k).and_then(|v| v.parse().ok());
    Some(Accounting {
        emitted: n("emitted")?,
        decoded: n("decoded")?,
        lost: n("lost")?,
        overwritten: n("overwritten")?,
        unrecorded: n("unrecorded")?,
        exact: kv.get("exact")? == "yes",
    })
}

/// A decoded trace.
#[derive(Debug)]
struct Decoded {
    status: ExitStatus,
    stderr: String,
    /// `(t, seq)` of every decoded event, in output order.
    events: Vec<(u64, u64)>,
    /// Decoded records that are not an event of the writer, with the reason.
    bad: Vec<String>,
    accounting: Option<Accounting>,
    /// The `warnings: N` count of `--stats`.
    warnings: Option<u64>,
}

impl Decoded {
    fn accounting(&self) -> Accounting {
        let a = self.accounting.unwrap_or_else(|| {
            panic!(
                "no `accounting:` line in klog-decode --stats\nstderr: {}",
                self.stderr
            )
        });
        assert_eq!(
            a.emitted,
            a.decoded + a.lost + a.overwritten + a.unrecorded,
            "accounting identity: {a:?}"
        );
        assert_eq!(
            a.decoded,
            self.events.len() as u64 + self.bad.len() as u64,
            "decoded count vs records printed: {a:?}"
        );
        a
    }
    /// Every printed event is one the writer emitted, with its arguments intact, and appears
    /// once; returns the seqs per thread.
    fn distinct(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        assert!(
            self.bad.is_empty(),
            "{} records are not events the writer emitted, e.g. {:?}",
            self.bad.len(),
            &self.bad[..self.bad.len().min(5)]
        );
        let mut per: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for &(t, seq) in &self.events {
            assert!(
                per.entry(t).or_default().insert(seq),
                "event t={t} seq={seq} decoded twice"
            );
        }
        per
    }
}

/// Base64 (standard alphabet, padded) as klog-decode's JSON writes raw records.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Checks one JSON record against the writer's event forms: `Ok(Some((t, seq)))` for an
/// intact event, `Ok(None)` for a lost-events record.
fn check_record(v: &Value) -> Result<Option<(u64, u64)>, String> {
    if v.get("lost").is_some() {
        return Ok(None);
    }
    if let Some(raw) = v.get("raw") {
        let b = raw.as_str().and_then(unbase64).ok_or("raw not base64")?;
        if b.len() != 16 {
            return Err(format!("raw record of {} bytes", b.len()));
        }
        let t = u32::from_le_bytes(b[..4].try_into().unwrap());
        let seq = u64::from_le_bytes(b[4..12].try_into().unwrap());
        let m = u32::from_le_bytes(b[12..].try_into().unwrap());
        if seq % 16 != 15 || m != mix(t, seq) {
            return Err("raw record with damaged contents".into());
        }
        return Ok(Some((u64::from(t), seq)));
    }
    let msg = v["message"].as_str().ok_or("no message")?;
    let args = v["args"].as_array().ok_or("no args")?;
    let t = args.first().and_then(Value::as_u64).ok_or("no t")?;
    let seq = args.get(1).and_then(Value::as_u64).ok_or("no seq")?;
    let t32 = u32::try_from(t).map_err(|_| "t out of range")?;
    let (expect, level) = if msg.ends_with(" late") {
        (format!("chaos t={t} seq={seq} late"), "INFO")
    } else if seq % 16 == 7 {
        let name = NAMES[(seq % 5) as usize];
        let ratio = seq as f64 / 8.0;
        if args.get(2).and_then(Value::as_str) != Some(name)
            || args.get(3).and_then(Value::as_f64) != Some(ratio)
        {
            return Err(format!("damaged arguments {args:?}"));
        }
        (
            format!("chaos t={t} seq={seq} retry name={name} ratio={ratio:.3}"),
            "WARN",
        )
    } else {
        if args.get(2).and_then(Value::as_u64) != Some(u64::from(mix(t32, seq)))
            || args.get(3).and_then(Value::as_bool) != Some(seq % 3 == 0)
            || args.get(4).and_then(Value::as_i64) != Some(-(seq as i64))
        {
            return Err(format!("damaged arguments {args:?}"));
        }
        (
            format!(
                "chaos t={t} seq={seq} v={:#x} ok={} d={}",
                mix(t32, seq),
                seq % 3 == 0,
                -(seq as i64)
            ),
            "INFO",
        )
    };
    if msg != expect || v["level"].as_str() != Some(level) {
        return Err(format!(
            "{msg:?} (level {}), expected {expect:?}",
            v["level"]
        ));
    }
    Ok(Some((t, seq)))
}

/// Runs `klog-decode --format json --stats [extra] DIR` and checks every record.
fn decode(s: &Scratch, name: &str, dir: &Path, extra: &[&str]) -> Decoded {
    let mut p = spawn(
        s,
        name,
        Command::new(klog_decode())
            .args(["--format", "json", "--stats", "--no-progress"])
            .args(extra)
            .arg(dir),
    );
    let status = p.wait(Duration::from_secs(120));
    let stderr = p.stderr();
    assert_no_foreign_signal("klog-decode", status, &[], &stderr);
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for line in p.stdout().lines() {
        match serde_json::from_str::<Value>(line) {
            Err(e) => bad.push(format!("not JSON ({e}): {line}")),
            Ok(v) => match check_record(&v) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => {}
                Err(why) => bad.push(format!("{why}: {line}")),
            },
        }
    }
    let warnings = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("warnings:"))
        .filter_map(|w| w.split_whitespace().next()?.parse().ok())
        .max();
    Decoded {
        status,
        accounting: parse_accounting(&stderr),
        stderr,
        events,
        bad,
        warnings,
    }
}

/// [`decode`], which must succeed.
fn decode_ok(s: &Scratch, name: &str, dir: &Path, extra: &[&str]) -> Decoded {
    let d = decode(s, name, dir, extra);
    assert!(
        d.status.success(),
        "klog-decode {}: {}\n{}",
        dir.display(),
        d.status,
        d.stderr
    );
    d
}

/// Every file under `dir` with its contents (the trees compared are small).
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    m
}

fn assert_tree_unchanged(what: &str, before: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path) {
    let after = snapshot_tree(dir);
    let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(before), names(&after), "{what}: files changed");
    for (p, b) in before {
        assert!(
            after.get(p) == Some(b),
            "{what}: {} is not byte-identical",
            p.display()
        );
    }
}

/// A small tmpfs mounted for the case; unmounted when dropped. `None` (and a message) when
/// mounting is not permitted here.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                eprintln!(
                    "chaos: SKIPPED: cannot mount a tmpfs on {} ({}): {}",
                    dir.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("chaos: SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` (writes `dir/filler` until ENOSPC); returns its length.
fn fill(dir: &Path) -> u64 {
    let mut f = File::create(dir.join("filler")).unwrap();
    let block = vec![0x5au8; 4096];
    let mut n = 0u64;
    while f.write_all(&block).is_ok() {
        n += 4096;
    }
    // Whatever part of a page is left.
    while f.write_all(&block[..1]).is_ok() {
        n += 1;
    }
    n
}

fn mentions(haystack: &str, words: &[&str]) -> bool {
    let h = haystack.to_lowercase();
    words.iter().any(|w| h.contains(&w.to_lowercase()))
}

fn record_cmd(live: &Path, out: &Path) -> Command {
    let mut c = Command::new(klog_decode());
    c.arg("record").arg(live).arg(out);
    c
}

// ---------------------------------------------------------------------------------------------
// (1) Normal exit: exact accounting in both modes with tiny buffers (full at finish).

/// `external`: recorded by `klog-decode record` of the live directory (klog::record has no
/// overwrite mode), else by the writer itself through klog::record.
fn normal_exit(mode: &str, external: bool) {
    let how = if external { "record" } else { "klog-record" };
    let s = Scratch::new(&format!("normal-{mode}-{how}"));
    let trace = s.path("trace");
    let args = [
        "--threads",
        "8",
        "--events",
        "20000",
        "--mode",
        mode,
        "--subbuf-size",
        "4096",
        "--n-subbufs",
        "4",
    ];
    let emitted = if external {
        let mut w = live_writer(&s, "writer", &args);
        let mut r = spawn(&s, "record", &mut record_cmd(&w.live, &trace));
        wait_opened(&mut r, &w.live);
        let emitted = w.emitted();
        w.close();
        let st = r.wait(Duration::from_secs(60));
        assert!(st.success(), "record: {st}\n{}", r.stderr());
        emitted
    } else {
        let counts = s.path("counts");
        let mut w = spawn(
            &s,
            "writer",
            writer()
                .args(args)
                .arg("--record")
                .arg(&trace)
                .arg("--counts")
                .arg(&counts),
        );
        let st = w.wait(Duration::from_secs(120));
        assert!(st.success(), "writer: {st}\n{}", w.stderr());
        read_counts(&counts).iter().sum()
    };
    assert_eq!(emitted, 8 * 20_000);

    let d = decode_ok(&s, "decode", &trace, &[]);
    let per = d.distinct();
    let a = d.accounting();
    eprintln!("chaos normal-{mode}-{how}: {a:?}");
    assert!(
        a.exact,
        "the writer finished, so the totals are exact: {a:?}"
    );
    assert_eq!(a.emitted, emitted, "emitted per the trace vs the writer");
    for (t, seqs) in &per {
        assert!(*t < 8 && seqs.iter().all(|&q| q < 20_000), "thread {t}");
    }
    // The recording ran to the end of the trace: nothing is unrecorded.
    assert_eq!(a.unrecorded, 0, "{a:?}");
    if mode == "overwrite" {
        assert_eq!(a.lost, 0, "overwrite mode drops nothing: {a:?}");
    } else {
        assert_eq!(
            a.overwritten, 0,
            "no-overwrite mode overwrites nothing: {a:?}"
        );
    }
}

#[test]
fn c01_normal_exit_no_overwrite_klog_record_exact() {
    normal_exit("no-overwrite", false);
}

#[test]
fn c01_normal_exit_no_overwrite_external_record_exact() {
    normal_exit("no-overwrite", true);
}

#[test]
fn c01_normal_exit_overwrite_external_record_exact() {
    normal_exit("overwrite", true);
}

// ---------------------------------------------------------------------------------------------
// (2) SIGTERM / SIGHUP / SIGINT of a writer that records through klog::record.

fn writer_signal(sig: i32, name: &str) {
    let s = Scratch::new(&format!("writer-{name}"));
    let mut rng = Rng::new(&format!("writer-{name}"));
    let trace = s.path("trace");
    let progress = s.path("progress");
    let threads = 4u64;
    let mut w = spawn(
        &s,
        "writer",
        writer()
            .args(["--threads", "4", "--events", "0", "--pace", "20"])
            .args([
                "--subbuf-size",
                "262144",
                "--n-subbufs",
                "8",
                "--max-secs",
                "60",
            ])
            .arg("--record")
            .arg(&trace)
            .arg("--progress")
            .arg(&progress),
    );
    wait_progress(&mut w, &progress, 2000 + rng.below(20_000));
    w.signal(sig);
    let st = w.wait(Duration::from_secs(60));
    let err = w.stderr();
    assert_no_foreign_signal("writer", st, &[sig], &err);
    assert!(
        st.success() || st.signal() == Some(sig),
        "writer: {st}\n{err}"
    );
    let started: Vec<u64> = read_progress(&progress).iter().map(|x| x.0).collect();

    let d = decode_ok(&s, "decode", &trace, &[]);
    let per = d.distinct();
    let a = d.accounting();
    eprintln!("chaos writer-{name}: {a:?}");
    assert!(a.exact, "{name} finished the trace: {a:?}");
    assert!(
        a.emitted <= started.iter().sum::<u64>(),
        "the trace claims more events than the threads began"
    );
    for (t, seqs) in &per {
        assert!(*t < threads, "thread {t}");
        let last = seqs.iter().next_back().copied().unwrap_or(0);
        assert!(
            last < started[*t as usize],
            "thread {t}: seq {last} never began"
        );
    }
    if a.lost + a.overwritten + a.unrecorded == 0 {
        // Nothing missing: every thread's events are a prefix 0..n.
        for (t, seqs) in &per {
            assert_eq!(
                seqs.len() as u64,
                seqs.iter().next_back().map_or(0, |l| l + 1),
                "thread {t}: gaps without loss reported"
            );
        }
    }
}

#[test]
fn c02_writer_sigterm_finishes_trace() {
    writer_signal(libc::SIGTERM, "sigterm");
}

#[test]
fn c02_writer_sighup_finishes_trace() {
    writer_signal(libc::SIGHUP, "sighup");
}

#[test]
fn c02_writer_sigint_finishes_trace() {
    writer_signal(libc::SIGINT, "sigint");
}

// ---------------------------------------------------------------------------------------------
// (3) Signals to an external `klog-decode record` at random points, repeated, then a new
//     recorder: every event exactly once across the traces, or reported lost.

#[test]
fn c03_recorder_killed_repeatedly_then_resumed() {
    let s = Scratch::new("recorder-kill");
    let mut rng = Rng::new("recorder-kill");
    let threads = 4u64;
    let per_thread = 40_000u64;
    let events = per_thread.to_string();
    let mut w = live_writer(
        &s,
        "writer",
        &["--threads", "4", "--events", &events, "--pace", "20"],
    );
    let signals = [
        (libc::SIGKILL, "kill"),
        (libc::SIGTERM, "term"),
        (libc::SIGHUP, "hup"),
        (libc::SIGSTOP, "stop"),
    ];
    let mut traces = Vec::new();
    for round in 0..6 {
        if !w.p.running() || w.counts.exists() {
            break;
        }
        let (sig, name) = signals[rng.below(signals.len() as u64) as usize];
        let out = s.path(&format!("rec{round}-{name}"));
        let mut r = spawn(
            &s,
            &format!("rec{round}-{name}"),
            &mut record_cmd(&w.live, &out),
        );
        std::thread::sleep(rng.millis(50, 400));
        let allowed: &[i32] = if sig == libc::SIGSTOP {
            // Stopped and continued: it must carry on; then ended by SIGTERM.
            r.signal(libc::SIGSTOP);
            std::thread::sleep(rng.millis(20, 300));
            r.signal(libc::SIGCONT);
            std::thread::sleep(rng.millis(20, 200));
            r.signal(libc::SIGTERM);
            &[libc::SIGTERM]
        } else {
            r.signal(sig);
            &[sig]
        };
        let st = r.wait(Duration::from_secs(30));
        let err = r.stderr();
        assert_no_foreign_signal(&r.name, st, allowed, &err);
        if sig != libc::SIGKILL {
            assert!(
                st.success() || st.signal() == Some(libc::SIGTERM) || st.signal() == Some(sig),
                "{}: {st}\n{err}",
                r.name
            );
        }
        traces.push(out);
        // No reader for a while: the writer may drop (reported as lost).
        std::thread::sleep(rng.millis(0, 200));
    }
    // The last recorder drains the rest once the writer has finished.
    let emitted = w.emitted();
    let last = s.path("rec-final");
    let mut r = spawn(&s, "rec-final", &mut record_cmd(&w.live, &last));
    wait_opened(&mut r, &w.live);
    w.close();
    let st = r.wait(Duration::from_secs(60));
    assert!(st.success(), "final recorder: {st}\n{}", r.stderr());
    traces.push(last.clone());
    assert_eq!(emitted, threads * per_thread);
    let mut seen: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    let mut final_acc = None;
    let mut reported = 0;
    for (i, dir) in traces.iter().enumerate() {
        let d = decode(&s, &format!("decode{i}"), dir, &[]);
        let per = d.distinct();
        for (t, seqs) in per {
            for seq in seqs {
                if let Some(prev) = seen.insert((t, seq), i) {
                    panic!(
                        "event t={t} seq={seq} recorded twice: in {} and {}",
                        traces[prev].display(),
                        dir.display()
                    );
                }
            }
        }
        if *dir == last {
            final_acc = Some(d.accounting());
        } else {
            reported += d.warnings.unwrap_or(0);
        }
    }
    let a = final_acc.unwrap();
    eprintln!(
        "chaos recorder-kill: {} traces, {} distinct events, {reported} warnings in the killed \
         recorders' traces, final {a:?}",
        traces.len(),
        seen.len()
    );
    assert!(a.exact, "the writer finished: {a:?}");
    assert_eq!(a.emitted, emitted);
    // What the killed recorders consumed is in their traces; the only excuse for an event in
    // none of them is a chunk a recorder was killed while writing, which its trace reports.
    let expected = a.emitted - a.lost - a.overwritten;
    assert!(
        seen.len() as u64 <= expected,
        "more events across the traces than emitted - lost - overwritten ({a:?})"
    );
    assert!(
        seen.len() as u64 == expected || reported > 0,
        "{} events in no trace and nothing reported ({a:?})",
        expected - seen.len() as u64
    );
}

// ---------------------------------------------------------------------------------------------
// (4) fork() storm while logging.

#[test]
fn c04_fork_storm() {
    let s = Scratch::new("fork");
    let trace = s.path("trace");
    let counts = s.path("counts");
    let mut w = spawn(
        &s,
        "writer",
        writer()
            .args(["--threads", "4", "--events", "30000", "--fork-storm", "200"])
            .args(["--subbuf-size", "16384", "--n-subbufs", "8", "--record"])
            .arg(&trace)
            .arg("--counts")
            .arg(&counts),
    );
    let st = w.wait(Duration::from_secs(150));
    let err = w.stderr();
    assert_no_foreign_signal("writer", st, &[], &err);
    let (forks, hung, failed) = read_storm(&counts);
    assert_eq!((hung, failed), (0, 0), "{forks} forks\n{err}");
    assert!(st.success(), "writer: {st}\n{err}");
    let emitted: u64 = read_counts(&counts).iter().sum();

    let d = decode_ok(&s, "decode", &trace, &[]);
    let per = d.distinct();
    assert!(
        per.keys().all(|&t| t < CHILD_T),
        "a child's events reached the parent's trace: threads {:?}",
        per.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        d.warnings,
        Some(0),
        "corrupt data in the trace:\n{}",
        d.stderr
    );
    let a = d.accounting();
    eprintln!("chaos fork: {forks} forks, {a:?}");
    assert!(
        a.exact && a.emitted == emitted,
        "{a:?} vs {emitted} emitted"
    );
    assert_eq!(a.unrecorded, 0, "{a:?}");
}

// ---------------------------------------------------------------------------------------------
// (5) A small tmpfs: a channel that does not fit fails at open; a full disk stops a recorder.

#[test]
fn c05_small_tmpfs_channel_does_not_fit() {
    let s = Scratch::new("tmpfs-open");
    let Some(mnt) = Tmpfs::mount(&s.path("mnt"), "8m") else {
        return;
    };
    let live = mnt.0.join("live");
    // 4 × 4 MiB per CPU: more than 8 MiB on any machine.
    let err = refused(
        &s,
        "writer",
        writer()
            .args(["--threads", "2", "--events", "100000"])
            .args(["--subbuf-size", "4194304", "--n-subbufs", "4", "--live"])
            .arg(&live),
        "a channel larger than the tmpfs opened",
    );
    assert!(
        err.contains(&live.display().to_string()) && mentions(&err, &["space", "free"]),
        "the error names the path and the space: {err}"
    );
    let left: Vec<_> = std::fs::read_dir(&live)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().starts_with("cpu")),
        "buffer files left behind after a failed open: {left:?}"
    );
}

#[test]
fn c05_small_tmpfs_recording_to_full_disk() {
    let s = Scratch::new("tmpfs-full");
    let Some(mnt) = Tmpfs::mount(&s.path("mnt"), "8m") else {
        return;
    };
    let args = [
        "--threads",
        "4",
        "--events",
        "0",
        "--pace",
        "100",
        "--max-secs",
        "20",
    ];
    let w = live_writer(&s, "writer", &args);
    let out = mnt.0.join("trace");
    let mut r = spawn(&s, "record", &mut record_cmd(&w.live, &out));
    // 8 MiB fill up in a few seconds at this pace; the recorder must stop by itself, well
    // before the writer does.
    expect_disk_full(
        &mut r,
        Duration::from_secs(15),
        &[],
        "exited 0 on a full disk",
    );
    w.p.signal(libc::SIGKILL);
}

#[test]
fn c05_small_tmpfs_klog_record_to_full_disk() {
    let s = Scratch::new("tmpfs-klog-record");
    let Some(mnt) = Tmpfs::mount(&s.path("mnt"), "8m") else {
        return;
    };
    // About 20 MB of events in about 2 s.
    let mut w = spawn(
        &s,
        "writer",
        writer()
            .args(["--threads", "4", "--events", "200000", "--pace", "100"])
            .args(["--subbuf-size", "262144", "--n-subbufs", "8", "--record"])
            .arg(mnt.0.join("trace")),
    );
    expect_disk_full(
        &mut w,
        Duration::from_secs(60),
        &[],
        "klog::record on a full disk reported success",
    );
}

// ---------------------------------------------------------------------------------------------
// (6) Two consuming readers: the second is refused, naming the first's pid.

#[test]
fn c06_second_consumer_refused() {
    let s = Scratch::new("two-readers");
    let args = ["--threads", "2", "--events", "3000", "--pace", "10"];
    let mut w = live_writer(&s, "writer", &args);
    let t1 = s.path("trace1");
    let mut r1 = spawn(&s, "record1", &mut record_cmd(&w.live, &t1));
    let pid = r1.pid().to_string();
    // The claim is an flock, listed in /proc/locks with the holder's pid.
    wait_for(
        "the first recorder's claim",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string("/proc/locks")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split_whitespace().nth(4) == Some(pid.as_str()))
        },
    );
    let second = [record_cmd(&w.live, &s.path("trace2")), {
        let mut c = Command::new(klog_decode());
        c.arg("--follow").arg(&w.live);
        c
    }];
    for (name, mut cmd) in ["record2", "follow"].into_iter().zip(second) {
        let err = refused(&s, name, &mut cmd, "a second consuming reader was allowed");
        assert!(
            err.contains(&pid),
            "{name}: the refusal names pid {pid}: {err}"
        );
    }
    // A non-consuming snapshot stays allowed.
    decode_ok(&s, "snapshot", &w.live, &["--snapshot"]).distinct();

    let emitted = w.emitted();
    w.close();
    let st = r1.wait(Duration::from_secs(30));
    assert!(st.success(), "record1: {st}\n{}", r1.stderr());
    let d = decode_ok(&s, "decode", &t1, &[]);
    d.distinct();
    let a = d.accounting();
    assert!(a.exact && a.emitted == emitted, "{a:?} vs {emitted}");
    assert_eq!(
        a.unrecorded, 0,
        "the only reader recorded everything: {a:?}"
    );
    assert_eq!(d.warnings, Some(0), "{}", d.stderr);
}

// ---------------------------------------------------------------------------------------------
// (7) Reopening an existing trace (live, crashed, recorded) is refused and changes nothing.

/// Runs `cmd`, which must be refused with an error naming `dir`, and leave `dir` as it was.
fn refused_unchanged(s: &Scratch, name: &str, cmd: &mut Command, dir: &Path, what: &str) {
    let before = snapshot_tree(dir);
    let err = refused(s, name, cmd, what);
    assert!(
        err.contains(&dir.display().to_string()),
        "{name}: the error names {}: {err}",
        dir.display()
    );
    assert_tree_unchanged(what, &before, dir);
}

fn demo_cmd(live: &Path, s: &Scratch) -> Command {
    let mut c = Command::new(DEMO);
    c.args(["--events", "10", "--live"])
        .arg(live)
        .arg("--out")
        .arg(s.path("demo-out"));
    c
}

#[test]
fn c07_reopen_live_trace_refused() {
    let s = Scratch::new("reopen-live");
    let mut w = live_writer(&s, "writer", &["--threads", "2", "--events", "1000"]);
    w.emitted();
    let mut again = writer();
    again.args(["--events", "10", "--live"]).arg(&w.live);
    refused_unchanged(
        &s,
        "writer2",
        &mut again,
        &w.live,
        "a second handler on a live trace",
    );
    let mut demo = demo_cmd(&w.live, &s);
    refused_unchanged(
        &s,
        "demo",
        &mut demo,
        &w.live,
        "klog-demo --live on a live trace",
    );
    w.close();
}

#[test]
fn c07_reopen_crashed_flight_recorder_refused() {
    let s = Scratch::new("reopen-crashed");
    let args = [
        "--threads",
        "2",
        "--events",
        "0",
        "--pace",
        "10",
        "--mode",
        "overwrite",
    ];
    let mut w = live_writer(&s, "writer", &args);
    wait_progress(&mut w.p, &w.progress, 3000);
    w.p.signal(libc::SIGKILL);
    let _ = w.p.wait(Duration::from_secs(30));
    assert!(
        !snapshot_tree(&w.live).is_empty(),
        "the crashed run left nothing"
    );
    let mut again = writer();
    again.args(["--events", "10", "--live"]).arg(&w.live);
    refused_unchanged(
        &s,
        "writer2",
        &mut again,
        &w.live,
        "a handler over a crashed trace",
    );
    // The crash evidence still decodes.
    let d = decode_ok(&s, "snapshot", &w.live, &["--snapshot"]);
    assert!(!d.distinct().is_empty(), "no events in the crashed trace");
}

#[test]
fn c07_reopen_recorded_trace_refused() {
    let s = Scratch::new("reopen-recorded");
    let trace = s.path("trace");
    let mut w = spawn(
        &s,
        "writer",
        writer()
            .args(["--threads", "2", "--events", "500", "--record"])
            .arg(&trace),
    );
    assert!(w.wait(Duration::from_secs(60)).success(), "{}", w.stderr());
    let mut again = writer();
    again.args(["--events", "10", "--record"]).arg(&trace);
    refused_unchanged(
        &s,
        "writer2",
        &mut again,
        &trace,
        "klog::record into a trace",
    );
    let mut live = live_writer(&s, "live", &["--threads", "1", "--events", "100"]);
    live.emitted();
    let mut rec = record_cmd(&live.live, &trace);
    refused_unchanged(
        &s,
        "record",
        &mut rec,
        &trace,
        "klog-decode record into a trace",
    );
    live.close();
    // klog-demo --live on a directory of the user's: whatever it does, the user's file stays.
    let mine = s.path("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), b"precious").unwrap();
    let mut demo = spawn(&s, "demo", &mut demo_cmd(&mine, &s));
    let st = demo.wait(Duration::from_secs(30));
    assert_no_foreign_signal("klog-demo", st, &[], &demo.stderr());
    assert_eq!(
        std::fs::read(mine.join("notes.txt")).ok().as_deref(),
        Some(&b"precious"[..]),
        "klog-demo --live destroyed a file it did not create"
    );
}

// ---------------------------------------------------------------------------------------------
// (8) Metadata from another run is refused.

#[test]
fn c08_swapped_metadata_refused() {
    let s = Scratch::new("swapped");
    let run = |name: &str| {
        let dir = s.path(name);
        let mut w = spawn(
            &s,
            name,
            writer()
                .args(["--threads", "2", "--events", "2000", "--record"])
                .arg(&dir),
        );
        assert!(w.wait(Duration::from_secs(60)).success(), "{}", w.stderr());
        dir
    };
    let (a, b) = (run("a"), run("b"));
    // Control: each trace decodes with its own metadata.
    let d = decode_ok(&s, "decode-b", &b, &[]);
    assert!(!d.distinct().is_empty());
    std::fs::copy(a.join("metadata"), b.join("metadata")).unwrap();
    let d = decode(&s, "decode-swapped", &b, &[]);
    assert!(
        !d.status.success(),
        "metadata of another run accepted ({} events printed)\n{}",
        d.events.len(),
        d.stderr
    );
    assert!(
        d.events.is_empty() && d.bad.is_empty(),
        "events printed with another run's metadata"
    );
    assert!(
        mentions(
            &d.stderr,
            &["trace id", "another", "does not match", "mismatch"]
        ),
        "a clear error: {}",
        d.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// (9) Bit flips in a recorded cpuN file: reported, never printed as data.

#[test]
fn c09_bit_flips_reported_never_printed() {
    let s = Scratch::new("bitflip");
    let mut rng = Rng::new("bitflip");
    let trace = s.path("trace");
    let mut w = spawn(
        &s,
        "writer",
        writer()
            .args([
                "--threads",
                "2",
                "--events",
                "5000",
                "--subbuf-size",
                "16384",
            ])
            .args(["--n-subbufs", "16", "--record"])
            .arg(&trace),
    );
    assert!(w.wait(Duration::from_secs(60)).success(), "{}", w.stderr());
    let clean = decode_ok(&s, "clean", &trace, &[]);
    let all = clean.distinct();
    let a0 = clean.accounting();
    assert_eq!(clean.warnings, Some(0), "{}", clean.stderr);
    let cpus: Vec<PathBuf> = (0..64)
        .map(|i| trace.join(format!("cpu{i}")))
        .filter(|p| p.metadata().is_ok_and(|m| m.len() > 0))
        .collect();
    assert!(!cpus.is_empty());
    for trial in 0..12 {
        let dir = s.path(&format!("flip{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&trace).unwrap().flatten() {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        let victim = &cpus[rng.below(cpus.len() as u64) as usize];
        let file = dir.join(victim.file_name().unwrap());
        let mut b = std::fs::read(&file).unwrap();
        let bit = rng.below(b.len() as u64 * 8);
        b[(bit / 8) as usize] ^= 1 << (bit % 8);
        std::fs::write(&file, &b).unwrap();
        let what = format!("{} bit {bit}", file.display());
        let d = decode(&s, &format!("flip{trial}"), &dir, &[]);
        // Never printed as data: every record is an original event, once.
        let per = d.distinct();
        for (t, seqs) in &per {
            assert!(
                seqs.iter()
                    .all(|q| all.get(t).is_some_and(|o| o.contains(q))),
                "{what}: thread {t} has events the clean trace does not"
            );
        }
        // Reported: a warning, and the damaged events counted, not silently gone.
        assert!(
            d.warnings.is_some_and(|n| n > 0) || !d.status.success(),
            "{what}: the flip was not reported\n{}",
            d.stderr
        );
        if d.status.success() {
            let a = d.accounting();
            assert_eq!(a.emitted, a0.emitted, "{what}: {a:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (10) Ctrl-C / SIGTERM of `klog-decode record` after its metadata copy failed (disk full).

fn record_metadata_copy_fails(sig: i32, name: &str) {
    let s = Scratch::new(&format!("meta-fail-{name}"));
    let Some(mnt) = Tmpfs::mount(&s.path("mnt"), "1m") else {
        return;
    };
    let trigger = s.path("late");
    let late = trigger.to_str().unwrap();
    let args = [
        "--threads",
        "2",
        "--events",
        "2000",
        "--pace",
        "10",
        "--late-when",
        late,
    ];
    let mut w = live_writer(&s, "writer", &args);
    let out = mnt.0.join("trace");
    let mut r = spawn(&s, "record", &mut record_cmd(&w.live, &out));
    wait_for(
        "the recorder's metadata copy",
        Duration::from_secs(30),
        || out.join("metadata").metadata().is_ok_and(|m| m.len() > 0),
    );
    // The regular events are in the buffers (and mostly on disk) before the disk fills up.
    wait_progress(&mut w.p, &w.progress, 4000);
    let filler = fill(&mnt.0);
    // The writer now defines 64 callsites: its metadata grows past the copy's page, and the
    // copy fails with ENOSPC.
    File::create(&trigger).unwrap();
    w.emitted();
    // Stopping by itself is fine; otherwise the signal must stop it.
    if r.try_wait_for(Duration::from_secs(3)).is_none() {
        r.signal(sig);
    }
    expect_disk_full(
        &mut r,
        Duration::from_secs(15),
        &[sig],
        "exited 0 although its copy failed",
    );
    assert_eq!(
        std::fs::metadata(mnt.0.join("filler"))
            .map(|m| m.len())
            .ok(),
        Some(filler),
        "the recorder touched a file it did not create"
    );
    w.close();
}

#[test]
fn c10_record_sigint_after_metadata_copy_failed() {
    record_metadata_copy_fails(libc::SIGINT, "sigint");
}

#[test]
fn c10_record_sigterm_after_metadata_copy_failed() {
    record_metadata_copy_fails(libc::SIGTERM, "sigterm");
}
