// SPDX-License-Identifier: GPL-2.0 OR MIT
//! `klog!` for Rust kernel modules.
//!
//! A module uses it by declaring, at its crate root,
//!
//! ```ignore
//! #[macro_use]
//! #[path = "<repo>/klog/src/kernel/mod.rs"]
//! mod klog;
//! ```
//!
//! and building with `--cfg klog_client --extern klog_macros=<libklog_macros.so>` (`klog.mk`
//! at the repository's root does both for a module's Kbuild; the proc macro is built by the
//! kernel's own rustc). Without `--cfg klog_client` the build fails: the callsites would fall
//! back to a registry of their own that no handler ever sees. Then `klog!`, `klog_error!`,
//! `klog_warn!`, `klog_info!`, `klog_debug!`, `klog_trace!` (the user-space crate's definitions,
//! `level_macros.rs`) and `klog_raw!` work anywhere but NMI context. The encoder (`arg.rs`), the
//! callsite (`callsite.rs`) and the levels are the cargo crate's sources. `f32`/`f64` arguments
//! are a compile error: floating point is not available in the kernel.
//!
//! The callsite registry and the handler pointer live in `klog_core.ko` (this module links
//! against its `klog_register_callsite` / `klog_emit`): a statement costs one load and a branch
//! while no handler is registered, and a module using klog loads and runs whether or not a
//! handler module is loaded. Arguments are encoded by this module straight into the handler's
//! relay slot through a callback.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    missing_docs,
    improper_ctypes
)]

#[cfg(not(klog_client))]
compile_error!(
    "klog in a kernel module needs `--cfg klog_client` (and `--extern klog_macros=...`): \
     add `include $(KLOG)/klog.mk` and `$(call klog_client,<object>.o)` to your Kbuild \
     (README, \"klog! in a kernel module\")"
);

#[path = "../arg.rs"]
pub mod arg;
#[path = "../callsite.rs"]
pub mod callsite;
#[path = "../fmtcheck.rs"]
pub mod fmtcheck;
#[path = "../level.rs"]
mod level;

pub use arg::{Arg, ArgType};
pub use level::Level;

/// Not implemented for any type: the bound that makes an `f32`/`f64` argument of `klog!` in
/// kernel code a compile error with this message (the kernel's `core` has no float formatting,
/// and kernel code must not touch FPU state). The bound is on a reference with the impl's own
/// lifetime so that it is not checked where the impls below are defined, and so that rustc
/// reports this trait's message rather than "`f32: Arg` is not satisfied".
#[diagnostic::on_unimplemented(
    message = "floating point is not available in the kernel: f32/f64 cannot be klog! arguments",
    label = "a floating-point argument in kernel code",
    note = "kernel code must not use the FPU; record an integer instead (e.g. a fixed-point value)"
)]
pub trait FloatInKernel {}

