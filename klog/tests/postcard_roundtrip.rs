//! klog's argument encoding is postcard's wire format: every value klog writes decodes with the
//! real `postcard` crate to the same value, and `encoded_len` is exact.

use klog::arg::{Arg, ArgType, Args, Writer};
use proptest::prelude::*;
use serde::de::DeserializeOwned;

fn enc<T: Arg + ?Sized>(v: &T) -> Vec<u8> {
    let mut buf = vec![0u8; v.encoded_len() + 8];
    let mut w = Writer::new(&mut buf);
    v.encode(&mut w);
    let n = w.pos();
    assert_eq!(n, v.encoded_len(), "encoded_len must be exact");
    buf.truncate(n);
    buf
}

fn check<T>(v: T)
where
    T: Arg + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = enc(&v);
    let (back, rest): (T, _) = postcard::take_from_bytes(&bytes).expect("postcard decodes klog");
    assert_eq!(back, v);
    assert!(rest.is_empty(), "postcard consumed every byte");
}

proptest! {
    #[test]
    fn unsigned(a: u8, b: u16, c: u32, d: u64, e: u128, f: usize) {
        check(a); check(b); check(c); check(d); check(e);
        // usize is 64-bit on the wire.
        let bytes = enc(&f);
        prop_assert_eq!(postcard::from_bytes::<u64>(&bytes).unwrap(), f as u64);
    }

    #[test]
    fn signed(a: i8, b: i16, c: i32, d: i64, e: i128, f: isize) {
        check(a); check(b); check(c); check(d); check(e);
        let bytes = enc(&f);
        prop_assert_eq!(postcard::from_bytes::<i64>(&bytes).unwrap(), f as i64);
    }

    #[test]
    fn floats_bools_chars(a: f32, b: f64, c: bool, d: char) {
        let back: f32 = postcard::from_bytes(&enc(&a)).unwrap();
        prop_assert_eq!(back.to_bits(), a.to_bits());
        let back: f64 = postcard::from_bytes(&enc(&b)).unwrap();
        prop_assert_eq!(back.to_bits(), b.to_bits());
        check(c);
        check(d);
    }

    #[test]
    fn strings_and_bytes(s in ".{0,300}", b in prop::collection::vec(any::<u8>(), 0..300)) {
        let bytes = enc(s.as_str());
        prop_assert_eq!(postcard::from_bytes::<String>(&bytes).unwrap(), s.clone());
        check(s);
        let bytes = enc(b.as_slice());
        prop_assert_eq!(postcard::from_bytes::<Vec<u8>>(&bytes).unwrap(), b);
    }

    /// A whole argument tuple is the postcard encoding of the same tuple.
    #[test]
    fn tuples(a: u32, b: i64, s in "[a-z]{0,20}", c: bool) {
        let args = (&a, &b, &s.as_str(), &c);
        let mut buf = vec![0u8; Args::encoded_len(&args)];
        let mut w = Writer::new(&mut buf);
        Args::encode(&args, &mut w);
        prop_assert_eq!(w.pos(), buf.len());
        let back: (u32, i64, String, bool) = postcard::from_bytes(&buf).unwrap();
        prop_assert_eq!(back, (a, b, s.clone(), c));
        let mut tags = [0xffu8; 4];
        Args::types(&args, &mut tags);
        prop_assert_eq!(tags, [
            ArgType::Unsigned as u8,
            ArgType::Signed as u8,
            ArgType::Str as u8,
            ArgType::Bool as u8,
        ]);
    }
}

/// Hand-computed encodings (postcard's specification examples and edge cases).
#[test]
fn golden_bytes() {
    assert_eq!(enc(&0u32), [0x00]);
    assert_eq!(enc(&127u32), [0x7f]);
    assert_eq!(enc(&128u32), [0x80, 0x01]);
    assert_eq!(enc(&300u32), [0xac, 0x02]);
    assert_eq!(
        enc(&u64::MAX),
        [0xff; 9].iter().copied().chain([0x01]).collect::<Vec<_>>()
    );
    assert_eq!(enc(&-1i32), [0x01]);
    assert_eq!(enc(&1i32), [0x02]);
    assert_eq!(enc(&-64i64), [0x7f]);
    assert_eq!(enc(&64i64), [0x80, 0x01]);
    assert_eq!(enc(&-1i8), [0xff]);
    assert_eq!(enc(&true), [0x01]);
    assert_eq!(enc(&1.0f32), [0x00, 0x00, 0x80, 0x3f]);
    assert_eq!(enc("hi"), [0x02, b'h', b'i']);
    assert_eq!(enc(&'é'), [0x02, 0xc3, 0xa9]);
}

