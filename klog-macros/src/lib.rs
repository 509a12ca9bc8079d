//! Compile-time half of `klog!`: the `klog_callsite!` proc macro.
//!
//! The crate depends on nothing but `proc_macro` (no `syn`/`quote`), so the kernel build can
//! compile it with a bare `rustc --crate-type proc-macro`. The format-string parser is
//! `klog/src/fmtspec.rs`, shared by source with the runtime (and its decoder).
//!
//! `klog_callsite!` is not called by users: klog's front macros (`klog!`, `klog_raw!`) call it
//! through `$crate::__private::klog_callsite!` with this input:
//!
//! ```text
//! klog_callsite!(PATH, LEVEL, KIND, "format string" $(, (ARG))* $(,)?)
//! ```
//!
//! * `PATH`: tokens naming the klog crate (`$crate`), emitted verbatim before `::__private::...`
//!   and `::Level::...`;
//! * `LEVEL`: `Error`, `Warn`, `Info`, `Debug` or `Trace`;
//! * `KIND`: `fmt` (a `klog!` event), `raw` (a `klog_raw!` statement: format string `""`,
//!   exactly one argument, the bytes) or `off` (a compiled-out `klog!`: checked, never run);
//! * each `ARG` is parenthesised; `(name = expr)` is an explicit named argument.
//!
//! Any of them may arrive wrapped in invisible (`Delimiter::None`) groups, as `macro_rules!`
//! fragments do. The expansion is described on [`klog_callsite!`].

extern crate proc_macro;

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};
use std::fmt::Write as _;
use std::str::FromStr;

#[allow(dead_code)] // the decoder's half of the API is unused here
#[path = "../../klog/src/fmtspec.rs"]
mod fmtspec;

use fmtspec::{ArgRef, Parser, Piece, Placeholder};

/// Most arguments a `klog!` call can have (`emit` takes tuples of up to 16 references).
const MAX_ARGS: usize = 16;

