//! Decimal digits without `fmt`: eight digits at a time in one register (SWAR), and the text
//! output's timestamp column. The tests compare them with `format!`.

/// `v < 10^8` as exactly 8 ASCII digits, the first digit in the lowest byte (SWAR: the
/// halves, quarters and digits are split in the lanes of one register, no table, no loop).
#[inline(always)]
fn digits8(v: u32) -> u64 {
    let v = u64::from(v);
    // Two 32-bit lanes of 4 digits; `* 10486 >> 20` is `/ 100` below 10^4.
    let x = (v / 10_000) | ((v % 10_000) << 32);
    let y = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    // Four 16-bit lanes of 2 digits; `* 103 >> 10` is `/ 10` below 100.
    let x = y | (x - y * 100) << 16;
    let y = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    let x = y | (x - y * 10) << 8;
    x | ZEROS
}

/// Eight ASCII `'0'`s.
const ZEROS: u64 = 0x3030_3030_3030_3030;

/// The digits of `0 < v < 10^8` ([`digits8`] without the leading zeros, still in the lowest
/// bytes) and how many there are.
#[inline(always)]
fn digits8_trimmed(v: u32) -> (u64, usize) {
    let x = digits8(v);
    // Leading zeros are the low bytes equal to '0'; v > 0 leaves a nonzero byte.
    let zeros = ((x ^ ZEROS).trailing_zeros() / 8) as usize;
    (x >> (8 * zeros), 8 - zeros)
}

/// Room [`put_u64`] needs after its position (it stores whole 8-byte words).
pub(crate) const U64_ROOM: usize = 24;

/// Writes the decimal digits of `v` at `d[at..]`, which must have [`U64_ROOM`] bytes (bytes
/// after the digits are overwritten); returns the position after them.
#[inline(always)]
pub(crate) fn put_u64(d: &mut [u8], at: usize, v: u64) -> usize {
    if v < 10 {
        d[at] = b'0' + v as u8;
        return at + 1;
    }
    if v < E8 {
        let (x, n) = digits8_trimmed(v as u32);
        d[at..at + 8].copy_from_slice(&x.to_le_bytes());
        return at + n;
    }
    put_u64_long(d, at, v)
}

const E8: u64 = 100_000_000;

/// [`put_u64`] of `v >= 10^8` (out of line: the common short numbers stay small inline).
#[inline(never)]
fn put_u64_long(d: &mut [u8], at: usize, v: u64) -> usize {
    let mut put = |at: usize, x: u64| d[at..at + 8].copy_from_slice(&x.to_le_bytes());
    let (hi, lo) = (v / E8, (v % E8) as u32);
    let at = if hi < E8 {
        let (x, n) = digits8_trimmed(hi as u32);
        put(at, x);
        at + n
    } else {
        // v >= 10^16: at most 4 more leading digits.
        let (top, mid) = ((hi / E8) as u32, (hi % E8) as u32);
        let (x, n) = digits8_trimmed(top);
        put(at, x);
        put(at + n, digits8(mid));
        at + n + 8
    };
    put(at, digits8(lo));
    at + 8
}

/// [`put_u64`] of `v` with a `-` if negative (`U64_ROOM + 1` bytes).
#[inline]
pub(crate) fn put_i64(d: &mut [u8], at: usize, v: i64) -> usize {
    d[at] = b'-';
    put_u64(d, at + usize::from(v < 0), v.unsigned_abs())
}

