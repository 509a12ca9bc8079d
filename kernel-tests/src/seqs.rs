//! Scripted operation sequences for the differential check, and the fixed-seed generator of
//! random sequences restricted to operations that cannot hit a known relay.c defect.

use std::fmt;

use crate::util::Readiness;

/// Channel geometry and mode of one sequence (`open S N H O`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    /// Sub-buffer size S.
    pub s: usize,
    /// Number of sub-buffers N.
    pub n: usize,
    /// Header bytes H reserved by every successful `subbuf_start`.
    pub h: usize,
    /// Overwrite (flight recorder) mode.
    pub overwrite: bool,
}

impl fmt::Display for Geom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S={} N={} H={} {}",
            self.s,
            self.n,
            self.h,
            if self.overwrite {
                "overwrite"
            } else {
                "no-overwrite"
            }
        )
    }
}

/// One step of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `write CPU LEN SEED`.
    Write { cpu: usize, len: usize, seed: u8 },
    /// `reserve CPU LEN SEED`, then compare `last`.
    Reserve { cpu: usize, len: usize, seed: u8 },
    /// `flush` (every CPU).
    Flush,
    /// `reset` (every CPU).
    Reset,
    /// `consumed CPU N`.
    Consumed { cpu: usize, n: usize },
    /// `read()` with `chunk`-byte calls until it returns 0; `cpu: None` = every CPU.
    Read { cpu: Option<usize>, chunk: usize },
    /// A single `read()` call of `count` bytes on one CPU (a partial read).
    ReadOnce { cpu: usize, count: usize },
    /// `mmap` the whole buffer (`PAGE_ALIGN(S*N)` bytes) of `c/cpuN` and `rust/cpuN` and compare
    /// the first `S*N` bytes: Rust with the model's image, C with the same image (or the
    /// recorded C image). relay.c does not zero its pages at allocation, so this step belongs
    /// only in sequences that have written every byte of the C buffer before.
    Image { cpu: usize },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Write { cpu, len, seed } => write!(f, "write {cpu} {len} {seed}"),
            Step::Reserve { cpu, len, seed } => write!(f, "reserve {cpu} {len} {seed}"),
            Step::Flush => f.write_str("flush"),
            Step::Reset => f.write_str("reset"),
            Step::Consumed { cpu, n } => write!(f, "consumed {cpu} {n}"),
            Step::Read { cpu: None, chunk } => write!(f, "read * /{chunk}"),
            Step::Read {
                cpu: Some(c),
                chunk,
            } => write!(f, "read {c} /{chunk}"),
            Step::ReadOnce { cpu, count } => write!(f, "read-once {cpu} {count}"),
            Step::Image { cpu } => write!(f, "image {cpu}"),
        }
    }
}

impl Step {
    fn cpu(&self) -> Option<usize> {
        match *self {
            Step::Write { cpu, .. }
            | Step::Reserve { cpu, .. }
            | Step::Consumed { cpu, .. }
            | Step::ReadOnce { cpu, .. }
            | Step::Image { cpu } => Some(cpu),
            Step::Read { cpu, .. } => cpu,
            Step::Flush | Step::Reset => None,
        }
    }

    fn set_cpu(&mut self, new: usize) {
        match self {
            Step::Write { cpu, .. }
            | Step::Reserve { cpu, .. }
            | Step::Consumed { cpu, .. }
            | Step::ReadOnce { cpu, .. }
            | Step::Image { cpu } => *cpu = new,
            Step::Read { cpu: Some(c), .. } => *c = new,
            Step::Read { cpu: None, .. } | Step::Flush | Step::Reset => {}
        }
    }
}

/// Runs of bytes laid over an image: `(offset, bytes)`.
pub type Runs = Vec<(usize, Vec<u8>)>;

/// What the kernel's C relay does where it differs from the Rust relay, as observed on the real
/// kernel (Linux 6.12). Everything not listed must equal Rust (and so the model) exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CExpect {
    /// Per CPU: every byte read from `c/cpuN` during the sequence (all read steps and the final
    /// read after `close`), concatenated.
    pub bytes: Vec<(usize, Vec<u8>)>,
    /// Per `reserve` step: whether C's `relay_reserve` returned a slot.
    pub last: Vec<(usize, bool)>,
    /// Per (step, CPU): what `poll` on `c/cpuN` reports after the step.
    pub poll: Vec<(usize, usize, Readiness)>,
    /// Per `image` step: the C buffer's first `S*N` bytes are the model's image with these runs
    /// laid over it.
    pub image: Vec<(usize, Runs)>,
}

