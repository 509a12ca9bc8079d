// SPDX-License-Identifier: GPL-2.0
//! rsrelay_test.ko: drives the kernel's C relay and rsrelay side by side for the in-guest checks
//! of `scripts/kernel-test.sh`. The control protocol is `kernel-tests/PROTOCOL.md`; user space
//! is `relay-kcheck` (kernel-tests/src).
use core::ffi::{c_char, c_int, c_uint, c_void};
use core::fmt::Write;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use kernel::c_str;
use kernel::prelude::*;

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
    include!("test_bindings.rs");
}

#[path = "../../relay/src/kernel/client.rs"]
#[allow(dead_code, unreachable_pub)]
mod rsrelay;

module! {
    type: RsRelayTest,
    name: "rsrelay_test",
    author: "relay-rs",
    description: "C relay vs rsrelay differential test driver",
    license: "GPL",
}

const MAX_CPUS: usize = 64;
const EINVAL_: c_int = -22;
const EBUSY_: c_int = -16;
const ENOMEM_: c_int = -12;

/// The header callback of relay/tests/model: refuse when full (no-overwrite), else reserve
/// `header` bytes equal to `k as u8`, `k` counting this buffer's successful starts.
struct Hdr {
    header: usize,
    overwrite: bool,
    global: bool,
    k: [AtomicU64; MAX_CPUS],
}

impl rsrelay::Callbacks for Hdr {
    fn global(&self) -> bool {
        self.global
    }

    fn subbuf_start(&self, ctx: &mut rsrelay::StartCtx<'_>) -> bool {
        if !self.overwrite && ctx.buf_full() {
            return false;
        }
        let cpu = (ctx.cpu() as usize).min(MAX_CPUS - 1);
        let k = self.k[cpu].load(Ordering::Relaxed);
        if self.header > 0 {
            if ctx.reserve(self.header).is_err() {
                return false;
            }
            let chunk = [k as u8; 16];
            let mut off = 0;
            while off < self.header {
                let n = (self.header - off).min(16);
                ctx.write_subbuf(off, &chunk[..n]);
                off += n;
            }
        }
        self.k[cpu].store(k + 1, Ordering::Relaxed);
        true
    }
}

struct Pair {
    c: *mut sys::rchan,
    r: rsrelay::Channel<Hdr>,
    cdir: *mut sys::dentry,
    rdir: *mut sys::dentry,
}

impl Drop for Pair {
    fn drop(&mut self) {
        // SAFETY: the C channel and directories were created in `open_pair`; the Rust channel is
        // closed by its own drop, after which its directory is removed (open files keep working).
        unsafe {
            sys::rt_c_close(self.c);
            sys::debugfs_remove(self.cdir);
        }
    }
}

/// Global state, used by the control-file handlers (serialised by `BUSY`) and the stress
/// writers (which only read `PAIR` while `STRESS` is set, during which `open`/`close` fail).
static BUSY: AtomicBool = AtomicBool::new(false);
static STRESS: AtomicBool = AtomicBool::new(false);
static PAIR: AtomicPtr<Pair> = AtomicPtr::new(ptr::null_mut());
static ROOT: AtomicPtr<sys::dentry> = AtomicPtr::new(ptr::null_mut());
static LAST: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static BENCH: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
// Stress counters: [writer slot][attempted, written, dropped]; slots 0..MAX_CPUS kthreads,
// MAX_CPUS..2*MAX_CPUS timers.
static STRESS_CNT: [[AtomicU64; 3]; 2 * MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 3] }; 2 * MAX_CPUS];

fn pair() -> Option<&'static Pair> {
    // SAFETY: PAIR is either null or a leaked KBox that is only freed by `close_pair` under
    // BUSY, while no stress run uses it; callers hold BUSY or run during a stress run.
    unsafe { PAIR.load(Ordering::Acquire).as_ref() }
}

fn close_pair() {
    let p = PAIR.swap(ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: leaked in `open_pair`, unpublished above.
        let pair = unsafe { KBox::from_raw(p) };
        let rdir = pair.rdir;
        drop(pair);
        // SAFETY: the Rust channel's files were removed by its drop.
        unsafe { sys::debugfs_remove(rdir) };
    }
}