/// Expands one klog callsite. For
/// `klog!("rx {} after {x:#x} {0}", q)` (with `x` a local variable) it produces, with `$crate`
/// standing for the `PATH` tokens:
///
/// ```text
/// {
///     let __klog_callsite: &'static $crate::__private::Callsite = {
///         static __KLOG_CALLSITE: $crate::__private::Callsite =
///             $crate::__private::Callsite::new($crate::__private::Meta {
///                 fmt: "rx {0} after {1:#x} {0}",
///                 level: $crate::Level::Info,
///                 kind: $crate::__private::Kind::Fmt,
///                 module: ::core::module_path!(),
///                 file: ::core::file!(),
///                 line: ::core::line!(),
///                 n_args: 2,
///             });
///         &__KLOG_CALLSITE
///     };
///     if $crate::__private::enabled(__klog_callsite) {
///         match (&(q), &(x),) {
///             __klog_args => {
///                 if false {
///                     fn __klog_arg<T: $crate::Arg + ?Sized>(_: &T) {}
///                     __klog_arg(__klog_args.0);
///                     __klog_arg(__klog_args.1);
///                     use $crate::__private::{ProbeBuiltin as _, ProbeUser as _};
///                     let _ = ::core::format_args!(
///                         "rx {0} after {1:#x} {0}",
///                         (&$crate::__private::Probe(__klog_args.0)).klog_fmt_check(),
///                         (&$crate::__private::Probe(__klog_args.1)).klog_fmt_check(),
///                     );
///                 }
///                 $crate::__private::emit(__klog_callsite, __klog_args);
///             }
///         }
///     }
/// }
/// ```
///
/// `__klog_callsite` and `__klog_args` are hygienic (mixed-site) locals, and the static sits in
/// a block of its own, so no name of the caller's arguments can clash with them.
///
/// The arguments are evaluated once, only when the callsite is enabled. The dead branch checks
/// types where the errors can point at the offending argument: `__klog_arg` that it implements
/// `klog::Arg` (`emit`'s bound on the whole tuple would point at the whole statement), the
/// `format_args!` every placeholder against its argument with rustc's own rules — for klog's
/// own argument types; a user type is decoded as the primitive its `Arg` impl encodes, so its
/// own `Display`/`Debug`/... impls are never used and not required (`Probe` hands
/// `format_args!` a stand-in for it).
///
/// The final argument list is: positional arguments in order, explicit named arguments in
/// order, then identifiers captured from the caller's scope in order of first use; the stored
/// `fmt` names every argument by its index in that list.
///
/// For `off` (a compiled-out `klog!`, e.g. klog's `off` feature): the same checks and errors,
/// and only `{ if false { match (&(q), &(x),) { __klog_args => { /* the checks */ } } } }`: no
/// callsite, no runtime item but `$crate::Arg`, arguments never evaluated.
///
/// For `raw`: `kind: Kind::Raw`, `fmt: ""`, `n_args: 0`, and the call is
/// `$crate::__private::emit_raw(__klog_callsite, ::core::convert::AsRef::<[u8]>::as_ref(&(bytes)))`.
#[proc_macro]
pub fn klog_callsite(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(ts) => ts,
        Err(errors) => errors.into_tokens(),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Source range of a token sequence: its first and last token's spans (`Span::join` is
/// unstable; rustc joins the spans of a macro call's first and last tokens by itself).
#[derive(Clone, Copy)]
struct Range {
    lo: Span,
    hi: Span,
}

impl From<Span> for Range {
    fn from(span: Span) -> Self {
        Range { lo: span, hi: span }
    }
}

impl Range {
    fn of(tokens: &[TokenTree], fallback: Span) -> Range {
        match (tokens.first(), tokens.last()) {
            (Some(lo), Some(hi)) => Range {
                lo: lo.span(),
                hi: hi.span(),
            },
            _ => fallback.into(),
        }
    }

    fn resolved_at(self, at: Span) -> Range {
        Range {
            lo: self.lo.resolved_at(at),
            hi: self.hi.resolved_at(at),
        }
    }
}

/// Compile errors, each at a source range.
#[derive(Default)]
struct Errors(Vec<(Range, String)>);

impl Errors {
    fn push(&mut self, span: impl Into<Range>, msg: impl Into<String>) {
        self.0.push((span.into(), msg.into()));
    }

    fn one(span: impl Into<Range>, msg: impl Into<String>) -> Self {
        let mut e = Errors::default();
        e.push(span, msg);
        e
    }

    fn check(self) -> Result<(), Errors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// `{ ::core::compile_error!("msg"); ... }`, the tokens of each call at the error's range
    /// (path at its start, parentheses at its end) so that rustc points at the offending tokens.
    fn into_tokens(self) -> TokenStream {
        let mut body = Vec::new();
        for (Range { lo: span, hi }, msg) in self.0 {
            let mut lit = Literal::string(&msg);
            lit.set_span(hi);
            let args = TokenStream::from(TokenTree::Literal(lit));
            body.extend([
                punct(':', Spacing::Joint, span),
                punct(':', Spacing::Alone, span),
                TokenTree::Ident(Ident::new("core", span)),
                punct(':', Spacing::Joint, span),
                punct(':', Spacing::Alone, span),
                TokenTree::Ident(Ident::new("compile_error", span)),
                punct('!', Spacing::Alone, span),
                group(Delimiter::Parenthesis, args, hi),
                punct(';', Spacing::Alone, hi),
            ]);
        }
        let span = Span::call_site();
        TokenStream::from(group(Delimiter::Brace, body.into_iter().collect(), span))
    }
}

fn punct(c: char, spacing: Spacing, span: Span) -> TokenTree {
    let mut p = Punct::new(c, spacing);
    p.set_span(span);
    TokenTree::Punct(p)
}

fn group(delim: Delimiter, stream: TokenStream, span: Span) -> TokenTree {
    let mut g = Group::new(delim, stream);
    g.set_span(span);
    TokenTree::Group(g)
}

// ---------------------------------------------------------------------------------------------
// Input

/// One argument of the call.
struct Arg {
    /// `Some` for `name = expr`.
    name: Option<(String, Span)>,
    /// The expression.
    expr: TokenStream,
    /// The whole argument (`name = expr` for a named one), for errors.
    span: Range,
    /// The expression.
    expr_span: Range,
}

/// Strips invisible groups wrapping a whole token list (`macro_rules!` fragments arrive so).
fn unwrap_none(mut tokens: Vec<TokenTree>) -> Vec<TokenTree> {
    while let [TokenTree::Group(g)] = tokens.as_slice() {
        if g.delimiter() != Delimiter::None {
            break;
        }
        tokens = g.stream().into_iter().collect();
    }
    tokens
}

/// Splits at top-level commas.
fn split_commas(input: TokenStream) -> Vec<(Vec<TokenTree>, Option<Span>)> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for tt in input {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                out.push((std::mem::take(&mut cur), Some(p.span())));
            }
            _ => cur.push(tt),
        }
    }
    if !cur.is_empty() {
        out.push((cur, None));
    }
    out
}

