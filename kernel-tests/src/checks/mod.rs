//! Checks 2..7 (check 1, `diff`, is in `crate::diff`) and their shared helpers.

pub mod bench;
pub mod lifetime;
pub mod mmap;
pub mod poll;
pub mod sendfile;
pub mod stress;

use std::fs::File;
use std::io::Read;

use crate::model::Model;
use crate::proto::{Command, Ctl, Side};
use crate::seqs::{pattern, Geom};
use crate::util::{describe_diff, diag, Ctx};

/// `open` with geometry `g`, run `f(ncpu)`, then always `close`. The first error wins.
pub fn with_channel<T>(
    ctl: &Ctl,
    g: Geom,
    f: impl FnOnce(usize) -> Result<T, String>,
) -> Result<T, String> {
    ctl.send(&Command::Open {
        s: g.s,
        n: g.n,
        h: g.h,
        overwrite: g.overwrite,
    })
    .ctx("open")?;
    let r = ctl.count_both().and_then(f);
    let c = ctl.send(&Command::Close).ctx("close");
    let v = r?;
    c?;
    Ok(v)
}

/// One model per CPU.
pub fn models(g: Geom, ncpu: usize) -> Vec<Model> {
    vec![Model::open(g.s, g.n, g.h, g.overwrite); ncpu]
}

/// `write CPU LEN SEED` on the kernel and on that CPU's model.
pub fn write(
    ctl: &Ctl,
    models: &mut [Model],
    cpu: usize,
    len: usize,
    seed: u8,
) -> Result<(), String> {
    let cmd = Command::Write { cpu, len, seed };
    ctl.send(&cmd).ctx("ctl")?;
    let m = models
        .get_mut(cpu)
        .ok_or_else(|| format!("no model for cpu {cpu}"))?;
    m.write(&pattern(len, seed));
    Ok(())
}

/// `read()` with `chunk`-byte calls until it returns 0 (at most `limit` bytes).
pub fn drain(f: &mut File, chunk: usize, limit: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > limit {
                    return Err(format!(
                        "{what}: read more than {limit} bytes without reaching EOF"
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{what}: read: {e}")),
        }
    }
}

/// Compare `got` with `want`; on a difference print the context and return an error.
pub fn expect_bytes(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    for l in describe_diff("got", got, "model", want) {
        diag(&format!("{what}: {l}"));
    }
    Err(format!(
        "{what}: got {} bytes that differ from the model's {} bytes",
        got.len(),
        want.len()
    ))
}

/// Open `rust/cpuN` (or `c/cpuN`) with a readable error.
pub fn open_cpu(ctl: &Ctl, side: Side, cpu: usize) -> Result<File, String> {
    ctl.open_cpu(side, cpu).map_err(|e| e.to_string())
}

/// Collects failures of a check instead of stopping at the first one.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn add(&mut self, e: String) {
        diag(&format!("FAIL: {e}"));
        self.0.push(e);
    }
    /// Record the error of `r`, if any.
    pub fn check(&mut self, r: Result<(), String>) {
        if let Err(e) = r {
            self.add(e);
        }
    }
    pub fn into_result(self) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.into_iter().next().unwrap_or_default()),
            n => Err(format!("{n} failures, first: {}", self.0[0])),
        }
    }
}
