//! Test-only: a line-by-line port of the buffer logic of Linux 6.12 `kernel/relay.c` (and
//! `relay_write`/`relay_reserve` from `include/linux/relay.h`), defects included, with the test
//! module's `subbuf_start` callback. It stands in for the kernel's C relay so the diff engine
//! and the clean/defect classification of the sequences can be checked off-kernel.
//!
//! Arithmetic is `size_t`-like (wrapping) so a corrupted state does not panic; copies are
//! clamped to the buffer (where relay.c would read out of bounds).

use crate::diff::{ReadErr, Target};
use crate::model::Model;
use crate::proto::{Command, Side};
use crate::seqs::pattern;
use crate::util::Readiness;

/// `struct rchan_buf` (the fields the buffer logic uses) plus the channel geometry.
#[derive(Clone, Debug)]
pub struct CBuf {
    s: usize,
    n: usize,
    h: usize,
    overwrite: bool,
    produced: usize,
    consumed: usize,
    bytes_consumed: usize,
    offset: usize,
    /// `(buf->data - buf->start) / subbuf_size`.
    data: usize,
    padding: Vec<usize>,
    prev_padding: usize,
    start: Vec<u8>,
    finalized: bool,
    /// Successful starts of the test callback.
    k: u64,
}

impl CBuf {
    /// `relay_open` for one buffer (pages are not zeroed by relay; the sim uses zeros).
    pub fn open(s: usize, n: usize, h: usize, overwrite: bool) -> CBuf {
        let mut b = CBuf {
            s,
            n,
            h,
            overwrite,
            produced: 0,
            consumed: 0,
            bytes_consumed: 0,
            offset: 0,
            data: 0,
            padding: vec![0; n],
            prev_padding: 0,
            start: vec![0; s * n],
            finalized: false,
            k: 0,
        };
        b.reset();
        b
    }

    /// `relay_buf_full`.
    fn buf_full(&self) -> bool {
        self.produced.wrapping_sub(self.consumed) >= self.n
    }

    /// The test module's `subbuf_start`.
    fn subbuf_start(&mut self, new_slot: usize) -> bool {
        if !self.overwrite && self.buf_full() {
            return false;
        }
        let k = self.k as u8;
        self.k += 1;
        let p = new_slot * self.s;
        self.start[p..p + self.h].fill(k);
        // subbuf_start_reserve(buf, H): buf->offset = H.
        self.offset = self.h;
        true
    }

    /// `__relay_reset(buf, 0)`.
    pub fn reset(&mut self) {
        self.produced = 0;
        self.consumed = 0;
        self.bytes_consumed = 0;
        self.finalized = false;
        self.data = 0;
        self.offset = 0;
        self.padding.iter_mut().for_each(|p| *p = 0);
        self.subbuf_start(0);
    }

    /// `relay_switch_subbuf`.
    fn switch_subbuf(&mut self, length: usize) -> usize {
        if length > self.s {
            return 0; // toobig
        }
        if self.offset != self.s + 1 {
            self.prev_padding = self.s.wrapping_sub(self.offset);
            let old = self.produced % self.n;
            self.padding[old] = self.prev_padding;
            self.produced = self.produced.wrapping_add(1);
        }
        let new = self.produced % self.n;
        self.offset = 0;
        if !self.subbuf_start(new) {
            self.offset = self.s + 1;
            return 0;
        }
        self.data = new;
        self.padding[new] = 0;
        if length + self.offset > self.s {
            return 0; // toobig
        }
        length
    }

    fn copy_in(&mut self, d: &[u8], len: usize) {
        if len == 0 {
            return;
        }
        let pos = self.data * self.s + self.offset;
        let end = (pos + len).min(self.start.len());
        if pos < end {
            self.start[pos..end].copy_from_slice(&d[..end - pos]);
        }
    }

    /// `relay_write`.
    pub fn write(&mut self, d: &[u8]) {
        let mut len = d.len();
        if self.offset + len > self.s {
            len = self.switch_subbuf(len);
        }
        self.copy_in(d, len);
        self.offset += len;
    }

    /// `relay_reserve`, then the module fills the slot; true = non-NULL.
    pub fn reserve(&mut self, d: &[u8]) -> bool {
        let mut len = d.len();
        if self.offset + len > self.s {
            len = self.switch_subbuf(len);
            if len == 0 {
                return false;
            }
        }
        self.copy_in(d, len);
        self.offset += len;
        true
    }

    /// `relay_flush` for this buffer.
    pub fn flush(&mut self) {
        self.switch_subbuf(0);
    }

