//! Formats a stored format string with decoded values, honouring the full spec (fill/align,
//! sign, `#`, `0`, width, precision, the `?`/`x`/`X`/`b`/`o`/`e`/`E` types).
//!
//! Rust takes format specs only at compile time, so each value is formatted here the way
//! `core::fmt` does it: the digits come from Rust's own formatting of the bare value (with a
//! runtime precision where it applies), and the sign, prefix and padding rules of
//! `Formatter::pad`, `pad_integral` and `pad_formatted_parts` are reimplemented on top. The tests
//! compare the result with `format!` for the same literal spec.
//!
//! Where the wire loses information Rust would have used:
//! * signed integers (tag 3) do not carry their width; `{:x}`, `{:b}`, `{:o}` of a negative
//!   value print its 64-bit two's complement (128-bit if it does not fit 64 bits);
//! * a type a value cannot have in Rust (`{:x}` on a string, say: only reachable with corrupt
//!   metadata) falls back to `Display`.

use std::fmt::{self, Write};

use klog::fmtspec::{Align, ArgRef, FmtType, Parser, Piece, Sign, Spec};
use klog::ArgType;

use crate::cursor::{unzigzag, Cursor, ReadError};
use crate::num::{put_i64, put_u64, write_i64, write_u64, Padded, U64_ROOM};
use crate::value::{decode_value_ref, Value, ValueRef};

/// A parsed format string, ready to render many events.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    segs: Vec<Seg>,
    error: Option<String>,
    /// The placeholders name arguments 0, 1, 2, ... in order, each once: the payload can be
    /// rendered while it is decoded, front to back ([`Template::render_payload`]).
    sequential: bool,
}

/// A template of literals and bare integer arguments, compiled for the fast text output
/// ([`Template::put_plan`]): the literal before the first argument (for the caller to put in
/// front), then each argument's kind and the literal after it.
#[derive(Debug, Clone)]
pub(crate) struct PutPlan {
    pub(crate) lead: Vec<u8>,
    /// (signed varint, the literal after the argument).
    steps: Vec<(bool, Padded)>,
    /// The bytes [`PutPlan::put`] may write (its output and the slack of its fixed-size stores).
    pub(crate) room: usize,
}

impl PutPlan {
    /// Writes the message for `payload` after its lead at `d[at..]` (which has `room` bytes)
    /// and returns the position after it: what [`Template::render_payload`] appends after the
    /// lead. `None` if an argument does not decode as a 64-bit varint (`render_payload` then
    /// has the last word).
    #[inline]
    pub(crate) fn put(&self, payload: &[u8], d: &mut [u8], mut at: usize) -> Option<usize> {
        let mut c = Cursor::new(payload);
        for (signed, after) in &self.steps {
            let v = c.varint().ok()?;
            at = if *signed {
                put_i64(d, at, unzigzag(v))
            } else {
                put_u64(d, at, v)
            };
            at = after.put(d, at);
        }
        Some(at)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    /// A literal piece, and its bytes padded for [`Template::render_payload`].
    Lit(String, Padded),
    Arg {
        index: usize,
        spec: Spec,
        /// The spec prints integers as bare digits (the fast path of `int`).
        bare: bool,
    },
    /// `{name}`: a stored format string is normalised to indices, so this is not expected.
    Name(String),
    /// The unparseable rest of the string, output verbatim.
    Bad(String),
}

impl Template {
    /// Parses `fmt`; a parse error keeps the pieces before it and the rest verbatim.
    pub fn parse(fmt: &str) -> Template {
        let mut segs: Vec<Seg> = Vec::new();
        let mut error = None;
        let mut next = 0usize;
        for piece in Parser::new(fmt) {
            match piece {
                Ok(Piece::Lit(s)) => match segs.last_mut() {
                    Some(Seg::Lit(l, _)) => l.push_str(s),
                    _ => segs.push(Seg::Lit(s.to_owned(), Padded::default())),
                },
                Ok(Piece::Placeholder(p)) => segs.push(match p.arg {
                    ArgRef::Index(index) => Seg::Arg {
                        index,
                        spec: p.spec,
                        bare: bare_int(&p.spec),
                    },
                    ArgRef::Next => {
                        next += 1;
                        Seg::Arg {
                            index: next - 1,
                            spec: p.spec,
                            bare: bare_int(&p.spec),
                        }
                    }
                    ArgRef::Name(n) => {
                        error.get_or_insert_with(|| format!("named argument `{n}`"));
                        Seg::Name(n.to_owned())
                    }
                }),
                Err(e) => {
                    error = Some(e.to_string());
                    segs.push(Seg::Bad(
                        fmt.get(e.placeholder..).unwrap_or_default().to_owned(),
                    ));
                }
            }
        }
        for s in &mut segs {
            if let Seg::Lit(l, p) = s {
                *p = Padded::new(l.as_bytes());
            }
        }
        let mut n = 0;
        let sequential = segs.iter().all(|s| match s {
            Seg::Arg { index, .. } => {
                n += 1;
                *index == n - 1
            }
            _ => true,
        });
        Template {
            segs,
            error,
            sequential,
        }
    }