impl CExpect {
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
            && self.last.is_empty()
            && self.poll.is_empty()
            && self.image.is_empty()
    }

    pub fn bytes_of(&self, cpu: usize) -> Option<&[u8]> {
        self.bytes
            .iter()
            .find(|(c, _)| *c == cpu)
            .map(|(_, b)| b.as_slice())
    }

    pub fn last_of(&self, step: usize) -> Option<bool> {
        self.last.iter().find(|(s, _)| *s == step).map(|&(_, l)| l)
    }

    pub fn poll_of(&self, step: usize, cpu: usize) -> Option<Readiness> {
        self.poll
            .iter()
            .find(|(s, c, _)| *s == step && *c == cpu)
            .map(|&(_, _, r)| r)
    }

    pub fn image_of(&self, step: usize) -> Option<&Runs> {
        self.image.iter().find(|(s, _)| *s == step).map(|(_, r)| r)
    }
}

/// `base` with `runs` laid over it (runs reaching past the end are cut).
pub fn overlay(base: &[u8], runs: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for (off, b) in runs {
        for (i, &x) in b.iter().enumerate() {
            if let Some(y) = out.get_mut(off + i) {
                *y = x;
            }
        }
    }
    out
}

/// Where `got` differs from `base` (same length), as runs; runs closer than 8 bytes are merged.
pub fn diff_runs(base: &[u8], got: &[u8]) -> Runs {
    let mut runs: Runs = Vec::new();
    let mut last_end = 0usize;
    for (i, (&g, &b)) in got.iter().zip(base).enumerate() {
        if g == b {
            continue;
        }
        match runs.last_mut() {
            Some((off, bytes)) if i - last_end < 8 => {
                bytes.clear();
                bytes.extend_from_slice(&got[*off..=i]);
            }
            _ => runs.push((i, vec![g])),
        }
        last_end = i + 1;
    }
    runs
}

/// What the C relay is expected to do in a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No known relay.c defect is reachable: C must behave exactly like the Rust relay.
    Clean,
    /// The sequence deliberately triggers a relay.c defect (docs/ARCHITECTURE.md, "Differences
    /// from kernel/relay.c"): C must do exactly what the expectation says (and differ from Rust
    /// somewhere). An empty expectation is a programming error and fails the sequence.
    Defect(CExpect),
}

/// One scripted sequence.
#[derive(Clone, Debug)]
pub struct Seq {
    pub name: String,
    pub geom: Geom,
    pub steps: Vec<Step>,
    pub expect: Expect,
    /// Chunk size of the final read after `close`.
    pub final_chunk: usize,
}

impl Seq {
    /// Highest CPU number a step names.
    pub fn max_cpu(&self) -> Option<usize> {
        self.steps.iter().filter_map(Step::cpu).max()
    }

    /// The same sequence with every CPU number taken modulo `ncpu` (for machines with fewer
    /// CPUs than the script names).
    pub fn fold_cpus(&self, ncpu: usize) -> Seq {
        let ncpu = ncpu.max(1);
        let mut s = self.clone();
        for st in &mut s.steps {
            if let Some(c) = st.cpu() {
                st.set_cpu(c % ncpu);
            }
        }
        if let Expect::Defect(e) = &mut s.expect {
            e.bytes.iter_mut().for_each(|(c, _)| *c %= ncpu);
            e.poll.iter_mut().for_each(|(_, c, _)| *c %= ncpu);
        }
        s
    }

    /// The script as one line, `>>` marking step `mark`.
    pub fn script(&self, mark: Option<usize>) -> String {
        let mut out = format!("[{}]", self.geom);
        for (i, st) in self.steps.iter().enumerate() {
            out.push_str(if Some(i) == mark { "; >>" } else { "; " });
            out.push_str(&format!("#{i} {st}"));
        }
        out
    }
}

/// Decode hex, ignoring `|` separators.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|&c| c != b'|').collect();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// `write`/`reserve` payload: byte i = `(seed + i) as u8`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (seed as usize + i) as u8).collect()
}

/// Builder with automatically varied seeds.
struct B {
    seq: Seq,
    seed: u8,
    defect: bool,
    c: CExpect,
}

