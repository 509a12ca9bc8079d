//! Routes the `log` crate into klog (feature `log`): `log::info!("...")` in code you do not
//! control becomes a klog event with the record's target and rendered message as `&str`
//! arguments. Rendering happens only when a handler is registered and the level is enabled;
//! messages longer than 1 KiB are truncated (on a character boundary).

use core::fmt::Write;

use crate::{klog, Level};

/// The bridge; install it with [`init`].
pub struct KlogLogger;

static LOGGER: KlogLogger = KlogLogger;

/// Installs klog as the `log` crate's logger and sets `log`'s max level from klog's.
pub fn init() -> Result<(), log::SetLoggerError> {
    log::set_logger(&LOGGER)?;
    log::set_max_level(match crate::max_level() {
        Level::Error => log::LevelFilter::Error,
        Level::Warn => log::LevelFilter::Warn,
        Level::Info => log::LevelFilter::Info,
        Level::Debug => log::LevelFilter::Debug,
        Level::Trace => log::LevelFilter::Trace,
    });
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

impl log::Log for KlogLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        crate::is_registered() && level(m.level()) <= crate::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let mut buf = Buf { b: [0; 1024], n: 0 };
        let _ = write!(buf, "{}", r.args());
        // Only whole characters were copied, so this cannot fail.
        let msg = core::str::from_utf8(&buf.b[..buf.n]).unwrap_or("");
        let target = r.target();
        match r.level() {
            log::Level::Error => klog!(Level::Error, "{}: {}", target, msg),
            log::Level::Warn => klog!(Level::Warn, "{}: {}", target, msg),
            log::Level::Info => klog!(Level::Info, "{}: {}", target, msg),
            log::Level::Debug => klog!(Level::Debug, "{}: {}", target, msg),
            log::Level::Trace => klog!(Level::Trace, "{}: {}", target, msg),
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
