//! Channel geometry and `relay_open`'s parameter checks.

use core::fmt;

/// Largest buffer relay accepts: `subbuf_size * n_subbufs` must fit in a C `unsigned int`.
pub const MAX_ALLOC: usize = u32::MAX as usize;

/// Why a channel (or a buffer reset) could not be set up. Every rejected parameter has its own
/// variant; nothing panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// `subbuf_size` or `n_subbufs` is zero.
    ZeroSize,
    /// `subbuf_size * n_subbufs` overflows or exceeds [`MAX_ALLOC`] (relay's `UINT_MAX` check).
    TooLarge,
    /// `subbuf_start` reserved a header that leaves less than two bytes of payload
    /// (relay.c's `BUG_ON(length >= subbuf_size - 1)` in `subbuf_start_reserve`).
    HeaderTooLarge {
        /// The requested header length.
        len: usize,
        /// The sub-buffer size it had to fit.
        subbuf_size: usize,
    },
    /// The first `subbuf_start` call refused to start sub-buffer 0.
    StartRefused,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::ZeroSize => f.write_str("subbuf_size and n_subbufs must be non-zero"),
            OpenError::TooLarge => {
                f.write_str("subbuf_size * n_subbufs overflows or exceeds 4 GiB - 1")
            }
            OpenError::HeaderTooLarge { len, subbuf_size } => write!(
                f,
                "sub-buffer header of {len} bytes does not fit a {subbuf_size}-byte sub-buffer \
                 (at most subbuf_size - 2)"
            ),
            OpenError::StartRefused => f.write_str("subbuf_start refused the first sub-buffer"),
        }
    }
}

/// Validated channel geometry.
///
/// # Invariants
///
/// `subbuf_size > 0`, `n_subbufs > 0` and `subbuf_size * n_subbufs <= MAX_ALLOC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    subbuf_size: usize,
    n_subbufs: usize,
}

impl Geometry {
    /// Checks the sizes as `relay_open` does.
    pub const fn new(subbuf_size: usize, n_subbufs: usize) -> Result<Self, OpenError> {
        if subbuf_size == 0 || n_subbufs == 0 {
            return Err(OpenError::ZeroSize);
        }
        if subbuf_size > MAX_ALLOC / n_subbufs {
            return Err(OpenError::TooLarge);
        }
        Ok(Geometry {
            subbuf_size,
            n_subbufs,
        })
    }

    /// Size of one sub-buffer.
    #[inline]
    pub const fn subbuf_size(&self) -> usize {
        self.subbuf_size
    }

    /// Number of sub-buffers.
    #[inline]
    pub const fn n_subbufs(&self) -> usize {
        self.n_subbufs
    }

    /// `subbuf_size * n_subbufs`: the bytes a reader sees (cannot overflow, by the invariant).
    #[inline]
    pub const fn size(&self) -> usize {
        self.subbuf_size * self.n_subbufs
    }

    /// `PAGE_ALIGN(size())`: relay's `alloc_size`, the only length a mapping may have.
    /// `page_size` must be a power of two.
    #[inline]
    pub const fn alloc_size(&self, page_size: usize) -> usize {
        // Cannot overflow: size() <= u32::MAX and page sizes are far below usize::MAX - u32::MAX.
        (self.size() + page_size - 1) & !(page_size - 1)
    }

    /// Largest header `subbuf_start_reserve` accepts (relay: `length < subbuf_size - 1`).
    #[inline]
    pub const fn max_header(&self) -> usize {
        self.subbuf_size.saturating_sub(2)
    }
}
