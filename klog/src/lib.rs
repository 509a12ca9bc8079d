//! `klog!`: binary tracing with interned format strings, into relay channels.
//!
//! ```ignore
//! klog!("rx queue {} stalled after {} us, flags={:#x}", q, us, flags);
//! klog!(Level::Warn, "bad checksum {:08x} in {}", sum, name);
//! klog_warn!("same as above, shorter: {}", x);
//! klog_raw!(bytes);
//! ```
//!
//! Statements may be written anywhere, unconditionally. With no handler registered (or the
//! statement disabled by level or rule) a statement costs one relaxed load and a not-taken
//! branch; the `off` feature (or `max_level_*`) removes statements from the binary entirely.
//! With a handler registered, an event is encoded straight into the current CPU's relay
//! sub-buffer: callsite id, timestamp delta, arguments in postcard's wire format. The format
//! string, level, module, file and line are written once per callsite to the trace's metadata
//! stream. Wire format: `docs/FORMAT.md`.
//!
//! User space: open a [`RelayHandler`] on a directory, [`register`] it, run, [`unregister`],
//! [`RelayHandler::finish`]; decode the directory with `klog-decode`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod arg;
pub mod callsite;
#[cfg(feature = "std")]
pub mod clock;
#[cfg(feature = "std")]
mod dispatch;
#[cfg(feature = "std")]
pub mod filter;
mod fmtcheck;
pub mod fmtspec;
mod level;
#[cfg(feature = "log")]
pub mod log_bridge;
#[cfg(feature = "std")]
mod record;
#[cfg(feature = "std")]
mod relay_handler;
pub mod wire;

pub use arg::{Arg, ArgType};
pub use callsite::{for_each_callsite, max_level, set_max_level, set_rules, Callsite, Meta};
#[cfg(feature = "std")]
pub use dispatch::{flush, is_registered, register, unregister, Handler, RegisterError};
#[cfg(feature = "std")]
pub use filter::{control, set_filter};
pub use level::Level;
#[cfg(feature = "std")]
pub use record::{record, RecordConfig, RecordError, RecordSummary, Recording};
#[cfg(feature = "std")]
pub use relay_handler::{
    ensure_no_trace, trace_files, HandlerStats, OpenError, RelayConfig, RelayHandler,
};

/// The most verbose level compiled in (`max_level_*` features; the most restrictive wins).
/// `None`: everything is compiled out.
pub const STATIC_MAX_LEVEL: Option<Level> = if cfg!(any(feature = "off", feature = "max_level_off"))
{
    None
} else if cfg!(feature = "max_level_error") {
    Some(Level::Error)
} else if cfg!(feature = "max_level_warn") {
    Some(Level::Warn)
} else if cfg!(feature = "max_level_info") {
    Some(Level::Info)
} else if cfg!(feature = "max_level_debug") {
    Some(Level::Debug)
} else {
    Some(Level::Trace)
};

/// Implementation details used by the macros; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::callsite::{Callsite, Kind, Meta};
    pub use crate::fmtcheck::{AnyFmt, Builtin, Probe, ProbeBuiltin, ProbeUser};
    pub use klog_macros::klog_callsite;

    /// Whether statements of `level` are compiled in (constant-folded).
    #[inline(always)]
    pub const fn level_compiled(level: crate::Level) -> bool {
        match crate::STATIC_MAX_LEVEL {
            Some(max) => level as u8 <= max as u8,
            None => false,
        }
    }

    /// The level of a `klog!(level_expr, ...)` statement (a type check with a clear error).
    #[inline(always)]
    pub const fn level_of(level: crate::Level) -> crate::Level {
        level
    }

    /// The check of every statement (one load and a branch when disabled).
    #[inline(always)]
    pub fn enabled(cs: &'static Callsite) -> bool {
        cs.check()
    }

    /// Records an event (after `enabled`).
    #[inline]
    pub fn emit<A: crate::arg::Args>(cs: &'static Callsite, args: A) {
        #[cfg(feature = "std")]
        crate::dispatch::emit(cs, args);
        #[cfg(not(feature = "std"))]
        {
            let _ = (cs, args);
        }
    }

    /// Records a raw record (after `enabled`).
    #[inline]
    pub fn emit_raw(cs: &'static Callsite, bytes: &[u8]) {
        #[cfg(feature = "std")]
        crate::dispatch::emit_raw(cs, bytes);
        #[cfg(not(feature = "std"))]
        {
            let _ = (cs, bytes);
        }
    }
}

