// SPDX-License-Identifier: GPL-2.0
//! rsrelay.ko: the relay channel of `relay/src/core` as a kernel module.
//!
//! The buffer logic is the cargo crate's `no_std` core, compiled here from the same files
//! (`#[path]` below). This file is the kernel backend around it:
//!
//! * memory: per buffer a zeroed control block, a padding array and the data region from
//!   zeroed pages mapped contiguously (`vmap`, as relay.c);
//! * writer exclusivity: interrupts off on the buffer's own CPU (`write`), preemption off
//!   (`__write`), the control block's lock word for a global buffer; `flush` and `reset` run on
//!   the buffer's CPU through an IPI, so they exclude that CPU's writers too;
//! * reader exclusivity: a mutex per buffer (read, read_iter, `subbufs_consumed`, reset);
//! * wakeups: `irq_work` from the writer, as relay.c, so writers in any context are safe;
//! * files in debugfs with the file operations below (open, read, read_iter + splice_read for
//!   sendfile, poll, mmap, release) and reference counts so a buffer outlives `close` and the
//!   client module while a file is open.
//!
//! The C ABI it exports is `rsrelay.h`; Rust clients use `client.rs`.
//!
//! # Lifetimes
//!
//! A [`KChan`] is freed when its count drops to zero: one reference for the open channel and
//! one per buffer. A [`KBuf`] is freed when its count drops to zero: one reference for the open
//! channel and one per open file (a mapping holds its file). Client callbacks are only called
//! while the channel is open (`closed` is checked under the channel's mutex for the callbacks
//! that run from file operations), so a client module may be unloaded after `rsrelay_close`.
use core::ffi::{c_int, c_long, c_uint, c_void};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kernel::ffi;
use kernel::prelude::*;

#[path = "../core/mod.rs"]
#[allow(dead_code, unused_imports, unreachable_pub, clippy::all)]
mod rcore;

use rcore::{Buf, BufState, Env, Geometry, OpenError, Poll, ReadSink, SubbufStart};

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    missing_docs,
    unreachable_pub,
    improper_ctypes,
    unsafe_op_in_unsafe_fn,
    clippy::all
)]
mod sys {
    use kernel::ffi;
    type __kernel_size_t = usize;
    type __kernel_ssize_t = isize;
    type __kernel_ptrdiff_t = isize;
    include!("rsrelay_bindings.rs");
}

use sys::{
    dentry, file, inode, iov_iter, kiocb, poll_table_struct, rsrelay_callbacks, rsrelay_chan,
    rsrelay_start, vm_area_struct, vm_fault,
};

module! {
    type: RsRelay,
    name: "rsrelay",
    author: "relay-rs",
    description: "relay channels (relayfs) implemented in Rust",
    license: "GPL",
}

struct RsRelay;

impl kernel::Module for RsRelay {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("rsrelay: loaded\n");
        Ok(RsRelay)
    }
}

// From include/uapi/linux/eventpoll.h (macros with casts, which bindgen skips).
const EPOLLIN: c_uint = 0x0001;
const EPOLLERR: c_uint = 0x0008;
const EPOLLRDNORM: c_uint = 0x0040;

fn err_ptr<T>(errno: c_int) -> *mut T {
    // ERR_PTR: the negative errno as an address in the top page.
    (-(errno as isize)) as *mut T
}

/// One buffer (relay's `struct rchan_buf`).
///
/// # Invariants
///
/// `core` views `state`, `padding` and `data`, all owned by this object and freed only in
/// [`KBuf::free`] when `refs` drops to zero; `kobj` is a live `rsr_kobj`; `chan` is a live
/// [`KChan`] (this buffer holds one reference on it).
struct KBuf {
    refs: AtomicUsize,
    chan: NonNull<KChan>,
    core: Buf,
    state: NonNull<BufState>,
    /// Owns the padding array `core` points into; never resized after `alloc`.
    #[allow(dead_code)]
    padding: KVec<AtomicUsize>,
    data: *mut c_void,
    pages: *mut *mut sys::page,
    n_pages: c_uint,
    kobj: *mut sys::rsr_kobj,
    dentry: *mut dentry,
    cpu: c_uint,
}

/// A channel (relay's `struct rchan`).
///
/// # Invariants
///
/// `bufs[i]` is null or a live [`KBuf`] on which the channel holds a reference while `closed`
/// is false. `cb` and `private_data` are only used while `closed` is false.
struct KChan {
    refs: AtomicUsize,
    geo: Geometry,
    cb: rsrelay_callbacks,
    private_data: *mut c_void,
    is_global: bool,
    closed: AtomicBool,
    /// Serialises `closed` against the callbacks called from file operations.
    lock: *mut sys::rsr_kobj,
    bufs: KVec<*mut KBuf>,
}

impl KChan {
    fn get(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// # Safety
    ///
    /// `this` is live and the caller owns one reference, which it gives up.
    unsafe fn put(this: NonNull<KChan>) {
        // SAFETY: the caller owns a reference, so `this` is live.
        let chan = unsafe { this.as_ref() };
        if chan.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: last reference: nobody else can reach the channel.
            unsafe {
                sys::rsr_kobj_free(chan.lock);
                drop(KBox::from_raw(this.as_ptr()));
            }
        }
    }

