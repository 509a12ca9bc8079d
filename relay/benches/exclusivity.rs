//! The cost of the candidate writer-exclusivity schemes of the user-space backend, side by side
//! (docs/ARCHITECTURE.md, "User-space writer exclusivity"). Each iteration is one 64-byte write
//! into a private buffer under the scheme:
//!
//! * `none` — the bare write (lower bound);
//! * `cas_lock` — the chosen scheme: compare-and-swap lock word + release store (uncontended);
//! * `cas_lock_tls` — the same plus the thread-local bookkeeping `relay::user::wlock` does;
//! * `sigmask` — blocking all signals around the write (`pthread_sigmask` twice), the direct
//!   analogue of the kernel's `local_irq_save`;
//! * `cas_lock_2threads` — two threads on two buffers, each with its own lock (the per-CPU case);
//! * `cas_lock_shared_2threads` — two threads contending for one lock (a global buffer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[repr(align(64))]
struct Line(AtomicUsize);

fn write64(buf: &mut [u8], pos: &mut usize, msg: &[u8; 64]) {
    buf[*pos..*pos + 64].copy_from_slice(msg);
    *pos = (*pos + 64) & (buf.len() - 1);
}

fn lock(l: &AtomicUsize) {
    while l
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

fn two_threads(iters: u64, shared: bool) -> Duration {
    let locks = [Line(AtomicUsize::new(0)), Line(AtomicUsize::new(0))];
    let barrier = std::sync::Barrier::new(2);
    let start = std::sync::Mutex::new(None::<Instant>);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (locks, barrier, start) = (&locks, &barrier, &start);
            s.spawn(move || {
                let l = &locks[if shared { 0 } else { t }].0;
                let mut buf = vec![0u8; 1 << 16];
                let mut pos = 0;
                let msg = [t as u8; 64];
                barrier.wait();
                start.lock().unwrap().get_or_insert_with(Instant::now);
                for _ in 0..iters / 2 {
                    lock(l);
                    write64(&mut buf, &mut pos, &msg);
                    l.store(0, Ordering::Release);
                }
                std::hint::black_box(&buf);
            });
        }
    });
    start.into_inner().unwrap().unwrap().elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("exclusivity_64B");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    g.sample_size(20);
    let msg = [7u8; 64];
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = 0;
    g.bench_function("none", |b| b.iter(|| write64(&mut buf, &mut pos, &msg)));
    let l = Line(AtomicUsize::new(0));
    g.bench_function("cas_lock", |b| {
        b.iter(|| {
            lock(&l.0);
            write64(&mut buf, &mut pos, &msg);
            l.0.store(0, Ordering::Release);
        })
    });
    g.bench_function("cas_lock_tls", |b| {
        b.iter(|| {
            if let relay::user::wlock::Acquired::Held(guard) = relay::user::wlock::acquire(&l.0) {
                write64(&mut buf, &mut pos, &msg);
                drop(guard);
            }
        })
    });
    g.bench_function("sigmask", |b| {
        // SAFETY: an all-zero sigset_t is a valid (empty) set; it is filled in below.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above (pthread_sigmask overwrites it).
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigfillset gets a valid pointer to a local sigset_t.
        unsafe { libc::sigfillset(&mut all) };
        b.iter(|| {
            // SAFETY: as above; the old mask is restored right after the write.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old) };
            write64(&mut buf, &mut pos, &msg);
            // SAFETY: restores the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        })
    });
    g.bench_function("cas_lock_2threads", |b| {
        b.iter_custom(|n| two_threads(n, false))
    });
    g.bench_function("cas_lock_shared_2threads", |b| {
        b.iter_custom(|n| two_threads(n, true))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
