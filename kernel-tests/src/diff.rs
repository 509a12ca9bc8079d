//! Check 1, `diff`: scripted sequences run against the kernel's C relay and the Rust relay side
//! by side, each compared with the reference model after every step.
//!
//! The engine talks to a [`Target`] so it can be exercised off-kernel in unit tests (with a
//! port of relay.c standing in for the kernel).

use std::fs::File;
use std::io::Read;

use crate::model::Model;
use crate::proto::{Command, Ctl, Side};
use crate::seqs::{self, diff_runs, overlay, pattern, CExpect, Expect, Runs, Seq, Step};
use crate::sys::{self, Mapping};
use crate::util::{describe_diff, diag, hex, Readiness};

/// A failed `read()`: the errno (if it came from the kernel) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadErr {
    pub errno: Option<i32>,
    pub msg: String,
}

impl std::fmt::Display for ReadErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<String> for ReadErr {
    fn from(msg: String) -> ReadErr {
        ReadErr { errno: None, msg }
    }
}

/// The two relay channels as the engine sees them.
pub trait Target {
    /// Send one control command.
    fn send(&mut self, cmd: &Command) -> Result<(), String>;
    /// After `open`: open every `c/cpuN` and `rust/cpuN` file; returns the number of CPUs.
    fn open_files(&mut self) -> Result<usize, String>;
    /// Close the files opened by `open_files`.
    fn close_files(&mut self);
    /// One `read()` call of `count` bytes.
    fn read(&mut self, side: Side, cpu: usize, count: usize) -> Result<Vec<u8>, ReadErr>;
    /// `poll(POLLIN, 0)`.
    fn poll(&mut self, side: Side, cpu: usize) -> Result<Readiness, String>;
    /// The `last` file: (C returned a slot, Rust returned a slot).
    fn last(&mut self) -> Result<(bool, bool), String>;
    /// `mmap(len)` of the buffer at offset 0, read-only, and a copy of the mapped bytes.
    fn image(&mut self, side: Side, cpu: usize, len: usize) -> Result<Vec<u8>, String>;
}

/// The real thing: the test module's debugfs files.
pub struct KernelTarget {
    ctl: Ctl,
    /// Per CPU: (c/cpuN, rust/cpuN).
    files: Vec<(File, File)>,
}

impl KernelTarget {
    pub fn new(ctl: Ctl) -> KernelTarget {
        KernelTarget {
            ctl,
            files: Vec::new(),
        }
    }

    fn file(&mut self, side: Side, cpu: usize) -> Result<&mut File, String> {
        let pair = self
            .files
            .get_mut(cpu)
            .ok_or_else(|| format!("{side}/cpu{cpu}: not open"))?;
        Ok(match side {
            Side::C => &mut pair.0,
            Side::Rust => &mut pair.1,
        })
    }
}

impl Target for KernelTarget {
    fn send(&mut self, cmd: &Command) -> Result<(), String> {
        self.ctl.send(cmd).map_err(|e| e.to_string())
    }

    fn open_files(&mut self) -> Result<usize, String> {
        self.files.clear();
        let ncpu = self.ctl.count_both()?;
        for cpu in 0..ncpu {
            let c = self.ctl.open_cpu(Side::C, cpu).map_err(|e| e.to_string())?;
            let r = self
                .ctl
                .open_cpu(Side::Rust, cpu)
                .map_err(|e| e.to_string())?;
            self.files.push((c, r));
        }
        Ok(ncpu)
    }

    fn close_files(&mut self) {
        self.files.clear();
    }

    fn read(&mut self, side: Side, cpu: usize, count: usize) -> Result<Vec<u8>, ReadErr> {
        let f = self.file(side, cpu)?;
        let mut buf = vec![0u8; count];
        loop {
            match f.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ReadErr {
                        errno: e.raw_os_error(),
                        msg: format!("read({side}/cpu{cpu}, {count}): {e}"),
                    })
                }
            }
        }
    }

    fn poll(&mut self, side: Side, cpu: usize) -> Result<Readiness, String> {
        let f = self.file(side, cpu)?;
        sys::poll_one(f, libc::POLLIN, 0)
            .map(Readiness::from_revents)
            .map_err(|e| format!("poll({side}/cpu{cpu}): {e}"))
    }

    fn last(&mut self) -> Result<(bool, bool), String> {
        self.ctl.last()
    }

    fn image(&mut self, side: Side, cpu: usize, len: usize) -> Result<Vec<u8>, String> {
        let f = self.file(side, cpu)?;
        let m =
            Mapping::new(f, len, 0).map_err(|e| format!("mmap({side}/cpu{cpu}, {len}): {e}"))?;
        m.snapshot()
            .map_err(|e| format!("mmap({side}/cpu{cpu}, {len}): {e}"))
    }
}

