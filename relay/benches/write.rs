//! Write throughput of a relay channel, side by side with two baselines, in one run.
//!
//! ```text
//! cargo bench -p relay --bench write
//! ```
//!
//! For every message size (16 B, 64 B, 1 KiB, 64 KiB) and 1 or 2 writer threads:
//!
//! * `relay_write` — [`Channel::write`] on an anonymous channel (`Channel::open(None, None, ..)`,
//!   memfd-backed shared memory) of 256 KiB × 8 sub-buffers per CPU in overwrite mode
//!   ([`relay::Overwrite`]): writes never stop and nothing reads, so this is the pure writer cost
//!   (CPU lookup, lock, place, copy, commit, and a sub-buffer switch every 256 KiB).
//!   For 64 B also `relay__write` ([`Channel::__write`]: no re-entry tracking, no nested queue)
//!   and `relay_write_with` ([`Channel::write_with`], the message encoded in place by copying
//!   the same 64 bytes into the slot).
//! * `memcpy` — `copy_nonoverlapping` of the message into a private, page-aligned 2 MiB ring
//!   (the size of one relay per-CPU buffer) at advancing offsets, wrapping to 0 when the next
//!   message would not fit: the memory-bandwidth / call-overhead floor.
//! * `rtrb` — an `rtrb::RingBuffer<u8>` of 2 MiB used as a byte stream:
//!   `push_entire_slice` (= `write_chunk_uninit` + copy into the one or two slices +
//!   `commit_all`). Its consumer lives in the *same* thread and, whenever the ring is too full
//!   for the next message, releases everything in one `read_chunk(..).commit_all()` without
//!   copying the bytes out. That matches relay in overwrite mode (nobody copies data out) and
//!   keeps one core per writer; a consumer thread per ring would need 4 busy threads for the
//!   2-writer case on a 2-core machine.
//!
//! With 2 threads, both write concurrently: to the same relay channel (each lands on its
//! CPU's buffer), to one memcpy ring each, to one rtrb ring each. Threads are not pinned.
//! One criterion iteration is one message per thread (`Throughput::Bytes(threads × size)`), so
//! criterion's rates are totals over all threads; the time is the wall clock from the common
//! start (a barrier) to the last thread's end.
//!
//! After criterion's report, a summary table gives for every benchmark the median wall-clock
//! rate (messages/s and bytes/s, all threads), the 2-thread / 1-thread scaling, the cores the
//! writers actually got (their CPU time / wall time) and the per-core rate (messages per
//! CPU-second), which other processes competing for the CPUs do not distort.

mod common;

use std::hint::black_box;
use std::ptr;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use relay::user::Channel;
use relay::Overwrite;

use common::{median, thread_cpu_time};

const SUBBUF_SIZE: usize = 256 * 1024;
const N_SUBBUFS: usize = 8;
/// Bytes of one relay per-CPU buffer; also the size of every baseline ring.
const RING: usize = SUBBUF_SIZE * N_SUBBUFS;
const SIZES: [usize; 4] = [16, 64, 1024, 64 * 1024];
const THREADS: [usize; 2] = [1, 2];

/// Runs `work(thread, iters)` on `threads` threads released together by a barrier. Returns the
/// wall time from the first start to the last finish (thread start-up is not timed) and the CPU
/// time the threads got meanwhile (≈ `threads × wall` when every thread had a core to itself).
fn run<W: Fn(usize, u64) + Sync>(threads: usize, iters: u64, work: &W) -> (Duration, Duration) {
    let timed = |i: usize| {
        let (t0, c0) = (Instant::now(), thread_cpu_time());
        work(i, iters);
        (t0, Instant::now(), thread_cpu_time() - c0)
    };
    if threads == 1 {
        let (t0, t1, cpu) = timed(0);
        return (t1 - t0, cpu);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, timed) = (&barrier, &timed);
                s.spawn(move || {
                    barrier.wait();
                    timed(i)
                })
            })
            .collect();
        let spans: Vec<(Instant, Instant, Duration)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let start = spans.iter().map(|s| s.0).min().unwrap();
        let end = spans.iter().map(|s| s.1).max().unwrap();
        (end - start, spans.iter().map(|s| s.2).sum())
    })
}

/// A private ring that messages are `memcpy`d into.
struct CopyRing {
    mem: Vec<u8>,
    /// Start of the ring in `mem`: page aligned, like a relay buffer's data region (a 2 MiB
    /// `Vec` starts 16 bytes into a page, which would make every copy straddle cache lines).
    base: usize,
    off: usize,
}