    /// `relay_close` for this buffer.
    pub fn close(&mut self) {
        self.finalized = true;
    }

    /// `relay_subbufs_consumed`.
    pub fn subbufs_consumed(&mut self, n: usize) {
        if n > self.n {
            return;
        }
        if n > self.produced.wrapping_sub(self.consumed) {
            self.consumed = self.produced;
        } else {
            self.consumed = self.consumed.wrapping_add(n);
        }
    }

    /// `relay_file_poll`.
    pub fn poll(&self) -> Readiness {
        if self.finalized {
            Readiness::Err
        } else if self.produced != self.consumed {
            Readiness::In
        } else {
            Readiness::Idle
        }
    }

    fn read_consume(&mut self, read_pos: usize, bytes_consumed: usize) {
        if self.produced == self.consumed && self.offset == self.bytes_consumed {
            return;
        }
        if self.bytes_consumed + bytes_consumed > self.s {
            self.subbufs_consumed(1);
            self.bytes_consumed = 0;
        }
        self.bytes_consumed += bytes_consumed;
        let read_subbuf = if read_pos == 0 {
            self.consumed % self.n
        } else {
            read_pos / self.s
        };
        if self.bytes_consumed + self.padding[read_subbuf] == self.s {
            if read_subbuf == self.produced % self.n && self.offset == self.s {
                return;
            }
            self.subbufs_consumed(1);
            self.bytes_consumed = 0;
        }
    }

    fn read_avail(&mut self) -> bool {
        let (s, n) = (self.s, self.n);
        let mut produced = self.produced;
        self.read_consume(0, 0);
        let mut consumed = self.consumed;
        if self.offset > s {
            return produced != consumed;
        }
        if produced.wrapping_sub(consumed) >= n {
            consumed = produced.wrapping_sub(n).wrapping_add(1);
            self.consumed = consumed;
            self.bytes_consumed = 0;
        }
        produced = (produced % n) * s + self.offset;
        let consumed = (consumed % n) * s + self.bytes_consumed;
        if consumed > produced {
            produced += n * s;
        }
        if consumed == produced {
            return self.offset == s && self.produced > self.consumed;
        }
        true
    }

    fn read_start_pos(&self) -> usize {
        let (s, n) = (self.s, self.n);
        let consumed = self.consumed % n;
        let mut read_pos = (consumed * s + self.bytes_consumed) % (n * s);
        let mut read_subbuf = read_pos / s;
        let padding = self.padding[read_subbuf];
        let padding_start = ((read_subbuf + 1) * s).wrapping_sub(padding);
        let padding_end = (read_subbuf + 1) * s;
        if read_pos >= padding_start && read_pos < padding_end {
            read_subbuf = (read_subbuf + 1) % n;
            read_pos = read_subbuf * s;
        }
        read_pos
    }

    fn read_subbuf_avail(&self, read_pos: usize) -> usize {
        let s = self.s;
        let write_subbuf = self.data;
        let write_offset = self.offset.min(s);
        let read_subbuf = read_pos / s;
        let read_offset = read_pos % s;
        let padding = self.padding[read_subbuf];
        if read_subbuf == write_subbuf {
            // `if (read_offset + padding < write_offset) avail = write_offset - (...)`
            write_offset.saturating_sub(read_offset + padding)
        } else {
            s.wrapping_sub(padding).wrapping_sub(read_offset)
        }
    }

    /// `relay_file_read(count)`.
    pub fn read(&mut self, count: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut count = count;
        if count == 0 {
            return out;
        }
        loop {
            if !self.read_avail() {
                break;
            }
            let read_start = self.read_start_pos();
            let avail = self.read_subbuf_avail(read_start);
            if avail == 0 {
                break;
            }
            let a = count.min(avail);
            // relay.c would copy past the buffer here on a wrapped `avail`; clamp.
            let end = (read_start + a).min(self.start.len());
            out.extend_from_slice(&self.start[read_start..end]);
            count -= a;
            self.read_consume(read_start, a);
            if count == 0 {
                break;
            }
        }
        out
    }
}

/// A [`Target`] made of the relay.c port (C side) and the reference model (Rust side), with
/// optional fault injection on the Rust side.
pub struct SimTarget {
    pub ncpu: usize,
    c: Vec<CBuf>,
    r: Vec<Model>,
    last: (bool, bool),
    files_open: bool,
    /// Flip the first byte of every non-empty Rust read.
    pub corrupt_rust_reads: bool,
    /// Make the C side fail every control command after this many.
    pub fail_ctl_after: Option<usize>,
    /// Model debugfs's full proxy: after `close` C reads fail with EIO, poll says POLLHUP.
    pub c_gone_after_close: bool,
    closed: bool,
    sent: usize,
}