    /// The buffer the current CPU writes (the only one for a global channel).
    #[inline]
    fn buf_for(&self, cpu: usize) -> Option<&KBuf> {
        let idx = if self.is_global { 0 } else { cpu };
        let p = *self.bufs.get(idx)?;
        // SAFETY: by the type invariant a non-null entry is a live buffer while the channel is
        // open; clients must not write after close (relay's rule).
        unsafe { p.as_ref() }
    }

    /// Calls `f` with the client callbacks if the channel is still open (process context).
    fn with_open_cb(&self, f: impl FnOnce(&rsrelay_callbacks, *mut c_void)) {
        // SAFETY: `lock` is live for the channel's lifetime (type invariant).
        unsafe { sys::rsr_kobj_lock(self.lock) };
        if !self.closed.load(Ordering::Relaxed) {
            f(&self.cb, self.private_data);
        }
        // SAFETY: locked above.
        unsafe { sys::rsr_kobj_unlock(self.lock) };
    }
}

impl KBuf {
    fn chan(&self) -> &KChan {
        // SAFETY: the buffer holds a reference on its channel (type invariant).
        unsafe { self.chan.as_ref() }
    }

    fn get(&self) {
        self.refs.fetch_add(1, Ordering::Relaxed);
    }

    /// # Safety
    ///
    /// `this` is live and the caller owns one reference, which it gives up.
    unsafe fn put(this: NonNull<KBuf>) {
        // SAFETY: the caller owns a reference.
        let buf = unsafe { this.as_ref() };
        if buf.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: last reference.
            unsafe { KBuf::free(this) };
        }
    }

    /// # Safety
    ///
    /// Nobody else references `this` any more.
    unsafe fn free(this: NonNull<KBuf>) {
        // SAFETY: exclusive access (caller contract); every pointer was allocated in
        // `KBuf::alloc` with the matching allocator and is freed exactly once here.
        unsafe {
            let b = KBox::from_raw(this.as_ptr());
            sys::rsr_kobj_free(b.kobj);
            sys::rsr_vmap_free(b.data, b.pages, b.n_pages);
            drop(KBox::from_raw(b.state.as_ptr()));
            let chan = b.chan;
            drop(b);
            KChan::put(chan);
        }
    }

    /// relay_create_buf: memory, control block, waking side. Holds one reference (the
    /// channel's) and takes one on `chan`.
    fn alloc(chan: &KChan, cpu: usize) -> Result<NonNull<KBuf>> {
        let geo = chan.geo;
        let state = KBox::new(BufState::new(), GFP_KERNEL)?;
        let mut padding = KVec::with_capacity(geo.n_subbufs(), GFP_KERNEL)?;
        for _ in 0..geo.n_subbufs() {
            padding.push(AtomicUsize::new(0), GFP_KERNEL)?;
        }
        let mut pages = ptr::null_mut();
        let mut n_pages = 0;
        // SAFETY: plain allocation; out-pointers are valid locals.
        let data = unsafe { sys::rsr_vmap_alloc(geo.size(), &mut pages, &mut n_pages) };
        if data.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: plain allocation.
        let kobj = unsafe { sys::rsr_kobj_new(false) };
        if kobj.is_null() {
            // SAFETY: allocated just above.
            unsafe { sys::rsr_vmap_free(data, pages, n_pages) };
            return Err(ENOMEM);
        }
        // SAFETY: `into_raw` never returns null.
        let state = unsafe { NonNull::new_unchecked(KBox::into_raw(state)) };
        // SAFETY: a KVec's buffer pointer is non-null (dangling only when empty, and
        // n_subbufs > 0 by the Geometry invariant).
        let pad_ptr = unsafe { NonNull::new_unchecked(padding.as_ptr() as *mut AtomicUsize) };
        // SAFETY: state, padding (n_subbufs entries, never resized) and data (geo.size() bytes,
        // page aligned up, non-null) live until `free`, which drops the Buf with them; one
        // geometry per buffer.
        let core = unsafe {
            Buf::from_raw(
                state,
                pad_ptr,
                NonNull::new_unchecked(data.cast()),
                geo,
                cpu,
            )
        };
        chan.get();
        let kbuf = KBox::new(
            KBuf {
                refs: AtomicUsize::new(1),
                chan: NonNull::from(chan),
                core,
                state,
                padding,
                data,
                pages,
                n_pages,
                kobj,
                dentry: ptr::null_mut(),
                cpu: cpu as c_uint,
            },
            GFP_KERNEL,
        );
        match kbuf {
            // SAFETY: `into_raw` never returns null.
            Ok(b) => Ok(unsafe { NonNull::new_unchecked(KBox::into_raw(b)) }),
            Err(e) => {
                // SAFETY: all allocated above and not shared yet (the padding KVec was moved
                // into the failed KBox::new and dropped with it).
                unsafe {
                    sys::rsr_kobj_free(kobj);
                    sys::rsr_vmap_free(data, pages, n_pages);
                    drop(KBox::from_raw(state.as_ptr()));
                    KChan::put(NonNull::from(chan));
                }
                Err(e.into())
            }
        }
    }

    fn env(&self) -> KEnv<'_> {
        KEnv { buf: self }
    }
}

/// The core's view of the backend while writing one buffer.
struct KEnv<'a> {
    buf: &'a KBuf,
}

