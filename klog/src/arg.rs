//! Argument encoding: postcard's wire format, written straight into the relay buffer.
//!
//! Every [`Arg`] knows its exact encoded length before encoding (`encoded_len`) and, for the
//! fixed-size types, a compile-time bound (`MAX_LEN`), so an event's room is known before it is
//! reserved and its bytes are then written in one pass into the reserved slot — no staging
//! copy. See `docs/FORMAT.md` ("Argument encoding").

/// Type tags stored with a callsite definition (docs/FORMAT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ArgType {
    /// `u8`: one byte.
    U8 = 0,
    /// `u16`..`u128`, `usize`: varint.
    Unsigned = 1,
    /// `i8`: one byte.
    I8 = 2,
    /// `i64`, `isize`: zigzag varint.
    Signed = 3,
    /// `f32`: 4 bytes LE.
    F32 = 4,
    /// `f64`: 8 bytes LE.
    F64 = 5,
    /// `bool`: one byte.
    Bool = 6,
    /// `char`: varint length + UTF-8.
    Char = 7,
    /// `&str`: varint length + UTF-8.
    Str = 8,
    /// `&[u8]`: varint length + bytes.
    Bytes = 9,
    /// A user type: varint length + its own postcard encoding.
    User = 10,
    /// `i16`: zigzag varint (signed widths are distinct so `{:x}` renders like Rust's).
    I16 = 11,
    /// `i32`: zigzag varint.
    I32 = 12,
    /// `i128`: zigzag varint.
    I128 = 13,
}

impl ArgType {
    /// The tag for a byte, if it is one.
    pub fn from_u8(v: u8) -> Option<Self> {
        use ArgType::*;
        Some(match v {
            0 => U8,
            1 => Unsigned,
            2 => I8,
            3 => Signed,
            4 => F32,
            5 => F64,
            6 => Bool,
            7 => Char,
            8 => Str,
            9 => Bytes,
            10 => User,
            11 => I16,
            12 => I32,
            13 => I128,
            _ => return None,
        })
    }
}

/// Bytes a varint of `v` takes (1..=19 for u128).
#[inline(always)]
pub const fn varint_len(v: u128) -> usize {
    let bits = 128 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Bytes a varint of a `u64` takes (1..=10).
#[inline(always)]
pub const fn varint_len64(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// zigzag encoding of a signed value.
#[inline(always)]
pub const fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

/// zigzag encoding of an `i64`.
#[inline(always)]
pub const fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A cursor over the slot an event is encoded into.
///
/// # Invariants
///
/// `pos <= buf.len()`. A write that does not fit (an `Arg` whose `encoded_len` or `MAX_LEN`
/// understates its encoding) is dropped rather than written out of bounds or panicking, and
/// the writer remembers it ([`Writer::overflowed`]): the relay handler then commits nothing and
/// counts the event as lost.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflowed: bool,
}

impl<'a> Writer<'a> {
    /// A cursor at the start of `buf`.
    #[inline(always)]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            pos: 0,
            overflowed: false,
        }
    }

    /// Bytes written so far.
    #[inline(always)]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Whether a write did not fit (the bytes so far are then not a valid encoding).
    #[inline(always)]
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Appends one byte.
    #[inline(always)]
    pub fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.pos) {
            *slot = b;
            self.pos += 1;
        } else {
            self.overflowed = true;
        }
    }

    /// Appends bytes.
    #[inline(always)]
    pub fn bytes(&mut self, b: &[u8]) {
        let end = self.pos + b.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(b);
            self.pos = end;
        } else {
            self.overflowed = true;
        }
    }

    /// Appends a `u64` varint.
    #[inline(always)]
    pub fn varint64(&mut self, mut v: u64) {
        if v < 0x80 {
            return self.byte(v as u8);
        }
        if self.buf.len() - self.pos >= 10 {
            // One bounds check for the whole varint (at most 10 bytes for a u64) instead of one
            // per byte. Values below 2^35 (every u32) are assembled in a register and written
            // with one 2-, 4- or 8-byte store: the bytes past the varint are scratch inside the
            // reserved slot, overwritten by what follows or never committed. This measured
            // ~30% faster than a store per byte (docs/PERFORMANCE.md).
            let base = self.pos;
            let dst = &mut self.buf[base..base + 10];
            let a = (v & 0x7f) | 0x80 | ((v << 1) & 0x7f00);
            if v < 1 << 14 {
                dst[..2].copy_from_slice(&(a as u16).to_le_bytes());
                self.pos = base + 2;
                return;
            }
            let a = a | 0x8000 | ((v << 2) & 0x7f_0000);
            if v < 1 << 21 {
                dst[..4].copy_from_slice(&(a as u32).to_le_bytes());
                self.pos = base + 3;
                return;
            }
            let a = a | 0x80_0000 | ((v << 3) & 0x7f00_0000);
            if v < 1 << 28 {
                dst[..4].copy_from_slice(&(a as u32).to_le_bytes());
                self.pos = base + 4;
                return;
            }
            if v < 1 << 35 {
                let a = a | 0x8000_0000 | ((v << 4) & 0x7f_0000_0000);
                dst[..8].copy_from_slice(&a.to_le_bytes());
                self.pos = base + 5;
                return;
            }
            let mut i = 0;
            while v >= 0x80 {
                dst[i] = v as u8 | 0x80;
                v >>= 7;
                i += 1;
            }
            dst[i] = v as u8;
            self.pos = base + i + 1;
            return;
        }
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    /// Appends a `u128` varint.
    #[inline]
    pub fn varint128(&mut self, mut v: u128) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }
}

