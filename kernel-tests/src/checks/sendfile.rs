//! Check 3, `sendfile`: `sendfile(2)` from a Rust relay file into a regular file moves exactly
//! what `read()` would return. The C relay file is tried for information (relay lost
//! `splice_read` in Linux 6.8, so an error such as EINVAL is expected there).

use std::fs::{self, File};
use std::path::Path;

use super::{drain, expect_bytes, open_cpu, with_channel, write};
use crate::proto::{Ctl, Side};
use crate::seqs::Geom;
use crate::sys;
use crate::util::{diag, Ctx};

const GEOM: Geom = Geom {
    s: 4096,
    n: 4,
    h: 4,
    overwrite: false,
};

/// sendfile until it returns 0; returns the bytes moved.
fn sendfile_all(out: &File, input: &File, what: &str) -> Result<usize, String> {
    let mut total = 0usize;
    for _ in 0..100_000 {
        let n = sys::sendfile(out, input, 1 << 20).ctx(&format!("sendfile({what})"))?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
        if total > 64 << 20 {
            break;
        }
    }
    Err(format!("sendfile({what}): no end after {total} bytes"))
}

fn out_file(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).ctx(&format!("mkdir {}", dir.display()))?;
    }
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .ctx(&format!("create {}", path.display()))
}

/// After a failed sendfile into a regular file: does sendfile into a pipe work? That path
/// skips `splice_direct_to_actor`, which (in 6.12) needs `FMODE_LSEEK` on the input: the
/// file's `open` must not call `nonseekable_open`/`stream_open`, and `file_operations` needs an
/// `.llseek` (e.g. `noop_llseek`), else the VFS clears the flag after `open`.
fn diagnose(input: &File) {
    let Ok((_rd, wr)) = sys::pipe() else {
        return;
    };
    match sys::sendfile(&wr, input, 4096) {
        Ok(n) => diag(&format!(
            "diagnosis: sendfile(rust/cpu0 -> pipe) works ({n} bytes): only the file-to-file path \
             fails; splice_direct_to_actor requires FMODE_LSEEK on the input: no nonseekable_open() \
             in open, and an .llseek in file_operations (e.g. noop_llseek)"
        )),
        Err(e) => diag(&format!(
            "diagnosis: sendfile(rust/cpu0 -> pipe) fails too: {e} (splice_read missing or failing)"
        )),
    }
}

pub fn check(ctl: &Ctl) -> Result<(), String> {
    let g = GEOM;
    with_channel(ctl, g, |ncpu| {
        let mut models = super::models(g, ncpu);
        // Several sub-buffers on CPU 0: two complete ones and a partial third.
        for i in 0..10 {
            write(ctl, &mut models, 0, 1000, (i * 7) as u8)?;
        }
        let mut c_model = models[0].clone();
        let want = models[0].read_all();

        let path = Path::new("/tmp/sf");
        let out = out_file(path)?;
        let mut input = open_cpu(ctl, Side::Rust, 0)?;
        let moved = match sendfile_all(&out, &input, "rust/cpu0") {
            Ok(n) => n,
            Err(e) => {
                diagnose(&input);
                return Err(e);
            }
        };
        drop(out);
        let got = fs::read(path).ctx(&format!("read {}", path.display()))?;
        diag(&format!("rust/cpu0: sendfile moved {moved} bytes"));
        if moved != got.len() {
            return Err(format!(
                "sendfile reported {moved} bytes, the file has {}",
                got.len()
            ));
        }
        expect_bytes("sendfile(rust/cpu0)", &got, &want)?;
        let rest = drain(&mut input, 4096, 1 << 20, "rust/cpu0 after sendfile")?;
        if !rest.is_empty() {
            return Err(format!(
                "read() after sendfile returned {} more bytes",
                rest.len()
            ));
        }

        // C relay: information only.
        let c_path = Path::new("/tmp/sf-c");
        let c_out = out_file(c_path)?;
        let c_in = open_cpu(ctl, Side::C, 0)?;
        match sys::sendfile(&c_out, &c_in, 1 << 20) {
            Err(e) => diag(&format!(
                "info: sendfile(c/cpu0) failed: {e} (expected: relay has no splice_read since Linux 6.8)"
            )),
            Ok(first) => {
                let rest = sendfile_all(&c_out, &c_in, "c/cpu0").unwrap_or_else(|e| {
                    diag(&format!("info: {e}"));
                    0
                });
                let got = fs::read(c_path).unwrap_or_default();
                let want = c_model.read_all();
                diag(&format!(
                    "info: sendfile(c/cpu0) moved {} bytes; equal to the model: {}",
                    first + rest,
                    if got == want { "yes" } else { "no" }
                ));
            }
        }
        let _ = fs::remove_file(path);
        let _ = fs::remove_file(c_path);
        Ok(())
    })
}