impl Env for KEnv<'_> {
    #[inline]
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        let chan = self.buf.chan();
        match chan.cb.subbuf_start {
            Some(f) => {
                let mut sctx = StartCtx {
                    inner: ctx,
                    cpu: self.buf.cpu,
                };
                // SAFETY: the client's callback with its private data; the context pointer is
                // valid for the duration of the call only, as documented in rsrelay.h.
                unsafe { f(chan.private_data, ptr::addr_of_mut!(sctx).cast()) }
            }
            None => !ctx.buf_full(),
        }
    }

    #[inline]
    fn subbuf_produced(&self, _buf: &Buf) {
        // SAFETY: kobj is live (KBuf invariant); this helper only queues irq_work.
        unsafe { sys::rsr_kobj_wake_deferred(self.buf.kobj) };
    }
}

/// What `struct rsrelay_start *` points to.
struct StartCtx<'a, 'b> {
    inner: &'a mut SubbufStart<'b>,
    cpu: c_uint,
}

/// # Safety
///
/// `ctx` is the pointer passed to a `subbuf_start` callback that has not returned yet.
unsafe fn start_ctx<'a>(ctx: *const rsrelay_start) -> &'a mut StartCtx<'a, 'a> {
    // SAFETY: caller contract; the object lives on the writer's stack for the callback's duration.
    unsafe { &mut *(ctx as *mut StartCtx<'a, 'a>) }
}

/// # Safety
///
/// `chan` was returned by `rsrelay_open` and not closed.
unsafe fn chan_ref<'a>(chan: *mut rsrelay_chan) -> &'a KChan {
    // SAFETY: caller contract.
    unsafe { &*chan.cast::<KChan>() }
}

/// `relay_open`.
#[no_mangle]
pub extern "C" fn rsrelay_open(
    base_filename: *const ffi::c_char,
    parent: *mut dentry,
    subbuf_size: usize,
    n_subbufs: usize,
    cb: *const rsrelay_callbacks,
    private_data: *mut c_void,
) -> *mut rsrelay_chan {
    let geo = match Geometry::new(subbuf_size, n_subbufs) {
        Ok(g) => g,
        Err(_) => return err_ptr(22), // EINVAL
    };
    if base_filename.is_null() {
        // relay allows a NULL name for buffer-only channels; we always create files.
        return err_ptr(22);
    }
    let cb = if cb.is_null() {
        rsrelay_callbacks::default()
    } else {
        // SAFETY: the client passes a valid callbacks struct; copied so it may be temporary.
        unsafe { ptr::read(cb) }
    };
    match open_inner(base_filename, parent, geo, cb, private_data) {
        Ok(p) => p,
        Err(e) => e.to_ptr(),
    }
}

fn open_inner(
    base: *const ffi::c_char,
    parent: *mut dentry,
    geo: Geometry,
    cb: rsrelay_callbacks,
    private_data: *mut c_void,
) -> Result<*mut rsrelay_chan> {
    // SAFETY: plain allocation.
    let lock = unsafe { sys::rsr_kobj_new(true) };
    if lock.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: plain query.
    let ncpu = unsafe { sys::rsr_nr_cpu_ids() } as usize;
    let mut bufs = KVec::with_capacity(ncpu, GFP_KERNEL).inspect_err(|_| {
        // SAFETY: allocated above, unshared.
        unsafe { sys::rsr_kobj_free(lock) }
    })?;
    for _ in 0..ncpu {
        // Capacity reserved above.
        let _ = bufs.push(ptr::null_mut(), GFP_KERNEL);
    }
    let chan = KBox::new(
        KChan {
            refs: AtomicUsize::new(1),
            geo,
            cb,
            private_data,
            is_global: false,
            closed: AtomicBool::new(false),
            lock,
            bufs,
        },
        GFP_KERNEL,
    )
    .inspect_err(|_| {
        // SAFETY: allocated above, unshared.
        unsafe { sys::rsr_kobj_free(lock) }
    })?;
    let chan = KBox::into_raw(chan);
    // SAFETY: just allocated; not shared until returned, so the mutable accesses below are
    // exclusive.
    let r = unsafe { create_bufs(&mut *chan, base, parent) };
    if let Err(e) = r {
        // SAFETY: the channel is ours alone: tear down what was created.
        unsafe {
            close_inner(&*chan);
            KChan::put(NonNull::new_unchecked(chan));
        }
        return Err(e);
    }
    Ok(chan.cast())
}

/// relay_open_buf for every possible CPU (hotplug-safe: a CPU that comes online later already
/// has its buffer), or the single global buffer.
fn create_bufs(chan: &mut KChan, base: *const ffi::c_char, parent: *mut dentry) -> Result {
    let ncpu = chan.bufs.len();
    let mut name = [0u8; 64];
    // SAFETY: the client passes a NUL-terminated name.
    let base = unsafe { core::ffi::CStr::from_ptr(base.cast()) }.to_bytes();
    if base.len() + 12 > name.len() {
        return Err(EINVAL);
    }
    for cpu in 0..ncpu {
        // SAFETY: plain query.
        if !unsafe { sys::rsr_cpu_possible(cpu as c_uint) } {
            continue;
        }
        let buf = KBuf::alloc(chan, cpu)?;
        chan.bufs[cpu] = buf.as_ptr();
        // SAFETY: freshly allocated, only the channel references it.
        let b = unsafe { buf.as_ref() };
        // The first sub-buffer (relay's __relay_reset(buf, 1)); nobody writes yet.
        // SAFETY: writer exclusivity: the buffer is not published.
        if let Err(e) = unsafe { b.core.init(&b.env()) } {
            return Err(open_error(e));
        }
        // "<base><cpu>\0"
        let mut len = base.len();
        name[..len].copy_from_slice(base);
        len += fmt_u32(&mut name[len..], cpu as u32);
        name[len] = 0;
        let mut is_global: c_int = 0;
        let mode: sys::umode_t = 0o400;
        let dentry = match chan.cb.create_buf_file {
            // SAFETY: the client's callback with a NUL-terminated name and our buffer handle.
            Some(f) => unsafe {
                f(
                    name.as_ptr().cast(),
                    parent,
                    mode,
                    buf.as_ptr().cast(),
                    &mut is_global,
                )
            },
            // SAFETY: as above, debugfs with our file operations.
            None => unsafe {
                sys::rsr_debugfs_create(name.as_ptr().cast(), parent, mode, buf.as_ptr().cast())
            },
        };
        // SAFETY: pure pointer check.
        if unsafe { sys::rsr_is_err_or_null(dentry.cast()) } {
            return Err(ENOMEM);
        }
        // SAFETY: exclusive (unpublished) buffer.
        unsafe { (*buf.as_ptr()).dentry = dentry };
        if is_global != 0 {
            chan.is_global = true;
            break;
        }
    }
    Ok(())
}

