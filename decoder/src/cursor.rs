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
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Cursor { b, pos: 0 }
    }

    pub(crate) fn at(b: &'a [u8], pos: usize) -> Self {
        Cursor {
            b,
            pos: pos.min(b.len()),
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or(&[])
    }

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
    pub(crate) fn varint(&mut self) -> Result<u64, ReadError> {
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
