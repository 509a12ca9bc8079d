//! Parser for Rust format strings (the `format_args!` syntax), shared by source.
//!
//! `klog-macros` includes this file with `#[path = "../../klog/src/fmtspec.rs"] mod fmtspec;` to
//! check and normalise `klog!` format strings at compile time; `klog` exports it as
//! `klog::fmtspec` so that a decoder can split a stored (normalised) format string into pieces
//! and render the arguments. The file uses only `core` (no allocation), so it builds in `no_std`
//! crates and with a bare `rustc --crate-type proc-macro`.
//!
//! # Grammar
//!
//! The grammar and its corner cases are those of `format_args!`:
//!
//! ```text
//! format      := (text | '{{' | '}}' | placeholder)*
//! placeholder := '{' [argument] ws* [':' spec] ws* '}'
//! argument    := integer | identifier
//! spec        := [[fill] align] [sign] ['#'] ['0'] [width] ['.' [precision]] type
//! fill        := any character (only when followed by an align character)
//! align       := '<' | '^' | '>'
//! sign        := '+' | '-'
//! width       := integer
//! precision   := integer
//! type        := '' | '?' | 'x' | 'X' | 'b' | 'o' | 'e' | 'E'
//! ```
//!
//! Integers (argument indices, widths, precisions) are decimal and at most `u16::MAX`, as in
//! rustc. klog rejects, with an [`Error`], what it cannot carry in a trace: widths and
//! precisions taken from arguments (`{:.*}`, `{:1$}`, `{:.prec$}`, and a `*` width), the
//! hex-`Debug` types `x?` / `X?`, `p` (Pointer) and unknown types.
//!
//! Identifiers follow Rust's rules approximately (`_` or an alphabetic character, then `_` or
//! alphanumeric characters; a lone `_` is rejected), which matches rustc for every identifier
//! that is not built from combining marks.
//!
//! # Pieces
//!
//! [`Parser`] yields [`Piece`]s. A [`Piece::Lit`] is text to be output *as is*: escapes are
//! already resolved, so `"a{{b}}"` yields `Lit("a")`, `Lit("{b")`, `Lit("}")` (an escaped brace
//! starts a new literal piece, which borrows the second brace of the pair from the input). The
//! [`core::fmt::Display`] impls write pieces, placeholders and specs back as format-string text
//! with braces re-escaped, in a canonical form: `{ 0 :}` is written `{0}`, `{:>+#08.3x}` is
//! written as it is, and `{: >5}` is written `{:>5}` (a space fill is the default).

use core::fmt;

/// Largest integer accepted for an argument index, a width or a precision (rustc's limit).
pub const MAX_INTEGER: usize = u16::MAX as usize;

/// One piece of a format string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text to output verbatim (escapes `{{` / `}}` already resolved, never empty).
    Lit(&'a str),
    /// A `{...}` placeholder.
    Placeholder(Placeholder<'a>),
}

/// A `{argument:spec}` placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placeholder<'a> {
    /// Which argument it formats.
    pub arg: ArgRef<'a>,
    /// How it formats it.
    pub spec: Spec,
    /// Byte offset of the opening `{` in the format string.
    pub start: usize,
    /// Byte offset one past the closing `}`.
    pub end: usize,
}

/// How a placeholder names its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgRef<'a> {
    /// `{}`: the next implicit positional argument. The parser does not number them (the counter
    /// belongs to whoever resolves arguments: `{} {0} {}` means 0, 0, 1).
    Next,
    /// `{3}`: an explicit index.
    Index(usize),
    /// `{name}`: a named argument (or a variable captured from the caller's scope).
    Name(&'a str),
}

/// Alignment (`<`, `^`, `>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// `<`
    Left,
    /// `^`
    Center,
    /// `>`
    Right,
}

/// Sign flag (`+`, `-`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// `+`
    Plus,
    /// `-` (accepted and kept, like rustc; it has no effect)
    Minus,
}

/// The formatting trait of a placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FmtType {
    /// `` (`Display`)
    #[default]
    Display,
    /// `?` (`Debug`)
    Debug,
    /// `x` (`LowerHex`)
    LowerHex,
    /// `X` (`UpperHex`)
    UpperHex,
    /// `b` (`Binary`)
    Binary,
    /// `o` (`Octal`)
    Octal,
    /// `e` (`LowerExp`)
    LowerExp,
    /// `E` (`UpperExp`)
    UpperExp,
}

