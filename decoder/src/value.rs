//! Argument values, decoded with the real `postcard` crate by type tag (docs/FORMAT.md,
//! "Argument encoding").

use std::fmt;

use klog::ArgType;

use crate::cursor::{unzigzag, Cursor};
use serde::Deserialize;

/// One decoded argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Tag 0: `u8`.
    U8(u8),
    /// Tag 1: `u16`..`u128`, `usize` (the width is not on the wire).
    Unsigned(u128),
    /// Tag 2: `i8`.
    I8(i8),
    /// Tag 3: `i64`, `isize`.
    Signed(i128),
    /// Tag 11: `i16`.
    I16(i16),
    /// Tag 12: `i32`.
    I32(i32),
    /// Tag 13: `i128`.
    I128(i128),
    /// Tag 4.
    F32(f32),
    /// Tag 5.
    F64(f64),
    /// Tag 6.
    Bool(bool),
    /// Tag 7.
    Char(char),
    /// Tag 8: `&str`.
    Str(String),
    /// Tag 9: `&[u8]`.
    Bytes(Vec<u8>),
    /// Tag 10: a user type's own postcard encoding (opaque to the decoder).
    User(Vec<u8>),
}

impl Value {
    /// The wire type tag of the value.
    pub fn arg_type(&self) -> ArgType {
        match self {
            Value::U8(_) => ArgType::U8,
            Value::Unsigned(_) => ArgType::Unsigned,
            Value::I8(_) => ArgType::I8,
            Value::Signed(_) => ArgType::Signed,
            Value::I16(_) => ArgType::I16,
            Value::I32(_) => ArgType::I32,
            Value::I128(_) => ArgType::I128,
            Value::F32(_) => ArgType::F32,
            Value::F64(_) => ArgType::F64,
            Value::Bool(_) => ArgType::Bool,
            Value::Char(_) => ArgType::Char,
            Value::Str(_) => ArgType::Str,
            Value::Bytes(_) => ArgType::Bytes,
            Value::User(_) => ArgType::User,
        }
    }
}

/// `{}` formatting (what `render` produces for a default spec).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        crate::render::format_value(&mut s, self, &klog::fmtspec::Spec::DEFAULT);
        f.write_str(&s)
    }
}

/// An argument that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// Index of the argument.
    pub index: usize,
    /// Its type.
    pub ty: ArgType,
    /// postcard's error.
    pub error: postcard::Error,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument {} ({:?}) does not decode: {}",
            self.index, self.ty, self.error
        )
    }
}

fn take<'a, T: Deserialize<'a>>(b: &'a [u8]) -> postcard::Result<(T, &'a [u8])> {
    postcard::take_from_bytes::<T>(b)
}

/// One decoded argument that borrows its bytes from the frame (no allocation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// Tag 0: `u8`.
    U8(u8),
    /// Tag 1: `u16`..`u128`, `usize`.
    Unsigned(u128),
    /// Tag 2: `i8`.
    I8(i8),
    /// Tag 3: `i64`, `isize`.
    Signed(i128),
    /// Tag 11: `i16`.
    I16(i16),
    /// Tag 12: `i32`.
    I32(i32),
    /// Tag 13: `i128`.
    I128(i128),
    /// Tag 4.
    F32(f32),
    /// Tag 5.
    F64(f64),
    /// Tag 6.
    Bool(bool),
    /// Tag 7.
    Char(char),
    /// Tag 8: `&str`.
    Str(&'a str),
    /// Tag 9: `&[u8]`.
    Bytes(&'a [u8]),
    /// Tag 10: a user type's own postcard encoding.
    User(&'a [u8]),
}

impl ValueRef<'_> {
    /// The owned value.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::U8(v) => Value::U8(v),
            ValueRef::Unsigned(v) => Value::Unsigned(v),
            ValueRef::I8(v) => Value::I8(v),
            ValueRef::Signed(v) => Value::Signed(v),
            ValueRef::I16(v) => Value::I16(v),
            ValueRef::I32(v) => Value::I32(v),
            ValueRef::I128(v) => Value::I128(v),
            ValueRef::F32(v) => Value::F32(v),
            ValueRef::F64(v) => Value::F64(v),
            ValueRef::Bool(v) => Value::Bool(v),
            ValueRef::Char(v) => Value::Char(v),
            ValueRef::Str(v) => Value::Str(v.to_owned()),
            ValueRef::Bytes(v) => Value::Bytes(v.to_vec()),
            ValueRef::User(v) => Value::User(v.to_vec()),
        }
    }
}

impl Value {
    /// The value as a borrowed [`ValueRef`].
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::U8(v) => ValueRef::U8(*v),
            Value::Unsigned(v) => ValueRef::Unsigned(*v),
            Value::I8(v) => ValueRef::I8(*v),
            Value::Signed(v) => ValueRef::Signed(*v),
            Value::I16(v) => ValueRef::I16(*v),
            Value::I32(v) => ValueRef::I32(*v),
            Value::I128(v) => ValueRef::I128(*v),
            Value::F32(v) => ValueRef::F32(*v),
            Value::F64(v) => ValueRef::F64(*v),
            Value::Bool(v) => ValueRef::Bool(*v),
            Value::Char(v) => ValueRef::Char(*v),
            Value::Str(v) => ValueRef::Str(v),
            Value::Bytes(v) => ValueRef::Bytes(v),
            Value::User(v) => ValueRef::User(v),
        }
    }
}