fn open_pair(s: usize, n: usize, h: usize, overwrite: bool, global: bool) -> Result {
    close_pair();
    let root = ROOT.load(Ordering::Relaxed);
    // SAFETY: valid names under our root directory.
    let (cdir, rdir) = unsafe {
        (
            sys::debugfs_create_dir(c_str!("c").as_char_ptr(), root),
            sys::debugfs_create_dir(c_str!("rust").as_char_ptr(), root),
        )
    };
    // SAFETY: pointer checks only.
    if unsafe { sys::rt_is_err_or_null(cdir.cast()) || sys::rt_is_err_or_null(rdir.cast()) } {
        return Err(ENOMEM);
    }
    // SAFETY: directory just created.
    let c = unsafe { sys::rt_c_open(cdir, s, n, h, overwrite, global) };
    if c.is_null() {
        // SAFETY: created above.
        unsafe {
            sys::debugfs_remove(cdir);
            sys::debugfs_remove(rdir);
        }
        return Err(EINVAL);
    }
    let hdr = Hdr {
        header: h,
        overwrite,
        global,
        k: [const { AtomicU64::new(0) }; MAX_CPUS],
    };
    let r = match rsrelay::Channel::open(c_str!("cpu"), rdir, s, n, hdr) {
        Ok(r) => r,
        Err(e) => {
            // SAFETY: created above.
            unsafe {
                sys::rt_c_close(c);
                sys::debugfs_remove(cdir);
                sys::debugfs_remove(rdir);
            }
            return Err(e);
        }
    };
    let pair = KBox::new(Pair { c, r, cdir, rdir }, GFP_KERNEL)?;
    PAIR.store(KBox::into_raw(pair), Ordering::Release);
    Ok(())
}

fn pattern(len: usize, seed: u32) -> Result<KVec<u8>> {
    let mut v = KVec::with_capacity(len, GFP_KERNEL)?;
    for i in 0..len {
        v.push(seed.wrapping_add(i as u32) as u8, GFP_KERNEL)?;
    }
    Ok(v)
}

struct OnCpu<'a> {
    pair: &'a Pair,
    data: &'a [u8],
    reserve: bool,
    seed: u32,
}