/// How a sequence ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Fail(String),
}

/// Result of one sequence plus the diagnostic lines to print under it.
#[derive(Clone, Debug)]
pub struct SeqOutcome {
    pub verdict: Verdict,
    pub lines: Vec<String>,
    /// After `close`, the C files returned EIO / POLLHUP instead of the remaining data and
    /// POLLERR (debugfs's full proxy once the file is removed). Reported once per check.
    pub c_gone: Option<String>,
}

/// How many mismatches of one kind are spelled out per sequence.
const MAX_REPORTED: usize = 3;
/// Hex bytes printed per transcript.
const MAX_HEX: usize = 1024;

struct Mismatches {
    first_step: Option<usize>,
    count: usize,
    lines: Vec<String>,
}

impl Mismatches {
    fn new() -> Mismatches {
        Mismatches {
            first_step: None,
            count: 0,
            lines: Vec::new(),
        }
    }
    fn add(&mut self, step: usize, what: String, detail: Vec<String>) {
        self.first_step.get_or_insert(step);
        self.count += 1;
        if self.count <= MAX_REPORTED {
            self.lines.push(what);
            self.lines
                .extend(detail.into_iter().map(|l| format!("  {l}")));
        }
    }
    fn any(&self) -> bool {
        self.count > 0
    }
    fn first(&self) -> String {
        self.lines.first().cloned().unwrap_or_default()
    }
}

struct Run<'a> {
    t: &'a mut dyn Target,
    seq: Seq,
    /// What C does where it differs from Rust (empty in clean sequences).
    cexp: CExpect,
    ncpu: usize,
    models: Vec<Model>,
    /// Rust differs from the model: always a failure.
    rust: Mismatches,
    /// C differs from its expectation (Rust's behaviour unless recorded otherwise): always a
    /// failure.
    c: Mismatches,
    /// C's behaviour differs from Rust's somewhere (required in a defect sequence), with the
    /// first such difference.
    c_vs_rust: Option<String>,
    /// Observed C images that differ from the model, for the report: (step, cpu, runs).
    c_images: Vec<(usize, usize, Runs)>,
    /// Per CPU, per read event: bytes read.
    tx_c: Vec<Vec<Vec<u8>>>,
    tx_r: Vec<Vec<Vec<u8>>>,
    /// A read that returns more than this in one drain is a runaway.
    limit: usize,
    /// `close` was sent.
    closed: bool,
    /// First sign of C files that stopped working after close.
    c_gone: Option<String>,
}

/// Label of step `i` (`#final` past the script).
fn step_label(seq: &Seq, i: usize) -> String {
    match seq.steps.get(i) {
        Some(st) => format!("#{i} `{st}`"),
        None if i == INITIAL => "after open".to_string(),
        None => format!("#{i} `close; final read`"),
    }
}

/// Step index of the checks right after `open`.
const INITIAL: usize = usize::MAX;

/// Drain result: bytes, per-call sizes, hit the limit.
type Drained = (Vec<u8>, Vec<usize>, bool);