fn span_of(tokens: &[TokenTree], fallback: Span) -> Span {
    tokens.first().map_or(fallback, TokenTree::span)
}

fn parse_arg(tokens: Vec<TokenTree>, fallback: Span) -> Arg {
    let mut tokens = unwrap_none(tokens);
    // The front macro's own parentheses.
    if let [TokenTree::Group(g)] = tokens.as_slice() {
        if g.delimiter() == Delimiter::Parenthesis {
            tokens = g.stream().into_iter().collect();
        }
    }
    let tokens = unwrap_none(tokens);
    let span = Range::of(&tokens, fallback);
    if let [TokenTree::Ident(name), TokenTree::Punct(eq), rest @ ..] = tokens.as_slice() {
        let is_eq_eq = matches!(rest.first(), Some(TokenTree::Punct(p)) if p.as_char() == '=')
            && eq.spacing() == Spacing::Joint;
        if eq.as_char() == '=' && !is_eq_eq && !rest.is_empty() {
            let name_str = name.to_string();
            return Arg {
                name: Some((name_str, name.span())),
                expr: rest.iter().cloned().collect(),
                span,
                expr_span: Range::of(rest, fallback),
            };
        }
    }
    Arg {
        name: None,
        expr: tokens.into_iter().collect(),
        span,
        expr_span: span,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Fmt,
    Raw,
    /// A compiled-out `klog!`: every check, no callsite, arguments never evaluated.
    Off,
}

/// The parsed call.
struct Call {
    path: Vec<TokenTree>,
    level: Ident,
    kind: Kind,
    lit: Literal,
    fmt: String,
    args: Vec<Arg>,
}

const LEVELS: [&str; 5] = ["Error", "Warn", "Info", "Debug", "Trace"];

fn parse_call(input: TokenStream) -> Result<Call, Errors> {
    let call_site = Span::call_site();
    let mut parts = split_commas(input).into_iter();
    let usage = "klog_callsite!(PATH, LEVEL, fmt|raw|off, \"format\", (arg)...) expected";
    let mut next = |what: &str| -> Result<(Vec<TokenTree>, Span), Errors> {
        match parts.next() {
            Some((t, _)) if !t.is_empty() => {
                let span = span_of(&t, call_site);
                Ok((unwrap_none(t), span))
            }
            Some((_, Some(comma))) => Err(Errors::one(comma, format!("{usage}: missing {what}"))),
            _ => Err(Errors::one(call_site, format!("{usage}: missing {what}"))),
        }
    };
    let (path, _) = next("crate path")?;
    let (level, level_span) = next("level")?;
    let level = match level.as_slice() {
        [TokenTree::Ident(i)] if LEVELS.contains(&i.to_string().as_str()) => i.clone(),
        _ => {
            return Err(Errors::one(
                level_span,
                "klog level must be one of Error, Warn, Info, Debug, Trace",
            ))
        }
    };
    let (kind, kind_span) = next("kind")?;
    let kind = match kind.as_slice() {
        [TokenTree::Ident(i)] if i.to_string() == "fmt" => Kind::Fmt,
        [TokenTree::Ident(i)] if i.to_string() == "raw" => Kind::Raw,
        [TokenTree::Ident(i)] if i.to_string() == "off" => Kind::Off,
        _ => {
            return Err(Errors::one(
                kind_span,
                format!("{usage}: kind must be `fmt`, `raw` or `off`"),
            ))
        }
    };
    let (lit, lit_span) = next("format string")?;
    let lit = match lit.as_slice() {
        [TokenTree::Literal(l)] => l.clone(),
        _ => {
            return Err(Errors::one(
                lit_span,
                "format string must be a string literal",
            ))
        }
    };
    let fmt = unescape_str_literal(&lit.to_string()).map_err(|msg| Errors::one(lit.span(), msg))?;
    let args = parts
        .map(|(tokens, comma)| {
            let fallback = comma.unwrap_or(lit.span());
            if tokens.is_empty() {
                Err(Errors::one(fallback, "expected an argument, found `,`"))
            } else {
                Ok(parse_arg(tokens, fallback))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Call {
        path,
        level,
        kind,
        lit,
        fmt,
        args,
    })
}

/// The value of a (raw) string literal, from its source text.
fn unescape_str_literal(src: &str) -> Result<String, String> {
    let not_str = || format!("format string must be a string literal, found `{src}`");
    if let Some(rest) = src.strip_prefix('r') {
        let hashes = rest.len() - rest.trim_start_matches('#').len();
        let body = &rest[hashes..];
        let closing = format!("\"{}", "#".repeat(hashes));
        return match body
            .strip_prefix('"')
            .and_then(|b| b.strip_suffix(closing.as_str()))
        {
            Some(s) => Ok(s.to_owned()),
            None => Err(not_str()),
        };
    }
    let Some(body) = src.strip_prefix('"').and_then(|b| b.strip_suffix('"')) else {
        return Err(not_str());
    };
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    let bad = |what: &str| format!("unsupported escape `{what}` in format string");
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('0') => out.push('\0'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) if b <= 0x7f => out.push(b as char),
                    _ => return Err(bad(&format!("\\x{hex}"))),
                }
            }
            Some('u') => {
                let mut hex = String::new();
                if chars.next() != Some('{') {
                    return Err(bad("\\u"));
                }
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    if c != '_' {
                        hex.push(c);
                    }
                }
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => return Err(bad(&format!("\\u{{{hex}}}"))),
                }
            }
            Some('\n') => {
                while chars
                    .next_if(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
                    .is_some()
                {}
            }
            Some('\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                while chars
                    .next_if(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
                    .is_some()
                {}
            }
            Some(c) => return Err(bad(&format!("\\{c}"))),
            None => return Err(not_str()),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Expansion

/// An argument of the final list.
struct Final {
    expr: TokenStream,
    span: Range,
}

fn expand(input: TokenStream) -> Result<TokenStream, Errors> {
    let call = parse_call(input)?;
    match call.kind {
        Kind::Fmt | Kind::Off => expand_fmt(call),
        Kind::Raw => expand_raw(call),
    }
}

/// Checks the argument list shape: named after positional, no duplicate names.
fn check_args(args: &[Arg]) -> Result<usize, Errors> {
    let mut errors = Errors::default();
    let n_pos = args.iter().take_while(|a| a.name.is_none()).count();
    for (i, a) in args.iter().enumerate().skip(n_pos) {
        match &a.name {
            None => errors.push(a.span, "positional arguments cannot follow named arguments"),
            Some((name, span)) => {
                let dup = args[..i]
                    .iter()
                    .any(|b| b.name.as_ref().is_some_and(|(n, _)| n == name));
                if dup {
                    errors.push(*span, format!("duplicate argument named `{name}`"));
                }
            }
        }
    }
    errors.check().map(|()| n_pos)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Where in the format string an error is, for the message (`Literal::subspan` is unstable, so
/// the error can only point at the whole literal): `in `{:.*}`` (the placeholder) or, for a
/// stray `}`, `near `a } b`` (a few characters around it).
fn location(fmt: &str, e: &fmtspec::Error) -> String {
    let clamp = |i: usize| i.min(fmt.len());
    if e.kind == fmtspec::ErrorKind::UnmatchedClose {
        let at = clamp(e.offset);
        let before: usize = fmt[..at].chars().rev().take(8).map(char::len_utf8).sum();
        let after: usize = fmt[at..].chars().take(9).map(char::len_utf8).sum();
        return format!("near `{}`", &fmt[at - before..at + after]);
    }
    let start = clamp(e.placeholder);
    let from = clamp(e.end.max(start));
    let end = fmt[from..].find('}').map_or(fmt.len(), |i| from + i + 1);
    format!("in `{}`", &fmt[start..end])
}

fn expand_fmt(call: Call) -> Result<TokenStream, Errors> {
    let lit_span = call.lit.span();
    let fmt = &call.fmt;
    let n_pos = check_args(&call.args)?;
    let n_explicit = call.args.len();
    let named: Vec<&str> = call.args[n_pos..]
        .iter()
        .map(|a| a.name.as_ref().map_or("", |(n, _)| n.as_str()))
        .collect();

    // Parse and resolve every placeholder.
    let mut pieces: Vec<(Piece<'_>, usize)> = Vec::new();
    let mut captures: Vec<&str> = Vec::new();
    let mut used = vec![false; n_explicit];
    let mut n_implicit = 0;
    let mut bad_index = Vec::new();
    for piece in Parser::new(fmt) {
        let piece = piece.map_err(|e| {
            Errors::one(
                lit_span,
                format!("invalid format string: {}, {}", e.kind, location(fmt, &e)),
            )
        })?;
        let Piece::Placeholder(p) = piece else {
            pieces.push((piece, 0));
            continue;
        };
        let index = match p.arg {
            ArgRef::Next => {
                n_implicit += 1;
                n_implicit - 1
            }
            ArgRef::Index(i) => {
                if i >= n_explicit && !bad_index.contains(&i) {
                    bad_index.push(i);
                }
                i
            }
            ArgRef::Name(name) => match named.iter().position(|n| *n == name) {
                Some(j) => n_pos + j,
                None => {
                    let k = captures.iter().position(|c| *c == name).unwrap_or_else(|| {
                        captures.push(name);
                        captures.len() - 1
                    });
                    n_explicit + k
                }
            },
        };
        if let Some(u) = used.get_mut(index) {
            *u = true;
        }
        pieces.push((piece, index));
    }

    let mut errors = Errors::default();
    let there = |n: usize| match n {
        0 => "no arguments were given".to_owned(),
        1 => "there is 1 argument".to_owned(),
        n => format!("there are {n} arguments"),
    };
    if n_implicit > n_explicit {
        errors.push(
            lit_span,
            format!(
                "{} in format string, but {}",
                plural(n_implicit, "positional argument", "positional arguments"),
                there(n_explicit)
            ),
        );
    }
    for i in bad_index {
        errors.push(
            lit_span,
            format!(
                "invalid reference to positional argument {i} ({})",
                there(n_explicit)
            ),
        );
    }
    for (a, used) in call.args.iter().zip(&used) {
        if !used {
            let what = if a.name.is_some() {
                "named argument never used"
            } else {
                "argument never used"
            };
            errors.push(a.span, what);
        }
    }
    errors.check()?;

    // The final argument list.
    let mut finals: Vec<Final> = call
        .args
        .into_iter()
        .map(|a| Final {
            expr: a.expr,
            span: a.expr_span,
        })
        .collect();
    for name in &captures {
        finals.push(Final {
            expr: TokenStream::from(TokenTree::Ident(Ident::new(name, lit_span))),
            span: lit_span.into(),
        });
    }
    if finals.len() > MAX_ARGS {
        return Err(Errors::one(
            finals[MAX_ARGS].span,
            format!(
                "klog! supports at most {MAX_ARGS} arguments (this call has {})",
                finals.len()
            ),
        ));
    }

    // The normalised format string.
    let mut norm = String::with_capacity(fmt.len() + 8);
    for (piece, index) in &pieces {
        let piece = match piece {
            Piece::Placeholder(p) => Piece::Placeholder(Placeholder {
                arg: ArgRef::Index(*index),
                ..*p
            }),
            lit => *lit,
        };
        write!(norm, "{piece}").expect("writing to a String");
    }
    let mut norm_lit = Literal::string(&norm);
    norm_lit.set_span(lit_span);

    // `(&(a0), &(a1),)` and `__klog_args.0, __klog_args.1,`.
    let mut tuple = Vec::new();
    let mut check = Vec::new();
    let mut arg_check = Vec::new();
    for (i, f) in finals.iter().enumerate() {
        // `__klog_args.i` spans the argument, so that type errors point at it.
        let Range { lo, hi } = f.span.resolved_at(Span::mixed_site());
        tuple.push(punct('&', Spacing::Alone, lo));
        tuple.push(group(Delimiter::Parenthesis, f.expr.clone(), hi));
        tuple.push(punct(',', Spacing::Alone, hi));
        let mut idx = Literal::usize_unsuffixed(i);
        idx.set_span(hi);
        let field = [
            TokenTree::Ident(Ident::new("__klog_args", lo)),
            punct('.', Spacing::Alone, hi),
            TokenTree::Literal(idx),
        ];
        // `(&$crate::__private::Probe(__klog_args.i)).klog_fmt_check(),`: the argument itself
        // for klog's own types, a stand-in that accepts every spec for user types (see
        // `klog::__private::Probe`).
        let mut probe: Vec<TokenTree> = vec![punct('&', Spacing::Alone, lo)];
        probe.extend(call.path.iter().cloned());
        probe.extend([
            punct(':', Spacing::Joint, lo),
            punct(':', Spacing::Alone, lo),
            TokenTree::Ident(Ident::new("__private", lo)),
            punct(':', Spacing::Joint, lo),
            punct(':', Spacing::Alone, lo),
            TokenTree::Ident(Ident::new("Probe", lo)),
            group(Delimiter::Parenthesis, field.iter().cloned().collect(), hi),
        ]);
        check.extend([
            group(Delimiter::Parenthesis, probe.into_iter().collect(), lo),
            punct('.', Spacing::Alone, hi),
            TokenTree::Ident(Ident::new("klog_fmt_check", hi)),
            group(Delimiter::Parenthesis, TokenStream::new(), hi),
            punct(',', Spacing::Alone, hi),
        ]);
        // `__klog_arg(__klog_args.i);`
        arg_check.push(TokenTree::Ident(Ident::new("__klog_arg", lo)));
        arg_check.push(group(
            Delimiter::Parenthesis,
            field.into_iter().collect(),
            hi,
        ));
        arg_check.push(punct(';', Spacing::Alone, hi));
    }
    let tuple = TokenStream::from(group(
        Delimiter::Parenthesis,
        tuple.into_iter().collect(),
        Span::mixed_site(),
    ));

    let checks = "
        #[allow(unused_imports)]
        use __K_PATH::__private::{ProbeBuiltin as _, ProbeUser as _};
        fn __klog_arg<T: __K_PATH::Arg + ?Sized>(_: &T) {}
        __K_ARG_CHECK
        let _ = ::core::format_args!(__K_FMT, __K_CHECK);
    ";
    let template = if call.kind == Kind::Off {
        format!("{{ if false {{ match __K_TUPLE {{ __klog_args => {{ {checks} }} }} }} }}")
    } else {
        format!(
            "match __K_TUPLE {{
                __klog_args => {{
                    if false {{ {checks} }}
                    __K_PATH::__private::emit(__klog_callsite, __klog_args);
                }}
            }}"
        )
    };
    let body = quote(
        &template,
        &[
            ("__K_TUPLE", tuple),
            ("__K_FMT", TokenTree::Literal(norm_lit.clone()).into()),
            ("__K_CHECK", check.into_iter().collect()),
            ("__K_ARG_CHECK", arg_check.into_iter().collect()),
            ("__K_PATH", call.path.iter().cloned().collect()),
        ],
    );
    if call.kind == Kind::Off {
        return Ok(body);
    }
    Ok(callsite(
        &call.path,
        &call.level,
        "Fmt",
        norm_lit,
        finals.len(),
        body,
    ))
}

fn expand_raw(call: Call) -> Result<TokenStream, Errors> {
    let lit_span = call.lit.span();
    let mut errors = Errors::default();
    if !call.fmt.is_empty() {
        errors.push(
            lit_span,
            "klog_raw! takes no format string (the format must be `\"\"`)",
        );
    }
    for a in &call.args {
        if let Some((name, span)) = &a.name {
            errors.push(
                *span,
                format!("klog_raw! takes no named arguments (`{name} = ...`)"),
            );
        }
    }
    match call.args.len() {
        0 => errors.push(lit_span, "klog_raw! takes exactly one argument: the bytes"),
        1 => {}
        _ => errors.push(
            call.args[1].span,
            "klog_raw! takes exactly one argument: the bytes",
        ),
    }
    errors.check()?;
    let arg = &call.args[0];
    let Range { lo, hi } = arg.expr_span.resolved_at(Span::mixed_site());
    let bytes = TokenStream::from_iter([
        punct('&', Spacing::Alone, lo),
        group(Delimiter::Parenthesis, arg.expr.clone(), hi),
    ]);
    let body = quote(
        "__K_PATH::__private::emit_raw(
            __klog_callsite,
            ::core::convert::AsRef::<[u8]>::as_ref(__K_BYTES),
        );",
        &[
            ("__K_BYTES", bytes),
            ("__K_PATH", call.path.iter().cloned().collect()),
        ],
    );
    let mut empty = Literal::string("");
    empty.set_span(lit_span);
    Ok(callsite(&call.path, &call.level, "Raw", empty, 0, body))
}

/// The callsite block around `body` (which runs when the callsite is enabled).
fn callsite(
    path: &[TokenTree],
    level: &Ident,
    kind: &str,
    fmt: Literal,
    n_args: usize,
    body: TokenStream,
) -> TokenStream {
    quote(
        "{
            let __klog_callsite: &'static __K_PATH::__private::Callsite = {
                static __KLOG_CALLSITE: __K_PATH::__private::Callsite =
                    __K_PATH::__private::Callsite::new(__K_PATH::__private::Meta {
                        fmt: __K_FMT,
                        level: __K_PATH::Level::__K_LEVEL,
                        kind: __K_PATH::__private::Kind::__K_KIND,
                        module: ::core::module_path!(),
                        file: ::core::file!(),
                        line: ::core::line!(),
                        n_args: __K_N,
                    });
                &__KLOG_CALLSITE
            };
            if __K_PATH::__private::enabled(__klog_callsite) {
                __K_BODY
            }
        }",
        &[
            ("__K_PATH", path.iter().cloned().collect()),
            ("__K_FMT", TokenTree::Literal(fmt).into()),
            ("__K_LEVEL", TokenTree::Ident(level.clone()).into()),
            (
                "__K_KIND",
                TokenTree::Ident(Ident::new(kind, Span::mixed_site())).into(),
            ),
            (
                "__K_N",
                TokenTree::Literal(Literal::usize_unsuffixed(n_args)).into(),
            ),
            ("__K_BODY", body),
        ],
    )
}