/// # Safety
///
/// `info` is the argument the caller passed to the synchronous cross-CPU call, still alive.
unsafe extern "C" fn on_cpu_fn(info: *mut c_void) {
    // SAFETY: `info` is the OnCpu of `run_on_cpu`, alive until the synchronous IPI returns.
    let a = unsafe { &*(info as *const OnCpu<'_>) };
    let len = a.data.len();
    if a.reserve {
        // SAFETY: interrupts are off in the IPI handler; the C helper fills its own slot.
        let c = unsafe { sys::rt_c_reserve(a.pair.c, len, a.seed) };
        // SAFETY: interrupts are off until the slot is filled (IPI context).
        let r = match unsafe { a.pair.r.reserve(len) } {
            Some(slot) => {
                slot.copy_from_slice(a.data);
                1
            }
            None => 0,
        };
        LAST[0].store(c as u64, Ordering::Relaxed);
        LAST[1].store(r, Ordering::Relaxed);
    } else {
        // SAFETY: a valid message for the C channel.
        unsafe { sys::rt_c_write(a.pair.c, a.data.as_ptr().cast(), len) };
        a.pair.r.write(a.data);
    }
}

fn run_on_cpu(cpu: u32, len: usize, seed: u32, reserve: bool) -> Result {
    let pair = pair().ok_or(EINVAL)?;
    let data = pattern(len, seed)?;
    let args = OnCpu {
        pair,
        data: &data,
        reserve,
        seed,
    };
    // SAFETY: `on_cpu_fn` has the IPI signature; `args` outlives the synchronous call.
    let r = unsafe { sys::rt_on_cpu(cpu, Some(on_cpu_fn), ptr::addr_of!(args) as *mut c_void) };
    if r != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

fn insertion_sort(v: &mut [u64]) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && v[j - 1] > v[j] {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

fn bench(len: usize, iters: usize) -> Result {
    let pair = pair().ok_or(EINVAL)?;
    let data = pattern(len, 7)?;
    // Many short rounds, alternating which side goes first, medians per side: the guest's
    // vCPUs share two noisy host cores.
    const ROUNDS: usize = 21;
    let per = (iters / ROUNDS).max(1);
    let mut c_ns = [0u64; ROUNDS];
    let mut r_ns = [0u64; ROUNDS];
    let time_c = || {
        // SAFETY: plain clock reads and writes of a valid message to the open C channel.
        unsafe {
            let t0 = sys::rt_ktime_ns();
            for _ in 0..per {
                sys::rt_c_write(pair.c, data.as_ptr().cast(), len);
            }
            sys::rt_ktime_ns() - t0
        }
    };
    let time_r = || {
        // SAFETY: plain clock reads.
        let t0 = unsafe { sys::rt_ktime_ns() };
        for _ in 0..per {
            pair.r.write(&data);
        }
        // SAFETY: as above.
        unsafe { sys::rt_ktime_ns() - t0 }
    };
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            c_ns[round] = time_c();
            r_ns[round] = time_r();
        } else {
            r_ns[round] = time_r();
            c_ns[round] = time_c();
        }
        // SAFETY: process context.
        unsafe { sys::rt_cond_resched() };
    }
    let asked = iters;
    let iters = per;
    // core's sort pulls in panic paths objtool warns about; five elements need no more.
    insertion_sort(&mut c_ns);
    insertion_sort(&mut r_ns);
    BENCH[0].store(len as u64, Ordering::Relaxed);
    BENCH[1].store(asked as u64, Ordering::Relaxed);
    // Medians in picoseconds per write.
    BENCH[2].store(
        c_ns[ROUNDS / 2] * 1000 / iters.max(1) as u64,
        Ordering::Relaxed,
    );
    BENCH[3].store(
        r_ns[ROUNDS / 2] * 1000 / iters.max(1) as u64,
        Ordering::Relaxed,
    );
    Ok(())
}

/// One stress record (PROTOCOL.md) from writer `id`.
#[no_mangle]
pub extern "C" fn rt_stress_emit(id: c_uint) {
    let slot = if id >= 100 {
        MAX_CPUS + (id as usize - 100).min(MAX_CPUS - 1)
    } else {
        (id as usize).min(MAX_CPUS - 1)
    };
    let Some(pair) = pair() else { return };
    let cnt = &STRESS_CNT[slot];
    let seq = cnt[0].fetch_add(1, Ordering::Relaxed);
    let len = STRESS_LEN.load(Ordering::Relaxed) as usize;
    let mut rec = [0u8; 256];
    let len = len.clamp(24, rec.len());
    rec[0..4].copy_from_slice(&0x5253_5452u32.to_le_bytes());
    rec[4..6].copy_from_slice(&(id as u16).to_le_bytes());
    rec[6..8].copy_from_slice(&(len as u16).to_le_bytes());
    rec[8..16].copy_from_slice(&seq.to_le_bytes());
    let check = seq ^ 0x9e37_79b9_7f4a_7c15 ^ id as u64;
    rec[16..24].copy_from_slice(&check.to_le_bytes());
    let fill = (seq as u8) ^ (id as u8);
    for b in &mut rec[24..len] {
        *b = fill;
    }
    if pair.r.write(&rec[..len]) {
        cnt[1].fetch_add(1, Ordering::Relaxed);
    } else {
        cnt[2].fetch_add(1, Ordering::Relaxed);
    }
}

static STRESS_LEN: AtomicU64 = AtomicU64::new(48);

fn parse(args: &[&[u8]], i: usize) -> Result<usize> {
    let a = args.get(i).ok_or(EINVAL)?;
    let mut v: usize = 0;
    if a.is_empty() {
        return Err(EINVAL);
    }
    for &c in a.iter() {
        if !c.is_ascii_digit() {
            return Err(EINVAL);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as usize))
            .ok_or(EINVAL)?;
    }
    Ok(v)
}

fn command(line: &[u8]) -> Result {
    let mut args: [&[u8]; 8] = [&[]; 8];
    let mut n = 0;
    for w in line
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        if n == args.len() {
            return Err(EINVAL);
        }
        args[n] = w;
        n += 1;
    }
    let args = &args[..n];
    let cmd = *args.first().ok_or(EINVAL)?;
    let stressing = STRESS.load(Ordering::Acquire);
    match cmd {
        b"open" | b"close" | b"reset" if stressing => Err(EBUSY),
        b"open" => {
            let (s, nb, h, o) = (
                parse(args, 1)?,
                parse(args, 2)?,
                parse(args, 3)?,
                parse(args, 4)?,
            );
            // Optional 6th word: 1 = one global buffer (is_global) on both sides.
            let global = args.len() > 5 && parse(args, 5)? != 0;
            open_pair(s, nb, h, o != 0, global)
        }
        b"close" => {
            close_pair();
            Ok(())
        }
        b"write" | b"reserve" => {
            let (cpu, len, seed) = (parse(args, 1)?, parse(args, 2)?, parse(args, 3)?);
            // SAFETY: plain query.
            if len > (1 << 20) || !unsafe { sys::rt_cpu_online(cpu as c_uint) } {
                return Err(EINVAL);
            }
            run_on_cpu(cpu as u32, len, seed as u32, cmd == b"reserve")
        }
        b"flush" => {
            let p = pair().ok_or(EINVAL)?;
            // SAFETY: open C channel; process context.
            unsafe { sys::rt_c_flush(p.c) };
            p.r.flush();
            Ok(())
        }
        b"reset" => {
            let p = pair().ok_or(EINVAL)?;
            // SAFETY: open C channel; process context.
            unsafe { sys::rt_c_reset(p.c) };
            p.r.reset();
            Ok(())
        }
        b"consumed" => {
            let (cpu, k) = (parse(args, 1)?, parse(args, 2)?);
            let p = pair().ok_or(EINVAL)?;
            // SAFETY: open C channel.
            unsafe { sys::rt_c_subbufs_consumed(p.c, cpu as c_uint, k) };
            p.r.subbufs_consumed(cpu as u32, k);
            Ok(())
        }
        b"stress" => {
            let (ms, len) = (parse(args, 1)?, parse(args, 2)?);
            if stressing || pair().is_none() || !(24..=256).contains(&len) {
                return Err(EINVAL);
            }
            for c in STRESS_CNT.iter() {
                for a in c.iter() {
                    a.store(0, Ordering::Relaxed);
                }
            }
            STRESS_LEN.store(len as u64, Ordering::Relaxed);
            STRESS.store(true, Ordering::Release);
            // SAFETY: starts kthreads/timers that call rt_stress_emit until the deadline.
            let r = unsafe { sys::rt_stress_start(ms as c_uint) };
            if r != 0 {
                // SAFETY: stops whatever started.
                unsafe { sys::rt_stress_wait() };
                STRESS.store(false, Ordering::Release);
                return Err(EINVAL);
            }
            Ok(())
        }
        b"bench" => {
            let (len, iters) = (parse(args, 1)?, parse(args, 2)?);
            if len > 65536 || iters == 0 {
                return Err(EINVAL);
            }
            bench(len, iters)
        }
        _ => Err(EINVAL),
    }
}