impl Run<'_> {
    fn drain(
        &mut self,
        side: Side,
        cpu: usize,
        chunk: usize,
        once: bool,
    ) -> Result<Drained, ReadErr> {
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let b = self.t.read(side, cpu, chunk)?;
            if b.len() > chunk {
                return Err(format!("read({chunk}) returned {} bytes", b.len()).into());
            }
            if b.is_empty() {
                return Ok((out, sizes, false));
            }
            sizes.push(b.len());
            out.extend_from_slice(&b);
            if once {
                return Ok((out, sizes, false));
            }
            if out.len() > self.limit {
                return Ok((out, sizes, true));
            }
        }
    }

    fn drain_model(&mut self, cpu: usize, chunk: usize, once: bool) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        loop {
            let b = self.models[cpu].read(chunk);
            if b.is_empty() {
                break;
            }
            sizes.push(b.len());
            out.extend_from_slice(&b);
            if once {
                break;
            }
        }
        (out, sizes)
    }

    /// Read `cpus` on all three and compare.
    fn read_step(&mut self, i: usize, cpus: &[usize], chunk: usize, once: bool) {
        let label = step_label(&self.seq, i);
        for &cpu in cpus {
            let (mb, ms) = self.drain_model(cpu, chunk, once);
            let r = self.drain(Side::Rust, cpu, chunk, once);
            let c = self.drain(Side::C, cpu, chunk, once);
            let rb = match r {
                Ok((rb, rs, runaway)) => {
                    if runaway {
                        self.rust.add(
                            i,
                            format!("{label}: rust/cpu{cpu} read more than {} bytes without reaching EOF", self.limit),
                            vec![],
                        );
                    } else if rb != mb {
                        self.rust.add(
                            i,
                            format!("{label}: rust/cpu{cpu} bytes differ from the model"),
                            describe_diff("rust", &rb, "model", &mb),
                        );
                    } else if rs != ms {
                        self.rust.add(
                            i,
                            format!("{label}: rust/cpu{cpu} read() sizes differ from the model"),
                            vec![sizes_diff(&rs, &ms)],
                        );
                    }
                    rb
                }
                Err(e) => {
                    self.rust.add(i, format!("{label}: {e}"), vec![]);
                    Vec::new()
                }
            };
            // CPUs with recorded C bytes are compared once, at the end of the sequence.
            let recorded = self.cexp.bytes_of(cpu).is_some();
            let cb = match c {
                Ok((cb, _, runaway)) => {
                    if runaway {
                        self.c.add(
                            i,
                            format!("{label}: c/cpu{cpu} read more than {} bytes without reaching EOF (stopped)", self.limit),
                            vec![],
                        );
                    } else if cb != rb {
                        self.c_vs_rust.get_or_insert_with(|| {
                            format!("{label}: c/cpu{cpu} bytes differ from rust/cpu{cpu}")
                        });
                        if !recorded {
                            self.c.add(
                                i,
                                format!("{label}: c/cpu{cpu} bytes differ from rust/cpu{cpu}"),
                                describe_diff("c", &cb, "rust", &rb),
                            );
                        }
                    }
                    cb
                }
                Err(e) if self.closed && e.errno == Some(libc::EIO) => {
                    self.c_gone
                        .get_or_insert(format!("read c/cpu{cpu} after close: {e}"));
                    Vec::new()
                }
                Err(e) => {
                    self.c.add(i, format!("{label}: {e}"), vec![]);
                    Vec::new()
                }
            };
            self.tx_r[cpu].push(rb);
            self.tx_c[cpu].push(cb);
        }
    }

    fn poll_step(&mut self, i: usize) {
        let label = step_label(&self.seq, i);
        for cpu in 0..self.ncpu {
            let m = Readiness::of_model(&self.models[cpu]);
            let r = self.t.poll(Side::Rust, cpu);
            let c = self.t.poll(Side::C, cpu);
            let r = match r {
                Ok(r) => {
                    if r != m {
                        self.rust.add(
                            i,
                            format!("{label}: poll rust/cpu{cpu} = {r}, model = {m}"),
                            vec![],
                        );
                    }
                    Some(r)
                }
                Err(e) => {
                    self.rust.add(i, format!("{label}: {e}"), vec![]);
                    None
                }
            };
            match c {
                Ok(Readiness::Other(rev)) if self.closed && rev & libc::POLLHUP != 0 => {
                    self.c_gone.get_or_insert(format!(
                        "poll c/cpu{cpu} after close: revents {rev:#x} (POLLHUP)"
                    ));
                }
                Ok(c) => {
                    let want = self.cexp.poll_of(i, cpu).or(r);
                    let rs = r.map_or("error".to_string(), |r| r.to_string());
                    if Some(c) != r {
                        self.c_vs_rust.get_or_insert_with(|| {
                            format!("{label}: poll c/cpu{cpu} = {c}, rust = {rs}")
                        });
                    }
                    if Some(c) != want {
                        let w = want.map_or("?".to_string(), |w| w.to_string());
                        self.c.add(
                            i,
                            format!(
                                "{label}: poll c/cpu{cpu} = {c}, expected {w} (rust {rs}, model {m})"
                            ),
                            vec![],
                        );
                    }
                }
                Err(e) => self.c.add(i, format!("{label}: {e}"), vec![]),
            }
        }
    }

    fn last_step(&mut self, i: usize, model_ok: bool) {
        let label = step_label(&self.seq, i);
        match self.t.last() {
            Ok((c, r)) => {
                if r != model_ok {
                    self.rust.add(
                        i,
                        format!(
                            "{label}: last: rust reserve returned {}, model {}",
                            slot(r),
                            slot(model_ok)
                        ),
                        vec![],
                    );
                }
                if c != r {
                    self.c_vs_rust.get_or_insert_with(|| {
                        format!(
                            "{label}: last: c reserve returned {}, rust {}",
                            slot(c),
                            slot(r)
                        )
                    });
                }
                let want = self.cexp.last_of(i).unwrap_or(r);
                if c != want {
                    self.c.add(
                        i,
                        format!(
                            "{label}: last: c reserve returned {}, expected {} (rust {})",
                            slot(c),
                            slot(want),
                            slot(r)
                        ),
                        vec![],
                    );
                }
            }
            Err(e) => self.rust.add(i, format!("{label}: {e}"), vec![]),
        }
    }

    /// Map both buffers of `cpu`; Rust must show the model's image, C the same image with the
    /// recorded runs laid over it.
    fn image_step(&mut self, i: usize, cpu: usize) {
        let label = step_label(&self.seq, i);
        let g = self.seq.geom;
        let size = g.s * g.n;
        let len = sys::page_align(size);
        let model = self.models[cpu].image().to_vec();
        let mut head = |side: Side| -> Result<Vec<u8>, String> {
            let mut b = self.t.image(side, cpu, len)?;
            if b.len() < size {
                return Err(format!(
                    "mmap({side}/cpu{cpu}, {len}): {} bytes, buffer has {size}",
                    b.len()
                ));
            }
            b.truncate(size);
            Ok(b)
        };
        let r = head(Side::Rust);
        let c = head(Side::C);
        match &r {
            Ok(rb) if *rb != model => self.rust.add(
                i,
                format!("{label}: rust/cpu{cpu} mapping differs from the model image"),
                describe_diff("rust", rb, "model", &model),
            ),
            Ok(_) => {}
            Err(e) => self.rust.add(i, format!("{label}: {e}"), vec![]),
        }
        match c {
            Ok(cb) => {
                if r.as_ref().is_ok_and(|rb| *rb != cb) {
                    self.c_vs_rust.get_or_insert_with(|| {
                        format!("{label}: c/cpu{cpu} mapping differs from rust/cpu{cpu}")
                    });
                }
                let want = match self.cexp.image_of(i) {
                    Some(runs) => overlay(&model, runs),
                    None => model.clone(),
                };
                if cb != want {
                    self.c.add(
                        i,
                        format!("{label}: c/cpu{cpu} mapping differs from the expected image"),
                        describe_diff("c", &cb, "expected", &want),
                    );
                }
                let runs = diff_runs(&model, &cb);
                if !runs.is_empty() {
                    self.c_images.push((i, cpu, runs));
                }
            }
            Err(e) => self.c.add(i, format!("{label}: {e}"), vec![]),
        }
    }

    /// Apply step `i`. `Err` = the control command failed (sequence aborted).
    fn step(&mut self, i: usize) -> Result<(), String> {
        let st = self.seq.steps[i].clone();
        let cmd = match st {
            Step::Write { cpu, len, seed } => Some(Command::Write { cpu, len, seed }),
            Step::Reserve { cpu, len, seed } => Some(Command::Reserve { cpu, len, seed }),
            Step::Flush => Some(Command::Flush),
            Step::Reset => Some(Command::Reset),
            Step::Consumed { cpu, n } => Some(Command::Consumed { cpu, n }),
            Step::Read { .. } | Step::ReadOnce { .. } | Step::Image { .. } => None,
        };
        if let Some(cmd) = &cmd {
            self.t
                .send(cmd)
                .map_err(|e| format!("{}: ctl: {e}", step_label(&self.seq, i)))?;
        }
        match st {
            Step::Write { cpu, len, seed } => {
                self.models[cpu].write(&pattern(len, seed));
            }
            Step::Reserve { cpu, len, seed } => {
                let ok = self.models[cpu].reserve(&pattern(len, seed)).is_some();
                self.last_step(i, ok);
            }
            Step::Flush => self.models.iter_mut().for_each(Model::flush),
            Step::Reset => self.models.iter_mut().for_each(Model::reset),
            Step::Consumed { cpu, n } => self.models[cpu].subbufs_consumed(n),
            Step::Read { cpu, chunk } => {
                let cpus: Vec<usize> = match cpu {
                    Some(c) => vec![c],
                    None => (0..self.ncpu).collect(),
                };
                self.read_step(i, &cpus, chunk.max(1), false);
            }
            Step::ReadOnce { cpu, count } => self.read_step(i, &[cpu], count.max(1), true),
            Step::Image { cpu } => self.image_step(i, cpu),
        }
        self.poll_step(i);
        Ok(())
    }

    /// `close`, the final read, and the POLLERR check.
    fn finish(&mut self) -> Result<(), String> {
        let i = self.seq.steps.len();
        self.t
            .send(&Command::Close)
            .map_err(|e| format!("close: ctl: {e}"))?;
        self.models.iter_mut().for_each(Model::close);
        self.closed = true;
        let cpus: Vec<usize> = (0..self.ncpu).collect();
        let chunk = self.seq.final_chunk.max(1);
        self.read_step(i, &cpus, chunk, false);
        // poll_step compares Rust with the model (ERR after close); C must say ERR too, in
        // every sequence.
        self.poll_step(i);
        for cpu in 0..self.ncpu {
            match self.t.poll(Side::C, cpu) {
                Ok(Readiness::Err) => {}
                Ok(Readiness::Other(rev)) if rev & libc::POLLHUP != 0 => {}
                Ok(r) => return Err(format!("after close: poll c/cpu{cpu} = {r}, expected ERR")),
                Err(e) => return Err(format!("after close: {e}")),
            }
        }
        Ok(())
    }
}

