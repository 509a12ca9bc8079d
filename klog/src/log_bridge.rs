//! Routes the `log` crate into klog (feature `log`): `log::info!("...")` in code you do not
//! control becomes a klog event whose callsite is the `log` statement's own: its target is the
//! callsite's module (so `klog::set_filter`, `klog::control` and `klog-decode --target` see it),
//! its file and line are the record's, and the rendered message is the one `&str` argument.
//!
//! Each distinct `log` statement (level, target, file, line) gets a klog callsite of its own the
//! first time it logs through the bridge (allocated once and kept for the life of the process;
//! after [`MAX_CALLSITES`] of them, further statements share one callsite per level that records
//! the target as an argument). Levels are klog's: [`init`] lets every record through `log`'s
//! own max level, so later [`crate::set_max_level`] and [`crate::set_filter`] calls take effect;
//! a later `log::set_max_level` still filters in `log`'s macros before the bridge is reached.
//! Rendering happens only when a handler is registered and the callsite is enabled; messages
//! longer than 1 KiB are truncated (on a character boundary).

use core::fmt::Write;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::callsite::{Callsite, Kind, Meta};
use crate::{klog, Level};

/// Callsites the bridge creates at most (each is a small leaked allocation).
pub const MAX_CALLSITES: usize = 4096;

/// The bridge; install it with [`init`].
pub struct KlogLogger;

static LOGGER: KlogLogger = KlogLogger;

/// The callsites made for `log` statements, by (level, line); each entry's target and file
/// tell statements on the same line apart.
static SITES: Mutex<Option<Sites>> = Mutex::new(None);

#[derive(Default)]
struct Sites {
    by_line: HashMap<(u8, u32), Vec<&'static Callsite>>,
    count: usize,
}

/// Installs klog as the `log` crate's logger. `log`'s max level is set to `Trace`, so that
/// klog's own level and rules decide (also after later changes to them).
pub fn init() -> Result<(), log::SetLoggerError> {
    log::set_logger(&LOGGER)?;
    log::set_max_level(log::LevelFilter::Trace);
    Ok(())
}

/// A fixed buffer that truncates instead of failing.
struct Buf {
    b: [u8; 1024],
    n: usize,
}

impl Write for Buf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.b.len() - self.n;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.b[self.n..self.n + take].copy_from_slice(&s.as_bytes()[..take]);
        self.n += take;
        Ok(())
    }
}

/// The callsite of the `log` statement that made `r`, created on its first record; `None` once
/// [`MAX_CALLSITES`] are in use.
fn site_of(r: &log::Record<'_>) -> Option<&'static Callsite> {
    let level = level(r.level());
    let line = r.line().unwrap_or(0);
    let file = r.file().unwrap_or("<unknown>");
    let target = r.target();
    let mut g = SITES.lock().unwrap_or_else(|e| e.into_inner());
    let sites = g.get_or_insert_with(Sites::default);
    let key = (level as u8, line);
    if let Some(cs) = sites.by_line.get(&key).and_then(|v| {
        v.iter()
            .find(|cs| cs.meta().module == target && cs.meta().file == file)
    }) {
        return Some(cs);
    }
    if sites.count >= MAX_CALLSITES {
        return None;
    }
    // Static strings stay borrowed; others (a target computed at run time) are kept with the
    // callsite, which lives as long as the process (the registry holds `&'static Callsite`s).
    let keep = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let file = r.file_static().unwrap_or_else(|| keep(file));
    let cs: &'static Callsite = Box::leak(Box::new(Callsite::new(Meta {
        fmt: "{0}",
        level,
        kind: Kind::Fmt,
        module: keep(target),
        file,
        line,
        n_args: 1,
    })));
    sites.by_line.entry(key).or_default().push(cs);
    sites.count += 1;
    Some(cs)
}

impl log::Log for KlogLogger {
    fn enabled(&self, _m: &log::Metadata<'_>) -> bool {
        // The statement's callsite decides (level and rules); without a handler nothing is.
        crate::is_registered()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !crate::is_registered() {
            return;
        }
        let site = site_of(r);
        if site.is_some_and(|cs| !crate::__private::enabled(cs)) {
            return;
        }
        let mut buf = Buf { b: [0; 1024], n: 0 };
        let _ = write!(buf, "{}", r.args());
        // Only whole characters were copied, so this cannot fail.
        let msg = core::str::from_utf8(&buf.b[..buf.n]).unwrap_or("");
        match site {
            Some(cs) => crate::__private::emit(cs, (msg,)),
            None => {
                // Out of callsites: one per level, the target as an argument.
                let target = r.target();
                match r.level() {
                    log::Level::Error => klog!(Level::Error, "{}: {}", target, msg),
                    log::Level::Warn => klog!(Level::Warn, "{}: {}", target, msg),
                    log::Level::Info => klog!(Level::Info, "{}: {}", target, msg),
                    log::Level::Debug => klog!(Level::Debug, "{}: {}", target, msg),
                    log::Level::Trace => klog!(Level::Trace, "{}: {}", target, msg),
                }
            }
        }
    }

    fn flush(&self) {
        crate::flush()
    }
}

fn level(l: log::Level) -> Level {
    match l {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}