impl FmtType {
    /// The type as written in a format spec (`""` for `Display`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FmtType::Display => "",
            FmtType::Debug => "?",
            FmtType::LowerHex => "x",
            FmtType::UpperHex => "X",
            FmtType::Binary => "b",
            FmtType::Octal => "o",
            FmtType::LowerExp => "e",
            FmtType::UpperExp => "E",
        }
    }

    /// The type for its spelling in a format spec, if klog supports it.
    pub fn parse(s: &str) -> Option<FmtType> {
        Some(match s {
            "" => FmtType::Display,
            "?" => FmtType::Debug,
            "x" => FmtType::LowerHex,
            "X" => FmtType::UpperHex,
            "b" => FmtType::Binary,
            "o" => FmtType::Octal,
            "e" => FmtType::LowerExp,
            "E" => FmtType::UpperExp,
            _ => return None,
        })
    }
}

/// The part of a placeholder after `:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Fill character (meaningful only with `align`; `' '` by default).
    pub fill: char,
    /// Alignment.
    pub align: Option<Align>,
    /// `+` / `-` flag.
    pub sign: Option<Sign>,
    /// `#` flag.
    pub alternate: bool,
    /// `0` flag.
    pub zero: bool,
    /// Minimum width.
    pub width: Option<usize>,
    /// Precision.
    pub precision: Option<usize>,
    /// Formatting trait.
    pub ty: FmtType,
}

impl Default for Spec {
    fn default() -> Self {
        Spec::DEFAULT
    }
}

impl Spec {
    /// The spec of a bare `{}`.
    pub const DEFAULT: Spec = Spec {
        fill: ' ',
        align: None,
        sign: None,
        alternate: false,
        zero: false,
        width: None,
        precision: None,
        ty: FmtType::Display,
    };

    /// Whether the spec writes as the empty string (`{0}` rather than `{0:...}`).
    pub fn is_default(&self) -> bool {
        self.align.is_none()
            && self.sign.is_none()
            && !self.alternate
            && !self.zero
            && self.width.is_none()
            && self.precision.is_none()
            && self.ty == FmtType::Display
    }
}

/// Writes the spec as it appears after the `:` of a placeholder, canonically: fill only when
/// aligned and not a space; `'0'` flag then width; `.precision`; type. The default spec writes
/// nothing.
///
/// A width of 0 without the `0` flag cannot be written (it would read back as the `0` flag); the
/// parser never produces it, and it formats like no width at all.
impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        if let Some(align) = self.align {
            if self.fill != ' ' {
                f.write_char(self.fill)?;
            }
            f.write_char(match align {
                Align::Left => '<',
                Align::Center => '^',
                Align::Right => '>',
            })?;
        }
        match self.sign {
            Some(Sign::Plus) => f.write_char('+')?,
            Some(Sign::Minus) => f.write_char('-')?,
            None => {}
        }
        if self.alternate {
            f.write_char('#')?;
        }
        if self.zero {
            f.write_char('0')?;
        }
        match self.width {
            Some(0) if !self.zero => {}
            Some(w) => write!(f, "{w}")?,
            None => {}
        }
        if let Some(p) = self.precision {
            write!(f, ".{p}")?;
        }
        f.write_str(self.ty.as_str())
    }
}

impl fmt::Display for ArgRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgRef::Next => Ok(()),
            ArgRef::Index(i) => write!(f, "{i}"),
            ArgRef::Name(n) => f.write_str(n),
        }
    }
}

/// Writes `{arg}` or `{arg:spec}`.
impl fmt::Display for Placeholder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.spec.is_default() {
            write!(f, "{{{}}}", self.arg)
        } else {
            write!(f, "{{{}:{}}}", self.arg, self.spec)
        }
    }
}

/// Writes a literal with `{` and `}` doubled, or a placeholder.
impl fmt::Display for Piece<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Piece::Lit(s) => write_escaped(f, s),
            Piece::Placeholder(p) => fmt::Display::fmt(p, f),
        }
    }
}

/// Writes `s` as format-string text: `{` and `}` doubled.
pub fn write_escaped<W: fmt::Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(['{', '}']) {
        let (head, tail) = rest.split_at(i + 1);
        w.write_str(head)?;
        w.write_str(&head[i..])?; // the brace again
        rest = tail;
    }
    w.write_str(rest)
}