/// Records an event: `klog!("fmt {} {:x}", a, b)`, or with a level first:
/// `klog!(Level::Warn, "fmt", ...)` (with or without `use klog::Level`),
/// `klog!(klog::Level::Warn, ...)`, or any expression of type [`Level`]
/// (`let l = Level::Warn; klog!(l, ...)`).
///
/// A level written as a path (`Level::X`, `path::Level::X`) is the callsite's static level: it
/// is compiled out by `max_level_*`, filtered by `set_max_level`/`set_filter`/`control` like any
/// statement, and recorded once in the metadata. A level from an expression is decided per
/// event: the statement expands to one callsite per level and the event goes through the one of
/// its level, so each event obeys the filters for its own level and is decoded with it (the
/// metadata defines the callsites of the levels that fired; `control` sees them as separate
/// callsites on the same line).
#[cfg(not(feature = "off"))]
#[macro_export]
macro_rules! klog {
    (Level::$lvl:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {
        if $crate::__private::level_compiled($crate::Level::$lvl) {
            $crate::__private::klog_callsite!($crate, $lvl, fmt, $fmt $(, ($arg))*)
        }
    };
    ($(::)? $krate:ident :: Level :: $lvl:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        // The path must name klog's `Level` (checked, never run).
        let _: fn() -> $crate::Level = || $krate::Level::$lvl;
        $crate::klog!(Level::$lvl, $fmt $(, $arg)*)
    }};
    ($fmt:literal $(, $arg:expr)* $(,)?) => {
        if $crate::__private::level_compiled($crate::Level::Info) {
            $crate::__private::klog_callsite!($crate, Info, fmt, $fmt $(, ($arg))*)
        }
    };
    ($lvl:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {
        match $crate::__private::level_of($lvl) {
            $crate::Level::Error => $crate::klog!(Level::Error, $fmt $(, $arg)*),
            $crate::Level::Warn => $crate::klog!(Level::Warn, $fmt $(, $arg)*),
            $crate::Level::Info => $crate::klog!(Level::Info, $fmt $(, $arg)*),
            $crate::Level::Debug => $crate::klog!(Level::Debug, $fmt $(, $arg)*),
            $crate::Level::Trace => $crate::klog!(Level::Trace, $fmt $(, $arg)*),
        }
    };
}

/// Records an event (compiled out by the `off` feature: the statement is still checked like an
/// enabled one, but defines no callsite and never evaluates its arguments).
#[cfg(feature = "off")]
#[macro_export]
macro_rules! klog {
    (Level::$lvl:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {
        $crate::__private::klog_callsite!($crate, $lvl, off, $fmt $(, ($arg))*)
    };
    ($(::)? $krate:ident :: Level :: $lvl:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        let _: fn() -> $crate::Level = || $krate::Level::$lvl;
        $crate::__private::klog_callsite!($crate, $lvl, off, $fmt $(, ($arg))*)
    }};
    ($fmt:literal $(, $arg:expr)* $(,)?) => {
        $crate::__private::klog_callsite!($crate, Info, off, $fmt $(, ($arg))*)
    };
    ($lvl:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        if false {
            let _ = $crate::__private::level_of($lvl);
        }
        $crate::__private::klog_callsite!($crate, Info, off, $fmt $(, ($arg))*)
    }};
}

/// Records raw bytes (anything `AsRef<[u8]>`): `klog_raw!(bytes)`.
#[cfg(not(feature = "off"))]
#[macro_export]
macro_rules! klog_raw {
    ($bytes:expr $(,)?) => {
        if $crate::__private::level_compiled($crate::Level::Info) {
            $crate::__private::klog_callsite!($crate, Info, raw, "", ($bytes))
        }
    };
}

/// Records raw bytes (compiled out by the `off` feature).
#[cfg(feature = "off")]
#[macro_export]
macro_rules! klog_raw {
    ($bytes:expr $(,)?) => {
        if false {
            let _ = &$bytes;
        }
    };
}

// klog_error! ... klog_trace!: one definition for this crate and the kernel facade.
include!("level_macros.rs");