/// A value `klog!` can record. Implemented for the primitive types, `&str`, `String`, `&[u8]`,
/// `[u8; N]`, `char`, references to them, and by users for their own types: usually by
/// delegating to a primitive (`TYPE`, `encoded_len` and `encode` of the primitive; the decoder
/// then renders the value as that primitive, with the statement's format spec), or with
/// [`ArgType::User`] and an encoding of their own (decoded as hex). The type's own `Display` or
/// `Debug` is never used: the trace carries the encoded value only.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded by klog: it does not implement `klog::Arg`",
    label = "not a klog argument",
    note = "klog records integers, `bool`, `char`, `f32`, `f64`, `&str`, `String`, `&[u8]` and \
            `[u8; N]`, and types that implement `klog::Arg`: pass `v.as_slice()` for a \
            `Vec<u8>`, implement `klog::Arg` for your own type (see the README), or format \
            other values into a `String` first"
)]
pub trait Arg {
    /// The wire type.
    const TYPE: ArgType;
    /// An upper bound of [`Arg::encoded_len`] for every value of the type, or `usize::MAX` if
    /// there is none (strings, byte slices, user types by default). Events whose arguments are
    /// all bounded get their frame's length prefix written after the body instead of computed
    /// before it (see `RelayHandler`), which keeps the encoding off the timestamp's critical
    /// path. A user type may set it only if no value encodes longer: an event whose arguments
    /// exceed it is not written (nothing out of bounds) and is counted as lost.
    const MAX_LEN: usize = usize::MAX;
    /// Exact number of bytes [`Arg::encode`] writes.
    fn encoded_len(&self) -> usize;
    /// Writes the postcard encoding.
    fn encode(&self, w: &mut Writer<'_>);
}

impl<T: Arg + ?Sized> Arg for &T {
    const TYPE: ArgType = T::TYPE;
    const MAX_LEN: usize = T::MAX_LEN;
    #[inline(always)]
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        (**self).encode(w)
    }
}

impl Arg for u8 {
    const TYPE: ArgType = ArgType::U8;
    const MAX_LEN: usize = 1;
    #[inline(always)]
    fn encoded_len(&self) -> usize {
        1
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        w.byte(*self)
    }
}

impl Arg for i8 {
    const TYPE: ArgType = ArgType::I8;
    const MAX_LEN: usize = 1;
    #[inline(always)]
    fn encoded_len(&self) -> usize {
        1
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        w.byte(*self as u8)
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            const TYPE: ArgType = ArgType::Unsigned;
            const MAX_LEN: usize = varint_len64(<$t>::MAX as u64);
            #[inline(always)]
            fn encoded_len(&self) -> usize {
                varint_len64(*self as u64)
            }
            #[inline(always)]
            fn encode(&self, w: &mut Writer<'_>) {
                w.varint64(*self as u64)
            }
        }
    )*};
}
unsigned!(u16, u32, u64, usize);

macro_rules! signed {
    ($($t:ty => $tag:ident),*) => {$(
        impl Arg for $t {
            const TYPE: ArgType = ArgType::$tag;
            const MAX_LEN: usize = varint_len64(zigzag64(<$t>::MIN as i64));
            #[inline(always)]
            fn encoded_len(&self) -> usize {
                varint_len64(zigzag64(*self as i64))
            }
            #[inline(always)]
            fn encode(&self, w: &mut Writer<'_>) {
                w.varint64(zigzag64(*self as i64))
            }
        }
    )*};
}
signed!(i16 => I16, i32 => I32, i64 => Signed, isize => Signed);

impl Arg for u128 {
    const TYPE: ArgType = ArgType::Unsigned;
    const MAX_LEN: usize = varint_len(u128::MAX);
    #[inline]
    fn encoded_len(&self) -> usize {
        varint_len(*self)
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        w.varint128(*self)
    }
}

impl Arg for i128 {
    const TYPE: ArgType = ArgType::I128;
    const MAX_LEN: usize = varint_len(zigzag(i128::MIN));
    #[inline]
    fn encoded_len(&self) -> usize {
        varint_len(zigzag(*self))
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        w.varint128(zigzag(*self))
    }
}

// Kernel clients: a compile error instead (kernel/mod.rs, `FloatInKernel`).
#[cfg(not(klog_client))]
impl Arg for f32 {
    const TYPE: ArgType = ArgType::F32;
    const MAX_LEN: usize = 4;
    #[inline(always)]
    fn encoded_len(&self) -> usize {
        4
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        w.bytes(&self.to_le_bytes())
    }
}