/// What is wrong with a format string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A `}` that closes nothing (a literal `}` is written `}}`).
    UnmatchedClose,
    /// A `{` whose placeholder runs to the end of the string (a literal `{` is written `{{`).
    Unterminated,
    /// Something other than `}` where a placeholder must end.
    ExpectedClose(char),
    /// `{_}`: `_` is not an argument name.
    InvalidName,
    /// An index, width or precision above [`MAX_INTEGER`].
    IntegerTooLarge,
    /// `*` as a width or precision (`{:.*}`).
    StarCount,
    /// A width or precision taken from an argument (`{:1$}`, `{:.prec$}`).
    ArgCount,
    /// `{:x?}` / `{:X?}` (Debug with hexadecimal integers).
    DebugHex,
    /// `{:p}` (Pointer).
    Pointer,
    /// A type that is none of `? x X b o e E` (nor `p`).
    UnknownType,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnmatchedClose => {
                f.write_str("unmatched `}` found (write `}}` for a literal `}`)")
            }
            ErrorKind::Unterminated => {
                f.write_str("expected `}` but string was terminated (write `{{` for a literal `{`)")
            }
            ErrorKind::ExpectedClose(c) => write!(f, "expected `}}`, found `{}`", c.escape_debug()),
            ErrorKind::InvalidName => f.write_str("invalid argument name `_`"),
            ErrorKind::IntegerTooLarge => write!(f, "integer larger than {MAX_INTEGER}"),
            ErrorKind::StarCount => {
                f.write_str("`*` width or precision is not supported by klog (write a number)")
            }
            ErrorKind::ArgCount => f.write_str(
                "width or precision taken from an argument (`N$`, `name$`) is not supported by \
                 klog (write a number)",
            ),
            ErrorKind::DebugHex => {
                f.write_str("`x?` / `X?` (Debug with hex integers) is not supported by klog")
            }
            ErrorKind::Pointer => f.write_str("`p` (Pointer) is not supported by klog"),
            ErrorKind::UnknownType => f.write_str(
                "unknown format trait (klog supports ``, `?`, `x`, `X`, `b`, `o`, `e`, `E`)",
            ),
        }
    }
}

/// A format string error: what, and where (byte offsets into the format string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Byte offset where the problem is (the offending character or word; the string's length
    /// for [`ErrorKind::Unterminated`]).
    pub offset: usize,
    /// Byte offset one past the offending text (`offset` when there is none, e.g. at the end).
    pub end: usize,
    /// Byte offset of the `{` of the placeholder the error is in (`offset` for
    /// [`ErrorKind::UnmatchedClose`]).
    pub placeholder: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind, self.offset)
    }
}