fn open_error(e: OpenError) -> Error {
    match e {
        OpenError::ZeroSize | OpenError::TooLarge | OpenError::HeaderTooLarge { .. } => EINVAL,
        OpenError::StartRefused => EINVAL,
    }
}

fn fmt_u32(out: &mut [u8], mut v: u32) -> usize {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        out[i] = tmp[n - 1 - i];
    }
    n
}

/// Finalizes, wakes and removes every buffer and drops the channel's references on them.
fn close_inner(chan: &KChan) {
    // SAFETY: `lock` is live (type invariant).
    unsafe { sys::rsr_kobj_lock(chan.lock) };
    let was_closed = chan.closed.swap(true, Ordering::Relaxed);
    // SAFETY: locked above.
    unsafe { sys::rsr_kobj_unlock(chan.lock) };
    if was_closed {
        return;
    }
    for &p in chan.bufs.iter() {
        let Some(buf) = NonNull::new(p) else { continue };
        // SAFETY: the channel still holds its reference on the buffer.
        let b = unsafe { buf.as_ref() };
        let st = b.core.stats();
        if st.toobig_msgs != 0 {
            // relay_close's report, per buffer (relay.c keeps one racy value per channel).
            pr_warn!(
                "rsrelay: cpu{}: {} items not logged [item size ({}) > sub-buffer size ({}) minus header]\n",
                b.cpu,
                st.toobig_msgs,
                st.last_toobig,
                chan.geo.subbuf_size()
            );
        }
        b.core.finalize();
        // SAFETY: kobj live; process context.
        unsafe { sys::rsr_kobj_wake_now(b.kobj) };
        if !b.dentry.is_null() {
            match chan.cb.remove_buf_file {
                // SAFETY: the client's callback on the dentry its create_buf_file returned.
                Some(f) => unsafe {
                    f(b.dentry);
                },
                // SAFETY: our own debugfs file.
                None => unsafe { sys::rsr_debugfs_remove(b.dentry) },
            }
        }
        // SAFETY: the channel's reference, given up once (closed was false).
        unsafe { KBuf::put(buf) };
    }
}

/// `relay_close`: the client must not write any more.
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_close(chan: *mut rsrelay_chan) {
    let Some(c) = NonNull::new(chan.cast::<KChan>()) else {
        return;
    };
    // SAFETY: the client's open channel.
    close_inner(unsafe { c.as_ref() });
    // SAFETY: the client's reference.
    unsafe { KChan::put(c) };
}

/// Writes with interrupts already off (or the global lock) on `cpu`'s buffer.
#[inline(always)]
fn write_locked(chan: &KChan, cpu: usize, data: &[u8]) -> bool {
    if !chan.is_global {
        debug_assert!(cpu < chan.bufs.len());
        // SAFETY: `cpu` is the current CPU (caller contract), < nr_cpu_ids == bufs.len(); a
        // non-null entry is a live buffer of the open channel (clients do not write after
        // close).
        let Some(buf) = (unsafe { chan.bufs.get_unchecked(cpu).as_ref() }) else {
            return false;
        };
        // SAFETY: interrupts (or preemption, for __write) are off on the buffer's CPU, so no
        // other writer of this buffer can run (relay's rule for per-CPU buffers).
        return unsafe { buf.core.write(&buf.env(), data) };
    }
    let Some(buf) = chan.buf_for(cpu) else {
        return false;
    };
    {
        global_lock(buf);
        // SAFETY: the global lock gives writer exclusivity.
        let r = unsafe { buf.core.write(&buf.env(), data) };
        global_unlock(buf);
        r
    }
}