impl CopyRing {
    fn new() -> Self {
        // Touch every page now so that page faults are not measured.
        let mem = vec![0x5a; RING + 4096];
        let base = mem.as_ptr().align_offset(4096);
        CopyRing { mem, base, off: 0 }
    }

    #[inline]
    fn write(&mut self, data: &[u8]) {
        if self.off + data.len() > RING {
            self.off = 0;
        }
        // SAFETY: `base + off + len <= base + RING <= mem.len()` (checked above; every message
        // is smaller than the ring), and `data` cannot overlap the ring, which this value owns.
        unsafe {
            ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.mem.as_mut_ptr().add(self.base + self.off),
                data.len(),
            )
        };
        self.off += data.len();
    }
}

/// An rtrb byte ring with its consumer kept in the same thread.
struct Spsc {
    tx: rtrb::Producer<u8>,
    rx: rtrb::Consumer<u8>,
}

impl Spsc {
    fn new() -> Self {
        let (mut tx, mut rx) = rtrb::RingBuffer::new(RING);
        // Touch every page once (fill, then drain) so that page faults are not measured.
        let chunk = vec![0x5a; 4096];
        while tx.push_entire_slice(&chunk).is_ok() {}
        let n = rx.slots();
        rx.read_chunk(n).unwrap().commit_all();
        Spsc { tx, rx }
    }

    #[inline]
    fn write(&mut self, data: &[u8]) {
        while self.tx.push_entire_slice(data).is_err() {
            self.drain();
        }
    }

    #[cold]
    #[inline(never)]
    fn drain(&mut self) {
        let n = self.rx.slots();
        self.rx.read_chunk(n).unwrap().commit_all();
    }
}

/// Per-iteration wall times of every benchmark, for the summary printed at the end.
struct Record {
    size: usize,
    threads: usize,
    name: &'static str,
    /// `(iters, wall, cpu)` of every `iter_custom` call (warm-up first, then the samples).
    calls: Vec<(u64, Duration, Duration)>,
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());
const SAMPLE_SIZE: usize = 20;

/// Benchmarks `work` as `name` with `threads` threads; returns nothing, records the timings.
fn bench<W: Fn(usize, u64) + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &'static str,
    size: usize,
    threads: usize,
    work: W,
) {
    let idx = {
        let mut r = RECORDS.lock().unwrap();
        r.push(Record {
            size,
            threads,
            name,
            calls: Vec::new(),
        });
        r.len() - 1
    };
    g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
        b.iter_custom(|iters| {
            let (wall, cpu) = run(threads, iters, &work);
            RECORDS.lock().unwrap()[idx].calls.push((iters, wall, cpu));
            wall
        })
    });
}

fn size_label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn bench_write(c: &mut Criterion) {
    let channel = Channel::open(None, None, SUBBUF_SIZE, N_SUBBUFS, Overwrite).expect("relay_open");
    let chan = &channel;
    let max_threads = THREADS.iter().copied().max().unwrap();
    let copy_rings: Vec<Mutex<CopyRing>> = (0..max_threads)
        .map(|_| Mutex::new(CopyRing::new()))
        .collect();
    let spsc_rings: Vec<Mutex<Spsc>> = (0..max_threads).map(|_| Mutex::new(Spsc::new())).collect();
    let (copy_rings, spsc_rings) = (&copy_rings, &spsc_rings);

    for &size in &SIZES {
        let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let msg = &msg[..];
        let mut g = c.benchmark_group(format!("write_{}", size_label(size)));
        for &threads in &THREADS {
            g.throughput(Throughput::Bytes((threads * size) as u64));
            bench(&mut g, "relay_write", size, threads, |_, n| {
                let mut ok = 0u64;
                for _ in 0..n {
                    ok += chan.write(black_box(msg)) as u64;
                }
                assert_eq!(ok, n, "relay dropped messages");
            });
            if size == 64 {
                bench(&mut g, "relay__write", size, threads, |_, n| {
                    let mut ok = 0u64;
                    for _ in 0..n {
                        ok += chan.__write(black_box(msg)) as u64;
                    }
                    assert_eq!(ok, n, "relay dropped messages");
                });
                bench(&mut g, "relay_write_with", size, threads, |_, n| {
                    let mut ok = 0u64;
                    for _ in 0..n {
                        let m = black_box(msg);
                        ok += chan.write_with(m.len(), |slot| slot.copy_from_slice(m)) as u64;
                    }
                    assert_eq!(ok, n, "relay dropped messages");
                });
            }
            bench(&mut g, "memcpy", size, threads, |t, n| {
                let mut ring = copy_rings[t].lock().unwrap();
                for _ in 0..n {
                    ring.write(black_box(msg));
                }
                black_box(ring.mem.as_ptr());
            });
            bench(&mut g, "rtrb", size, threads, |t, n| {
                let mut ring = spsc_rings[t].lock().unwrap();
                for _ in 0..n {
                    ring.write(black_box(msg));
                }
            });
        }
        g.finish();
    }

    let report = channel.close();
    for st in &report.stats {
        assert_eq!(st.dropped_msgs, 0, "relay dropped messages: {st:?}");
    }
}