// Kernel clients: a compile error instead (kernel/mod.rs, `FloatInKernel`).
#[cfg(not(klog_client))]
impl Arg for f64 {
    const TYPE: ArgType = ArgType::F64;
    const MAX_LEN: usize = 8;
    #[inline(always)]
    fn encoded_len(&self) -> usize {
        8
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        w.bytes(&self.to_le_bytes())
    }
}

impl Arg for bool {
    const TYPE: ArgType = ArgType::Bool;
    const MAX_LEN: usize = 1;
    #[inline(always)]
    fn encoded_len(&self) -> usize {
        1
    }
    #[inline(always)]
    fn encode(&self, w: &mut Writer<'_>) {
        w.byte(*self as u8)
    }
}

impl Arg for char {
    const TYPE: ArgType = ArgType::Char;
    const MAX_LEN: usize = 5;
    #[inline]
    fn encoded_len(&self) -> usize {
        1 + self.len_utf8()
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        let mut b = [0u8; 4];
        let s = self.encode_utf8(&mut b);
        w.byte(s.len() as u8);
        w.bytes(s.as_bytes())
    }
}

impl Arg for str {
    const TYPE: ArgType = ArgType::Str;
    #[inline]
    fn encoded_len(&self) -> usize {
        varint_len64(self.len() as u64) + self.len()
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        w.varint64(self.len() as u64);
        w.bytes(self.as_bytes())
    }
}

impl Arg for [u8] {
    const TYPE: ArgType = ArgType::Bytes;
    #[inline]
    fn encoded_len(&self) -> usize {
        varint_len64(self.len() as u64) + self.len()
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        w.varint64(self.len() as u64);
        w.bytes(self)
    }
}

impl<const N: usize> Arg for [u8; N] {
    const TYPE: ArgType = ArgType::Bytes;
    #[inline]
    fn encoded_len(&self) -> usize {
        self[..].encoded_len()
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        self[..].encode(w)
    }
}

#[cfg(feature = "std")]
impl Arg for std::string::String {
    const TYPE: ArgType = ArgType::Str;
    #[inline]
    fn encoded_len(&self) -> usize {
        self.as_str().encoded_len()
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        self.as_str().encode(w)
    }
}

/// The arguments of one event: a tuple of references, up to 16.
pub trait Args {
    /// Number of arguments.
    const N: usize;
    /// Sum of the arguments' [`Arg::MAX_LEN`] (`usize::MAX` if one is unbounded).
    const MAX_LEN: usize;
    /// Writes the type tag of every argument.
    fn types(&self, out: &mut [u8]);
    /// Exact length of [`Args::encode`]'s output.
    fn encoded_len(&self) -> usize;
    /// Encodes every argument in order.
    fn encode(&self, w: &mut Writer<'_>);
}

macro_rules! tuple_args {
    ($n:expr; $($name:ident $idx:tt),*) => {
        impl<$($name: Arg + ?Sized),*> Args for ($(&$name,)*) {
            const N: usize = $n;
            const MAX_LEN: usize = 0usize $(.saturating_add($name::MAX_LEN))*;
            #[inline(always)]
            #[allow(unused_variables)]
            fn types(&self, out: &mut [u8]) {
                $( if let Some(t) = out.get_mut($idx) { *t = $name::TYPE as u8; } )*
            }
            #[inline(always)]
            fn encoded_len(&self) -> usize {
                0 $(+ self.$idx.encoded_len())*
            }
            #[inline(always)]
            #[allow(unused_variables)]
            fn encode(&self, w: &mut Writer<'_>) {
                $( self.$idx.encode(w); )*
            }
        }
    };
}

tuple_args!(0;);
tuple_args!(1; A 0);
tuple_args!(2; A 0, B 1);
tuple_args!(3; A 0, B 1, C 2);
tuple_args!(4; A 0, B 1, C 2, D 3);
tuple_args!(5; A 0, B 1, C 2, D 3, E 4);
tuple_args!(6; A 0, B 1, C 2, D 3, E 4, F 5);
tuple_args!(7; A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_args!(8; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_args!(9; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_args!(10; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_args!(11; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_args!(12; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple_args!(13; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple_args!(14; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
tuple_args!(15; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
tuple_args!(16; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);

/// Object-safe view of [`Args`] for handlers (one indirect call per event).
pub trait DynArgs {
    /// Number of arguments.
    fn count(&self) -> usize;
    /// Type tags into `out` (at least `count()` long).
    fn types(&self, out: &mut [u8]);
    /// Exact encoded length.
    fn encoded_len(&self) -> usize;
    /// Encodes every argument.
    fn encode(&self, w: &mut Writer<'_>);
}

impl<A: Args> DynArgs for A {
    #[inline]
    fn count(&self) -> usize {
        A::N
    }
    #[inline]
    fn types(&self, out: &mut [u8]) {
        Args::types(self, out)
    }
    #[inline]
    fn encoded_len(&self) -> usize {
        Args::encoded_len(self)
    }
    #[inline]
    fn encode(&self, w: &mut Writer<'_>) {
        Args::encode(self, w)
    }
}