/// A tiny quasi-quoter: parses `template`, replaces each identifier named in `subs` by its
/// tokens, and gives every other token the mixed-site span (hygienic locals, call-site items).
fn quote(template: &str, subs: &[(&str, TokenStream)]) -> TokenStream {
    let ts = TokenStream::from_str(template).expect("klog-macros: template parses");
    substitute(ts, subs)
}

fn substitute(ts: TokenStream, subs: &[(&str, TokenStream)]) -> TokenStream {
    let span = Span::mixed_site();
    let mut out = TokenStream::new();
    for tt in ts {
        match tt {
            TokenTree::Ident(i) => {
                let name = i.to_string();
                match subs.iter().find(|(k, _)| *k == name) {
                    Some((_, tokens)) => out.extend(tokens.clone()),
                    None => out.extend([TokenTree::Ident(Ident::new(&name, span))]),
                }
            }
            TokenTree::Group(g) => {
                out.extend([group(g.delimiter(), substitute(g.stream(), subs), span)]);
            }
            mut other => {
                other.set_span(span);
                out.extend([other]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals() {
        let ok = |src: &str, want: &str| assert_eq!(unescape_str_literal(src).as_deref(), Ok(want));
        ok(r#""""#, "");
        ok(r#""a {} b""#, "a {} b");
        ok(r#""\n\r\t\\\0\'\"""#, "\n\r\t\\\0'\"");
        ok(r#""\x41\x7f\u{e9}\u{1F600}\u{0_0e9}""#, "A\x7fé😀é");
        ok("\"a\\\n    \t b\"", "ab");
        ok("\"a\\\r\n  b\"", "ab");
        ok(r#"r"\n{}""#, "\\n{}");
        ok(r###"r##"a "# b"##"###, "a \"# b");
        ok("\"é{{}}\"", "é{{}}");
        for bad in [
            "b\"x\"",
            "c\"x\"",
            "br\"x\"",
            "\"x\"suffix",
            "r#\"x\"",
            "42",
            "'c'",
            "\"\\x80\"",
            "\"\\q\"",
            "\"\\u{110000}\"",
        ] {
            assert!(unescape_str_literal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_locations() {
        let loc = |fmt: &str| {
            let e = fmtspec::validate(fmt).expect_err(fmt);
            location(fmt, &e)
        };
        assert_eq!(loc("a {:.*} b"), "in `{:.*}`");
        assert_eq!(loc("a {0:x?} b {}"), "in `{0:x?}`");
        assert_eq!(loc("a {0 b"), "in `{0 b`");
        assert_eq!(loc("x {:q}"), "in `{:q}`");
        assert_eq!(loc("a } b"), "near `a } b`");
        assert_eq!(loc("0123456789}abcdefghijk"), "near `23456789}abcdefgh`");
        assert_eq!(loc("ééééééééé}"), "near `éééééééé}`");
    }
}