fn global_lock(buf: &KBuf) {
    let l = buf.core.state().writer_lock();
    while l
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

fn global_unlock(buf: &KBuf) {
    buf.core.state().writer_lock().store(0, Ordering::Release);
}

/// # Safety
///
/// `data` is valid for `length` bytes (or `length` is 0).
unsafe fn data_slice<'a>(data: *const c_void, length: usize) -> &'a [u8] {
    if length == 0 || data.is_null() {
        return &[];
    }
    // SAFETY: caller contract.
    unsafe { core::slice::from_raw_parts(data.cast(), length) }
}

/// The body of `rsrelay_write` / `__rsrelay_write` (glue.c), which disable interrupts or
/// preemption and pass the current CPU. One C-to-Rust call per message.
///
/// # Safety
///
/// `chan` is open, `data` valid for `length` bytes, and interrupts (or, for `__rsrelay_write`,
/// preemption with no interrupt-context writer) are off on `cpu`, the current CPU.
#[no_mangle]
pub unsafe extern "C" fn rsr_write_cpu(
    chan: *mut rsrelay_chan,
    cpu: c_uint,
    data: *const c_void,
    length: usize,
) -> bool {
    // SAFETY: caller contract.
    write_locked(unsafe { chan_ref(chan) }, cpu as usize, unsafe {
        data_slice(data, length)
    })
}

/// The body of `rsrelay_write_with` (glue.c, interrupts off on `cpu`).
///
/// # Safety
///
/// As [`rsr_write_cpu`]; `fill` is a valid function that writes at most `max` bytes to the
/// slot it gets and returns how many it used.
#[no_mangle]
pub unsafe extern "C" fn rsr_write_with_cpu(
    chan: *mut rsrelay_chan,
    cpu: c_uint,
    max: usize,
    fill: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> usize>,
    ctx: *mut c_void,
) -> bool {
    let Some(fill) = fill else { return false };
    // SAFETY: caller contract (open channel).
    let chan = unsafe { chan_ref(chan) };
    let Some(buf) = chan.buf_for(cpu as usize) else {
        return false;
    };
    let run = || {
        // SAFETY: writer exclusivity (interrupts off on the buffer's CPU, or the global lock
        // below); `fill` writes within the slot (caller contract).
        unsafe {
            buf.core.write_with_max(&buf.env(), max, |slot| {
                fill(ctx, slot.as_mut_ptr().cast(), slot.len())
            })
        }
    };
    if chan.is_global {
        global_lock(buf);
        let r = run();
        global_unlock(buf);
        r
    } else {
        run()
    }
}

/// `relay_reserve`.
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_reserve(chan: *mut rsrelay_chan, length: usize) -> *mut c_void {
    // SAFETY: as relay's get_cpu_ptr/put_cpu_ptr: the CPU number is only used to pick the buffer;
    // the caller keeps interrupts (or preemption) off around reserve + fill.
    unsafe { sys::rsr_preempt_disable() };
    // SAFETY: preemption is off.
    let cpu = unsafe { sys::rsr_this_cpu() } as usize;
    // SAFETY: the client's open channel.
    let chan = unsafe { chan_ref(chan) };
    let mut out = ptr::null_mut();
    if let Some(buf) = chan.buf_for(cpu) {
        if chan.is_global {
            global_lock(buf);
        }
        // SAFETY: writer exclusivity as for `write` (caller contract for per-CPU buffers).
        if let Some(slot) = unsafe { buf.core.reserve(&buf.env(), length) } {
            out = buf.core.slot_ptr(slot).cast();
        }
        if chan.is_global {
            global_unlock(buf);
        }
    }
    // SAFETY: pairs with the disable above.
    unsafe { sys::rsr_preempt_enable() };
    out
}

/// Runs `f` for every buffer with writer exclusivity: on the buffer's CPU with interrupts off
/// (IPI), or under the global lock.
fn for_each_buf_exclusive(chan: &KChan, f: fn(&KBuf)) {
    for_each_buf(chan, f, false)
}

/// As [`for_each_buf_exclusive`], also holding each buffer's reader mutex around `f`.
fn for_each_buf_exclusive_locked(chan: &KChan, f: fn(&KBuf)) {
    for_each_buf(chan, f, true)
}

fn for_each_buf(chan: &KChan, f: fn(&KBuf), reader_lock: bool) {
    struct Call<'a> {
        buf: &'a KBuf,
        f: fn(&KBuf),
    }
    /// # Safety
    ///
    /// `info` is the argument the caller passed to the synchronous cross-CPU call, still alive.
    unsafe extern "C" fn trampoline(info: *mut c_void) {
        // SAFETY: `info` is the `Call` below, alive until rsr_on_cpu returns (it waits).
        let call = unsafe { &*(info as *const Call<'_>) };
        (call.f)(call.buf);
    }
    for &p in chan.bufs.iter() {
        // SAFETY: a non-null entry is a live buffer of the open channel.
        let Some(buf) = (unsafe { p.as_ref() }) else {
            continue;
        };
        if reader_lock {
            // SAFETY: kobj is live; process context (caller contract of reset).
            unsafe { sys::rsr_kobj_lock(buf.kobj) };
        }
        if chan.is_global {
            // SAFETY: save/restore pair; the lock excludes writers on every CPU.
            let flags = unsafe { sys::rsr_irq_save() };
            global_lock(buf);
            f(buf);
            global_unlock(buf);
            // SAFETY: restores the saved flags.
            unsafe { sys::rsr_irq_restore(flags) };
        } else {
            let call = Call { buf, f };
            // SAFETY: `trampoline` matches the expected signature; `call` outlives the
            // synchronous call.
            unsafe {
                sys::rsr_on_cpu(
                    buf.cpu,
                    Some(trampoline),
                    ptr::addr_of!(call) as *mut c_void,
                )
            };
        }
        if reader_lock {
            // SAFETY: locked above.
            unsafe { sys::rsr_kobj_unlock(buf.kobj) };
        }
    }
}

/// `relay_flush` (process context).
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_flush(chan: *mut rsrelay_chan) {
    // SAFETY: the client's open channel.
    let chan = unsafe { chan_ref(chan) };
    // SAFETY: runs with writer exclusivity (for_each_buf_exclusive).
    for_each_buf_exclusive(chan, |b| unsafe { b.core.flush(&b.env()) });
}

/// `relay_reset` (process context).
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_reset(chan: *mut rsrelay_chan) {
    // SAFETY: the client's open channel.
    let chan = unsafe { chan_ref(chan) };
    // One buffer after the other, as relay.c (never two reader mutexes at once).
    for_each_buf_exclusive_locked(chan, |b| {
        // SAFETY: writer exclusivity from for_each_buf_exclusive, reader exclusivity from the
        // buffer's mutex. An oversized header cannot appear at reset if it was accepted at
        // open; if the client changed its mind the buffer stays refused.
        let _ = unsafe { b.core.reset(&b.env()) };
    });
}

/// `relay_subbufs_consumed` (process context: takes the reader mutex).
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_subbufs_consumed(
    chan: *mut rsrelay_chan,
    cpu: c_uint,
    consumed: usize,
) {
    // SAFETY: the client's open channel.
    let chan = unsafe { chan_ref(chan) };
    if chan.is_global && cpu != 0 {
        return;
    }
    let Some(b) = chan.buf_for(cpu as usize) else {
        return;
    };
    // SAFETY: reader exclusivity through the buffer's mutex.
    unsafe {
        sys::rsr_kobj_lock(b.kobj);
        b.core.subbufs_consumed(consumed);
        sys::rsr_kobj_unlock(b.kobj);
    }
}

/// `relay_buf_full` for `cpu`'s buffer.
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_buf_full(chan: *mut rsrelay_chan, cpu: c_uint) -> bool {
    // SAFETY: the client's open channel.
    let chan = unsafe { chan_ref(chan) };
    chan.buf_for(cpu as usize)
        .is_some_and(|b| b.core.buf_full())
}

/// Counters of `cpu`'s buffer; -EINVAL for a CPU without a buffer.
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_buf_stats(
    chan: *mut rsrelay_chan,
    cpu: c_uint,
    out: *mut sys::rsrelay_stats,
) -> c_int {
    // SAFETY: the client's open channel.
    let chan = unsafe { chan_ref(chan) };
    if out.is_null() || (chan.is_global && cpu != 0) {
        return -22;
    }
    let Some(b) = chan.buf_for(cpu as usize) else {
        return -22;
    };
    let s = b.core.stats();
    // SAFETY: `out` is valid for writes (caller contract).
    unsafe {
        *out = sys::rsrelay_stats {
            produced: s.subbufs_produced as u64,
            consumed: s.subbufs_consumed as u64,
            dropped_msgs: s.dropped_msgs as u64,
            dropped_bytes: s.dropped_bytes as u64,
            toobig_msgs: s.toobig_msgs as u64,
            last_toobig: s.last_toobig as u64,
            lapped_subbufs: s.lapped_subbufs as u64,
        }
    };
    0
}

/// The `private_data` given to `rsrelay_open`.
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_private_data(chan: *mut rsrelay_chan) -> *mut c_void {
    // SAFETY: the client's open channel.
    unsafe { chan_ref(chan) }.private_data
}

/// Whether `create_buf_file` made the channel global.
#[no_mangle]
/// # Safety
///
/// The C ABI of `rsrelay.h`: `chan` was returned by `rsrelay_open` and is not closed; data pointers are valid for the lengths given.
pub unsafe extern "C" fn rsrelay_is_global(chan: *mut rsrelay_chan) -> bool {
    // SAFETY: the client's open channel.
    unsafe { chan_ref(chan) }.is_global
}

/// The CPU of the buffer being switched.
#[no_mangle]
/// # Safety
///
/// `ctx` is the context pointer passed to a `subbuf_start` callback that is still running.
pub unsafe extern "C" fn rsrelay_start_cpu(ctx: *const rsrelay_start) -> c_uint {
    // SAFETY: called from within subbuf_start (C ABI contract).
    unsafe { start_ctx(ctx) }.cpu
}

/// Index of the sub-buffer being started.
#[no_mangle]
/// # Safety
///
/// `ctx` is the context pointer passed to a `subbuf_start` callback that is still running.
pub unsafe extern "C" fn rsrelay_start_subbuf(ctx: *const rsrelay_start) -> usize {
    // SAFETY: called from within subbuf_start.
    unsafe { start_ctx(ctx) }.inner.subbuf()
}

/// Index of the previous sub-buffer, -1 at open/reset.
#[no_mangle]
/// # Safety
///
/// `ctx` is the context pointer passed to a `subbuf_start` callback that is still running.
pub unsafe extern "C" fn rsrelay_start_prev_subbuf(ctx: *const rsrelay_start) -> c_long {
    // SAFETY: called from within subbuf_start.
    match unsafe { start_ctx(ctx) }.inner.prev_subbuf() {
        Some(i) => i as c_long,
        None => -1,
    }
}

/// Unused bytes at the end of the previous sub-buffer.
#[no_mangle]
/// # Safety
///
/// `ctx` is the context pointer passed to a `subbuf_start` callback that is still running.
pub unsafe extern "C" fn rsrelay_start_prev_padding(ctx: *const rsrelay_start) -> usize {
    // SAFETY: called from within subbuf_start.
    unsafe { start_ctx(ctx) }.inner.prev_padding()
}

/// `relay_buf_full` of the buffer being switched.
#[no_mangle]
/// # Safety
///
/// `ctx` is the context pointer passed to a `subbuf_start` callback that is still running.
pub unsafe extern "C" fn rsrelay_start_buf_full(ctx: *const rsrelay_start) -> bool {
    // SAFETY: called from within subbuf_start.
    unsafe { start_ctx(ctx) }.inner.buf_full()
}

/// `subbuf_start_reserve`.
#[no_mangle]
/// # Safety
///
/// `ctx` is the context pointer passed to a `subbuf_start` callback that is still running.
pub unsafe extern "C" fn rsrelay_start_reserve(ctx: *mut rsrelay_start, length: usize) -> c_int {
    // SAFETY: called from within subbuf_start.
    match unsafe { start_ctx(ctx) }.inner.reserve(length) {
        Ok(()) => 0,
        Err(_) => -22,
    }
}

/// Writes into the new or the previous sub-buffer.
#[no_mangle]
/// # Safety
///
/// `ctx` is the context pointer passed to a `subbuf_start` callback that is still running.
pub unsafe extern "C" fn rsrelay_start_write(
    ctx: *mut rsrelay_start,
    prev: bool,
    offset: usize,
    bytes: *const c_void,
    len: usize,
) -> bool {
    // SAFETY: called from within subbuf_start; `bytes` valid for `len` (caller contract).
    let (ctx, bytes) = unsafe { (start_ctx(ctx), data_slice(bytes, len)) };
    if prev {
        ctx.inner.write_prev_subbuf(offset, bytes)
    } else {
        ctx.inner.write_subbuf(offset, bytes)
    }
}

// ---- file operations ----

/// # Safety
///
/// `file` is an open relay file (its private data is a buffer it holds a reference on).
unsafe fn file_buf<'a>(file: *mut file) -> &'a KBuf {
    // SAFETY: set in rsr_fop_open, reference held until release.
    unsafe { &*sys::rsr_file_private(file).cast::<KBuf>() }
}

/// `relay_file_open`.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_fop_open(inode: *mut inode, file: *mut file) -> c_int {
    // SAFETY: the inode was created by create_buf_file with our buffer as private data, and the
    // file exists (debugfs keeps the inode alive while it is looked up / open).
    let p = unsafe { sys::rsr_inode_private(inode) }.cast::<KBuf>();
    // SAFETY: the file's dentry holds the buffer: the channel's reference is dropped only after
    // the file was removed, and a removed file cannot be opened any more.
    let Some(b) = (unsafe { p.as_ref() }) else {
        return -22;
    };
    b.get();
    b.core.state().readers().fetch_add(1, Ordering::Relaxed);
    // SAFETY: valid file; the reference taken above is released in rsr_fop_release.
    unsafe { sys::rsr_file_set_private(file, p.cast()) };
    0
}

/// `relay_file_release`.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_fop_release(_inode: *mut inode, file: *mut file) -> c_int {
    // SAFETY: open relay file.
    let b = unsafe { file_buf(file) };
    b.core.state().readers().fetch_sub(1, Ordering::Relaxed);
    // SAFETY: the file's reference, given up once.
    unsafe { KBuf::put(NonNull::from(b)) };
    0
}

