// SPDX-License-Identifier: GPL-2.0
//! Safe Rust API of rsrelay.ko for other kernel modules.
//!
//! Out-of-tree Rust modules cannot link against another module's Rust items, so a client
//! compiles this file into its own crate (`#[path = ".../relay/src/kernel/client.rs"] mod
//! rsrelay;`) next to a module `sys` with the bindgen output of `rsrelay.h` (see the top-level
//! `Kbuild`, which generates it for the modules of this project). The calls go to the C ABI
//! that rsrelay.ko exports.
//!
//! ```ignore
//! struct Hdr;
//! impl rsrelay::Callbacks for Hdr {
//!     fn subbuf_start(&self, ctx: &mut rsrelay::StartCtx<'_>) -> bool {
//!         if ctx.buf_full() { return false; }
//!         ctx.reserve(4).is_ok()
//!     }
//! }
//! let chan = rsrelay::Channel::open(c_str!("cpu"), dir, 4096, 8, Hdr)?;
//! chan.write(b"hello");
//! ```
// A client uses only part of the API, and includes the file as a private module.
#![allow(dead_code, unreachable_pub)]
use core::ffi::{c_int, c_uint, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::prelude::*;
use kernel::str::CStr;

use super::sys;

/// A client's callbacks; `self` is relay's `private_data`.
pub trait Callbacks: Send + Sync + Sized + 'static {
    /// Make the channel use one global buffer instead of one per CPU (`is_global`, as set by
    /// relay's `create_buf_file`); asked once, at open.
    fn global(&self) -> bool {
        false
    }

    /// A sub-buffer is about to start (also once at open and after reset); return `false` to
    /// refuse. Runs with interrupts off. Default: relay's no-overwrite mode.
    fn subbuf_start(&self, ctx: &mut StartCtx<'_>) -> bool {
        !ctx.buf_full()
    }

    /// A user mapping of buffer `cpu` was created.
    fn buf_mapped(&self, _cpu: u32) {}

    /// A user mapping of buffer `cpu` went away.
    fn buf_unmapped(&self, _cpu: u32) {}
}

/// The context of one `subbuf_start` call.
pub struct StartCtx<'a> {
    raw: NonNull<sys::rsrelay_start>,
    _call: PhantomData<&'a mut ()>,
}

impl StartCtx<'_> {
    /// CPU of the buffer being switched (0 for a global buffer).
    pub fn cpu(&self) -> u32 {
        // SAFETY: `raw` is valid during the callback (type invariant of StartCtx's creation).
        unsafe { sys::rsrelay_start_cpu(self.raw.as_ptr()) }
    }

    /// Index of the sub-buffer being started.
    pub fn subbuf(&self) -> usize {
        // SAFETY: as above.
        unsafe { sys::rsrelay_start_subbuf(self.raw.as_ptr()) }
    }

    /// Index of the previous sub-buffer, `None` at open and after reset.
    pub fn prev_subbuf(&self) -> Option<usize> {
        // SAFETY: as above.
        let i = unsafe { sys::rsrelay_start_prev_subbuf(self.raw.as_ptr()) };
        usize::try_from(i).ok()
    }

    /// Unused bytes at the end of the previous sub-buffer.
    pub fn prev_padding(&self) -> usize {
        // SAFETY: as above.
        unsafe { sys::rsrelay_start_prev_padding(self.raw.as_ptr()) }
    }

    /// relay's `relay_buf_full`.
    pub fn buf_full(&self) -> bool {
        // SAFETY: as above.
        unsafe { sys::rsrelay_start_buf_full(self.raw.as_ptr()) }
    }

    /// relay's `subbuf_start_reserve`; `EINVAL` for a header leaving < 2 payload bytes.
    pub fn reserve(&mut self, len: usize) -> Result {
        // SAFETY: as above.
        match unsafe { sys::rsrelay_start_reserve(self.raw.as_ptr(), len) } {
            0 => Ok(()),
            _ => Err(EINVAL),
        }
    }

    /// Writes `bytes` at `offset` into the new sub-buffer (its header); `false` if outside.
    pub fn write_subbuf(&mut self, offset: usize, bytes: &[u8]) -> bool {
        // SAFETY: as above; `bytes` is a valid slice.
        unsafe {
            sys::rsrelay_start_write(
                self.raw.as_ptr(),
                false,
                offset,
                bytes.as_ptr().cast(),
                bytes.len(),
            )
        }
    }

    /// Writes `bytes` at `offset` into the previous sub-buffer; `false` if none or outside.
    pub fn write_prev_subbuf(&mut self, offset: usize, bytes: &[u8]) -> bool {
        // SAFETY: as above.
        unsafe {
            sys::rsrelay_start_write(
                self.raw.as_ptr(),
                true,
                offset,
                bytes.as_ptr().cast(),
                bytes.len(),
            )
        }
    }
}

