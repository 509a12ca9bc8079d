//! Small shared helpers: poll readiness, hex dumps, result lines.

use std::fmt;
use std::io::Write;

use crate::model::{Finalized, Model};

/// Readiness as `poll(POLLIN, 0)` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// No event.
    Idle,
    /// `POLLIN` (a complete sub-buffer is unconsumed).
    In,
    /// `POLLERR` (closed), with or without other bits.
    Err,
    /// Anything else (`POLLHUP`, `POLLNVAL`, ...): the raw `revents`.
    Other(i16),
}

impl Readiness {
    pub fn from_revents(r: i16) -> Readiness {
        if r & libc::POLLERR != 0 {
            Readiness::Err
        } else if r == 0 {
            Readiness::Idle
        } else if r & !(libc::POLLIN | libc::POLLRDNORM) == 0 {
            Readiness::In
        } else {
            Readiness::Other(r)
        }
    }

    /// What the model says `poll` must report.
    pub fn of_model(m: &Model) -> Readiness {
        match m.poll_ready() {
            Ok(true) => Readiness::In,
            Ok(false) => Readiness::Idle,
            Err(Finalized) => Readiness::Err,
        }
    }
}

impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Readiness::Idle => f.write_str("-"),
            Readiness::In => f.write_str("IN"),
            Readiness::Err => f.write_str("ERR"),
            Readiness::Other(r) => write!(f, "revents={r:#x}"),
        }
    }
}

/// Hex of at most `max` bytes, with the total length when truncated.
pub fn hex(b: &[u8], max: usize) -> String {
    let mut s = String::with_capacity(2 * b.len().min(max) + 24);
    for x in b.iter().take(max) {
        s.push_str(&format!("{x:02x}"));
    }
    if b.len() > max {
        s.push_str(&format!("...(+{} bytes, {} total)", b.len() - max, b.len()));
    }
    s
}

/// Index of the first differing byte, if the slices differ.
pub fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// One-line description of how two byte strings differ, plus hex context lines.
pub fn describe_diff(label_a: &str, a: &[u8], label_b: &str, b: &[u8]) -> Vec<String> {
    let Some(at) = first_diff(a, b) else {
        return vec![format!("{label_a} == {label_b} ({} bytes)", a.len())];
    };
    let lo = at.saturating_sub(16);
    let ctx = |x: &[u8]| {
        if lo >= x.len() {
            String::from("(end)")
        } else {
            hex(&x[lo..x.len().min(lo + 48)], 48)
        }
    };
    vec![
        format!(
            "first difference at byte {at}: {label_a} has {} bytes, {label_b} has {}",
            a.len(),
            b.len()
        ),
        format!("{label_a} @{lo}: {}", ctx(a)),
        format!("{label_b} @{lo}: {}", ctx(b)),
    ]
}

/// Prints `  <line>` (diagnostic) and flushes, so a serial log keeps up.
pub fn diag(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "  {line}");
    let _ = out.flush();
}

/// Prints a `check:` result line.
pub fn result_line(name: &str, r: &Result<(), String>) {
    let mut out = std::io::stdout().lock();
    let _ = match r {
        Ok(()) => writeln!(out, "check: {name}: ok"),
        Err(e) => writeln!(out, "check: {name}: FAIL {e}"),
    };
    let _ = out.flush();
}

/// `map_err` to a `String` with context.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_classes() {
        assert_eq!(Readiness::from_revents(0), Readiness::Idle);
        assert_eq!(
            Readiness::from_revents(libc::POLLIN | libc::POLLRDNORM),
            Readiness::In
        );
        assert_eq!(Readiness::from_revents(libc::POLLERR), Readiness::Err);
        assert_eq!(
            Readiness::from_revents(libc::POLLERR | libc::POLLIN),
            Readiness::Err
        );
        assert_eq!(
            Readiness::from_revents(libc::POLLHUP),
            Readiness::Other(libc::POLLHUP)
        );
    }

    #[test]
    fn hex_and_diff() {
        assert_eq!(hex(&[1, 0xab], 10), "01ab");
        assert!(hex(&[0; 10], 2).starts_with("0000...(+8 bytes"));
        assert_eq!(first_diff(b"abc", b"abc"), None);
        assert_eq!(first_diff(b"abc", b"abd"), Some(2));
        assert_eq!(first_diff(b"ab", b"abc"), Some(2));
        assert_eq!(describe_diff("x", b"ab", "y", b"ac").len(), 3);
    }
}