/// Copies to a user-space buffer.
struct UserSink {
    dst: *mut u8,
    room: usize,
    pos: usize,
    fault: bool,
}

impl ReadSink for UserSink {
    fn room(&self) -> usize {
        self.room - self.pos
    }

    unsafe fn copy(&mut self, src: *const u8, len: usize) -> bool {
        // SAFETY: `dst + pos .. + len` lies inside the user's buffer (len <= room()); user
        // pointers are checked by copy_to_user; `src` is valid (caller contract).
        let left = unsafe { sys::rsr_copy_to_user(self.dst.add(self.pos).cast(), src.cast(), len) };
        if left != 0 {
            self.fault = true;
        }
        left == 0
    }

    fn commit(&mut self, len: usize) {
        self.pos += len;
    }
}

/// `relay_file_read`: consumes, strips padding, never blocks.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_fop_read(
    file: *mut file,
    ubuf: *mut ffi::c_char,
    count: usize,
    _ppos: *mut sys::loff_t,
) -> isize {
    if count == 0 {
        return 0;
    }
    // SAFETY: open relay file.
    let b = unsafe { file_buf(file) };
    let mut sink = UserSink {
        dst: ubuf.cast(),
        room: count,
        pos: 0,
        fault: false,
    };
    // SAFETY: the mutex gives reader exclusivity for core.read.
    let n = unsafe {
        sys::rsr_kobj_lock(b.kobj);
        let n = b.core.read(&mut sink);
        sys::rsr_kobj_unlock(b.kobj);
        n
    };
    if n == 0 && sink.fault {
        return -14; // EFAULT
    }
    n as isize
}