/// Decodes one value of type `ty` from the front of `b` without copying its bytes; returns it
/// and the rest. [`decode_value`] is this plus the copy, so both accept exactly the same bytes.
#[inline(always)]
pub fn decode_value_ref(ty: ArgType, b: &[u8]) -> postcard::Result<(ValueRef<'_>, &[u8])> {
    // Fast path for the common varint types: a varint of at most 64 bits decodes the same with
    // the cursor as with postcard; anything else (longer u128 varints, errors) goes to postcard.
    match ty {
        ArgType::Unsigned | ArgType::Signed => {
            let mut c = Cursor::new(b);
            if let Ok(v) = c.varint() {
                let v = if ty == ArgType::Unsigned {
                    ValueRef::Unsigned(u128::from(v))
                } else {
                    ValueRef::Signed(i128::from(unzigzag(v)))
                };
                return Ok((v, c.rest()));
            }
        }
        ArgType::U8 => {
            if let Some((&x, rest)) = b.split_first() {
                return Ok((ValueRef::U8(x), rest));
            }
        }
        _ => {}
    }
    decode_value_slow(ty, b)
}

#[inline(never)]
fn decode_value_slow(ty: ArgType, b: &[u8]) -> postcard::Result<(ValueRef<'_>, &[u8])> {
    Ok(match ty {
        ArgType::U8 => take::<u8>(b).map(|(v, r)| (ValueRef::U8(v), r))?,
        ArgType::Unsigned => take::<u128>(b).map(|(v, r)| (ValueRef::Unsigned(v), r))?,
        ArgType::I8 => take::<i8>(b).map(|(v, r)| (ValueRef::I8(v), r))?,
        ArgType::Signed => take::<i64>(b).map(|(v, r)| (ValueRef::Signed(v.into()), r))?,
        ArgType::I16 => take::<i16>(b).map(|(v, r)| (ValueRef::I16(v), r))?,
        ArgType::I32 => take::<i32>(b).map(|(v, r)| (ValueRef::I32(v), r))?,
        ArgType::I128 => take::<i128>(b).map(|(v, r)| (ValueRef::I128(v), r))?,
        ArgType::F32 => take::<f32>(b).map(|(v, r)| (ValueRef::F32(v), r))?,
        ArgType::F64 => take::<f64>(b).map(|(v, r)| (ValueRef::F64(v), r))?,
        ArgType::Bool => take::<bool>(b).map(|(v, r)| (ValueRef::Bool(v), r))?,
        ArgType::Char => take::<char>(b).map(|(v, r)| (ValueRef::Char(v), r))?,
        ArgType::Str => take::<&str>(b).map(|(v, r)| (ValueRef::Str(v), r))?,
        ArgType::Bytes => take::<&[u8]>(b).map(|(v, r)| (ValueRef::Bytes(v), r))?,
        ArgType::User => take::<&[u8]>(b).map(|(v, r)| (ValueRef::User(v), r))?,
    })
}

/// Decodes one value of type `ty` from the front of `b`; returns it and the rest.
pub fn decode_value(ty: ArgType, b: &[u8]) -> postcard::Result<(Value, &[u8])> {
    decode_value_ref(ty, b).map(|(v, r)| (v.to_value(), r))
}

/// Checks that `b` holds exactly one value per type and nothing after them (what
/// [`decode_args`] would accept with no bytes left over), without decoding into values.
/// Returns the error of the first argument that does not decode, or the count of bytes left.
#[inline]
pub(crate) fn check_args(types: &[ArgType], mut b: &[u8]) -> Result<usize, ArgError> {
    for (index, &ty) in types.iter().enumerate() {
        let (_, rest) = decode_value_ref(ty, b).map_err(|error| ArgError { index, ty, error })?;
        b = rest;
    }
    Ok(b.len())
}

/// The number of arguments of `types` if they are all integers sent as varints: the events
/// whose payloads [`varints_fit`] can check.
pub(crate) fn varint_args(types: &[ArgType]) -> Option<usize> {
    types
        .iter()
        .all(|t| matches!(t, ArgType::Unsigned | ArgType::Signed))
        .then_some(types.len())
}

/// Whether a payload of `len` bytes, whose first bytes are the low bytes of `word` (bytes past
/// the payload are ignored), holds exactly `n` varints of at most 8 bytes: for types of which
/// [`varint_args`] counts `n`, [`check_args`] then returns `Ok(0)`. Decided from the
/// continuation bits without a per-argument decode; `false` means "ask `check_args`".
#[inline(always)]
pub(crate) fn varints_fit(n: usize, len: usize, word: u64) -> bool {
    if len == 0 || len > 8 {
        return false;
    }
    // The bytes that end a varint; there must be `n`, the last byte being one. Each varint is
    // then at most 8 bytes, which `decode_value_ref` reads like this.
    let stops = !word & 0x8080_8080_8080_8080 & (u64::MAX >> (64 - 8 * len));
    // One bit per byte: the byte sum is the count (a multiply instead of a popcount loop).
    let count = ((stops >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize;
    count == n && stops >> (8 * len - 1) != 0
}

/// Decodes the arguments of an event: one value per type, in order. Returns the values and the
/// bytes left over (a well-formed frame leaves none).
pub fn decode_args<'a>(
    types: &[ArgType],
    mut b: &'a [u8],
) -> Result<(Vec<Value>, &'a [u8]), ArgError> {
    let mut out = Vec::with_capacity(types.len());
    for (index, &ty) in types.iter().enumerate() {
        let (v, rest) = decode_value(ty, b).map_err(|error| ArgError { index, ty, error })?;
        out.push(v);
        b = rest;
    }
    Ok((out, b))
}
