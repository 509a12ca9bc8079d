//! Check 5, `lifetime`: open descriptors and mappings of Rust relay files outlive the channel
//! *and* the client module (`rmmod rsrelay_test`): reads return the rest, then EOF; poll
//! reports POLLERR; mappings keep the image. Re-inserts the module afterwards.

use std::fs::File;
use std::process::Command as Proc;

use super::{drain, expect_bytes, open_cpu, write, Failures};
use crate::model::Model;
use crate::proto::{Command, Ctl, Side};
use crate::seqs::Geom;
use crate::sys::{self, page_align, Mapping};
use crate::util::{diag, Ctx, Readiness};

const GEOM: Geom = Geom {
    s: 4096,
    n: 4,
    h: 4,
    overwrite: false,
};
const MODULE: &str = "rsrelay_test";
const DEFAULT_KO: &str = "/modules/rsrelay_test.ko";

fn run_tool(prog: &str, args: &[&str]) -> Result<(), String> {
    let what = format!("{prog} {}", args.join(" "));
    let out = Proc::new(prog).args(args).output().ctx(&what)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct Open {
    file: File,
    map: Mapping,
}

/// Everything up to (not including) rmmod. Returns the open files and mappings.
fn setup(ctl: &Ctl, g: Geom, models: &mut Vec<Model>) -> Result<Vec<Open>, String> {
    let ncpu = ctl.count_both()?;
    *models = super::models(g, ncpu);
    for cpu in 0..ncpu {
        for i in 0..3 {
            write(ctl, models, cpu, 1500, (cpu * 10 + i) as u8)?;
        }
    }
    let size = page_align(g.s * g.n);
    let mut open = Vec::new();
    for cpu in 0..ncpu {
        let file = open_cpu(ctl, Side::Rust, cpu)?;
        let map = Mapping::new(&file, size, 0).ctx(&format!("mmap(rust/cpu{cpu}, {size})"))?;
        open.push(Open { file, map });
    }
    let first = open
        .first_mut()
        .ok_or_else(|| "no rust files".to_string())?;
    let mut part = vec![0u8; 1000];
    let n = std::io::Read::read(&mut first.file, &mut part).ctx("read rust/cpu0")?;
    part.truncate(n);
    expect_bytes("partial read of rust/cpu0", &part, &models[0].read(1000))?;
    Ok(open)
}

fn after_rmmod(open: Vec<Open>, models: &mut [Model], fails: &mut Failures) {
    for (cpu, (mut o, m)) in open.into_iter().zip(models.iter_mut()).enumerate() {
        m.close();
        let what = format!("rust/cpu{cpu} after rmmod");
        match drain(&mut o.file, 4096, 1 << 20, &what) {
            Ok(got) => fails.check(expect_bytes(&what, &got, &m.read_all())),
            Err(e) => fails.add(e),
        }
        match drain(&mut o.file, 4096, 1 << 20, &what) {
            Ok(b) if b.is_empty() => {}
            Ok(b) => fails.add(format!("{what}: read after EOF returned {} bytes", b.len())),
            Err(e) => fails.add(e),
        }
        match sys::poll_one(&o.file, libc::POLLIN, 0) {
            Ok(r) if Readiness::from_revents(r) == Readiness::Err => {}
            Ok(r) => fails.add(format!(
                "{what}: poll = {}, expected ERR",
                Readiness::from_revents(r)
            )),
            Err(e) => fails.add(format!("{what}: poll: {e}")),
        }
        match o.map.snapshot() {
            Ok(snap) => {
                let img = m.image();
                if snap.get(..img.len()) != Some(img) {
                    let got = snap.get(..img.len()).unwrap_or(&snap);
                    fails.check(expect_bytes(&format!("{what}: mapping"), got, img));
                }
            }
            Err(e) => fails.add(format!("{what}: mapping: {e}")),
        }
        drop(o.map);
        drop(o.file);
    }
}

pub fn check(ctl: &Ctl) -> Result<(), String> {
    let g = GEOM;
    ctl.send(&Command::Open {
        s: g.s,
        n: g.n,
        h: g.h,
        overwrite: g.overwrite,
    })
    .ctx("open")?;
    let mut models = Vec::new();
    let open = match setup(ctl, g, &mut models) {
        Ok(o) => o,
        Err(e) => {
            let _ = ctl.send(&Command::Close);
            return Err(e);
        }
    };
    let mut fails = Failures::default();
    if let Err(e) = run_tool("rmmod", &[MODULE]) {
        drop(open);
        let _ = ctl.send(&Command::Close);
        return Err(e);
    }
    diag(&format!("rmmod {MODULE}: ok"));
    if ctl.base().exists() {
        diag(&format!(
            "note: {} still exists after rmmod",
            ctl.base().display()
        ));
    }
    after_rmmod(open, &mut models, &mut fails);

    let ko = std::env::var("RSRELAY_TEST_KO").unwrap_or_else(|_| DEFAULT_KO.to_string());
    match run_tool("insmod", &[&ko]) {
        Ok(()) => {
            if ctl.base().join("ctl").exists() {
                diag(&format!("insmod {ko}: ok"));
            } else {
                fails.add(format!(
                    "insmod {ko} succeeded but {} is missing",
                    ctl.base().join("ctl").display()
                ));
            }
        }
        Err(e) => fails.add(format!("re-inserting the test module: {e}")),
    }
    fails.into_result()
}