impl SimTarget {
    pub fn new(ncpu: usize) -> SimTarget {
        SimTarget {
            ncpu,
            c: Vec::new(),
            r: Vec::new(),
            last: (false, false),
            files_open: false,
            corrupt_rust_reads: false,
            fail_ctl_after: None,
            c_gone_after_close: false,
            closed: false,
            sent: 0,
        }
    }
}

impl Target for SimTarget {
    fn send(&mut self, cmd: &Command) -> Result<(), String> {
        self.sent += 1;
        if self.fail_ctl_after.is_some_and(|n| self.sent > n) {
            return Err("Invalid argument (os error 22)".into());
        }
        let check_cpu = |cpu: usize| {
            if cpu < self.ncpu {
                Ok(())
            } else {
                Err(format!("no cpu {cpu}"))
            }
        };
        match *cmd {
            Command::Open { s, n, h, overwrite } => {
                self.closed = false;
                self.c = vec![CBuf::open(s, n, h, overwrite); self.ncpu];
                self.r = vec![Model::open(s, n, h, overwrite); self.ncpu];
            }
            Command::Write { cpu, len, seed } => {
                check_cpu(cpu)?;
                let d = pattern(len, seed);
                self.c[cpu].write(&d);
                self.r[cpu].write(&d);
            }
            Command::Reserve { cpu, len, seed } => {
                check_cpu(cpu)?;
                let d = pattern(len, seed);
                self.last = (self.c[cpu].reserve(&d), self.r[cpu].reserve(&d).is_some());
            }
            Command::Flush => {
                self.c.iter_mut().for_each(CBuf::flush);
                self.r.iter_mut().for_each(Model::flush);
            }
            Command::Reset => {
                self.c.iter_mut().for_each(CBuf::reset);
                self.r.iter_mut().for_each(Model::reset);
            }
            Command::Consumed { cpu, n } => {
                check_cpu(cpu)?;
                self.c[cpu].subbufs_consumed(n);
                self.r[cpu].subbufs_consumed(n);
            }
            Command::Close => {
                self.closed = true;
                self.c.iter_mut().for_each(CBuf::close);
                self.r.iter_mut().for_each(Model::close);
            }
            _ => return Err("not simulated".into()),
        }
        Ok(())
    }

    fn open_files(&mut self) -> Result<usize, String> {
        if self.c.is_empty() {
            return Err("no channel".into());
        }
        self.files_open = true;
        Ok(self.ncpu)
    }

    fn close_files(&mut self) {
        self.files_open = false;
    }

    fn read(&mut self, side: Side, cpu: usize, count: usize) -> Result<Vec<u8>, ReadErr> {
        if !self.files_open || cpu >= self.ncpu {
            return Err(String::from("not open").into());
        }
        if side == Side::C && self.closed && self.c_gone_after_close {
            return Err(ReadErr {
                errno: Some(libc::EIO),
                msg: "Input/output error (os error 5)".into(),
            });
        }
        Ok(match side {
            Side::C => self.c[cpu].read(count),
            Side::Rust => {
                let mut b = self.r[cpu].read(count);
                if self.corrupt_rust_reads {
                    if let Some(x) = b.first_mut() {
                        *x ^= 0x55;
                    }
                }
                b
            }
        })
    }

    fn poll(&mut self, side: Side, cpu: usize) -> Result<Readiness, String> {
        if !self.files_open || cpu >= self.ncpu {
            return Err("not open".into());
        }
        if side == Side::C && self.closed && self.c_gone_after_close {
            return Ok(Readiness::Other(libc::POLLHUP));
        }
        Ok(match side {
            Side::C => self.c[cpu].poll(),
            Side::Rust => Readiness::of_model(&self.r[cpu]),
        })
    }

    fn last(&mut self) -> Result<(bool, bool), String> {
        Ok(self.last)
    }