/// Where two lists of read() sizes part.
fn sizes_diff(rust: &[usize], model: &[usize]) -> String {
    let k = rust
        .iter()
        .zip(model)
        .position(|(a, b)| a != b)
        .unwrap_or(rust.len().min(model.len()));
    format!(
        "read() call #{k}: rust returned {:?}, model {:?} ({} calls vs {})",
        rust.get(k),
        model.get(k),
        rust.len(),
        model.len()
    )
}

fn slot(b: bool) -> &'static str {
    if b {
        "a slot"
    } else {
        "NULL"
    }
}

/// Transcript of one CPU, read events separated by `|`.
fn transcript_hex(events: &[Vec<u8>]) -> String {
    let mut s = String::new();
    let mut budget = MAX_HEX;
    for (k, e) in events.iter().enumerate() {
        if k > 0 {
            s.push('|');
        }
        s.push_str(&hex(e, budget));
        budget = budget.saturating_sub(e.len());
    }
    s
}

/// Run one sequence against `t`. Never panics on target misbehaviour.
pub fn run_seq(t: &mut dyn Target, seq: &Seq) -> SeqOutcome {
    let mut lines = Vec::new();
    let g = seq.geom;
    if let Err(e) = t.send(&Command::Open {
        s: g.s,
        n: g.n,
        h: g.h,
        overwrite: g.overwrite,
    }) {
        return SeqOutcome {
            verdict: Verdict::Fail(format!("open: ctl: {e}")),
            lines,
            c_gone: None,
        };
    }
    let ncpu = match t.open_files() {
        Ok(n) => n,
        Err(e) => {
            t.close_files();
            let _ = t.send(&Command::Close);
            return SeqOutcome {
                verdict: Verdict::Fail(format!("opening the relay files: {e}")),
                lines,
                c_gone: None,
            };
        }
    };
    let seq = if seq.max_cpu().is_some_and(|c| c >= ncpu) {
        lines.push(format!(
            "note: only {ncpu} CPUs: CPU numbers folded modulo {ncpu}"
        ));
        seq.fold_cpus(ncpu)
    } else {
        seq.clone()
    };
    let (defect, cexp) = match &seq.expect {
        Expect::Clean => (false, CExpect::default()),
        Expect::Defect(e) => (true, e.clone()),
    };
    let limit = (2 * g.s * g.n).clamp(64 << 10, 1 << 20);
    let mut run = Run {
        t,
        cexp,
        ncpu,
        models: vec![Model::open(g.s, g.n, g.h, g.overwrite); ncpu],
        rust: Mismatches::new(),
        c: Mismatches::new(),
        c_vs_rust: None,
        c_images: Vec::new(),
        tx_c: vec![Vec::new(); ncpu],
        tx_r: vec![Vec::new(); ncpu],
        limit,
        seq,
        closed: false,
        c_gone: None,
    };
    // Initial state: nothing readable anywhere.
    run.poll_step(INITIAL);
    let mut abort = None;
    for i in 0..run.seq.steps.len() {
        if let Err(e) = run.step(i) {
            abort = Some(e);
            break;
        }
    }
    let finish = if abort.is_none() {
        run.finish()
    } else {
        let _ = run.t.send(&Command::Close);
        Ok(())
    };
    run.t.close_files();

    let Run {
        seq,
        cexp,
        rust,
        mut c,
        c_vs_rust,
        c_images,
        tx_c,
        tx_r,
        c_gone,
        ..
    } = run;
    if let Some(g) = &c_gone {
        lines.push(format!(
            "note: {g}; the final C read is not compared (see diff/c-files-after-close)"
        ));
    }
    // Recorded C bytes: every byte the CPU's C file returned, concatenated.
    let end = seq.steps.len();
    for (cpu, want) in &cexp.bytes {
        match tx_c.get(*cpu) {
            Some(ev) => {
                let got = ev.concat();
                if got != *want {
                    c.add(
                        end,
                        format!("c/cpu{cpu} bytes differ from the recorded expectation"),
                        describe_diff("c", &got, "expected", want),
                    );
                }
            }
            None => c.add(
                end,
                format!("recorded C bytes for cpu{cpu}, but there are only {ncpu} CPUs"),
                vec![],
            ),
        }
    }

    let mut fail: Option<String> = None;
    if let Some(e) = abort {
        fail = Some(e);
    } else if let Err(e) = finish {
        fail = Some(e);
    }
    if rust.any() {
        fail.get_or_insert_with(|| {
            format!(
                "rust differs from the model ({} mismatches): {}",
                rust.count,
                rust.first()
            )
        });
        lines.push("rust vs model:".into());
        lines.extend(rust.lines.iter().map(|l| format!("  {l}")));
    }
    if defect && cexp.is_empty() {
        fail.get_or_insert_with(|| {
            "defect sequence without a recorded C expectation (programming error: record what \
             the C relay does, see the observed-c lines)"
                .into()
        });
    }
    if c.any() {
        fail.get_or_insert_with(|| {
            if defect {
                format!(
                    "c differs from the recorded relay.c behaviour ({} mismatches): {}",
                    c.count,
                    c.first()
                )
            } else {
                format!(
                    "c differs from rust in a clean sequence ({} mismatches): {}",
                    c.count,
                    c.first()
                )
            }
        });
        lines.push(
            if defect {
                "c vs expected:"
            } else {
                "c vs rust:"
            }
            .into(),
        );
        lines.extend(c.lines.iter().map(|l| format!("  {l}")));
    }
    if defect && c_vs_rust.is_none() {
        fail.get_or_insert_with(|| {
            "defect not triggered: C behaved exactly like Rust in every compared respect".into()
        });
    }

    let verdict = if let Some(f) = fail {
        let mark = rust.first_step.into_iter().chain(c.first_step).min();
        if defect {
            observed_lines(&tx_c, &tx_r, &c_images, c_vs_rust.as_deref(), &mut lines);
        }
        lines.push(format!("script: {}", seq.script(mark)));
        Verdict::Fail(f)
    } else {
        Verdict::Ok
    };
    SeqOutcome {
        verdict,
        lines,
        c_gone,
    }
}

