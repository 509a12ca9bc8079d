//! `render` against Rust's own `format!` with the same literal spec: the independent oracle.

use klog_decode::{render, Template, Value};
use proptest::prelude::*;

/// For each spec literal: `render(spec, [value]) == format!(spec, v)`.
macro_rules! check {
    ($v:expr, $val:expr; $($spec:literal),* $(,)?) => {{
        let v = $v;
        let vals = [$val];
        $(
            assert_eq!(
                render($spec, &vals),
                format!($spec, v),
                "spec {:?} value {:?}",
                $spec,
                vals[0]
            );
        )*
    }};
}

/// Specs whose output does not depend on an integer's width.
macro_rules! int_common {
    ($v:expr, $val:expr) => {
        check!($v, $val;
            "{0}", "{0:?}", "{0:#?}", "{0:5}", "{0:<5}", "{0:^5}", "{0:>5}", "{0:^6}", "{0:*^9}",
            "{0:ä>4}", "{0:+}", "{0:-}", "{0:+8}", "{0:08}", "{0:+08}", "{0:-08}", "{0:<08}",
            "{0:^+08}", "{0:#08}", "{0:1}", "{0:00}", "{0:.3}", "{0:.3?}", "{0:+?}", "{0:08?}",
            "{0:<+7?}", "{0:e}", "{0:E}", "{0:.0e}", "{0:.1e}", "{0:.2e}", "{0:.5E}", "{0:.30e}",
            "{0:12.3e}", "{0:+012.3E}", "{0:<12e}", "{0:^+13.2e}", "{0:#e}", "{0:08e}",
            "{0:40}", "{0:<40}", "{0:^40?}",
        )
    };
}

/// Radix specs (two's complement for negative values: only for types whose width survives).
macro_rules! int_radix {
    ($v:expr, $val:expr) => {
        check!($v, $val;
            "{0:x}", "{0:X}", "{0:#x}", "{0:#X}", "{0:#010x}", "{0:010x}", "{0:>#10x}",
            "{0:_<#10x}", "{0:^#12X}", "{0:+x}", "{0:+#06x}", "{0:b}", "{0:#b}", "{0:#034b}",
            "{0:>12b}", "{0:o}", "{0:#o}", "{0:+#o}", "{0:#012o}", "{0:.3x}", "{0:#140b}",
        )
    };
}

#[test]
fn unsigned_integers() {
    for v in [0u8, 1, 7, 42, 127, 128, 200, 255] {
        int_common!(v, Value::U8(v));
        int_radix!(v, Value::U8(v));
    }
    for v in [0u16, 1, 999, 1000, 65535] {
        int_common!(v, Value::Unsigned(v.into()));
        int_radix!(v, Value::Unsigned(v.into()));
    }
    for v in [
        0u32,
        9,
        10,
        1234567,
        1500,
        1250,
        1350,
        999_999_999,
        u32::MAX,
    ] {
        int_common!(v, Value::Unsigned(v.into()));
        int_radix!(v, Value::Unsigned(v.into()));
    }
    for v in [0u64, 1, 10_000_000_000, 123_456_789_012_345, u64::MAX] {
        int_common!(v, Value::Unsigned(v.into()));
        int_radix!(v, Value::Unsigned(v.into()));
        int_common!(v as usize, Value::Unsigned(v.into()));
    }
    for v in [
        0u128,
        1,
        u128::from(u64::MAX) + 1,
        u128::MAX,
        10u128.pow(38),
    ] {
        int_common!(v, Value::Unsigned(v));
        int_radix!(v, Value::Unsigned(v));
    }
}

#[test]
fn signed_integers() {
    for v in [0i8, 1, -1, 7, -7, 42, -42, 127, -128] {
        int_common!(v, Value::I8(v));
        int_radix!(v, Value::I8(v));
    }
    // Every signed width has its own tag, so radix output matches Rust's for negatives too.
    for v in [0i16, 1, -1, 1234, -1234, i16::MIN, i16::MAX] {
        int_common!(v, Value::I16(v));
        int_radix!(v, Value::I16(v));
    }
    for v in [0i32, 1, -1, 1500, -1500, -1250, 99_999, i32::MIN, i32::MAX] {
        int_common!(v, Value::I32(v));
        int_radix!(v, Value::I32(v));
    }
    for v in [
        0i64,
        1,
        -1,
        -5,
        255,
        -256,
        i64::MIN,
        i64::MAX,
        -123_456_789_012,
    ] {
        int_common!(v, Value::Signed(v.into()));
        int_radix!(v, Value::Signed(v.into()));
        int_common!(v as isize, Value::Signed(v.into()));
        int_radix!(v as isize, Value::Signed(v.into()));
    }
    for v in [
        0i128,
        7,
        i128::MIN,
        i128::MAX,
        -(1i128 << 100),
        i128::from(i64::MIN) - 1,
    ] {
        int_common!(v, Value::I128(v));
        int_radix!(v, Value::I128(v));
    }
}

macro_rules! float_specs {
    ($v:expr, $val:expr) => {
        check!($v, $val;
            "{0}", "{0:?}", "{0:#?}", "{0:#}", "{0:.0}", "{0:.1}", "{0:.3}", "{0:.10}", "{0:.20}",
            "{0:10.3}", "{0:<10.3}", "{0:^10.3}", "{0:*>10.3}", "{0:+}", "{0:-}", "{0:+.2}",
            "{0:08.2}", "{0:+08.2}", "{0:<08.2}", "{0:^+09.1}", "{0:08}", "{0:e}", "{0:E}",
            "{0:.3e}", "{0:+.0E}", "{0:012.4e}", "{0:+012.4e}", "{0:>12e}", "{0:.2?}", "{0:10?}",
            "{0:+?}", "{0:010?}", "{0:<10?}", "{0:20}", "{0:^30.5}",
        )
    };
}

