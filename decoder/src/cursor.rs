//! A bounds-checked little-endian cursor over a byte slice (never panics, never allocates).

/// Why a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The bytes ran out.
    Eof,
    /// A varint longer than 10 bytes, or whose 10th byte overflows 64 bits.
    Overflow,
}

/// Reads `b` from `pos` on.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Cursor { b, pos: 0 }
    }

    #[inline]
    pub(crate) fn at(b: &'a [u8], pos: usize) -> Self {
        Cursor {
            b,
            pos: pos.min(b.len()),
        }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or(&[])
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let end = self.pos.checked_add(n).ok_or(ReadError::Eof)?;
        let s = self.b.get(self.pos..end).ok_or(ReadError::Eof)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ReadError> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ReadError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ReadError> {
        self.array().map(u64::from_le_bytes)
    }

    /// An unsigned LEB128 varint of at most 64 bits (postcard's `u64` varint).
    #[inline(always)]
    pub(crate) fn varint(&mut self) -> Result<u64, ReadError> {
        // Most varints on the wire (frame lengths, heads, small deltas and arguments) are one
        // or two bytes.
        let p = self.pos;
        if let Some(&b0) = self.b.get(p) {
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            // Short slices (the last argument of a frame): two and three bytes one by one.
            if self.b.len() - p < 8 {
                if let Some(&b1) = self.b.get(p + 1) {
                    let v = u64::from(b0 & 0x7f) | u64::from(b1 & 0x7f) << 7;
                    if b1 < 0x80 {
                        self.pos += 2;
                        return Ok(v);
                    }
                    if let Some(&b2) = self.b.get(p + 2) {
                        if b2 < 0x80 {
                            self.pos += 3;
                            return Ok(v | u64::from(b2) << 14);
                        }
                    }
                }
            }
        }
        // Up to 8 bytes at once when 8 are there.
        if let Some(w) = self
            .b
            .get(self.pos..self.pos.wrapping_add(8))
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
        {
            if let Some((v, n)) = word_varint(u64::from_le_bytes(w)) {
                self.pos += n;
                return Ok(v);
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, ReadError> {
        let mut v = 0u64;
        for i in 0..10 {
            let byte = self.u8()?;
            if i == 9 && byte > 1 {
                return Err(ReadError::Overflow);
            }
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ReadError::Overflow)
    }
}

/// The varint at the start of `x` (8 bytes, little-endian) and its length in bytes, if it ends
/// within them: the first byte without the continuation bit ends it.
#[inline(always)]
pub(crate) fn word_varint(x: u64) -> Option<(u64, usize)> {
    let stops = !x & 0x8080_8080_8080_8080;
    if stops == 0 {
        return None;
    }
    // The varint's bytes (up to its first stop bit), their 7-bit groups gathered pairwise:
    // bytes into 14-bit halves of 16-bit lanes, those into 28 bits of 32, then 56 of 64.
    let x = x & (stops ^ (stops - 1));
    let x = (x & 0x007f_007f_007f_007f) | (x >> 1 & 0x3f80_3f80_3f80_3f80);
    let x = (x & 0x0000_3fff_0000_3fff) | (x >> 2 & 0x0fff_c000_0fff_c000);
    let x = (x & 0x0fff_ffff) | (x >> 4 & 0x00ff_ffff_f000_0000);
    Some((x, (stops.trailing_zeros() / 8 + 1) as usize))
}

/// Inverse of zigzag: `0, 1, 2, 3, ...` → `0, -1, 1, -2, ...`.
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let v = |b: &[u8]| Cursor::new(b).varint();
        assert_eq!(v(&[0]), Ok(0));
        assert_eq!(v(&[0x7f]), Ok(127));
        assert_eq!(v(&[0x80, 0x01]), Ok(128));
        assert_eq!(
            v(&[0xff; 9].iter().copied().chain([1]).collect::<Vec<_>>()),
            Ok(u64::MAX)
        );
        assert_eq!(
            v(&[0xff; 9].iter().copied().chain([2]).collect::<Vec<_>>()),
            Err(ReadError::Overflow)
        );
        assert_eq!(v(&[0x80; 11]), Err(ReadError::Overflow));
        assert_eq!(v(&[0x80, 0x80]), Err(ReadError::Eof));
        assert_eq!(v(&[]), Err(ReadError::Eof));
    }

    #[test]
    fn fast_varints_match_the_loop() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = x >> (i % 64);
            let mut b = Vec::new();
            let mut w = v;
            loop {
                if w < 0x80 {
                    b.push(w as u8);
                    break;
                }
                b.push(w as u8 | 0x80);
                w >>= 7;
            }
            let n = b.len();
            // With and without bytes after it (the 8-byte path needs 8 readable bytes).
            for pad in [0usize, 3, 12] {
                let mut bb = b.clone();
                bb.extend(std::iter::repeat_n(0xffu8, pad));
                let mut c = Cursor::new(&bb);
                assert_eq!(c.varint(), Ok(v));
                assert_eq!(c.pos(), n);
                let mut c = Cursor::new(&bb);
                assert_eq!(c.varint_long(), Ok(v));
            }
            // Truncated and overlong encodings agree with the loop too.
            let mut c1 = Cursor::new(&b[..n - 1]);
            let mut c2 = Cursor::new(&b[..n - 1]);
            assert_eq!(c1.varint(), c2.varint_long());
        }
        for bytes in [
            &[0x80u8; 12][..],
            &[0xff; 9],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0,
            ],
        ] {
            assert_eq!(
                Cursor::new(bytes).varint(),
                Cursor::new(bytes).varint_long()
            );
        }
    }

    #[test]
    fn zigzag_inverse() {
        for x in [0i64, -1, 1, -2, 2, i64::MIN, i64::MAX, 12345, -98765] {
            assert_eq!(unzigzag(klog::arg::zigzag64(x)), x);
        }
    }

    #[test]
    fn fixed_fields() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
        let mut c = Cursor::new(&b);
        assert_eq!(c.u8(), Ok(1));
        assert_eq!(c.u16(), Ok(0x0302));
        assert_eq!(c.u32(), Ok(0x07060504));
        assert_eq!(c.u64(), Err(ReadError::Eof));
        assert_eq!(c.pos(), 7);
        assert_eq!(c.rest().len(), 7);
        assert_eq!(c.take(usize::MAX), Err(ReadError::Eof));
        assert_eq!(Cursor::at(&b, 100).rest(), &[] as &[u8]);
    }
}