impl B {
    fn new(name: &str, s: usize, n: usize, h: usize, overwrite: bool) -> B {
        B {
            seq: Seq {
                name: name.to_string(),
                geom: Geom { s, n, h, overwrite },
                steps: Vec::new(),
                expect: Expect::Clean,
                final_chunk: 4096,
            },
            seed: 1,
            defect: false,
            c: CExpect::default(),
        }
    }
    fn next_seed(&mut self) -> u8 {
        let s = self.seed;
        self.seed = self.seed.wrapping_add(37);
        s
    }
    fn w(mut self, cpu: usize, len: usize) -> B {
        let seed = self.next_seed();
        self.seq.steps.push(Step::Write { cpu, len, seed });
        self
    }
    fn ws(mut self, cpu: usize, len: usize, times: usize) -> B {
        for _ in 0..times {
            self = self.w(cpu, len);
        }
        self
    }
    fn r(mut self, cpu: usize, len: usize) -> B {
        let seed = self.next_seed();
        self.seq.steps.push(Step::Reserve { cpu, len, seed });
        self
    }
    fn flush(mut self) -> B {
        self.seq.steps.push(Step::Flush);
        self
    }
    fn reset(mut self) -> B {
        self.seq.steps.push(Step::Reset);
        self
    }
    fn consumed(mut self, cpu: usize, n: usize) -> B {
        self.seq.steps.push(Step::Consumed { cpu, n });
        self
    }
    /// Drain every CPU.
    fn rd(mut self, chunk: usize) -> B {
        self.seq.steps.push(Step::Read { cpu: None, chunk });
        self
    }
    /// Drain one CPU.
    fn rdc(mut self, cpu: usize, chunk: usize) -> B {
        self.seq.steps.push(Step::Read {
            cpu: Some(cpu),
            chunk,
        });
        self
    }
    fn once(mut self, cpu: usize, count: usize) -> B {
        self.seq.steps.push(Step::ReadOnce { cpu, count });
        self
    }
    /// Compare the mmap images of one CPU.
    fn image(mut self, cpu: usize) -> B {
        self.seq.steps.push(Step::Image { cpu });
        self
    }
    fn final_chunk(mut self, c: usize) -> B {
        self.seq.final_chunk = c;
        self
    }
    fn defect(mut self) -> B {
        self.defect = true;
        self
    }
    /// Index of the step pushed last.
    fn cur(&self) -> usize {
        self.seq.steps.len().checked_sub(1).expect("no step yet")
    }
    /// Record what the kernel's C relay returned on `cpu` (an `observed-c:` line: hex, `|`
    /// between read events).
    fn expect_c(mut self, cpu: usize, observed: &str) -> B {
        let bytes = unhex(observed).unwrap_or_else(|| panic!("{}: bad hex", self.seq.name));
        self.c.bytes.push((cpu, bytes));
        self
    }
    /// Record what C's `relay_reserve` returned at the `reserve` step pushed last.
    fn c_last(mut self, slot: bool) -> B {
        let i = self.cur();
        assert!(
            matches!(self.seq.steps[i], Step::Reserve { .. }),
            "{}: c_last after a non-reserve step",
            self.seq.name
        );
        self.c.last.push((i, slot));
        self
    }
    /// Record what `poll` on `c/cpuN` reports after the step pushed last, for each of `cpus`.
    fn c_poll(mut self, cpus: &[usize], r: Readiness) -> B {
        let i = self.cur();
        self.c.poll.extend(cpus.iter().map(|&cpu| (i, cpu, r)));
        self
    }
    /// Record the C image at the `image` step pushed last: the model's image with these
    /// `(offset, hex)` runs laid over it.
    fn c_image(mut self, runs: &[(usize, &str)]) -> B {
        let i = self.cur();
        assert!(
            matches!(self.seq.steps[i], Step::Image { .. }),
            "{}: c_image after a non-image step",
            self.seq.name
        );
        let runs = runs
            .iter()
            .map(|&(off, h)| {
                let b = unhex(h).unwrap_or_else(|| panic!("{}: bad hex", self.seq.name));
                (off, b)
            })
            .collect();
        self.c.image.push((i, runs));
        self
    }
    fn done(mut self) -> Seq {
        if self.defect {
            self.seq.expect = Expect::Defect(self.c);
        } else {
            assert!(
                self.c.is_empty(),
                "{}: C expectations in a clean sequence",
                self.seq.name
            );
        }
        self.seq
    }
}