/// Copies into an iov_iter (read_iter, and so splice/sendfile).
struct IterSink {
    iter: *mut iov_iter,
    room: usize,
    pos: usize,
    /// Bytes copied into the iterator but not committed yet (reverted if never committed).
    pending: usize,
}

impl IterSink {
    fn revert_pending(&mut self) {
        if self.pending != 0 {
            // SAFETY: the iterator advanced by exactly `pending` in the last copy.
            unsafe { sys::rsr_iov_iter_revert(self.iter, self.pending) };
            self.pending = 0;
        }
    }
}

impl ReadSink for IterSink {
    fn room(&self) -> usize {
        self.room - self.pos
    }

    unsafe fn copy(&mut self, src: *const u8, len: usize) -> bool {
        // A copy the core threw away (overwritten while copied) must not stay in the iterator.
        self.revert_pending();
        // SAFETY: `src` valid for `len` (caller contract); the iterator checks its targets.
        let done = unsafe { sys::rsr_copy_to_iter(src.cast(), len, self.iter) };
        self.pending = done;
        if done != len {
            self.revert_pending();
            return false;
        }
        true
    }

    fn commit(&mut self, len: usize) {
        self.pos += len;
        self.pending = 0;
    }
}

/// `read_iter`: the same read into an iov_iter; `splice_read = copy_splice_read` uses it, which
/// is what makes `sendfile(2)` work.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_fop_read_iter(iocb: *mut kiocb, to: *mut iov_iter) -> isize {
    // SAFETY: valid kiocb/iov_iter from the VFS for an open relay file.
    let (b, room) = unsafe {
        (
            file_buf(sys::rsr_kiocb_file(iocb)),
            sys::rsr_iov_iter_count(to),
        )
    };
    if room == 0 {
        return 0;
    }
    let mut sink = IterSink {
        iter: to,
        room,
        pos: 0,
        pending: 0,
    };
    // SAFETY: the mutex gives reader exclusivity.
    let n = unsafe {
        sys::rsr_kobj_lock(b.kobj);
        let n = b.core.read(&mut sink);
        sys::rsr_kobj_unlock(b.kobj);
        n
    };
    sink.revert_pending();
    n as isize
}