/// Appends the decimal digits of `v`.
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    // A fixed-size append (no memcpy call), the digits written in place, the rest cut off.
    let start = out.len();
    out.extend_from_slice(&[0u8; U64_ROOM]);
    let end = put_u64(&mut out[start..], 0, v);
    out.truncate(start + end);
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

    /// The bytes [`Padded::put`] writes (whole blocks).
    pub(crate) fn room(&self) -> usize {
        self.blocks.len() * 32
    }

    /// Writes the bytes at `d[at..]`, which must have [`Padded::room`] bytes (the rest of the
    /// last block is overwritten); returns the position after them.
    #[inline]
    pub(crate) fn put(&self, d: &mut [u8], at: usize) -> usize {
        for (i, b) in self.blocks.iter().enumerate() {
            d[at + 32 * i..at + 32 * (i + 1)].copy_from_slice(b);
        }
        at + self.len
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
    let start = out.len();
    out.extend_from_slice(&[0u8; 16]);
    if let Ok(d) = <&mut [u8; 16]>::try_from(&mut out[start..]) {
        if put_seconds(d, ns) {
            return;
        }
    }
    // 10^5 seconds and more: the general formatter.
    out.truncate(start);
    let mut s = String::new();
    crate::timestamps::format_seconds(&mut s, ns);
    out.extend_from_slice(s.as_bytes());
}

/// [`write_seconds`] into `d` for `|ns| < 10^14` (the usual 16 columns); `false` (and `d`
/// unspecified) for longer times.
#[inline(always)]
pub(crate) fn put_seconds(d: &mut [u8; 16], ns: i128) -> bool {
    let Some((whole, frac)) = split_seconds(ns) else {
        return false;
    };
    put_fraction(d, seconds_head(whole), frac);
    true
}

/// `|ns| < 10^14` as `(whole, nanoseconds)`, `whole` being the seconds times 2, plus 1 if `ns`
/// is negative: what the first 7 columns show ([`seconds_head`]).
#[inline(always)]
pub(crate) fn split_seconds(ns: i128) -> Option<(u64, u32)> {
    const E9: u64 = 1_000_000_000;
    let a = match u64::try_from(ns.unsigned_abs()) {
        Ok(a) if a < 100_000 * E9 => a,
        _ => return None,
    };
    Some((a / E9 * 2 + u64::from(ns < 0), (a % E9) as u32))
}

/// The first 7 columns for `whole` of [`split_seconds`] (the seconds right-aligned in 6, a
/// `-` before them if negative, then `.`), in the low 7 bytes of a word.
#[inline(always)]
pub(crate) fn seconds_head(whole: u64) -> u64 {
    let secs = (whole / 2) as u32;
    // The last 6 of 8 digits of secs, the leading zeros but the last made spaces.
    let x = digits8(secs) >> 16;
    let n = if secs == 0 {
        1
    } else {
        8 - ((digits8(secs) ^ ZEROS).trailing_zeros() / 8) as usize
    };
    let pad = 8 * (6 - n);
    let mask = (1u64 << pad) - 1;
    let mut w = (x & !mask) | (0x2020_2020_2020_2020 & mask);
    if whole & 1 == 1 {
        w = w & !(0xff << (pad - 8)) | u64::from(b'-') << (pad - 8);
    }
    w | u64::from(b'.') << 48
}

/// The 16 columns: `head` of [`seconds_head`], then the 9 decimals of `frac` nanoseconds.
#[inline(always)]
pub(crate) fn put_fraction(d: &mut [u8; 16], head: u64, frac: u32) {
    let (f0, frac) = (frac / 100_000_000, frac % 100_000_000);
    let w = head | (u64::from(b'0') + u64::from(f0)) << 56;
    d[..8].copy_from_slice(&w.to_le_bytes());
    d[8..].copy_from_slice(&digits8(frac).to_le_bytes());
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
    fn digits8_matches_format() {
        // All of the low range, then a stride through the rest and the edges of each length.
        let edges = (0..9).flat_map(|p| {
            let x = 10u32.pow(p);
            [x - 1, x, x + 1]
        });
        for v in (0..2_000_000)
            .chain((0..100_000_000).step_by(9973))
            .chain(edges)
        {
            let v = v.min(99_999_999);
            assert_eq!(digits8(v).to_le_bytes(), *format!("{v:08}").as_bytes());
            if v > 0 {
                let (x, n) = digits8_trimmed(v);
                assert_eq!(&x.to_le_bytes()[..n], v.to_string().as_bytes());
            }
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
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every count of second digits, both signs.
            let ns = i128::from(x >> (x % 64) >> 10);
            cases.extend([ns, -ns]);
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
