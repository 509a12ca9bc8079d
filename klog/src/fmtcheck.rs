//! What `klog!`'s compile-time format-string check sees for each argument (dead code, never
//! run; shared by source with the kernel facade, `kernel/mod.rs`).

/// An argument as the format-string check of `klog!` sees it (dead code, never run): klog's
/// own argument types are checked as themselves, with rustc's rules for each spec; a user
/// type implementing `klog::Arg` is decoded as the primitive it encodes as, never through
/// its own `Display`/`Debug`/..., so it gets [`AnyFmt`], which accepts every spec. The two
/// traits pick by autoref: [`ProbeBuiltin`] applies to `Probe<T>` for [`Builtin`] types,
/// [`ProbeUser`] to `&Probe<T>` for any other type.
pub struct Probe<'a, T: ?Sized>(pub &'a T);

/// klog's own argument types.
pub trait Builtin {}
macro_rules! builtin {
    ($($t:ty),*) => { $(impl Builtin for $t {})* };
}
builtin!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    str,
    [u8]
);
impl<const N: usize> Builtin for [u8; N] {}
#[cfg(feature = "std")]
impl Builtin for std::string::String {}
impl<T: Builtin + ?Sized> Builtin for &T {}

/// See [`Probe`].
pub trait ProbeBuiltin {
    /// The argument's type.
    type Out: ?Sized;
    /// The argument itself.
    fn klog_fmt_check(&self) -> &Self::Out;
}
impl<T: Builtin + ?Sized> ProbeBuiltin for Probe<'_, T> {
    type Out = T;
    fn klog_fmt_check(&self) -> &T {
        self.0
    }
}

/// See [`Probe`].
pub trait ProbeUser {
    /// The stand-in.
    fn klog_fmt_check(&self) -> AnyFmt;
}
// No `Arg` bound: a type without one is reported once, by the `Arg` check beside.
impl<T: ?Sized> ProbeUser for &Probe<'_, T> {
    fn klog_fmt_check(&self) -> AnyFmt {
        AnyFmt
    }
}

/// Formats as nothing with every spec (a user type's stand-in in `klog!`'s checks).
pub struct AnyFmt;
macro_rules! any_fmt {
    ($($tr:ident),*) => {
        $(impl core::fmt::$tr for AnyFmt {
            fn fmt(&self, _: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                Ok(())
            }
        })*
    };
}
any_fmt!(Display, Debug, LowerHex, UpperHex, Binary, Octal, LowerExp, UpperExp);