/// The `ctl` write handler.
#[no_mangle]
/// # Safety
///
/// The C glue passes `len` readable bytes.
pub unsafe extern "C" fn rt_command(cmd: *const c_char, len: usize) -> c_int {
    // SAFETY: helpers.c passes a kernel buffer of `len` bytes.
    let line = unsafe { core::slice::from_raw_parts(cmd.cast::<u8>(), len) };
    // `stress_wait` only sleeps; it must not hold BUSY (other commands may come meanwhile).
    if line
        .split(|c| c.is_ascii_whitespace())
        .find(|w| !w.is_empty())
        == Some(b"stress_wait")
    {
        if STRESS.load(Ordering::Acquire) {
            // SAFETY: waits for the stress writers, then stops them.
            unsafe { sys::rt_stress_wait() };
            STRESS.store(false, Ordering::Release);
        }
        return 0;
    }
    if BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return EBUSY_;
    }
    let r = command(line);
    BUSY.store(false, Ordering::Release);
    match r {
        Ok(()) => 0,
        Err(e) if e == ENOMEM => ENOMEM_,
        Err(e) if e == EBUSY => EBUSY_,
        Err(_) => EINVAL_,
    }
}

#[path = "../../relay/src/kernel/slice_writer.rs"]
mod slice_writer;
use slice_writer::SliceWriter as Out;