/// `relay_file_poll`.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_fop_poll(file: *mut file, pt: *mut poll_table_struct) -> c_uint {
    // SAFETY: open relay file.
    let b = unsafe { file_buf(file) };
    if b.core.is_finalized() {
        return EPOLLERR;
    }
    // SAFETY: registers on the buffer's wait queue (kobj live while the file holds the buffer).
    unsafe { sys::rsr_kobj_poll_wait(b.kobj, file, pt) };
    match b.core.poll() {
        Poll::Readable => EPOLLIN | EPOLLRDNORM,
        Poll::Empty => 0,
        Poll::Finalized => EPOLLERR,
    }
}

fn fire_mapped(b: &KBuf, mapped: bool) {
    let cpu = b.cpu;
    b.chan().with_open_cb(|cb, private| {
        let f = if mapped {
            cb.buf_mapped
        } else {
            cb.buf_unmapped
        };
        if let Some(f) = f {
            // SAFETY: the client's callback; the channel is open (checked under its mutex), so
            // the client module is still there.
            unsafe { f(private, cpu) };
        }
    });
}

/// `relay_file_mmap`: the whole buffer only.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_fop_mmap(file: *mut file, vma: *mut vm_area_struct) -> c_int {
    // SAFETY: open relay file; valid VMA from the mmap path.
    let (b, len, pgoff) = unsafe {
        (
            file_buf(file),
            sys::rsr_vma_len(vma),
            sys::rsr_vma_pgoff(vma),
        )
    };
    // SAFETY: plain query.
    let page = unsafe { sys::rsr_page_size() } as usize;
    // DIFF(relay.c): relay only checks the length; a non-zero offset is rejected too.
    if len as usize != b.core.geometry().alloc_size(page) || pgoff != 0 {
        return -22;
    }
    // SAFETY: installs our vm_ops with the buffer as private data; the VMA holds the file, which
    // holds the buffer.
    unsafe { sys::rsr_vma_setup(vma, NonNull::from(b).as_ptr().cast()) };
    b.core.state().mapped().fetch_add(1, Ordering::Relaxed);
    fire_mapped(b, true);
    0
}

/// # Safety
///
/// `vma` is one of our mappings.
unsafe fn vma_buf<'a>(vma: *const vm_area_struct) -> &'a KBuf {
    // SAFETY: set in rsr_fop_mmap; the mapping's file keeps the buffer alive.
    unsafe { &*sys::rsr_vma_private(vma).cast::<KBuf>() }
}

/// A mapping was duplicated (fork) or split.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_vm_open(vma: *mut vm_area_struct) {
    // SAFETY: one of our mappings.
    let b = unsafe { vma_buf(vma) };
    b.core.state().mapped().fetch_add(1, Ordering::Relaxed);
    fire_mapped(b, true);
}

/// A mapping went away.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_vm_close(vma: *mut vm_area_struct) {
    // SAFETY: one of our mappings.
    let b = unsafe { vma_buf(vma) };
    b.core.state().mapped().fetch_sub(1, Ordering::Relaxed);
    fire_mapped(b, false);
}

/// relay_buf_fault: the vmap'ed page at the faulting offset.
#[no_mangle]
/// # Safety
///
/// Called by the VFS / MM with valid arguments for an rsrelay file (created with `rsrelay_file_operations`) or one of its mappings.
pub unsafe extern "C" fn rsr_vm_fault(vmf: *mut vm_fault) -> c_uint {
    // SAFETY: a fault on one of our mappings; the buffer's pages live as long as the file.
    unsafe {
        let b = &*sys::rsr_vmf_private(vmf).cast::<KBuf>();
        sys::rsr_vmf_fault(vmf, b.data, b.n_pages)
    }
}