    /// Why the format string is not fully usable, if it is not.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Number of arguments the template uses (highest index + 1).
    pub fn arg_count(&self) -> usize {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Arg { index, .. } => Some(index + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Appends the message to `out`. Returns `false` if the format string is bad or an argument
    /// is missing (the output then shows what it could, with `<missing arg N>` markers).
    pub fn render_into(&self, values: &[Value], out: &mut String) -> bool {
        let mut ok = self.error.is_none();
        for seg in &self.segs {
            match seg {
                Seg::Lit(s, _) | Seg::Bad(s) => out.push_str(s),
                Seg::Arg { index, spec, .. } => match values.get(*index) {
                    Some(v) => format_value(out, v, spec),
                    None => {
                        ok = false;
                        let _ = write!(out, "<missing arg {index}>");
                    }
                },
                Seg::Name(n) => {
                    let _ = write!(out, "{{{n}}}");
                }
            }
        }
        ok
    }

    /// Appends the message for an event's argument bytes `payload` (of types `types`) to `out`:
    /// the same text as [`Template::render_into`] with the decoded values, without decoding them
    /// into [`Value`]s first. `scratch` is working space. Returns what `render_into` returns.
    pub fn render_payload(
        &self,
        types: &[ArgType],
        payload: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> bool {
        if !self.sequential {
            let mut values = Vec::with_capacity(types.len());
            let mut b = payload;
            for &ty in types {
                let Ok((v, rest)) = decode_value_ref(ty, b) else {
                    break;
                };
                values.push(v);
                b = rest;
            }
            return self.render_refs(&values, out, scratch);
        }
        let mut ok = self.error.is_none();
        let mut b = payload;
        for seg in &self.segs {
            self.step(seg, types, &mut b, out, scratch, &mut ok);
        }
        ok
    }

    /// The template compiled for [`PutPlan::put`], if it is one that `put` renders with
    /// arguments of `types`: only literals and bare `{}` of integers sent as 64-bit varints, in
    /// order, qualify.
    pub(crate) fn put_plan(&self, types: &[ArgType]) -> Option<PutPlan> {
        if !self.sequential || self.error.is_some() {
            return None;
        }
        let mut lead = Vec::new();
        let mut steps: Vec<(bool, Vec<u8>)> = Vec::new();
        for seg in &self.segs {
            match seg {
                Seg::Lit(l, _) => match steps.last_mut() {
                    Some((_, after)) => after.extend_from_slice(l.as_bytes()),
                    None => lead.extend_from_slice(l.as_bytes()),
                },
                Seg::Arg {
                    index, bare: true, ..
                } => match types.get(*index) {
                    Some(ArgType::Unsigned) => steps.push((false, Vec::new())),
                    Some(ArgType::Signed) => steps.push((true, Vec::new())),
                    _ => return None,
                },
                _ => return None,
            }
        }
        let steps: Vec<(bool, Padded)> = steps
            .into_iter()
            .map(|(signed, after)| (signed, Padded::new(&after)))
            .collect();
        let room = steps.iter().map(|(_, p)| 1 + U64_ROOM + p.room()).sum();
        Some(PutPlan { lead, steps, room })
    }

    /// Renders one segment of a sequential template, taking its argument (if any) from the
    /// front of `b`.
    #[inline]
    fn step(
        &self,
        seg: &Seg,
        types: &[ArgType],
        b: &mut &[u8],
        out: &mut Vec<u8>,
        scratch: &mut String,
        ok: &mut bool,
    ) {
        match seg {
            Seg::Lit(_, p) => p.append(out),
            Seg::Bad(s) => out.extend_from_slice(s.as_bytes()),
            Seg::Arg { index, spec, bare } => {
                if *bare {
                    // The common integer types straight from their varint to digits.
                    let mut c = Cursor::new(b);
                    let done = match types.get(*index) {
                        Some(ArgType::Unsigned) => c.varint().map(|v| write_u64(out, v)),
                        Some(ArgType::Signed) => c.varint().map(|v| write_i64(out, unzigzag(v))),
                        _ => Err(ReadError::Eof),
                    };
                    if done.is_ok() {
                        *b = c.rest();
                        return;
                    }
                }
                match types
                    .get(*index)
                    .and_then(|&ty| decode_value_ref(ty, b).ok())
                {
                    Some((v, rest)) => {
                        *b = rest;
                        write_value(out, v, spec, scratch);
                    }
                    None => {
                        *ok = false;
                        missing(out, *index, scratch);
                    }
                }
            }
            Seg::Name(n) => name(out, n),
        }
    }

    fn render_refs(
        &self,
        values: &[ValueRef<'_>],
        out: &mut Vec<u8>,
        scratch: &mut String,
    ) -> bool {
        let mut ok = self.error.is_none();
        for seg in &self.segs {
            match seg {
                Seg::Lit(_, p) => p.append(out),
                Seg::Bad(s) => out.extend_from_slice(s.as_bytes()),
                Seg::Arg { index, spec, .. } => match values.get(*index) {
                    Some(v) => write_value(out, *v, spec, scratch),
                    None => {
                        ok = false;
                        missing(out, *index, scratch);
                    }
                },
                Seg::Name(n) => name(out, n),
            }
        }
        ok
    }

    /// The message.
    pub fn render(&self, values: &[Value]) -> String {
        let mut s = String::new();
        self.render_into(values, &mut s);
        s
    }
}

/// Renders `fmt` with `values` (parse, then [`Template::render`]).
pub fn render(fmt: &str, values: &[Value]) -> String {
    Template::parse(fmt).render(values)
}

#[cold]
fn missing(out: &mut Vec<u8>, index: usize, scratch: &mut String) {
    scratch.clear();
    let _ = write!(scratch, "<missing arg {index}>");
    out.extend_from_slice(scratch.as_bytes());
}

#[cold]
fn name(out: &mut Vec<u8>, n: &str) {
    out.push(b'{');
    out.extend_from_slice(n.as_bytes());
    out.push(b'}');
}

/// Whether `int` prints integers with `spec` as bare digits (its fast path).
fn bare_int(spec: &Spec) -> bool {
    matches!(spec.ty, FmtType::Display | FmtType::Debug)
        && spec.width.is_none()
        && spec.sign.is_none()
}

/// Appends `v` formatted with `spec` as [`format_value`] does: the common bare `{}` of integers
/// and strings directly, the rest through `scratch`.
#[inline(always)]
pub(crate) fn write_value(out: &mut Vec<u8>, v: ValueRef<'_>, spec: &Spec, scratch: &mut String) {
    if bare_int(spec) {
        let signed = |out: &mut Vec<u8>, x: i128| {
            if x < 0 {
                out.push(b'-');
            }
            crate::num::write_u128(out, x.unsigned_abs());
        };
        match v {
            ValueRef::U8(x) => return crate::num::write_u64(out, u64::from(x)),
            ValueRef::Unsigned(x) => return crate::num::write_u128(out, x),
            ValueRef::I8(x) => return signed(out, i128::from(x)),
            ValueRef::I16(x) => return signed(out, i128::from(x)),
            ValueRef::I32(x) => return signed(out, i128::from(x)),
            ValueRef::Signed(x) | ValueRef::I128(x) => return signed(out, x),
            ValueRef::Str(x) if spec.ty == FmtType::Display && spec.precision.is_none() => {
                return out.extend_from_slice(x.as_bytes())
            }
            _ => {}
        }
    }
    write_value_slow(out, v, spec, scratch)
}

#[inline(never)]
fn write_value_slow(out: &mut Vec<u8>, v: ValueRef<'_>, spec: &Spec, scratch: &mut String) {
    scratch.clear();
    format_value_ref(scratch, v, spec);
    out.extend_from_slice(scratch.as_bytes());
}

/// Appends one value formatted with `spec`.
pub fn format_value(out: &mut String, v: &Value, spec: &Spec) {
    format_value_ref(out, v.as_ref(), spec)
}

/// Appends one borrowed value formatted with `spec` (see [`format_value`]).
pub fn format_value_ref(out: &mut String, v: ValueRef<'_>, spec: &Spec) {
    match v {
        ValueRef::U8(x) => int(out, spec, Int::U(u128::from(x))),
        ValueRef::Unsigned(x) => int(out, spec, Int::U(x)),
        ValueRef::I8(x) => int(out, spec, Int::I(i128::from(x), 8)),
        ValueRef::Signed(x) => int(out, spec, Int::I(x, 64)),
        ValueRef::I16(x) => int(out, spec, Int::I(i128::from(x), 16)),
        ValueRef::I32(x) => int(out, spec, Int::I(i128::from(x), 32)),
        ValueRef::I128(x) => int(out, spec, Int::I(x, 128)),
        ValueRef::F32(x) => float(out, spec, x),
        ValueRef::F64(x) => float(out, spec, x),
        ValueRef::Bool(b) => pad_str(out, spec, if b { "true" } else { "false" }),
        ValueRef::Char(c) => {
            if spec.ty == FmtType::Debug {
                let _ = write!(out, "{c:?}");
            } else {
                pad_str(out, spec, c.encode_utf8(&mut [0u8; 4]))
            }
        }
        ValueRef::Str(s) => {
            if spec.ty == FmtType::Debug {
                // `Debug for str` ignores width and precision.
                let _ = write!(out, "{s:?}");
            } else {
                pad_str(out, spec, s)
            }
        }
        ValueRef::Bytes(b) => bytes_debug(out, spec, b),
        ValueRef::User(b) => {
            out.push_str("<user ");
            hex(out, b);
            out.push('>');
        }
    }
}

/// Lower-case hex of `b`, no separators.
pub(crate) fn hex(out: &mut String, b: &[u8]) {
    for x in b {
        let _ = write!(out, "{x:02x}");
    }
}

fn fill(out: &mut String, c: char, n: usize) {
    out.extend(std::iter::repeat_n(c, n));
}

/// (pre, post) padding for `n` fill characters (`Formatter::padding`).
fn padding(align: Option<Align>, default: Align, n: usize) -> (usize, usize) {
    match align.unwrap_or(default) {
        Align::Left => (0, n),
        Align::Right => (n, 0),
        Align::Center => (n / 2, n.div_ceil(2)),
    }
}

fn pad_with(
    out: &mut String,
    spec: &Spec,
    default: Align,
    n: usize,
    body: impl FnOnce(&mut String),
) {
    let (pre, post) = padding(spec.align, default, n);
    fill(out, spec.fill, pre);
    body(out);
    fill(out, spec.fill, post);
}

/// `Formatter::pad`: precision truncates (in chars), width pads (default left); `0` is ignored.
fn pad_str(out: &mut String, spec: &Spec, s: &str) {
    let s = match spec.precision {
        Some(p) => match s.char_indices().nth(p) {
            Some((i, _)) => &s[..i],
            None => s,
        },
        None => s,
    };
    match spec.width {
        Some(w) => {
            let n = s.chars().count();
            if n >= w {
                out.push_str(s)
            } else {
                pad_with(out, spec, Align::Left, w - n, |o| o.push_str(s))
            }
        }
        None => out.push_str(s),
    }
}

/// `Formatter::pad_integral`: sign, `#` prefix, `0` (sign-aware zero padding) or fill/align
/// (default right). Precision is ignored.
fn pad_integral(out: &mut String, spec: &Spec, nonneg: bool, prefix: &str, digits: &str) {
    let sign = if !nonneg {
        Some('-')
    } else if spec.sign == Some(Sign::Plus) {
        Some('+')
    } else {
        None
    };
    let prefix = if spec.alternate { prefix } else { "" };
    let len = digits.len() + usize::from(sign.is_some()) + prefix.chars().count();
    let head = |o: &mut String| {
        if let Some(s) = sign {
            o.push(s);
        }
        o.push_str(prefix);
    };
    match spec.width {
        Some(w) if len < w => {
            if spec.zero {
                head(out);
                fill(out, '0', w - len);
                out.push_str(digits);
            } else {
                pad_with(out, spec, Align::Right, w - len, |o| {
                    head(o);
                    o.push_str(digits);
                })
            }
        }
        _ => {
            head(out);
            out.push_str(digits);
        }
    }
}

/// `Formatter::pad_formatted_parts` (floats, integer exponents): with `0` the sign goes first
/// and zeros fill to the width; else fill/align (default right).
fn pad_parts(out: &mut String, spec: &Spec, sign: &str, body: &str) {
    let Some(mut w) = spec.width else {
        out.push_str(sign);
        out.push_str(body);
        return;
    };
    let mut sign = sign;
    let (fill_c, align) = if spec.zero {
        out.push_str(sign);
        w = w.saturating_sub(sign.len());
        sign = "";
        ('0', Some(Align::Right))
    } else {
        (spec.fill, spec.align)
    };
    let len = sign.len() + body.len();
    if w <= len {
        out.push_str(sign);
        out.push_str(body);
    } else {
        let (pre, post) = padding(align, Align::Right, w - len);
        fill(out, fill_c, pre);
        out.push_str(sign);
        out.push_str(body);
        fill(out, fill_c, post);
    }
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    push_ascii(out, &buf[i..]);
}

/// Appends ASCII bytes (digits, '.', '-', ' ') without a UTF-8 check.
pub(crate) fn push_ascii(out: &mut String, b: &[u8]) {
    debug_assert!(b.is_ascii());
    if b.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8 on their own, so the String stays valid.
        unsafe { out.as_mut_vec().extend_from_slice(b) }
    }
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u128(out: &mut String, v: u128) {
    match u64::try_from(v) {
        Ok(v) => push_u64(out, v),
        Err(_) => {
            let _ = write!(out, "{v}");
        }
    }
}

#[derive(Clone, Copy)]
enum Int {
    U(u128),
    /// A signed value and the width its two's complement is shown in.
    I(i128, u32),
}

fn int(out: &mut String, spec: &Spec, n: Int) {
    let (nonneg, mag) = match n {
        Int::U(u) => (true, u),
        Int::I(i, _) => (i >= 0, i.unsigned_abs()),
    };
    let twos = match n {
        Int::U(u) => u,
        Int::I(i, bits) if bits < 128 => (i as u128) & ((1u128 << bits) - 1),
        Int::I(i, _) => i as u128,
    };
    match spec.ty {
        // Fast path of the common bare `{}`: no padding or sign rules apply.
        FmtType::Display | FmtType::Debug if spec.width.is_none() && spec.sign.is_none() => {
            if !nonneg {
                out.push('-');
            }
            push_u128(out, mag);
        }
        FmtType::Display | FmtType::Debug => pad_integral(out, spec, nonneg, "", &mag.to_string()),
        FmtType::LowerHex => pad_integral(out, spec, true, "0x", &format!("{twos:x}")),
        FmtType::UpperHex => pad_integral(out, spec, true, "0x", &format!("{twos:X}")),
        FmtType::Binary => pad_integral(out, spec, true, "0b", &format!("{twos:b}")),
        FmtType::Octal => pad_integral(out, spec, true, "0o", &format!("{twos:o}")),
        FmtType::LowerExp | FmtType::UpperExp => {
            let sign = if !nonneg {
                "-"
            } else if spec.sign == Some(Sign::Plus) {
                "+"
            } else {
                ""
            };
            let upper = spec.ty == FmtType::UpperExp;
            let body = match (spec.precision, upper) {
                (None, false) => format!("{mag:e}"),
                (None, true) => format!("{mag:E}"),
                (Some(p), false) => format!("{mag:.p$e}"),
                (Some(p), true) => format!("{mag:.p$E}"),
            };
            pad_parts(out, spec, sign, &body)
        }
    }
}

trait Float: Copy + fmt::Display + fmt::Debug + fmt::LowerExp + fmt::UpperExp {
    fn magnitude(self) -> Self;
    fn nan(self) -> bool;
    fn negative(self) -> bool;
}

impl Float for f32 {
    fn magnitude(self) -> Self {
        self.abs()
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
    fn negative(self) -> bool {
        self.is_sign_negative()
    }
}

impl Float for f64 {
    fn magnitude(self) -> Self {
        self.abs()
    }
    fn nan(self) -> bool {
        self.is_nan()
    }
    fn negative(self) -> bool {
        self.is_sign_negative()
    }
}

fn float<F: Float>(out: &mut String, spec: &Spec, x: F) {
    let sign = if x.nan() {
        ""
    } else if x.negative() {
        "-"
    } else if spec.sign == Some(Sign::Plus) {
        "+"
    } else {
        ""
    };
    let a = x.magnitude();
    let body = match (spec.ty, spec.precision) {
        (FmtType::Debug, None) => format!("{a:?}"),
        (FmtType::Debug, Some(p)) => format!("{a:.p$?}"),
        (FmtType::LowerExp, None) => format!("{a:e}"),
        (FmtType::LowerExp, Some(p)) => format!("{a:.p$e}"),
        (FmtType::UpperExp, None) => format!("{a:E}"),
        (FmtType::UpperExp, Some(p)) => format!("{a:.p$E}"),
        (_, None) => format!("{a}"),
        (_, Some(p)) => format!("{a:.p$}"),
    };
    pad_parts(out, spec, sign, &body)
}

/// `Debug for [u8]`: a list whose elements get the whole spec; `#` is the pretty form.
fn bytes_debug(out: &mut String, spec: &Spec, b: &[u8]) {
    let elem = Spec {
        ty: FmtType::Debug,
        ..*spec
    };
    if spec.alternate {
        if b.is_empty() {
            out.push_str("[]");
            return;
        }
        out.push_str("[\n");
        for x in b {
            out.push_str("    ");
            int(out, &elem, Int::U(u128::from(*x)));
            out.push_str(",\n");
        }
        out.push(']');
    } else {
        out.push('[');
        for (i, x) in b.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            int(out, &elem, Int::U(u128::from(*x)));
        }
        out.push(']');
    }
}