/// What C did where it differs from Rust, in the form the sequence builder records it.
fn observed_lines(
    tx_c: &[Vec<Vec<u8>>],
    tx_r: &[Vec<Vec<u8>>],
    c_images: &[(usize, usize, Runs)],
    c_vs_rust: Option<&str>,
    lines: &mut Vec<String>,
) {
    for (cpu, (c_ev, r_ev)) in tx_c.iter().zip(tx_r).enumerate() {
        if c_ev.concat() != r_ev.concat() {
            lines.push(format!("observed-c: cpu{cpu}: {}", transcript_hex(c_ev)));
            lines.push(format!("observed-rust: cpu{cpu}: {}", transcript_hex(r_ev)));
        }
    }
    for (i, cpu, runs) in c_images {
        let runs: Vec<String> = runs
            .iter()
            .map(|(off, b)| format!("({off}, \"{}\")", hex(b, MAX_HEX)))
            .collect();
        lines.push(format!(
            "observed-c-image: #{i} cpu{cpu}: model image with [{}]",
            runs.join(", ")
        ));
    }
    match c_vs_rust {
        Some(d) => lines.push(format!("first c/rust difference: {d}")),
        None => lines.push("C behaved exactly like Rust".into()),
    }
}

/// The `diff` check: every sequence of [`seqs::all`]. Prints one line per sequence.
pub fn check(ctl: &Ctl) -> Result<(), String> {
    let mut t = KernelTarget::new(ctl.clone());
    // CPU count for the random generator: open a small channel once.
    let ncpu = match ctl.send(&Command::Open {
        s: 64,
        n: 1,
        h: 0,
        overwrite: false,
    }) {
        Ok(()) => {
            let n = ctl.count_both();
            let _ = ctl.send(&Command::Close);
            n?
        }
        Err(e) => return Err(format!("open: ctl: {e}")),
    };
    diag(&format!("diff: {ncpu} CPUs"));
    let all = seqs::all(ncpu);
    let (mut failed, mut defects) = (0usize, 0usize);
    let mut c_gone: Vec<(String, String)> = Vec::new();
    for seq in &all {
        let name = format!("diff/{}", seq.name);
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seq(&mut t, seq)))
            .unwrap_or_else(|p| SeqOutcome {
                verdict: Verdict::Fail(format!("panic: {}", panic_text(&*p))),
                lines: vec![],
                c_gone: None,
            });
        match &out.verdict {
            Verdict::Ok if seq.expect != Expect::Clean => {
                defects += 1;
                println!("check: {name}: ok (C reproduces the recorded relay.c defect)");
            }
            Verdict::Ok => crate::util::result_line(&name, &Ok(())),
            Verdict::Fail(e) => {
                failed += 1;
                crate::util::result_line(&name, &Err(e.clone()));
            }
        }
        for l in &out.lines {
            diag(l);
        }
        if let Some(g) = out.c_gone {
            c_gone.push((seq.name.clone(), g));
        }
    }
    if let Some((first_seq, what)) = c_gone.first() {
        crate::util::result_line(
            "diff/c-files-after-close",
            &Err(format!(
                "in {} sequences (first {first_seq}: {what}) the C relay files stopped working after \
                 `close`, PROTOCOL.md says open descriptors keep working: debugfs_create_file's \
                 full proxy returns EIO/POLLHUP once the file is removed (and has no .mmap); \
                 create_buf_file must use debugfs_create_file_unsafe",
                c_gone.len()
            )),
        );
    }
    diag(&format!(
        "diff: {} sequences, {failed} failed, {defects} relay.c defects reproduced",
        all.len()
    ));
    match (failed, c_gone.is_empty()) {
        (0, true) => Ok(()),
        (0, false) => Err("C relay files unusable after close (diff/c-files-after-close)".into()),
        (n, true) => Err(format!("{n} of {} sequences failed", all.len())),
        (n, false) => Err(format!(
            "{n} of {} sequences failed; C relay files unusable after close",
            all.len()
        )),
    }
}

/// Text of a caught panic payload.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic)".into()
    }
}