/// The hand-written sequences: clean ones first, then the ones that trigger relay.c defects.
pub fn fixed() -> Vec<Seq> {
    let mut v = Vec::new();

    // ---- clean -------------------------------------------------------------------------
    v.push(
        B::new("s64-n4-h4-basic", 64, 4, 4, false)
            .w(0, 10)
            .rd(4096)
            .w(0, 60) // switch, exactly S-H
            .w(0, 50) // switch
            .rd(7)
            .flush()
            .rd(1)
            .w(0, 65) // > S: too big before any switch, in relay.c too
            .w(0, 1)
            .rd(64)
            .done(),
    );
    v.push(
        B::new("s100-n2-h4-exact-fit-full", 100, 2, 4, false)
            .w(0, 96) // exactly S-H: offset == S
            .w(0, 96) // switch into sub-buffer 1, full again
            .w(0, 96) // switch refused: dropped
            .w(0, 30) // dropped
            .rd(64)
            .w(0, 30)
            .w(0, 66) // exactly S-H-off
            .w(0, 1) // switch
            .rd(7)
            .flush()
            .rd(4096)
            .done(),
    );
    {
        let mut b = B::new("s4096-n4-h4-all-cpus", 4096, 4, 4, false);
        for i in 0..16 {
            b = b.w(i % 4, 1000 + 13 * i);
            if i == 7 {
                b = b.rd(4096);
            }
        }
        v.push(b.flush().rd(64).w(3, 4092).w(2, 4092).rd(4096).done());
    }
    v.push(
        B::new("s64-n4-h4-reserve-ow", 64, 4, 4, true)
            .r(0, 20)
            .r(0, 40) // exactly S-H-off
            .r(0, 10) // switch
            .rd(7)
            .r(1, 60) // exactly S-H
            .r(2, 1)
            .r(3, 59)
            .rd(4096)
            .w(0, 5)
            .r(0, 45) // exactly S-H-off again
            .r(0, 65) // too big (> S)
            .r(0, 1)
            .rd(1)
            .done(),
    );
    v.push(
        B::new("s64-n2-h4-overwrite-laps", 64, 2, 4, true)
            .ws(0, 30, 10)
            .rd(7)
            .ws(0, 30, 5)
            .ws(1, 60, 5)
            .rd(1)
            .ws(0, 60, 3)
            .ws(2, 17, 9)
            .rd(64)
            .done(),
    );
    v.push(
        B::new("s64-n1-h4-ow-exact", 64, 1, 4, true)
            .w(0, 60)
            .rd(64)
            .w(0, 60)
            .w(0, 60)
            .rd(64)
            .w(0, 20)
            .rd(7)
            .w(0, 60)
            .w(1, 60)
            .w(1, 1)
            .rd(4096)
            .done(),
    );
    v.push(
        B::new("s64-n1-h0-ow-exact", 64, 1, 0, true)
            .w(0, 64)
            .rd(64)
            .w(0, 64)
            .rd(7)
            .w(0, 64)
            .w(0, 64)
            .rd(4096)
            .w(0, 10)
            .w(0, 54) // exactly S-off
            .w(0, 1)
            .rd(1)
            .done(),
    );
    v.push(
        B::new("s64-n1-h4-nw-full", 64, 1, 4, false)
            .w(0, 60)
            .w(0, 1) // refused: dropped
            .rd(7)
            .w(0, 1) // retry succeeds
            .w(0, 59)
            .rd(64)
            .w(0, 30)
            .w(0, 30) // refused
            .rd(1)
            .done(),
    );
    v.push(
        B::new("s64-n2-h4-nw-full-then-drain", 64, 2, 4, false)
            .w(0, 60)
            .w(0, 60)
            .w(0, 60) // refused
            .w(1, 30)
            .w(1, 30)
            .w(1, 30)
            .w(1, 30) // refused
            .rd(7)
            .ws(0, 20, 2)
            .rd(64)
            .flush()
            .rd(4096)
            .ws(0, 60, 4)
            .rd(1)
            .ws(0, 60, 2)
            .done(),
    );
    v.push(
        B::new("s4096-n8-h0-nw-large", 4096, 8, 0, false)
            .w(0, 4096) // exactly S
            .w(0, 1)
            .w(0, 4095) // exactly S-off
            .w(0, 4097) // too big
            .w(0, 2000)
            .rd(4096)
            .ws(1, 2048, 9)
            .ws(2, 4000, 10) // fills all 8 sub-buffers, then dropped
            .rd(4096)
            .ws(2, 100, 3)
            .rd(64)
            .done(),
    );
    v.push(
        B::new("s64-n4-h4-reset-after-full-read", 64, 4, 4, false)
            .w(0, 30)
            .w(1, 20)
            .w(0, 40) // switch
            .rd(4096)
            .reset()
            .w(0, 10)
            .w(2, 60)
            .rd(7)
            .w(0, 60)
            .rd(64)
            .done(),
    );
    v.push(
        B::new("s100-n2-h0-ow-reset-after-full-read", 100, 2, 0, true)
            .ws(0, 50, 5)
            .rd(64)
            .reset()
            .w(0, 100)
            .w(0, 3)
            .rd(1)
            .done(),
    );
    v.push(
        B::new("s100-n4-h0-ow-mixed", 100, 4, 0, true)
            .w(0, 33)
            .w(0, 33)
            .w(0, 34) // exactly S-off
            .w(0, 50)
            .w(0, 50)
            .w(0, 100) // exactly S
            .w(0, 101) // too big
            .ws(1, 45, 4)
            .ws(2, 99, 3)
            .ws(3, 1, 12)
            .rd(7)
            .ws(0, 70, 7)
            .rd(64)
            .done(),
    );
    v.push(
        B::new("s64-n8-h4-partial-reads", 64, 8, 4, false)
            .w(0, 10)
            .once(0, 3)
            .w(0, 10)
            .rd(1)
            .w(0, 50) // switch
            .once(0, 5)
            .w(0, 50)
            .once(0, 100)
            .w(1, 60)
            .once(1, 64)
            .w(1, 5)
            .rdc(1, 7)
            .w(2, 20)
            .rd(64)
            .done(),
    );
    v.push(
        B::new("s64-n4-h4-flush-headers", 64, 4, 4, false)
            .flush() // header-only sub-buffers
            .flush()
            .w(0, 10)
            .flush()
            .rd(7)
            .flush()
            .flush()
            .flush()
            .flush() // refused everywhere now
            .rd(64)
            .flush()
            .w(0, 10)
            .rd(1)
            .done(),
    );
    v.push(
        B::new("s100-n2-h4-reserve-nw", 100, 2, 4, false)
            .r(0, 96) // exactly S-H
            .r(0, 96) // switch
            .r(0, 50) // refused: NULL on both
            .rd(64)
            .r(0, 50)
            .r(1, 96)
            .r(1, 3)
            .rd(4096)
            .done(),
    );
    {
        let mut b = B::new("s64-n4-h4-ow-all-cpus-mixed", 64, 4, 4, true);
        for i in 0..24 {
            let cpu = (i * 3) % 4;
            b = if i % 3 == 0 {
                b.r(cpu, 1 + (i * 7) % 60)
            } else {
                b.w(cpu, 1 + (i * 11) % 60)
            };
            if i % 8 == 7 {
                b = b.rd([1, 7, 64][i / 8]);
            }
        }
        v.push(b.done());
    }
    {
        let mut b = B::new("s4096-n2-h4-ow-lap", 4096, 2, 4, true);
        for i in 0..20 {
            b = b.w(i % 4, 4092);
        }
        v.push(b.rd(4096).ws(0, 1000, 3).rd(7).done());
    }
    {
        let mut b = B::new("s100-n8-h4-nw-many", 100, 8, 4, false);
        for i in 0..60 {
            b = b.w(i % 4, 25);
            if i == 30 {
                b = b.rd(7);
            }
        }
        v.push(b.rd(100).ws(0, 96, 3).final_chunk(1).done());
    }

    // ---- relay.c defects ----------------------------------------------------------------
    // A flushed empty sub-buffer without a header: padding == S; the read position lands in
    // padding and relay.c returns bytes again.
    v.push(
        B::new("defect-h0-empty-flush-read", 64, 4, 0, false)
            .w(0, 10)
            .rd(4096)
            .flush()
            .flush()
            .w(0, 5)
            .flush()
            .flush()
            .flush()
            .rd(4096)
            // Linux 6.12.117: the other CPUs' flushed empty sub-buffers (padding == S) are never
            // consumed by read(), so poll keeps saying IN.
            .c_poll(&[1, 2, 3], Readiness::In)
            .w(0, 7)
            .c_poll(&[1, 2, 3], Readiness::In)
            .rd(3)
            .c_poll(&[1, 2, 3], Readiness::In)
            .defect()
            // Linux 6.12.117: the 5 bytes after two empty flushed sub-buffers come twice.
            .expect_c(
                0,
                "0102030405060708090a|262728292a262728292a|4b4c4d4e4f5051|",
            )
            .done(),
    );
    // relay_subbufs_consumed keeps bytes_consumed: the next read starts part-way in.
    v.push(
        B::new("defect-consumed-after-partial-read", 64, 4, 4, false)
            .w(1, 30)
            .w(1, 30)
            .w(1, 30)
            .w(1, 30)
            .once(1, 10)
            .consumed(1, 1)
            .rd(4096)
            .defect()
            // Linux 6.12.117: the read resumes 10 bytes into sub-buffer 1 (header and 6 bytes lost).
            .expect_c(
                1,
                "00000000010203040506|5152535455565758595a5b5c5d5e5f606162636465666768707172737475\
                 767778797a7b7c7d7e7f808182838485868788898a8b8c8d|",
            )
            .done(),
    );
    // With H=4, a write of S-H+1..=S bytes switches first, then fails: a bare header.
    v.push(
        B::new("defect-toobig-with-header", 64, 4, 4, false)
            .w(0, 10)
            .w(0, 61)
            // Linux 6.12.117: the switch before the failure completed sub-buffer 0: readable.
            .c_poll(&[0], Readiness::In)
            .w(0, 64)
            .c_poll(&[0], Readiness::In)
            .rd(4096)
            .w(0, 10)
            .r(0, 62)
            .c_last(false) // NULL on both, but C switched first
            .c_poll(&[0], Readiness::In)
            .rd(7)
            .defect()
            // Linux 6.12.117: each too-big write/reserve leaves a bare header (01.., 02.., 03..).
            .expect_c(
                0,
                "000000000102030405060708090a0101010102020202|7071727374757677787903030303|",
            )
            .done(),
    );
    // reserve(0) in a full sub-buffer: one past the end / no switch; reserve(0) that switches
    // returns NULL. The bytes read stay the same as Rust's (a zero-length slot stores nothing).
    v.push(
        B::new("defect-reserve0-full", 64, 2, 4, false)
            .w(0, 60)
            .r(0, 0)
            // Linux 6.12.117: offset == S is not "> S": a slot one past the end of sub-buffer 0,
            // no switch, so sub-buffer 0 is not complete (Rust switches: slot in sub-buffer 1).
            .c_last(true)
            .c_poll(&[0], Readiness::Idle)
            .w(0, 60) // C switches here
            .r(0, 0)
            // Linux 6.12.117: again a slot one past the end (of the whole buffer); Rust's
            // switch is refused (buffer full): NULL.
            .c_last(true)
            .w(0, 10) // switch refused on both: dropped
            .r(0, 0)
            .c_last(false) // still full: NULL on both
            .rd(4096)
            .r(0, 0)
            // Linux 6.12.117: the switch succeeds but relay_reserve returns NULL for length 0
            // (Rust returns a slot at offset H).
            .c_last(false)
            .w(0, 5)
            .rd(7)
            .defect()
            .done(),
    );
    // reset after a partial read: relay_reset leaves the old bytes in the buffer (the Rust relay
    // zeroes it). read() cannot see that, the mmap image can. Every byte of the buffer is
    // written before the reset (relay.c does not zero its pages at allocation), so the C image
    // is fully determined.
    v.push(
        B::new("defect-reset-after-partial-read", 64, 2, 4, false)
            .ws(0, 30, 4) // sub-buffers 0 and 1 exactly full (H + 30 + 30)
            .once(0, 10)
            .reset()
            .w(0, 10)
            .image(0)
            // Linux 6.12.117: after the new header (02) and the 10 new bytes, sub-buffer 0 still
            // holds the old bytes 14..64 (seeds 1 and 38) and sub-buffer 1 all of its old
            // content: header 01, seeds 75 and 112.
            .c_image(&[
                (
                    14,
                    "0b0c0d0e0f101112131415161718191a1b1c1d1e\
                     262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40414243",
                ),
                (
                    64,
                    "01010101\
                     4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768\
                     707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d",
                ),
            ])
            .rd(4096)
            .defect()
            .done(),
    );
    v
}