#[cfg(klog_client)]
macro_rules! no_float_arg {
    ($($t:ty),*) => {$(
        impl<'a> Arg for $t
        where
            &'a $t: FloatInKernel,
        {
            const TYPE: ArgType = ArgType::User;
            const MAX_LEN: usize = 0;
            fn encoded_len(&self) -> usize {
                0
            }
            fn encode(&self, _w: &mut arg::Writer<'_>) {}
        }
    )*};
}
#[cfg(klog_client)]
no_float_arg!(f32, f64);

/// Implementation details used by the macros; not a stable API.
#[doc(hidden)]
pub mod __private {
    use core::ffi::c_void;

    use super::arg::{Args, Writer};
    pub use super::callsite::{Callsite, Kind, Meta};
    pub use super::fmtcheck::{AnyFmt, Builtin, Probe, ProbeBuiltin, ProbeUser};
    pub use klog_macros::klog_callsite;

    /// Frame kinds (docs/FORMAT.md).
    const KIND_EVENT: u32 = 0;
    const KIND_RAW: u32 = 1;
    /// Most arguments a statement can have (`arg.rs` implements `Args` up to 16).
    const MAX_ARGS: usize = 16;

    type EncodeFn = unsafe extern "C" fn(ctx: *const c_void, out: *mut u8, len: usize);

    extern "C" {
        /// klog_core.ko: with interrupts off, hands the event to the registered handler,
        /// which calls `encode(ctx, slot, len)` to write the `len` payload bytes in place.
        fn klog_emit(
            cs: *const Callsite,
            kind: u32,
            len: usize,
            encode: Option<EncodeFn>,
            ctx: *const c_void,
            types: *const u8,
            n_types: usize,
        );
    }

    /// The check of every statement (one load and a branch when disabled).
    #[inline(always)]
    pub fn enabled(cs: &'static Callsite) -> bool {
        cs.check()
    }

    /// Whether statements of `level` are compiled in (no `max_level_*` in the kernel build).
    #[inline(always)]
    pub const fn level_compiled(_level: super::Level) -> bool {
        true
    }

    /// # Safety
    ///
    /// Called by the handler during `klog_emit`: `ctx` is the value `emit` passed and `out` has `len` writable bytes.
    unsafe extern "C" fn encode_args<A: Args>(ctx: *const c_void, out: *mut u8, len: usize) {
        // SAFETY: `ctx` is the `A` of `emit`, alive for the synchronous klog_emit call.
        let args = unsafe { &*ctx.cast::<A>() };
        // SAFETY: the handler passes a slot of `len` writable bytes, ours during the call.
        let slot = unsafe { core::slice::from_raw_parts_mut(out, len) };
        args.encode(&mut Writer::new(slot));
    }

    /// Records an event (after `enabled`).
    #[inline]
    pub fn emit<A: Args>(cs: &'static Callsite, args: A) {
        let mut types = [0u8; MAX_ARGS];
        args.types(&mut types);
        let len = args.encoded_len();
        // `encode_args::<A>` reads `args` (alive across the call) and writes exactly `len` bytes.
        // SAFETY: `cs` is static and `len` is `args`' exact encoded length.
        unsafe {
            klog_emit(
                cs,
                KIND_EVENT,
                len,
                Some(encode_args::<A>),
                (&args as *const A).cast(),
                types.as_ptr(),
                A::N.min(MAX_ARGS),
            )
        }
    }

    /// # Safety
    ///
    /// Called by the handler during `klog_emit`: `ctx` is the value `emit` passed and `out` has `len` writable bytes.
    unsafe extern "C" fn encode_raw(ctx: *const c_void, out: *mut u8, len: usize) {
        // SAFETY: `ctx` is `emit_raw`'s `&[u8]` (alive for the call) and `len` its length.
        unsafe {
            let bytes = &*ctx.cast::<&[u8]>();
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), out, len.min(bytes.len()));
        }
    }

    /// Records a raw record (after `enabled`).
    #[inline]
    pub fn emit_raw(cs: &'static Callsite, bytes: &[u8]) {
        // SAFETY: as in `emit`.
        unsafe {
            klog_emit(
                cs,
                KIND_RAW,
                bytes.len(),
                Some(encode_raw),
                (&bytes as *const &[u8]).cast(),
                core::ptr::null(),
                0,
            )
        }
    }
}

/// Records an event: `klog!("fmt {} {:x}", a, b)` or `klog!(Level::Warn, "fmt", ...)`.
#[macro_export]
macro_rules! klog {
    (Level::$lvl:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {
        $crate::klog::__private::klog_callsite!($crate::klog, $lvl, fmt, $fmt $(, ($arg))*)
    };
    ($fmt:literal $(, $arg:expr)* $(,)?) => {
        $crate::klog::__private::klog_callsite!($crate::klog, Info, fmt, $fmt $(, ($arg))*)
    };
}

/// Records raw bytes: `klog_raw!(bytes)`.
#[macro_export]
macro_rules! klog_raw {
    ($bytes:expr $(,)?) => {
        $crate::klog::__private::klog_callsite!($crate::klog, Info, raw, "", ($bytes))
    };
}

// klog_error! ... klog_trace!: the user-space crate's definitions.
include!("../level_macros.rs");