/// Iterator over the [`Piece`]s of a format string; stops after the first error.
#[derive(Clone, Debug)]
pub struct Parser<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Parser<'a> {
    /// A parser over `s` (the format string, escapes of the Rust literal already resolved).
    pub fn new(s: &'a str) -> Self {
        Parser {
            s,
            pos: 0,
            done: false,
        }
    }

    /// The format string being parsed.
    pub fn input(&self) -> &'a str {
        self.s
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.s[self.pos..].chars();
        it.next();
        it.next()
    }

    fn consume(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    /// Text up to the next brace (or the end), starting at `start`.
    fn text(&mut self, start: usize) -> &'a str {
        let end = self.s[self.pos..]
            .find(['{', '}'])
            .map_or(self.s.len(), |i| self.pos + i);
        self.pos = end;
        &self.s[start..end]
    }

    /// Decimal integer (`None` when there is no digit).
    fn integer(&mut self, open: usize) -> Result<Option<usize>, Error> {
        let start = self.pos;
        let mut v: usize = 0;
        let mut big = false;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
            self.pos += 1;
            v = v * 10 + d as usize;
            if v > MAX_INTEGER {
                big = true;
                v = MAX_INTEGER;
            }
        }
        if start == self.pos {
            Ok(None)
        } else if big {
            Err(self.err(ErrorKind::IntegerTooLarge, start, self.pos, open))
        } else {
            Ok(Some(v))
        }
    }

    /// Identifier or keyword (empty when there is none).
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        match self.peek() {
            Some(c) if is_id_start(c) => self.pos += c.len_utf8(),
            _ => return "",
        }
        while let Some(c) = self.peek() {
            if !is_id_continue(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    fn err(&self, kind: ErrorKind, offset: usize, end: usize, placeholder: usize) -> Error {
        Error {
            kind,
            offset,
            end,
            placeholder,
        }
    }

    /// Error at the current character.
    fn err_here(&self, kind: ErrorKind, open: usize) -> Error {
        let end = self.peek().map_or(self.pos, |c| self.pos + c.len_utf8());
        self.err(kind, self.pos, end, open)
    }

    /// A width or precision: a literal integer, or nothing. Rejects `*`, `N$` and `name$`.
    fn count(&mut self, open: usize) -> Result<Option<usize>, Error> {
        let start = self.pos;
        if let Some(n) = self.integer(open)? {
            if self.consume('$') {
                return Err(self.err(ErrorKind::ArgCount, start, self.pos, open));
            }
            return Ok(Some(n));
        }
        let word = self.word();
        if !word.is_empty() && self.consume('$') {
            return Err(self.err(ErrorKind::ArgCount, start, self.pos, open));
        }
        self.pos = start;
        Ok(None)
    }

    fn spec(&mut self, open: usize) -> Result<Spec, Error> {
        let mut spec = Spec::DEFAULT;
        if !self.consume(':') {
            return Ok(spec);
        }
        if let (Some(c), Some('<' | '^' | '>')) = (self.peek(), self.peek2()) {
            spec.fill = c;
            self.pos += c.len_utf8();
        }
        if self.consume('<') {
            spec.align = Some(Align::Left);
        } else if self.consume('^') {
            spec.align = Some(Align::Center);
        } else if self.consume('>') {
            spec.align = Some(Align::Right);
        }
        if self.consume('+') {
            spec.sign = Some(Sign::Plus);
        } else if self.consume('-') {
            spec.sign = Some(Sign::Minus);
        }
        spec.alternate = self.consume('#');
        let zero_at = self.pos;
        if self.consume('0') {
            if self.consume('$') {
                // `0$` is a width taken from argument 0, not the `0` flag (as in rustc).
                return Err(self.err(ErrorKind::ArgCount, zero_at, self.pos, open));
            }
            spec.zero = true;
        }
        if self.peek() == Some('*') {
            // `{:*}`: rustc reads "expected `}`"; say what is meant.
            return Err(self.err_here(ErrorKind::StarCount, open));
        }
        spec.width = self.count(open)?;
        if self.consume('.') {
            if self.peek() == Some('*') {
                return Err(self.err_here(ErrorKind::StarCount, open));
            }
            spec.precision = self.count(open)?;
        }
        let ty_at = self.pos;
        spec.ty = if self.consume('x') {
            if self.consume('?') {
                return Err(self.err(ErrorKind::DebugHex, ty_at, self.pos, open));
            }
            FmtType::LowerHex
        } else if self.consume('X') {
            if self.consume('?') {
                return Err(self.err(ErrorKind::DebugHex, ty_at, self.pos, open));
            }
            FmtType::UpperHex
        } else if self.consume('?') {
            FmtType::Debug
        } else {
            let word = self.word();
            match FmtType::parse(word) {
                Some(t) => t,
                None if word == "p" => {
                    return Err(self.err(ErrorKind::Pointer, ty_at, self.pos, open))
                }
                None => return Err(self.err(ErrorKind::UnknownType, ty_at, self.pos, open)),
            }
        };
        Ok(spec)
    }

    fn placeholder(&mut self, open: usize) -> Result<Placeholder<'a>, Error> {
        let arg_at = self.pos;
        let arg = if let Some(i) = self.integer(open)? {
            ArgRef::Index(i)
        } else {
            match self.word() {
                "" => ArgRef::Next,
                "_" => return Err(self.err(ErrorKind::InvalidName, arg_at, self.pos, open)),
                name => ArgRef::Name(name),
            }
        };
        self.ws();
        let spec = self.spec(open)?;
        self.ws();
        match self.peek() {
            Some('}') => {
                self.pos += 1;
                Ok(Placeholder {
                    arg,
                    spec,
                    start: open,
                    end: self.pos,
                })
            }
            Some(c) => Err(self.err_here(ErrorKind::ExpectedClose(c), open)),
            None => Err(self.err(ErrorKind::Unterminated, self.pos, self.pos, open)),
        }
    }

    fn step(&mut self) -> Option<Result<Piece<'a>, Error>> {
        let start = self.pos;
        match self.peek()? {
            '{' => {
                self.pos += 1;
                if self.peek() == Some('{') {
                    self.pos += 1;
                    Some(Ok(Piece::Lit(self.text(start + 1))))
                } else {
                    Some(self.placeholder(start).map(Piece::Placeholder))
                }
            }
            '}' => {
                self.pos += 1;
                if self.peek() == Some('}') {
                    self.pos += 1;
                    Some(Ok(Piece::Lit(self.text(start + 1))))
                } else {
                    Some(Err(self.err(
                        ErrorKind::UnmatchedClose,
                        start,
                        start + 1,
                        start,
                    )))
                }
            }
            _ => Some(Ok(Piece::Lit(self.text(start)))),
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Piece<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl core::iter::FusedIterator for Parser<'_> {}

/// Checks a whole format string; returns the first error.
pub fn validate(s: &str) -> Result<(), Error> {
    Parser::new(s).try_for_each(|p| p.map(|_| ()))
}

fn is_id_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_id_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;
    use std::{format, vec};

    fn pieces(s: &str) -> Vec<Piece<'_>> {
        Parser::new(s)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> Error {
        match validate(s) {
            Err(e) => e,
            Ok(()) => panic!("{s:?} parsed"),
        }
    }

    /// The spec of the only placeholder of `s`.
    fn spec(s: &str) -> Spec {
        match pieces(s).as_slice() {
            [Piece::Placeholder(p)] => p.spec,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn arg(s: &str) -> ArgRef<'_> {
        match Parser::new(s).next() {
            Some(Ok(Piece::Placeholder(p))) => p.arg,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    /// Parses and writes back every piece.
    fn normalise(s: &str) -> String {
        pieces(s).iter().map(|p| p.to_string()).collect()
    }

    fn ph(arg: ArgRef<'_>, spec: Spec, start: usize, end: usize) -> Piece<'_> {
        Piece::Placeholder(Placeholder {
            arg,
            spec,
            start,
            end,
        })
    }

    #[test]
    fn literals_and_escapes() {
        assert_eq!(pieces(""), vec![]);
        assert_eq!(pieces("hello"), vec![Piece::Lit("hello")]);
        assert_eq!(
            pieces("a{{b}}c"),
            vec![Piece::Lit("a"), Piece::Lit("{b"), Piece::Lit("}c")]
        );
        assert_eq!(pieces("{{}}"), vec![Piece::Lit("{"), Piece::Lit("}")]);
        assert_eq!(
            pieces("{{{}}}"),
            vec![
                Piece::Lit("{"),
                ph(ArgRef::Next, Spec::DEFAULT, 2, 4),
                Piece::Lit("}")
            ]
        );
        assert_eq!(pieces("é{{ü"), vec![Piece::Lit("é"), Piece::Lit("{ü")]);
        assert_eq!(normalise("a{{b}}c"), "a{{b}}c");
        assert_eq!(normalise("{{{}}}"), "{{{}}}");
    }

    #[test]
    fn placeholders_and_offsets() {
        assert_eq!(
            pieces("rx {} after {x:#x} {0}"),
            vec![
                Piece::Lit("rx "),
                ph(ArgRef::Next, Spec::DEFAULT, 3, 5),
                Piece::Lit(" after "),
                ph(
                    ArgRef::Name("x"),
                    Spec {
                        alternate: true,
                        ty: FmtType::LowerHex,
                        ..Spec::DEFAULT
                    },
                    12,
                    18
                ),
                Piece::Lit(" "),
                ph(ArgRef::Index(0), Spec::DEFAULT, 19, 22),
            ]
        );
    }

    #[test]
    fn arguments() {
        assert_eq!(arg("{}"), ArgRef::Next);
        assert_eq!(arg("{:x}"), ArgRef::Next);
        assert_eq!(arg("{ }"), ArgRef::Next);
        assert_eq!(arg("{0}"), ArgRef::Index(0));
        assert_eq!(arg("{00}"), ArgRef::Index(0));
        assert_eq!(arg("{12}"), ArgRef::Index(12));
        assert_eq!(arg("{65535}"), ArgRef::Index(65535));
        assert_eq!(arg("{name}"), ArgRef::Name("name"));
        assert_eq!(arg("{_x1}"), ArgRef::Name("_x1"));
        assert_eq!(arg("{__}"), ArgRef::Name("__"));
        assert_eq!(arg("{self}"), ArgRef::Name("self"));
        assert_eq!(arg("{größe}"), ArgRef::Name("größe"));
        assert_eq!(arg("{x:?}"), ArgRef::Name("x"));
        // Whitespace after the argument and before `}`, as rustc allows.
        assert_eq!(arg("{0 }"), ArgRef::Index(0));
        assert_eq!(arg("{a :5}"), ArgRef::Name("a"));
        assert_eq!(normalise("{a \t:5 }"), "{a:5}");
    }

    #[test]
    fn every_spec_form() {
        let d = Spec::DEFAULT;
        assert_eq!(spec("{}"), d);
        assert_eq!(spec("{:}"), d);
        assert_eq!(spec("{: }"), d);
        assert_eq!(
            spec("{:<}"),
            Spec {
                align: Some(Align::Left),
                ..d
            }
        );
        assert_eq!(
            spec("{:^9}"),
            Spec {
                align: Some(Align::Center),
                width: Some(9),
                ..d
            }
        );
        assert_eq!(
            spec("{:*>8}"),
            Spec {
                fill: '*',
                align: Some(Align::Right),
                width: Some(8),
                ..d
            }
        );
        assert_eq!(
            spec("{:<<5}"),
            Spec {
                fill: '<',
                align: Some(Align::Left),
                width: Some(5),
                ..d
            }
        );
        assert_eq!(
            spec("{:0>5}"),
            Spec {
                fill: '0',
                align: Some(Align::Right),
                width: Some(5),
                ..d
            }
        );
        assert_eq!(
            spec("{:}>5}"),
            Spec {
                fill: '}',
                align: Some(Align::Right),
                width: Some(5),
                ..d
            }
        );
        assert_eq!(
            spec("{:ä^3}"),
            Spec {
                fill: 'ä',
                align: Some(Align::Center),
                width: Some(3),
                ..d
            }
        );
        assert_eq!(
            spec("{:+}"),
            Spec {
                sign: Some(Sign::Plus),
                ..d
            }
        );
        assert_eq!(
            spec("{:-}"),
            Spec {
                sign: Some(Sign::Minus),
                ..d
            }
        );
        assert_eq!(
            spec("{:#?}"),
            Spec {
                alternate: true,
                ty: FmtType::Debug,
                ..d
            }
        );
        assert_eq!(spec("{:0}"), Spec { zero: true, ..d });
        assert_eq!(
            spec("{:08}"),
            Spec {
                zero: true,
                width: Some(8),
                ..d
            }
        );
        assert_eq!(
            spec("{:00}"),
            Spec {
                zero: true,
                width: Some(0),
                ..d
            }
        );
        assert_eq!(
            spec("{:10}"),
            Spec {
                width: Some(10),
                ..d
            }
        );
        assert_eq!(
            spec("{:.3}"),
            Spec {
                precision: Some(3),
                ..d
            }
        );
        assert_eq!(spec("{:.}"), d);
        assert_eq!(
            spec("{:.x}"),
            Spec {
                ty: FmtType::LowerHex,
                ..d
            }
        );
        assert_eq!(
            spec("{:5.0}"),
            Spec {
                width: Some(5),
                precision: Some(0),
                ..d
            }
        );
        assert_eq!(
            spec("{:_<+#012.4e}"),
            Spec {
                fill: '_',
                align: Some(Align::Left),
                sign: Some(Sign::Plus),
                alternate: true,
                zero: true,
                width: Some(12),
                precision: Some(4),
                ty: FmtType::LowerExp,
            }
        );
        let types = [
            ("{:?}", FmtType::Debug),
            ("{:x}", FmtType::LowerHex),
            ("{:X}", FmtType::UpperHex),
            ("{:b}", FmtType::Binary),
            ("{:o}", FmtType::Octal),
            ("{:e}", FmtType::LowerExp),
            ("{:E}", FmtType::UpperExp),
        ];
        for (s, ty) in types {
            assert_eq!(spec(s), Spec { ty, ..d }, "{s}");
        }
        // Trailing whitespace.
        assert_eq!(
            spec("{:x }"),
            Spec {
                ty: FmtType::LowerHex,
                ..d
            }
        );
        assert_eq!(
            spec("{:5 }"),
            Spec {
                width: Some(5),
                ..d
            }
        );
        assert_eq!(
            spec("{:65535.65535}"),
            Spec {
                width: Some(65535),
                precision: Some(65535),
                ..d
            }
        );
    }

    #[test]
    fn errors_with_offsets() {
        let e = |s, kind, offset, end, placeholder| {
            assert_eq!(
                err(s),
                Error {
                    kind,
                    offset,
                    end,
                    placeholder
                },
                "{s:?}"
            );
        };
        use ErrorKind::*;
        e("}", UnmatchedClose, 0, 1, 0);
        e("ab}c", UnmatchedClose, 2, 3, 2);
        e("{}}", UnmatchedClose, 2, 3, 2);
        e("{", Unterminated, 1, 1, 0);
        e("ab {0", Unterminated, 5, 5, 3);
        e("ab {0:x", Unterminated, 7, 7, 3);
        e("{ 0}", ExpectedClose('0'), 2, 3, 0);
        e("{0: x}", ExpectedClose('x'), 4, 5, 0);
        e("{:5 x}", ExpectedClose('x'), 4, 5, 0);
        e("{:xx}", ExpectedClose('x'), 3, 4, 0);
        e("{:?x}", ExpectedClose('x'), 3, 4, 0);
        e("{:?#}", ExpectedClose('#'), 3, 4, 0);
        e("{x?}", ExpectedClose('?'), 2, 3, 0);
        e("{0x}", ExpectedClose('x'), 2, 3, 0);
        e("{a.b}", ExpectedClose('.'), 2, 3, 0);
        e("{r#type}", ExpectedClose('#'), 2, 3, 0);
        e("{:,}", ExpectedClose(','), 2, 3, 0);
        e("{é:\n5}", ExpectedClose('5'), 5, 6, 0);
        e("x {_}", InvalidName, 3, 4, 2);
        e("{65536}", IntegerTooLarge, 1, 6, 0);
        e("{:99999999999999999999999}", IntegerTooLarge, 2, 25, 0);
        e("{:.70000}", IntegerTooLarge, 3, 8, 0);
        e("{:*}", StarCount, 2, 3, 0);
        e("{:.*}", StarCount, 3, 4, 0);
        e("{:>.*}", StarCount, 4, 5, 0);
        e("{:>0*}", StarCount, 4, 5, 0);
        e("{*}", ExpectedClose('*'), 1, 2, 0);
        e("{:5*}", ExpectedClose('*'), 3, 4, 0);
        e("{:1$}", ArgCount, 2, 4, 0);
        e("{:0$}", ArgCount, 2, 4, 0);
        e("{:w$}", ArgCount, 2, 4, 0);
        e("{:.1$}", ArgCount, 3, 5, 0);
        e("{:.prec$}", ArgCount, 3, 8, 0);
        e("{:x?}", DebugHex, 2, 4, 0);
        e("{:#X?}", DebugHex, 3, 5, 0);
        e("{:p}", Pointer, 2, 3, 0);
        e("{:d}", UnknownType, 2, 3, 0);
        e("{:ex}", UnknownType, 2, 4, 0);
        e("{:é}", UnknownType, 2, 4, 0);
        e("{:_}", UnknownType, 2, 3, 0);
        // The first error stops the parser.
        let mut p = Parser::new("a}b{}");
        assert_eq!(p.next(), Some(Ok(Piece::Lit("a"))));
        assert!(matches!(p.next(), Some(Err(_))));
        assert_eq!(p.next(), None);
        assert_eq!(p.next(), None);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            err("ab}").to_string(),
            "unmatched `}` found (write `}}` for a literal `}`) (at byte 2)"
        );
        assert_eq!(
            err("{:.*}").kind.to_string(),
            "`*` width or precision is not supported by klog (write a number)"
        );
        assert_eq!(normalise("{0\n}x"), "{0}x"); // `\n` is whitespace
        assert_eq!(err("{0\t?}").kind.to_string(), "expected `}`, found `?`");
        assert_eq!(
            ErrorKind::ExpectedClose('\n').to_string(),
            "expected `}`, found `\\n`"
        );
    }

    #[test]
    fn spec_display() {
        let d = Spec::DEFAULT;
        assert_eq!(d.to_string(), "");
        assert!(d.is_default());
        // A fill without alignment has no effect and is not written.
        assert_eq!(Spec { fill: 'x', ..d }.to_string(), "");
        assert!(Spec { fill: 'x', ..d }.is_default());
        assert_eq!(
            Spec {
                align: Some(Align::Right),
                ..d
            }
            .to_string(),
            ">"
        );
        assert_eq!(
            Spec {
                fill: '0',
                align: Some(Align::Center),
                width: Some(4),
                ..d
            }
            .to_string(),
            "0^4"
        );
        assert_eq!(
            Spec {
                fill: '_',
                align: Some(Align::Left),
                sign: Some(Sign::Plus),
                alternate: true,
                zero: true,
                width: Some(12),
                precision: Some(4),
                ty: FmtType::UpperExp,
            }
            .to_string(),
            "_<+#012.4E"
        );
        assert_eq!(Spec { zero: true, ..d }.to_string(), "0");
        assert_eq!(
            Spec {
                zero: true,
                width: Some(0),
                ..d
            }
            .to_string(),
            "00"
        );
        assert_eq!(
            Spec {
                width: Some(0),
                ..d
            }
            .to_string(),
            ""
        );
        assert_eq!(
            Spec {
                precision: Some(0),
                ..d
            }
            .to_string(),
            ".0"
        );
        let p = Placeholder {
            arg: ArgRef::Index(1),
            spec: Spec {
                alternate: true,
                ty: FmtType::LowerHex,
                ..d
            },
            start: 0,
            end: 0,
        };
        assert_eq!(p.to_string(), "{1:#x}");
        assert_eq!(
            Placeholder {
                arg: ArgRef::Name("n"),
                spec: d,
                start: 0,
                end: 0
            }
            .to_string(),
            "{n}"
        );
        assert_eq!(Piece::Lit("{a}").to_string(), "{{a}}");
        let mut s = String::new();
        write_escaped(&mut s, "}}{").unwrap();
        assert_eq!(s, "}}}}{{");
    }

    #[test]
    fn normalisation() {
        let cases = [
            ("{ }", "{}"),
            ("{0 :}", "{0}"),
            ("{: >5}", "{:>5}"),
            ("{:.}", "{}"),
            ("{:.x}", "{:x}"),
            ("{x:+#010.3e}", "{x:+#010.3e}"),
            ("{00}", "{0}"),
            ("{:007}", "{:07}"),
            ("a {{{x}}} b", "a {{{x}}} b"),
            ("{:}>5}", "{:}>5}"),
        ];
        for (s, want) in cases {
            assert_eq!(normalise(s), want, "{s:?}");
        }
    }

    /// Every combination of spec fields survives Spec -> text -> parse.
    #[test]
    fn round_trip() {
        let fills = [' ', '0', '*', '}', '{', '<', 'é', ':'];
        let aligns = [
            None,
            Some(Align::Left),
            Some(Align::Center),
            Some(Align::Right),
        ];
        let signs = [None, Some(Sign::Plus), Some(Sign::Minus)];
        let counts = [None, Some(0), Some(7), Some(65535)];
        let types = [
            FmtType::Display,
            FmtType::Debug,
            FmtType::LowerHex,
            FmtType::UpperHex,
            FmtType::Binary,
            FmtType::Octal,
            FmtType::LowerExp,
            FmtType::UpperExp,
        ];
        let mut n = 0;
        for fill in fills {
            for align in aligns {
                for sign in signs {
                    for alternate in [false, true] {
                        for zero in [false, true] {
                            for width in counts {
                                for precision in counts {
                                    for ty in types {
                                        let spec = Spec {
                                            fill: if align.is_some() { fill } else { ' ' },
                                            align,
                                            sign,
                                            alternate,
                                            zero,
                                            width,
                                            precision,
                                            ty,
                                        };
                                        if width == Some(0) && !zero {
                                            continue; // not representable, documented
                                        }
                                        let arg = if n % 3 == 0 {
                                            ArgRef::Index(n % 17)
                                        } else if n % 3 == 1 {
                                            ArgRef::Next
                                        } else {
                                            ArgRef::Name("v")
                                        };
                                        n += 1;
                                        let p = Placeholder {
                                            arg,
                                            spec,
                                            start: 1,
                                            end: 0,
                                        };
                                        let text = format!("a{p}b");
                                        let got = pieces(&text);
                                        assert_eq!(got.len(), 3, "{text}");
                                        let Piece::Placeholder(q) = got[1] else {
                                            panic!("{text}: {got:?}");
                                        };
                                        assert_eq!(q.arg, arg, "{text}");
                                        assert_eq!(q.spec, spec, "{text}");
                                        assert_eq!((q.start, q.end), (1, text.len() - 1));
                                        assert_eq!(format!("a{q}b"), text);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(n > 10_000);
    }

    #[test]
    fn fmt_type_names() {
        for t in [
            FmtType::Display,
            FmtType::Debug,
            FmtType::LowerHex,
            FmtType::UpperHex,
            FmtType::Binary,
            FmtType::Octal,
            FmtType::LowerExp,
            FmtType::UpperExp,
        ] {
            assert_eq!(FmtType::parse(t.as_str()), Some(t));
        }
        assert_eq!(FmtType::parse("p"), None);
        assert_eq!(FmtType::default(), FmtType::Display);
        assert_eq!(Spec::default(), Spec::DEFAULT);
    }
}
