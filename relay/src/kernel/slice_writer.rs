// SPDX-License-Identifier: GPL-2.0
//! `core::fmt::Write` into a byte buffer (the text of debugfs read handlers), truncating at the
//! end. Shared by path by the kernel modules that render text.

/// Writes formatted text into `buf`; stops (and reports `fmt::Error`) when it is full.
pub(crate) struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    /// An empty writer over `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter { buf, len: 0 }
    }

    /// Bytes written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl core::fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        if n < b.len() {
            return Err(core::fmt::Error);
        }
        Ok(())
    }
}