/// Medians over the measurement samples of one benchmark.
#[derive(Clone, Copy)]
struct Medians {
    /// Wall time per iteration (one message per thread), ns.
    wall_ns: f64,
    /// CPU time the writer threads got / wall time (≈ threads when each had a core).
    cores: f64,
    /// Messages per CPU-second of the writer threads, in M/s: the per-core rate, which other
    /// processes taking CPU time from the writers do not distort.
    per_core: f64,
}

/// Medians over the measurement samples (the last `SAMPLE_SIZE` calls); `None` if the
/// benchmark did not run a full measurement (filtered out, `--profile-time`, `--test`).
fn medians(r: &Record) -> Option<Medians> {
    if r.calls.len() < SAMPLE_SIZE {
        return None;
    }
    let samples = &r.calls[r.calls.len() - SAMPLE_SIZE..];
    let each = |f: &dyn Fn(u64, f64, f64) -> f64| {
        median(
            samples
                .iter()
                .map(|&(iters, wall, cpu)| f(iters, wall.as_secs_f64(), cpu.as_secs_f64()))
                .collect(),
        )
    };
    let threads = r.threads as f64;
    Some(Medians {
        wall_ns: each(&|iters, wall, _| wall * 1e9 / iters as f64),
        cores: each(&|_, wall, cpu| cpu / wall),
        per_core: each(&|iters, _, cpu| iters as f64 * threads / cpu / 1e6),
    })
}

/// Prints every benchmark's medians: wall-clock totals over all writer threads (messages/s,
/// bytes/s, 2-thread / 1-thread scaling), the cores the threads got, and the per-core rate with
/// relay and rtrb as a share of memcpy.
fn print_summary() {
    let records = RECORDS.lock().unwrap();
    let find = |size: usize, threads: usize, name: &str| {
        records
            .iter()
            .find(|r| r.size == size && r.threads == threads && r.name == name)
            .and_then(medians)
    };
    println!();
    println!("Summary (medians of {SAMPLE_SIZE} samples)");
    println!(
        "  wall: totals over all writer threads, wall clock; 2t/1t = 2-thread total / 1-thread"
    );
    println!(
        "  cores: CPU time the writer threads got / wall time (2.00 = two cores to themselves)"
    );
    println!("  per core: messages per CPU-second of the writers; %memcpy compares per-core rates");
    println!(
        "{:>6} {:>3} {:<17} | {:>9} {:>9} {:>7} {:>6} | {:>5} | {:>9} {:>7} {:>7}",
        "size",
        "thr",
        "impl",
        "ns/iter",
        "M msg/s",
        "GB/s",
        "2t/1t",
        "cores",
        "M msg/s",
        "GB/s",
        "%memcpy"
    );
    for r in records.iter() {
        let Some(m) = medians(r) else {
            continue;
        };
        let total = r.threads as f64 * 1e3 / m.wall_ns;
        let scaling = match (r.threads, find(r.size, 1, r.name)) {
            (2, Some(one)) => format!("{:.2}x", total * one.wall_ns / 1e3),
            _ => String::new(),
        };
        let vs_memcpy = find(r.size, r.threads, "memcpy")
            .map(|c| format!("{:.0}%", 100.0 * m.per_core / c.per_core))
            .unwrap_or_default();
        let gb = |mps: f64| mps * r.size as f64 / 1e3;
        // Three significant digits for the 64 KiB rates (< 1 M msg/s).
        let rate = |mps: f64| match mps < 10.0 {
            true => format!("{mps:.3}"),
            false => format!("{mps:.1}"),
        };
        println!(
            "{:>6} {:>3} {:<17} | {:>9.2} {:>9} {:>7.2} {:>6} | {:>5.2} | {:>9} {:>7.2} {:>7}",
            size_label(r.size),
            r.threads,
            r.name,
            m.wall_ns,
            rate(total),
            gb(total),
            scaling,
            m.cores,
            rate(m.per_core),
            gb(m.per_core),
            vs_memcpy
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .noise_threshold(0.05)
        .configure_from_args();
    bench_write(&mut c);
    c.final_summary();
    if !std::env::args().any(|a| a.starts_with("--profile-time")) {
        print_summary();
    }
}