/// The read handler of `last` (0), `stats` (1), `stress` (2), `bench` (3).
#[no_mangle]
/// # Safety
///
/// The C glue passes a writable buffer of `cap` bytes.
pub unsafe extern "C" fn rt_show(which: c_uint, buf: *mut c_char, cap: usize) -> usize {
    // SAFETY: helpers.c passes a kernel buffer of `cap` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) };
    let mut o = Out::new(buf);
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
    match which {
        0 => {
            let _ = writeln!(o, "{} {}", ld(&LAST[0]), ld(&LAST[1]));
        }
        1 => {
            if BUSY
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                if let Some(p) = pair() {
                    // SAFETY: plain query.
                    let n = unsafe { sys::rt_nr_cpu_ids() };
                    for cpu in 0..n {
                        if let Some(s) = p.r.stats(cpu) {
                            let _ = writeln!(
                                o,
                                "{} {} {} {} {} {} {}",
                                cpu,
                                s.produced,
                                s.consumed,
                                s.dropped_msgs,
                                s.dropped_bytes,
                                s.toobig_msgs,
                                s.last_toobig
                            );
                        }
                    }
                }
                BUSY.store(false, Ordering::Release);
            }
        }
        2 => {
            for (slot, c) in STRESS_CNT.iter().enumerate() {
                let attempted = ld(&c[0]);
                if attempted == 0 {
                    continue;
                }
                let id = if slot >= MAX_CPUS {
                    100 + slot - MAX_CPUS
                } else {
                    slot
                };
                let _ = writeln!(o, "{} {} {} {}", id, attempted, ld(&c[1]), ld(&c[2]));
            }
        }
        3 => {
            let (c, r) = (ld(&BENCH[2]), ld(&BENCH[3]));
            let _ = writeln!(
                o,
                "{} {} {}.{:03} {}.{:03}",
                ld(&BENCH[0]),
                ld(&BENCH[1]),
                c / 1000,
                c % 1000,
                r / 1000,
                r % 1000
            );
        }
        _ => {}
    }
    o.len()
}

struct RsRelayTest;

impl kernel::Module for RsRelayTest {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // SAFETY: valid name at the debugfs root.
        let root = unsafe {
            sys::debugfs_create_dir(c_str!("rsrelay_test").as_char_ptr(), ptr::null_mut())
        };
        // SAFETY: pointer check.
        if unsafe { sys::rt_is_err_or_null(root.cast()) } {
            return Err(ENOMEM);
        }
        ROOT.store(root, Ordering::Relaxed);
        // SAFETY: our directory.
        unsafe { sys::rt_create_files(root) };
        pr_info!("rsrelay_test: ready\n");
        Ok(RsRelayTest)
    }
}

impl Drop for RsRelayTest {
    fn drop(&mut self) {
        if STRESS.load(Ordering::Acquire) {
            // SAFETY: waits for and stops the stress writers.
            unsafe { sys::rt_stress_wait() };
            STRESS.store(false, Ordering::Release);
        }
        close_pair();
        let root = ROOT.swap(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: our directory (recursive removal of the control files).
        unsafe { sys::debugfs_remove(root) };
        pr_info!("rsrelay_test: unloaded\n");
    }
}
