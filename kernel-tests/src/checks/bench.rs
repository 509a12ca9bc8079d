//! Check 7, `bench`: the test module times `relay_write` and the Rust `write` on one CPU with
//! IRQs off. Informational: fails only if the `bench` file is malformed.

use super::with_channel;
use crate::proto::{parse_bench, BenchLine, Command, Ctl};
use crate::seqs::Geom;
use crate::util::{diag, Ctx};

const GEOM: Geom = Geom {
    s: 262_144,
    n: 4,
    h: 0,
    overwrite: true,
};
const LENS: [usize; 3] = [16, 64, 1024];
const ITERS: u64 = 200_000;

pub fn check(ctl: &Ctl) -> Result<(), String> {
    let rows = with_channel(ctl, GEOM, |_ncpu| {
        let mut rows: Vec<BenchLine> = Vec::new();
        for len in LENS {
            ctl.send(&Command::Bench { len, iters: ITERS })
                .ctx(&format!("bench {len} {ITERS}"))?;
            let b = parse_bench(&ctl.read_text("bench")?)?;
            if b.len != len as u64 || b.iters != ITERS {
                return Err(format!(
                    "bench: file says len {} iters {}, asked for len {len} iters {ITERS}",
                    b.len, b.iters
                ));
            }
            rows.push(b);
        }
        Ok(rows)
    })?;
    for b in rows {
        let ratio = if b.c_ns > 0.0 {
            format!("{:.2}", b.rust_ns / b.c_ns)
        } else {
            "n/a".to_string()
        };
        diag(&format!(
            "bench: len={} c={:.1}ns rust={:.1}ns ratio={ratio}",
            b.len, b.c_ns, b.rust_ns
        ));
    }
    Ok(())
}