/// Per-buffer counters.
pub type Stats = sys::rsrelay_stats;

/// An open channel; closed on drop (relay_close: the files go away, open readers keep reading).
///
/// # Invariants
///
/// `raw` is an open rsrelay channel whose `private_data` is `cbs`, which lives as long as the
/// channel is open.
pub struct Channel<T: Callbacks> {
    raw: NonNull<sys::rsrelay_chan>,
    cbs: KBox<T>,
}

// SAFETY: the rsrelay C ABI may be called from any CPU and context it documents; `T` is
// Send + Sync.
unsafe impl<T: Callbacks> Send for Channel<T> {}
// SAFETY: as above; every method takes `&self` and the backend provides the exclusion.
unsafe impl<T: Callbacks> Sync for Channel<T> {}

/// # Safety
///
/// Called by rsrelay.ko with the arguments documented in rsrelay.h; `private` is the channel's callbacks object.
unsafe extern "C" fn subbuf_start_tr<T: Callbacks>(
    private: *mut c_void,
    ctx: *mut sys::rsrelay_start,
) -> bool {
    // SAFETY: `private` is the channel's `cbs` (type invariant), alive while the channel is
    // open; `ctx` is valid for this call.
    let (cbs, raw) = unsafe { (&*private.cast::<T>(), NonNull::new_unchecked(ctx)) };
    let mut ctx = StartCtx {
        raw,
        _call: PhantomData,
    };
    cbs.subbuf_start(&mut ctx)
}

/// # Safety
///
/// Called by rsrelay.ko with the arguments documented in rsrelay.h; `private` is the channel's callbacks object.
unsafe extern "C" fn buf_mapped_tr<T: Callbacks>(private: *mut c_void, cpu: c_uint) {
    // SAFETY: as in subbuf_start_tr.
    unsafe { &*private.cast::<T>() }.buf_mapped(cpu)
}

/// # Safety
///
/// Called by rsrelay.ko with the arguments documented in rsrelay.h; `private` is the channel's callbacks object.
unsafe extern "C" fn buf_unmapped_tr<T: Callbacks>(private: *mut c_void, cpu: c_uint) {
    // SAFETY: as in subbuf_start_tr.
    unsafe { &*private.cast::<T>() }.buf_unmapped(cpu)
}

/// # Safety
///
/// Called by rsrelay.ko with the arguments documented in rsrelay.h; `private` is the channel's callbacks object.
unsafe extern "C" fn create_global_tr(
    name: *const kernel::ffi::c_char,
    parent: *mut sys::dentry,
    mode: sys::umode_t,
    buf: *mut c_void,
    is_global: *mut c_int,
) -> *mut sys::dentry {
    // SAFETY: arguments from rsrelay_open; the fops are rsrelay's exported table, and the
    // _unsafe variant keeps .mmap (rsrelay's files are safe against removal by refcounting).
    unsafe {
        *is_global = 1;
        sys::debugfs_create_file_unsafe(
            name,
            mode,
            parent,
            buf,
            core::ptr::addr_of!(sys::rsrelay_file_operations),
        )
    }
}