/// xorshift64 (Marsaglia), fixed seed: the same sequences on every run.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// Seed of the random clean sequences.
pub const RANDOM_SEED: u64 = 0x5253_5245_4c41_5931;
/// How many random clean sequences `diff` runs.
pub const RANDOM_COUNT: usize = 30;

/// Header size of the random sequences (the relay documentation's padding-header example).
const RANDOM_H: usize = 4;

/// `count` random sequences that stay clear of every known relay.c defect: H = 4, writes and
/// reserves of 1..=S-H bytes, flushes, reads of any chunk size; no `consumed`, no zero-length
/// reserve, no reset.
pub fn random_clean(count: usize, seed: u64, ncpu: usize) -> Vec<Seq> {
    let mut rng = XorShift::new(seed);
    let ncpu = ncpu.max(1);
    (0..count)
        .map(|idx| {
            let s = rng.pick(&[64usize, 100, 4096]);
            let n = rng.pick(&[1usize, 2, 4, 8]);
            let overwrite = rng.below(2) == 1;
            let h = RANDOM_H;
            let max = s - h;
            let mut steps = Vec::new();
            let nsteps = rng.range(15, 60);
            for _ in 0..nsteps {
                let cpu = rng.below(ncpu);
                let len = match rng.below(4) {
                    0 => max,
                    1 => rng.range(1, max.min(16)),
                    _ => rng.range(1, max),
                };
                let seed = rng.next_u64() as u8;
                let step = match rng.below(20) {
                    0..=8 => Step::Write { cpu, len, seed },
                    9..=11 => Step::Reserve { cpu, len, seed },
                    12..=13 => Step::Flush,
                    14 => Step::ReadOnce {
                        cpu,
                        count: rng.range(1, 2 * s),
                    },
                    _ => {
                        let mut chunks = vec![7usize, 64, 4096, rng.range(1, 2 * s)];
                        if s <= 100 {
                            chunks.push(1);
                        }
                        let chunk = rng.pick(&chunks);
                        let cpu = if rng.below(3) == 0 { Some(cpu) } else { None };
                        Step::Read { cpu, chunk }
                    }
                };
                steps.push(step);
            }
            if rng.below(2) == 0 {
                steps.push(Step::Read {
                    cpu: None,
                    chunk: rng.pick(&[7usize, 64, 4096]),
                });
            }
            Seq {
                name: format!(
                    "rand-{idx:02}-s{s}-n{n}-h{h}-{}",
                    if overwrite { "ow" } else { "nw" }
                ),
                geom: Geom { s, n, h, overwrite },
                steps,
                expect: Expect::Clean,
                final_chunk: rng.pick(&[7usize, 64, 4096]),
            }
        })
        .collect()
}

