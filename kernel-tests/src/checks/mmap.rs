//! Check 2, `mmap`: every Rust buffer maps read-only at its allocation size only, and the
//! mapping shows the model's byte image, also after later writes.

use std::fs::File;

use super::{open_cpu, with_channel, write, Failures};
use crate::model::Model;
use crate::proto::{Command, Ctl, Side};
use crate::seqs::Geom;
use crate::sys::{page_align, page_size, Mapping};
use crate::util::{describe_diff, diag, Ctx};

const GEOM: Geom = Geom {
    s: 4096,
    n: 4,
    h: 4,
    overwrite: true,
};

fn compare(map: &Mapping, model: &Model, what: &str) -> Result<(), String> {
    let snap = map.snapshot().ctx(what)?;
    let img = model.image();
    let got = snap.get(..img.len()).ok_or_else(|| {
        format!(
            "{what}: mapping has {} bytes, image {}",
            snap.len(),
            img.len()
        )
    })?;
    if got == img {
        return Ok(());
    }
    let at = got.iter().zip(img).position(|(a, b)| a != b).unwrap_or(0);
    for l in describe_diff("mapping", got, "model", img) {
        diag(&format!("{what}: {l}"));
    }
    Err(format!(
        "{what}: mapping differs from the model image at byte {at} (sub-buffer {}, offset {})",
        at / GEOM.s,
        at % GEOM.s
    ))
}

/// Wrong length or a non-zero offset must fail with EINVAL.
fn bad_mappings(f: &File, size: usize, cpu: usize, fails: &mut Failures) {
    let page = page_size();
    let mut bad = vec![(size + page, 0i64)];
    if size > page {
        bad.push((size - page, 0));
    }
    bad.push((size, page as i64));
    for (len, off) in bad {
        match Mapping::new(f, len, off) {
            Ok(_) => fails.add(format!(
                "rust/cpu{cpu}: mmap(len {len}, offset {off}) succeeded, expected EINVAL"
            )),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => fails.add(format!(
                "rust/cpu{cpu}: mmap(len {len}, offset {off}) failed with {e}, expected EINVAL"
            )),
        }
    }
}

pub fn check(ctl: &Ctl) -> Result<(), String> {
    let g = GEOM;
    with_channel(ctl, g, |ncpu| {
        let mut models = super::models(g, ncpu);
        let mut fails = Failures::default();
        // Fill every sub-buffer exactly (S-H per write) and lap once: the whole image is then
        // determined by what was written, whatever the pages held before.
        for cpu in 0..ncpu {
            for i in 0..=g.n {
                write(ctl, &mut models, cpu, g.s - g.h, (cpu * 16 + i) as u8)?;
            }
        }
        let size = page_align(g.s * g.n);
        let mut maps = Vec::new();
        for (cpu, model) in models.iter().enumerate() {
            let f = open_cpu(ctl, Side::Rust, cpu)?;
            let m = Mapping::new(&f, size, 0).ctx(&format!("mmap(rust/cpu{cpu}, {size})"))?;
            fails.check(compare(&m, model, &format!("rust/cpu{cpu} after mapping")));
            bad_mappings(&f, size, cpu, &mut fails);
            maps.push((f, m));
        }
        // The C side for information only.
        match open_cpu(ctl, Side::C, 0).and_then(|f| {
            Mapping::new(&f, size, 0)
                .map_err(|e| e.to_string())
                .map(|m| (f, m))
        }) {
            Ok((_f, m)) => match compare(&m, &models[0], "c/cpu0 (info)") {
                Ok(()) => diag("info: c/cpu0 mmap works and equals the model image"),
                Err(e) => diag(&format!("info: {e}")),
            },
            Err(e) => diag(&format!("info: mmap c/cpu0 failed: {e}")),
        }
        // Writes after mapping show up in the mapping (including a flush's headers).
        for cpu in 0..ncpu {
            for i in 0..37 {
                write(
                    ctl,
                    &mut models,
                    cpu,
                    100 + 7 * i + cpu,
                    (i * 3 + cpu) as u8,
                )?;
            }
        }
        ctl.send(&Command::Flush).ctx("flush")?;
        models.iter_mut().for_each(Model::flush);
        for cpu in 0..ncpu {
            write(ctl, &mut models, cpu, 33, 0x42)?;
        }
        for (cpu, (_, m)) in maps.iter().enumerate() {
            fails.check(compare(
                m,
                &models[cpu],
                &format!("rust/cpu{cpu} after more writes"),
            ));
        }
        drop(maps);
        fails.into_result()
    })
}