impl<T: Callbacks> Channel<T> {
    /// `relay_open`: files `<base><cpu>` (or `<base>0` for a global channel) under `parent`.
    pub fn open(
        base: &CStr,
        parent: *mut sys::dentry,
        subbuf_size: usize,
        n_subbufs: usize,
        cbs: T,
    ) -> Result<Self> {
        let cbs = KBox::new(cbs, GFP_KERNEL)?;
        let table = sys::rsrelay_callbacks {
            subbuf_start: Some(subbuf_start_tr::<T>),
            buf_mapped: Some(buf_mapped_tr::<T>),
            buf_unmapped: Some(buf_unmapped_tr::<T>),
            create_buf_file: if cbs.global() {
                Some(create_global_tr)
            } else {
                None
            },
            remove_buf_file: None,
        };
        let private = (&*cbs as *const T).cast_mut().cast();
        // SAFETY: valid name and parent; the table is copied by rsrelay_open; `private` lives in
        // `cbs`, which the channel keeps until close.
        let raw = unsafe {
            sys::rsrelay_open(
                base.as_char_ptr(),
                parent,
                subbuf_size,
                n_subbufs,
                &table,
                private,
            )
        };
        let raw = kernel::error::from_err_ptr(raw)?;
        let raw = NonNull::new(raw).ok_or(ENOMEM)?;
        Ok(Channel { raw, cbs })
    }

    /// `relay_write`: any context but NMI. `false` if the message was dropped (buffer full in
    /// no-overwrite mode, or larger than a sub-buffer minus its header).
    #[inline]
    pub fn write(&self, data: &[u8]) -> bool {
        // SAFETY: open channel (type invariant), valid slice.
        unsafe { sys::rsrelay_write(self.raw.as_ptr(), data.as_ptr().cast(), data.len()) }
    }

    /// Encodes a message in place: `fill` gets room for `max` bytes in the current CPU's buffer
    /// and returns how many it used; only those are published. Interrupts are off during
    /// `fill`. `false` if the message was dropped.
    pub fn write_with<F: FnMut(&mut [u8]) -> usize>(&self, max: usize, fill: F) -> bool {
        // SAFETY: rsrelay_write_with disables interrupts itself.
        unsafe { self.write_with_raw(sys::rsrelay_write_with, max, fill) }
    }

    /// [`Channel::write_with`] for a caller that already runs with interrupts off (it saves
    /// rsrelay's own save/restore on a hot path, e.g. a klog handler).
    ///
    /// # Safety
    ///
    /// Interrupts are disabled on the calling CPU.
    pub unsafe fn write_with_irqs_off<F: FnMut(&mut [u8]) -> usize>(
        &self,
        max: usize,
        fill: F,
    ) -> bool {
        // SAFETY: the caller keeps interrupts off (checked by lockdep in the debug kernel).
        unsafe { self.write_with_raw(sys::__rsrelay_write_with, max, fill) }
    }

    /// # Safety
    ///
    /// `entry` is `rsrelay_write_with` or, with interrupts off, `__rsrelay_write_with`.
    unsafe fn write_with_raw<F: FnMut(&mut [u8]) -> usize>(
        &self,
        entry: unsafe extern "C" fn(
            *mut sys::rsrelay_chan,
            usize,
            Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> usize>,
            *mut c_void,
        ) -> bool,
        max: usize,
        mut fill: F,
    ) -> bool {
        /// # Safety
        ///
        /// `ctx` is the closure passed by `write_with_raw`, `slot` has `max` writable bytes.
        unsafe extern "C" fn tr<F: FnMut(&mut [u8]) -> usize>(
            ctx: *mut c_void,
            slot: *mut c_void,
            max: usize,
        ) -> usize {
            // rsrelay passes a slot of `max` writable bytes, only this writer's until it returns.
            // SAFETY: `ctx` is the `fill` below, alive for the call.
            unsafe {
                let f = &mut *ctx.cast::<F>();
                f(core::slice::from_raw_parts_mut(slot.cast::<u8>(), max)).min(max)
            }
        }
        // The interrupt rule of `entry` is the caller's.
        // SAFETY: open channel; `tr::<F>` has the expected signature; `fill` outlives the call.
        unsafe {
            entry(
                self.raw.as_ptr(),
                max,
                Some(tr::<F>),
                (&mut fill as *mut F).cast(),
            )
        }
    }