const F64S: &[f64] = &[
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    0.5,
    2.5,
    -2.5,
    1.0 / 3.0,
    1e-7,
    1e-5,
    9.999e-5,
    1e15,
    1e16,
    1e20,
    123_456.789,
    -98.7654321,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    5e-324,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
];

#[test]
fn floats() {
    for &v in F64S {
        float_specs!(v, Value::F64(v));
        let f = v as f32;
        float_specs!(f, Value::F32(f));
    }
    for f in [0.1f32, 16_777_217.0, 3.4028235e38, 1e-45, -7.25] {
        float_specs!(f, Value::F32(f));
    }
    // A negative NaN prints without a sign, like Rust.
    let nan = -f64::NAN;
    float_specs!(nan, Value::F64(nan));
}

macro_rules! text_specs {
    ($v:expr, $val:expr) => {
        check!($v, $val;
            "{0}", "{0:?}", "{0:#?}", "{0:10}", "{0:<10}", "{0:>10}", "{0:^10}", "{0:*^11}",
            "{0:ä<6}", "{0:.0}", "{0:.2}", "{0:>8.3}", "{0:08}", "{0:+}", "{0:#}", "{0:10?}",
            "{0:.1?}", "{0:>12?}", "{0:1}",
        )
    };
}

#[test]
fn strings_chars_bools() {
    for s in [
        "",
        "a",
        "héllo wörld",
        "tab\there\nnewline\r",
        "quote\"'\\",
        "\u{301}accent\u{301}",
        "emoji 😀 ok",
        "\u{7f}\u{0}\u{1b}[0m",
        "a}b{c",
        "\u{200b}zero width\u{feff}",
    ] {
        text_specs!(s, Value::Str(s.to_owned()));
    }
    for c in [
        'a',
        'é',
        '\'',
        '"',
        '\\',
        '\n',
        '\t',
        '\u{301}',
        '😀',
        '\u{0}',
        '\u{10ffff}',
        '\u{7f}',
    ] {
        text_specs!(c, Value::Char(c));
    }
    for b in [true, false] {
        check!(b, Value::Bool(b);
            "{0}", "{0:?}", "{0:6}", "{0:>6}", "{0:^7}", "{0:.2}", "{0:08}", "{0:-^9?}", "{0:+}",
        );
    }
}

#[test]
fn byte_slices() {
    let cases: [&[u8]; 4] = [&[], &[0], &[1, 2, 255], &[10, 200, 3, 4, 5]];
    for b in cases {
        check!(b, Value::Bytes(b.to_vec());
            "{0:?}", "{0:#?}", "{0:5?}", "{0:<4?}", "{0:+?}", "{0:04?}", "{0:#04?}", "{0:.2?}",
            "{0:*^5?}", "{0:#>6?}",
        );
    }
}

#[test]
fn templates() {
    let v = [
        Value::Unsigned(3),
        Value::Str("eth0".into()),
        Value::Bool(false),
    ];
    assert_eq!(
        render("{1}: {0} {{x}} {0:>3} {2}}}", &v),
        format!("{1}: {0} {{x}} {0:>3} {2}}}", 3, "eth0", false)
    );
    assert_eq!(render("", &v), "");
    assert_eq!(render("no args", &[]), "no args");
    // Implicit positions, as rustc numbers them.
    assert_eq!(render("{} {0} {}", &v), format!("{} {0} {}", 3, "eth0"));
    // A missing argument is marked, the rest still renders.
    let t = Template::parse("a {0} b {5:x} c");
    assert_eq!(t.arg_count(), 6);
    let mut s = String::new();
    assert!(!t.render_into(&v, &mut s));
    assert_eq!(s, "a 3 b <missing arg 5> c");
    // A bad format string: the part before the error renders, the rest is verbatim.
    let t = Template::parse("ok {0} then {0:.*} end");
    assert!(t.error().is_some());
    assert_eq!(t.render(&v), "ok 3 then {0:.*} end");
    assert_eq!(render("x } y", &v), "x } y");
    // A user type's bytes are shown in hex.
    assert_eq!(render("{0}", &[Value::User(vec![1, 0xab])]), "<user 01ab>");
    assert_eq!(Value::F64(1.5).to_string(), "1.5");
}

proptest! {
    #[test]
    fn random_integers(u: u64, i: i64, b: u8, s: i8, w: u128) {
        int_common!(u, Value::Unsigned(u.into()));
        int_radix!(u, Value::Unsigned(u.into()));
        int_common!(i, Value::Signed(i.into()));
        int_radix!(i, Value::Signed(i.into()));
        int_common!(b, Value::U8(b));
        int_radix!(b, Value::U8(b));
        int_common!(s, Value::I8(s));
        int_radix!(s, Value::I8(s));
        int_common!(w, Value::Unsigned(w));
    }

    #[test]
    fn random_floats(x: f64, y: f32, bits: u64) {
        float_specs!(x, Value::F64(x));
        float_specs!(y, Value::F32(y));
        let z = f64::from_bits(bits);
        float_specs!(z, Value::F64(z));
    }

    #[test]
    fn random_strings(s in "\\PC{0,20}", t: String, c: char) {
        text_specs!(s.as_str(), Value::Str(s.clone()));
        text_specs!(t.as_str(), Value::Str(t.clone()));
        text_specs!(c, Value::Char(c));
    }
}