/// Whether `seq` only uses the operations the random generator is allowed to produce.
#[cfg(test)]
pub fn check_random_clean(seq: &Seq) -> Result<(), String> {
    let g = seq.geom;
    if g.h == 0 {
        return Err("H = 0 (a flushed empty sub-buffer has padding == S)".into());
    }
    if g.h + 1 >= g.s {
        return Err("header too large".into());
    }
    if seq.expect != Expect::Clean {
        return Err("not marked clean".into());
    }
    for (i, st) in seq.steps.iter().enumerate() {
        match *st {
            Step::Write { len, .. } | Step::Reserve { len, .. } => {
                if len == 0 || len > g.s - g.h {
                    return Err(format!("step {i}: {st}: length outside 1..=S-H"));
                }
            }
            Step::Flush => {}
            Step::Read { chunk, .. } if chunk > 0 => {}
            Step::ReadOnce { count, .. } if count > 0 => {}
            _ => {
                return Err(format!(
                    "step {i}: {st}: not allowed in a random clean sequence"
                ))
            }
        }
    }
    Ok(())
}

/// All sequences `diff` runs, in order.
pub fn all(ncpu: usize) -> Vec<Seq> {
    let mut v = fixed();
    v.extend(random_clean(RANDOM_COUNT, RANDOM_SEED, ncpu.min(4)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sequences_are_clean_and_deterministic() {
        let a = random_clean(RANDOM_COUNT, RANDOM_SEED, 4);
        let b = random_clean(RANDOM_COUNT, RANDOM_SEED, 4);
        assert_eq!(a.len(), RANDOM_COUNT);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.steps, y.steps);
            assert_eq!(x.geom, y.geom);
        }
        for s in &a {
            check_random_clean(s).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            assert!(s.max_cpu().unwrap_or(0) < 4);
        }
        // Many other seeds too.
        for seed in 1..200u64 {
            for s in random_clean(5, seed, 4) {
                check_random_clean(&s).unwrap_or_else(|e| panic!("seed {seed} {}: {e}", s.name));
            }
        }
    }

    #[test]
    fn checker_rejects_defect_ops() {
        let mut s = random_clean(1, 7, 4).remove(0);
        let max = s.geom.s - s.geom.h;
        for bad in [
            Step::Reset,
            Step::Image { cpu: 0 },
            Step::Consumed { cpu: 0, n: 1 },
            Step::Reserve {
                cpu: 0,
                len: 0,
                seed: 0,
            },
            Step::Write {
                cpu: 0,
                len: max + 1,
                seed: 0,
            },
        ] {
            s.steps.push(bad.clone());
            assert!(check_random_clean(&s).is_err(), "{bad} accepted");
            s.steps.pop();
        }
        s.geom.h = 0;
        assert!(check_random_clean(&s).is_err());
    }

    #[test]
    fn fixed_names_unique_and_geometry_valid() {
        let v = all(4);
        let mut names: Vec<&str> = v.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), v.len());
        for s in &v {
            assert!(s.geom.h + 1 < s.geom.s, "{}", s.name);
            assert!(s.final_chunk > 0);
        }
        assert!(v.iter().any(|s| matches!(s.expect, Expect::Defect { .. })));
    }

    #[test]
    fn recorded_expectations_decode() {
        assert_eq!(unhex("01|ff|"), Some(vec![1, 255]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        let mut defects = 0;
        for s in fixed() {
            if let Expect::Defect(e) = &s.expect {
                defects += 1;
                assert!(!e.is_empty(), "{}: no C expectation", s.name);
                for &(i, _) in &e.last {
                    assert!(matches!(s.steps[i], Step::Reserve { .. }), "{}", s.name);
                }
                for (i, _) in &e.image {
                    assert!(matches!(s.steps[*i], Step::Image { .. }), "{}", s.name);
                }
                for &(i, _, _) in &e.poll {
                    assert!(i < s.steps.len(), "{}", s.name);
                }
            }
        }
        assert_eq!(defects, 5);
    }

    #[test]
    fn overlay_and_runs() {
        let base = [0u8; 32];
        let mut got = base;
        got[3] = 1;
        got[5] = 2; // merged with the run at 3 (gap < 8)
        got[20] = 3;
        let runs = diff_runs(&base, &got);
        assert_eq!(runs, vec![(3, vec![1, 0, 2]), (20, vec![3])]);
        assert_eq!(overlay(&base, &runs), got.to_vec());
        assert_eq!(overlay(&[0; 2], &[(1, vec![7, 8])]), vec![0, 7]);
        assert!(diff_runs(&base, &base).is_empty());
    }

    #[test]
    #[should_panic(expected = "C expectations in a clean sequence")]
    fn builder_rejects_c_expectations_in_clean_sequences() {
        B::new("x", 64, 1, 4, false).r(0, 1).c_last(false).done();
    }

    #[test]
    fn fold_cpus_folds_expectations() {
        let s = B::new("x", 64, 1, 4, false)
            .w(3, 1)
            .c_poll(&[3], Readiness::In)
            .expect_c(3, "01")
            .defect()
            .done()
            .fold_cpus(2);
        let Expect::Defect(e) = s.expect else {
            panic!()
        };
        assert_eq!(e.poll, vec![(0, 1, Readiness::In)]);
        assert_eq!(e.bytes, vec![(1, vec![1])]);
    }

    #[test]
    fn fold_cpus_and_pattern() {
        let s = fixed().remove(2).fold_cpus(2);
        assert!(s.max_cpu().unwrap_or(0) < 2);
        assert_eq!(pattern(3, 254), vec![254, 255, 0]);
    }
}