    /// `__relay_write`: cheaper (preemption instead of interrupts off).
    ///
    /// # Safety
    ///
    /// No interrupt handler writes to this channel on the calling CPU while this runs.
    #[inline]
    pub unsafe fn write_preempt_off(&self, data: &[u8]) -> bool {
        // SAFETY: open channel; the interrupt rule is the caller's.
        unsafe { sys::__rsrelay_write(self.raw.as_ptr(), data.as_ptr().cast(), data.len()) }
    }

    /// `relay_reserve`: a `len`-byte slot in the current CPU's buffer, published at once.
    ///
    /// # Safety
    ///
    /// Interrupts (or, if no interrupt context writes to this channel, preemption) stay disabled
    /// from this call until the caller has filled the slot.
    pub unsafe fn reserve(&self, len: usize) -> Option<&mut [u8]> {
        // SAFETY: open channel.
        let p = unsafe { sys::rsrelay_reserve(self.raw.as_ptr(), len) };
        let p = NonNull::new(p.cast::<u8>())?;
        // SAFETY: rsrelay returns `len` writable bytes inside the buffer, ours until the next
        // write on this CPU (which cannot happen while interrupts are off).
        Some(unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) })
    }

    /// `relay_flush` (process context).
    pub fn flush(&self) {
        // SAFETY: open channel.
        unsafe { sys::rsrelay_flush(self.raw.as_ptr()) }
    }

    /// `relay_reset` (process context).
    pub fn reset(&self) {
        // SAFETY: open channel.
        unsafe { sys::rsrelay_reset(self.raw.as_ptr()) }
    }

    /// `relay_subbufs_consumed` (process context).
    pub fn subbufs_consumed(&self, cpu: u32, n: usize) {
        // SAFETY: open channel.
        unsafe { sys::rsrelay_subbufs_consumed(self.raw.as_ptr(), cpu, n) }
    }

    /// `relay_buf_full` of `cpu`'s buffer.
    pub fn buf_full(&self, cpu: u32) -> bool {
        // SAFETY: open channel.
        unsafe { sys::rsrelay_buf_full(self.raw.as_ptr(), cpu) }
    }

    /// Counters of `cpu`'s buffer, `None` if it has none.
    pub fn stats(&self, cpu: u32) -> Option<Stats> {
        let mut s = Stats::default();
        // SAFETY: open channel, valid out pointer.
        (unsafe { sys::rsrelay_buf_stats(self.raw.as_ptr(), cpu, &mut s) } == 0).then_some(s)
    }

    /// Whether the channel has one global buffer.
    pub fn is_global(&self) -> bool {
        // SAFETY: open channel.
        unsafe { sys::rsrelay_is_global(self.raw.as_ptr()) }
    }

    /// The callbacks object (relay's `private_data`).
    pub fn private_data(&self) -> &T {
        &self.cbs
    }
}

impl<T: Callbacks> Drop for Channel<T> {
    fn drop(&mut self) {
        // SAFETY: open channel, closed once; after this rsrelay calls none of the callbacks, so
        // `cbs` may be dropped with `self`.
        unsafe { sys::rsrelay_close(self.raw.as_ptr()) }
    }
}
