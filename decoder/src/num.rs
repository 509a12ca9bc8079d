//! Decimal digits without `fmt`: integers two digits at a time from a table, and the text
//! output's timestamp column. The tests compare them with `format!`.

/// "00" "01" .. "99".
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

#[inline(always)]
fn pair(n: u64) -> [u8; 2] {
    let i = (n as usize % 100) * 2;
    [PAIRS[i], PAIRS[i + 1]]
}

/// Writes `v < 10^8` as exactly 8 digits (two independent halves: more parallel work than a
/// chain of divisions by 100).
#[inline(always)]
fn write8(d: &mut [u8], v: u32) {
    let (hi, lo) = (v / 10_000, v % 10_000);
    d[0..2].copy_from_slice(&pair(u64::from(hi / 100)));
    d[2..4].copy_from_slice(&pair(u64::from(hi % 100)));
    d[4..6].copy_from_slice(&pair(u64::from(lo / 100)));
    d[6..8].copy_from_slice(&pair(u64::from(lo % 100)));
}

/// Appends the decimal digits of `v`.
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        out.push(b'0' + v as u8);
        return;
    }
    let n = v.ilog10() as usize + 1;
    // A fixed-size append (no memcpy call), the digits written in place, the rest cut off.
    let start = out.len();
    out.extend_from_slice(&[0u8; 20]);
    let d = &mut out[start..start + n];
    let mut i = n;
    let mut v = v;
    while v >= 100_000_000 {
        i -= 8;
        write8(&mut d[i..i + 8], (v % 100_000_000) as u32);
        v /= 100_000_000;
    }
    let mut v = v as u32;
    while v >= 100 {
        i -= 2;
        d[i..i + 2].copy_from_slice(&pair(u64::from(v % 100)));
        v /= 100;
    }
    if v >= 10 {
        d[..2].copy_from_slice(&pair(u64::from(v)));
    } else {
        d[0] = b'0' + v as u8;
    }
    out.truncate(start + n);
}

/// Bytes kept with zero padding to whole 32-byte blocks, so that they are appended with
/// fixed-size copies (short literal pieces and line prefixes; a `memcpy` call each would cost
/// more than the copy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Padded {
    blocks: Box<[[u8; 32]]>,
    len: usize,
}

impl Padded {
    pub(crate) fn new(b: &[u8]) -> Padded {
        Padded {
            blocks: b
                .chunks(32)
                .map(|c| {
                    let mut a = [0u8; 32];
                    a[..c.len()].copy_from_slice(c);
                    a
                })
                .collect(),
            len: b.len(),
        }
    }

    #[inline]
    pub(crate) fn append(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for b in self.blocks.iter() {
            out.extend_from_slice(b);
        }
        out.truncate(start + self.len);
    }
}

/// Appends the decimal digits of `v`.
#[inline]
pub(crate) fn write_u128(out: &mut Vec<u8>, v: u128) {
    match u64::try_from(v) {
        Ok(v) => write_u64(out, v),
        Err(_) => out.extend_from_slice(v.to_string().as_bytes()),
    }
}

/// Appends `v` in decimal, with a `-` if negative.
#[inline]
pub(crate) fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// `ns` as seconds with 9 decimals, right-aligned in 16 columns: `    12.345678901` (what
/// [`crate::timestamps::format_seconds`] appends to a `String`).
#[inline]
pub(crate) fn write_seconds(out: &mut Vec<u8>, ns: i128) {
    // Fewer than 10^5 seconds (the usual 16 columns): written in place. Longer traces take
    // the general formatter.
    let (secs, frac) = match u64::try_from(ns.unsigned_abs()) {
        Ok(a) if a / 1_000_000_000 < 100_000 => (a / 1_000_000_000, a % 1_000_000_000),
        _ => {
            let mut s = String::new();
            crate::timestamps::format_seconds(&mut s, ns);
            out.extend_from_slice(s.as_bytes());
            return;
        }
    };
    let start = out.len();
    out.extend_from_slice(&[b' '; 16]);
    if let Ok(d) = <&mut [u8; 16]>::try_from(&mut out[start..]) {
        d[7] = b'0' + (frac / 100_000_000) as u8;
        write8(&mut d[8..16], (frac % 100_000_000) as u32);
        d[6] = b'.';
        let mut s = secs;
        let mut i = 6;
        loop {
            i -= 1;
            d[i] = b'0' + (s % 10) as u8;
            s /= 10;
            if s == 0 {
                break;
            }
        }
        if ns < 0 {
            d[i - 1] = b'-';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_match_format() {
        let mut cases: Vec<u64> = vec![0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, u64::MAX];
        for p in 0..20 {
            let x = 10u64.pow(p);
            cases.extend([x - 1, x, x + 1]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(x >> (x % 64));
        }
        for v in cases {
            let mut o = Vec::new();
            write_u64(&mut o, v);
            assert_eq!(o, v.to_string().as_bytes());
            let mut o = Vec::new();
            write_i64(&mut o, v as i64);
            assert_eq!(o, (v as i64).to_string().as_bytes());
            let mut o = Vec::new();
            write_u128(&mut o, u128::from(v) << 40);
            assert_eq!(o, (u128::from(v) << 40).to_string().as_bytes());
            let mut o = b"x".to_vec();
            write_u64(&mut o, v);
            assert_eq!(o, format!("x{v}").as_bytes());
        }
    }

    #[test]
    fn padded_appends_exactly() {
        for n in [0, 1, 31, 32, 33, 64, 100] {
            let b: Vec<u8> = (0..n).map(|i| i as u8 + 1).collect();
            let mut o = b"ab".to_vec();
            Padded::new(&b).append(&mut o);
            assert_eq!(&o[..2], b"ab");
            assert_eq!(&o[2..], &b[..]);
        }
    }

    #[test]
    fn seconds_match_the_string_version() {
        let mut cases: Vec<i128> = vec![
            0,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            -1_000_000_001,
            i128::from(u64::MAX),
            -i128::from(u64::MAX),
            i128::from(u64::MAX) + 1,
            i128::MAX,
            i128::MIN,
            123_456_789_012_345_678,
        ];
        for p in 0..20 {
            let x = 10i128.pow(p);
            cases.extend([x - 1, x, x + 1, -x]);
        }
        for ns in cases {
            let mut want = String::new();
            crate::timestamps::format_seconds(&mut want, ns);
            let mut got = Vec::new();
            write_seconds(&mut got, ns);
            assert_eq!(String::from_utf8(got).unwrap(), want, "{ns}");
        }
    }
}