    fn image(&mut self, side: Side, cpu: usize, len: usize) -> Result<Vec<u8>, String> {
        if !self.files_open || cpu >= self.ncpu {
            return Err("not open".into());
        }
        let mut b = match side {
            Side::C => self.c[cpu].start.clone(),
            Side::Rust => self.r[cpu].image().to_vec(),
        };
        if len < b.len() {
            return Err("Invalid argument (os error 22)".into());
        }
        b.resize(len, 0);
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{run_seq, Verdict};
    use crate::seqs::{self, CExpect, Expect};

    /// relay.c and the model agree on the model's own documented examples.
    #[test]
    fn port_matches_model_on_simple_cases() {
        let mut c = CBuf::open(8, 4, 0, false);
        c.write(&[1, 2, 3]);
        c.flush();
        c.write(&[4, 5]);
        assert_eq!(c.read(100), vec![1, 2, 3, 4, 5]);
        assert_eq!(c.poll(), Readiness::Idle);

        let mut c = CBuf::open(8, 2, 2, false);
        c.write(&[9; 4]);
        c.write(&[7; 4]);
        assert_eq!(c.read(100), vec![0, 0, 9, 9, 9, 9, 1, 1, 7, 7, 7, 7]);
    }

    /// The relay.c defect the project found: duplicated bytes after `relay_subbufs_consumed`
    /// with a stale `bytes_consumed` (the sim must reproduce it, or it proves nothing).
    #[test]
    fn port_reproduces_a_defect() {
        let mut c = CBuf::open(8, 2, 2, false);
        let mut m = Model::open(8, 2, 2, false);
        for x in [&[1u8, 2, 3, 4, 5, 6][..], &[7, 8, 9, 10, 11, 12]] {
            c.write(x);
            m.write(x);
        }
        assert_eq!(c.read(3), m.read(3));
        c.subbufs_consumed(1);
        m.subbufs_consumed(1);
        assert_ne!(c.read(100), m.read(100));
    }

    #[test]
    fn clean_sequences_agree_with_relay_c() {
        for ncpu in [4usize, 1, 2] {
            for seq in seqs::all(ncpu) {
                if seq.expect != Expect::Clean {
                    continue;
                }
                let mut t = SimTarget::new(ncpu);
                let out = run_seq(&mut t, &seq);
                assert_eq!(
                    out.verdict,
                    Verdict::Ok,
                    "{} (ncpu {ncpu}):\n{}",
                    seq.name,
                    out.lines.join("\n")
                );
            }
        }
    }

    /// Many more random clean sequences than the check runs: the generator's restrictions
    /// really avoid every relay.c defect (as far as the port goes).
    #[test]
    fn random_generator_never_hits_a_defect() {
        for seed in 1..=300u64 {
            for seq in seqs::random_clean(4, seed * 7919, 4) {
                let mut t = SimTarget::new(4);
                let out = run_seq(&mut t, &seq);
                assert_eq!(
                    out.verdict,
                    Verdict::Ok,
                    "seed {seed} {}:\n{}",
                    seq.name,
                    out.lines.join("\n")
                );
            }
        }
    }

    /// The port reproduces every recorded relay.c defect exactly (so the engine's verdicts are
    /// checked off-kernel too), and without its record every defect sequence fails.
    #[test]
    fn defect_sequences_reproduce_in_the_port() {
        let mut n = 0;
        for seq in seqs::fixed() {
            let Expect::Defect(_) = &seq.expect else {
                continue;
            };
            n += 1;
            let out = run_seq(&mut SimTarget::new(4), &seq);
            assert_eq!(
                out.verdict,
                Verdict::Ok,
                "{}:\n{}",
                seq.name,
                out.lines.join("\n")
            );
            let mut unrecorded = seq.clone();
            unrecorded.expect = Expect::Defect(CExpect::default());
            let out = run_seq(&mut SimTarget::new(4), &unrecorded);
            match out.verdict {
                Verdict::Fail(e) => assert!(e.contains("programming error"), "{}: {e}", seq.name),
                v => panic!("{}: {v:?}", seq.name),
            }
            assert!(
                out.lines
                    .iter()
                    .any(|l| l.starts_with("first c/rust difference")),
                "{}",
                seq.name
            );
        }
        assert_eq!(n, 5);
    }

    /// Each kind of recorded expectation is enforced: dropping or flipping one entry fails.
    #[test]
    fn engine_enforces_each_kind_of_expectation() {
        let find = |name: &str| {
            seqs::fixed()
                .into_iter()
                .find(|s| s.name == name)
                .expect("exists")
        };
        let with = |seq: &seqs::Seq, f: &dyn Fn(&mut CExpect)| {
            let mut s = seq.clone();
            let Expect::Defect(e) = &mut s.expect else {
                panic!("not a defect sequence")
            };
            f(e);
            run_seq(&mut SimTarget::new(4), &s).verdict
        };
        let fails = |v: Verdict, what: &str| match v {
            Verdict::Fail(e) => assert!(e.contains(what), "{e}"),
            v => panic!("{v:?}"),
        };
        let r0 = find("defect-reserve0-full");
        fails(
            with(&r0, &|e| e.last.retain(|&(_, l)| !l)),
            "last: c reserve",
        );
        fails(
            with(&r0, &|e| e.last.iter_mut().for_each(|x| x.1 = !x.1)),
            "last",
        );
        fails(with(&r0, &|e| e.poll.clear()), "poll c/cpu0");
        fails(
            with(&r0, &|e| e.poll.push((0, 1, Readiness::In))),
            "poll c/cpu1",
        );
        let reset = find("defect-reset-after-partial-read");
        fails(with(&reset, &|e| e.image.clear()), "programming error");
        fails(
            with(&reset, &|e| e.image[0].1[0].1[0] ^= 1),
            "mapping differs",
        );
        // No runs: C must show the model's image, which it does not.
        fails(with(&reset, &|e| e.image[0].1.clear()), "mapping differs");
    }

    #[test]
    fn engine_rejects_an_untriggered_defect() {
        // A clean sequence marked as a defect with a record that equals Rust's behaviour.
        let mut seq = seqs::fixed()
            .into_iter()
            .find(|s| s.name == "s64-n4-h4-reserve-ow")
            .expect("exists");
        assert!(matches!(seq.steps[0], seqs::Step::Reserve { .. }));
        seq.expect = Expect::Defect(CExpect {
            last: vec![(0, true)],
            ..CExpect::default()
        });
        match run_seq(&mut SimTarget::new(4), &seq).verdict {
            Verdict::Fail(e) => assert!(e.contains("defect not triggered"), "{e}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn engine_reports_rust_corruption() {
        let seq = seqs::fixed().remove(0);
        let mut t = SimTarget::new(4);
        t.corrupt_rust_reads = true;
        let out = run_seq(&mut t, &seq);
        match out.verdict {
            Verdict::Fail(e) => assert!(e.contains("rust differs from the model"), "{e}"),
            v => panic!("{v:?}"),
        }
        assert!(out.lines.iter().any(|l| l.starts_with("script: ")));
    }

    #[test]
    fn engine_flags_c_files_gone_after_close_separately() {
        let seq = seqs::fixed().remove(0);
        let mut t = SimTarget::new(4);
        t.c_gone_after_close = true;
        let out = run_seq(&mut t, &seq);
        assert_eq!(out.verdict, Verdict::Ok, "{}", out.lines.join("\n"));
        assert!(out.c_gone.is_some());
        // Without the proxy effect nothing is flagged.
        let out = run_seq(&mut SimTarget::new(4), &seq);
        assert_eq!(out.c_gone, None);
    }

    #[test]
    fn engine_reports_ctl_errors() {
        let seq = seqs::fixed().remove(0);
        let mut t = SimTarget::new(4);
        t.fail_ctl_after = Some(3);
        match run_seq(&mut t, &seq).verdict {
            Verdict::Fail(e) => assert!(e.contains("ctl"), "{e}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn engine_checks_recorded_expectations() {
        let mut seq = seqs::fixed()
            .into_iter()
            .find(|s| s.name == "defect-toobig-with-header")
            .expect("exists");
        // Record what the port does, then the run must pass; a wrong record must fail.
        let mut t = SimTarget::new(4);
        let mut c = CBuf::open(seq.geom.s, seq.geom.n, seq.geom.h, seq.geom.overwrite);
        let mut got = Vec::new();
        for st in &seq.steps {
            match *st {
                seqs::Step::Write { len, seed, .. } => c.write(&pattern(len, seed)),
                seqs::Step::Reserve { len, seed, .. } => {
                    c.reserve(&pattern(len, seed));
                }
                seqs::Step::Read { chunk, .. } => loop {
                    let b = c.read(chunk);
                    if b.is_empty() {
                        break;
                    }
                    got.extend(b);
                },
                _ => unreachable!(),
            }
        }
        got.extend(c.read(usize::MAX));
        let Expect::Defect(recorded) = seq.expect.clone() else {
            panic!("not a defect sequence")
        };
        seq.expect = Expect::Defect(CExpect {
            bytes: vec![(0, got.clone())],
            ..recorded.clone()
        });
        assert_eq!(run_seq(&mut t, &seq).verdict, Verdict::Ok);
        got.push(0);
        seq.expect = Expect::Defect(CExpect {
            bytes: vec![(0, got)],
            ..recorded
        });
        assert!(matches!(run_seq(&mut t, &seq).verdict, Verdict::Fail(_)));
    }
}