/// A short slot truncates instead of panicking (a defensive bound; real slots are exact).
#[test]
fn writer_never_overflows() {
    let mut buf = [0u8; 3];
    let mut w = Writer::new(&mut buf);
    300u16.encode(&mut w);
    assert!(!w.overflowed(), "a fitting write is not an overflow");
    "a longer string".encode(&mut w);
    assert!(w.pos() <= 3);
    assert!(
        w.overflowed(),
        "the handler learns that the encoding is incomplete"
    );
    u64::MAX.encode(&mut w);
    assert!(w.pos() <= 3);
}

/// Every varint length (1..=10 bytes), at both ends of its range, in slots from exactly the
/// encoded length to 10 bytes more (the writer takes different paths depending on the room it
/// has): the bytes equal postcard's, and what follows the varint inside the slot may be scratch
/// but the next write overwrites it.
#[test]
fn varint_every_length_and_room() {
    let mut values = vec![0u64, 1, u64::MAX];
    for k in 1..64 {
        values.extend([(1u64 << k) - 1, 1u64 << k, (1u64 << k) + 1]);
    }
    for v in values {
        let want = postcard::to_allocvec(&v).unwrap();
        for extra in 0..=10 {
            let mut buf = vec![0xa5u8; want.len() + extra];
            let mut w = Writer::new(&mut buf);
            w.varint64(v);
            assert_eq!(w.pos(), want.len(), "length of {v:#x} with {extra} spare");
            assert_eq!(
                &buf[..want.len()],
                &want[..],
                "bytes of {v:#x} with {extra} spare"
            );
        }
        // Two varints back to back: the first one's scratch bytes are overwritten.
        let mut buf = vec![0xa5u8; 2 * want.len() + 10];
        let mut w = Writer::new(&mut buf);
        w.varint64(v);
        w.varint64(v);
        let n = w.pos();
        let back: (u64, u64) = postcard::from_bytes(&buf[..n]).unwrap();
        assert_eq!(back, (v, v));
    }
}

/// `MAX_LEN` bounds every value's encoding (the relay handler reserves by it).
#[test]
fn max_len_bounds_the_encoding() {
    fn extremes<T: Arg>(vals: &[T]) {
        for v in vals {
            assert!(v.encoded_len() <= T::MAX_LEN, "{:?}", T::TYPE);
        }
    }
    extremes(&[0u8, u8::MAX]);
    extremes(&[0u16, u16::MAX]);
    extremes(&[0u32, u32::MAX]);
    extremes(&[0u64, u64::MAX]);
    extremes(&[0usize, usize::MAX]);
    extremes(&[0u128, u128::MAX]);
    extremes(&[i8::MIN, i8::MAX]);
    extremes(&[i16::MIN, i16::MAX]);
    extremes(&[i32::MIN, i32::MAX]);
    extremes(&[i64::MIN, i64::MAX]);
    extremes(&[isize::MIN, isize::MAX]);
    extremes(&[i128::MIN, i128::MAX]);
    extremes(&[f32::MIN, f32::NAN]);
    extremes(&[f64::MAX]);
    extremes(&[false, true]);
    extremes(&['a', 'é', '\u{10ffff}']);
    // Hand-computed: 5 bytes per u32, 10 per u64 or i64.
    assert_eq!(<(&u32, &u32, &u32) as Args>::MAX_LEN, 15);
    assert_eq!(<(&u64, &i64) as Args>::MAX_LEN, 20);
    assert_eq!(<() as Args>::MAX_LEN, 0);
    assert_eq!(<(&u32, &str) as Args>::MAX_LEN, usize::MAX);
}
