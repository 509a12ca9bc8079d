//! Concurrency stress: several writer threads (more than CPUs, so they migrate) with concurrent
//! readers, in no-overwrite and overwrite mode, per-CPU and global, and writes from signal
//! handlers that interrupt writes.
//!
//! The signal tests run in a child process (this binary re-executed with a filter for a
//! `child_*` test), so that their handler and any hang stay out of this process.
//!
//! `RELAY_TEST_SCALE` multiplies the message counts.

mod support;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use relay::user::{Channel, ChannelCallbacks, RelayFile};
use relay::{NoOverwrite, Overwrite};
use support::*;

const THREADS: usize = 4;

/// Reads one buffer with poll + read until `done` is set (after the writers finished), then
/// drains it. Every message must be whole and each writer's messages in order; returns the
/// parser (messages in stream order, lap cuts).
fn reader(mut f: RelayFile, idx: usize, done: &AtomicBool, overwrite: bool) -> StreamParser {
    let mut parser = StreamParser::new();
    // Larger than a sub-buffer, so that a read rarely stops inside a message.
    let mut chunk = vec![0u8; 64 * 1024];
    let lapped = |f: &RelayFile| f.stats().unwrap().lapped_subbufs;
    loop {
        let finished = done.load(Ordering::Acquire);
        let _ = f.poll(Some(Duration::from_millis(20))).unwrap();
        loop {
            let before = lapped(&f);
            let n = f.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            let cut = lapped(&f) != before;
            assert!(
                overwrite || !cut,
                "buffer {idx}: lapped in no-overwrite mode"
            );
            parser
                .feed(&chunk[..n], cut)
                .unwrap_or_else(|e| panic!("buffer {idx}: torn stream: {e}"));
        }
        if finished {
            break;
        }
    }
    parser
        .finish()
        .unwrap_or_else(|e| panic!("buffer {idx}: {e}"));
    check_order(idx, &parser.msgs).unwrap();
    parser
}

/// What one stress run observed.
struct Outcome {
    ledger: Ledger,
    delivered: Vec<Vec<(u32, u64)>>,
    lap_cuts: usize,
    dropped: usize,
    dropped_bytes: usize,
    lapped: usize,
}

/// `THREADS` writers × `n` messages into `chan` with one reader thread per buffer, and with
/// `flush_every`, a thread calling `flush` (relay_flush from a timer) while they write.
fn run<C: ChannelCallbacks>(
    chan: &Channel<C>,
    n: usize,
    overwrite: bool,
    flush_every: Option<Duration>,
) -> Outcome {
    let done = AtomicBool::new(false);
    let writing = AtomicBool::new(true);
    let start = Barrier::new(THREADS);
    let (accepted, parsers) = std::thread::scope(|s| {
        if let Some(period) = flush_every {
            let writing = &writing;
            s.spawn(move || {
                while writing.load(Ordering::Acquire) {
                    chan.flush();
                    std::thread::sleep(period);
                }
            });
        }
        let readers: Vec<_> = (0..chan.n_bufs())
            .map(|i| {
                let f = chan.open_file(i).unwrap();
                let done = &done;
                s.spawn(move || reader(f, i, done, overwrite))
            })
            .collect();
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    let mut buf = [0u8; MAX_LEN];
                    let mut acc = Vec::with_capacity(n);
                    start.wait();
                    for seq in 0..n as u64 {
                        let len = encode_into(t as u32, seq, &mut buf);
                        acc.push(chan.write(&buf[..len]));
                        if seq % 256 == 255 {
                            // Encourage the scheduler to move threads around.
                            std::thread::yield_now();
                        }
                    }
                    acc
                })
            })
            .collect();
        let accepted: Vec<Vec<bool>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        writing.store(false, Ordering::Release);
        done.store(true, Ordering::Release);
        let parsers: Vec<StreamParser> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        (accepted, parsers)
    });
    let stats = chan.stats();
    Outcome {
        ledger: Ledger { accepted },
        lap_cuts: parsers.iter().map(|p| p.lap_cuts).sum(),
        delivered: parsers.into_iter().map(|p| p.msgs).collect(),
        dropped: stats.iter().map(|s| s.dropped_msgs).sum(),
        dropped_bytes: stats.iter().map(|s| s.dropped_bytes).sum(),
        lapped: stats.iter().map(|s| s.lapped_subbufs).sum(),
    }
}

fn check_no_overwrite(name: &str, o: &Outcome) {
    let n_delivered = o
        .ledger
        .check_delivery(o.delivered.iter().flatten())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        n_delivered + o.dropped,
        o.ledger.written(),
        "{name}: delivered + dropped != written"
    );
    assert_eq!((o.dropped, o.dropped_bytes), o.ledger.rejected(), "{name}");
    assert_eq!(o.lapped, 0, "{name}: laps in no-overwrite mode");
    assert!(n_delivered > 0, "{name}: nothing delivered");
    eprintln!(
        "{name}: written {} delivered {n_delivered} dropped {} per buffer {:?}",
        o.ledger.written(),
        o.dropped,
        o.delivered.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

/// No-overwrite, per-CPU buffers: every accepted message is delivered exactly once and whole,
/// every refused one is counted in `dropped_msgs`/`dropped_bytes`, and each writer's messages
/// keep their order within each buffer.
#[test]
fn no_overwrite_per_cpu_threads_with_readers() {
    let chan = Channel::open(None, None, 4096, 8, NoOverwrite).unwrap();
    let o = run(&chan, scaled(40_000), false, None);
    check_no_overwrite("no_overwrite_per_cpu", &o);
}

/// As above with another thread calling `flush` every millisecond: flushed (partly filled,
/// even empty) sub-buffers lose nothing and tear nothing.
#[test]
fn no_overwrite_per_cpu_threads_with_readers_and_flusher() {
    let chan = Channel::open(None, None, 4096, 8, NoOverwrite).unwrap();
    let o = run(&chan, scaled(30_000), false, Some(Duration::from_millis(1)));
    check_no_overwrite("no_overwrite_per_cpu_flush", &o);
}

/// No-overwrite, one global buffer shared by all threads: as above, and each writer's messages
/// keep their order in the single stream.
#[test]
fn no_overwrite_global_threads_with_reader() {
    let chan = Channel::open(None, None, 4096, 8, Global(NoOverwrite)).unwrap();
    assert!(chan.is_global());
    let o = run(&chan, scaled(40_000), false, None);
    assert_eq!(o.delivered.len(), 1);
    check_no_overwrite("no_overwrite_global", &o);
}

fn check_overwrite(name: &str, o: &Outcome) {
    // Writers never block and never drop in overwrite mode.
    assert!(
        o.ledger.accepted.iter().flatten().all(|&a| a),
        "{name}: a write returned false in overwrite mode"
    );
    assert_eq!((o.dropped, o.dropped_bytes), (0, 0), "{name}");
    // Every delivered message was whole (the parser checks each byte), written, and delivered
    // at most once.
    let mut seen: Vec<Vec<bool>> = o
        .ledger
        .accepted
        .iter()
        .map(|v| vec![false; v.len()])
        .collect();
    for &(tid, seq) in o.delivered.iter().flatten() {
        let slot = &mut seen[tid as usize][seq as usize];
        assert!(!*slot, "{name}: tid {tid} seq {seq} delivered twice");
        *slot = true;
    }
    // A lap cut needs a lap.
    assert!(o.lap_cuts <= o.lapped, "{name}");
    let n: usize = o.delivered.iter().map(Vec::len).sum();
    assert!(n > 0, "{name}: nothing delivered");
    eprintln!(
        "{name}: written {} delivered {n} lapped sub-buffers {} lap cuts {}",
        o.ledger.written(),
        o.lapped,
        o.lap_cuts
    );
}

/// Overwrite mode, per-CPU buffers, small buffers so that readers get lapped: writers never
/// fail, and readers never return a torn message.
#[test]
fn overwrite_per_cpu_threads_with_readers() {
    let chan = Channel::open(None, None, 1024, 4, Overwrite).unwrap();
    let o = run(&chan, scaled(40_000), true, None);
    check_overwrite("overwrite_per_cpu", &o);
}

/// Overwrite mode, one global buffer.
#[test]
fn overwrite_global_threads_with_reader() {
    let chan = Channel::open(None, None, 1024, 4, Global(Overwrite)).unwrap();
    let o = run(&chan, scaled(40_000), true, None);
    check_overwrite("overwrite_global", &o);
}

/// Overwrite mode with a concurrent `flush` thread: still no torn message.
#[test]
fn overwrite_per_cpu_threads_with_readers_and_flusher() {
    let chan = Channel::open(None, None, 1024, 4, Overwrite).unwrap();
    let o = run(&chan, scaled(30_000), true, Some(Duration::from_millis(1)));
    check_overwrite("overwrite_per_cpu_flush", &o);
}

/// Overwrite mode with no reader at all ("flight recorder"): writes never fail, and a reader
/// that comes later gets exactly the newest messages: a contiguous tail ending with the last
/// one, at least `n_subbufs - 1` sub-buffers' worth, the older sub-buffers counted as lapped.
#[test]
fn overwrite_without_reader_keeps_tail() {
    let (size, n) = (1024, 4);
    let chan = Channel::open(None, None, size, n, Global(Overwrite)).unwrap();
    let total = scaled(20_000) as u64;
    for seq in 0..total {
        assert!(chan.write(&encode(0, seq)));
    }
    let mut f = chan.open_file(0).unwrap();
    let mut all = Vec::new();
    let mut chunk = vec![0u8; 3 * size];
    loop {
        let k = f.read(&mut chunk).unwrap();
        if k == 0 {
            break;
        }
        all.extend_from_slice(&chunk[..k]);
    }
    let msgs = parse_all(&all).unwrap();
    let first = msgs.first().expect("something retained").1;
    let want: Vec<(u32, u64)> = (first..total).map(|s| (0, s)).collect();
    assert_eq!(
        msgs, want,
        "retained messages must be the contiguous newest tail"
    );
    // n - 1 complete sub-buffers, each with less than one message of padding, + the current.
    assert!(
        all.len() >= (n - 1) * (size - (MAX_LEN - 1)),
        "{}",
        all.len()
    );
    assert!(all.len() <= n * size);
    let st = f.stats().unwrap();
    assert_eq!(st.dropped_msgs, 0);
    assert_eq!(st.lapped_subbufs, st.subbufs_produced - (n - 1));
}

// ---------------------------------------------------------------------------------------------
// Signal handlers
// ---------------------------------------------------------------------------------------------

/// How the handler writes: `Channel::write` of a leaked channel.
type WriteFn = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// What the handler writes through and records, per writer thread.
struct SigCtx {
    write: WriteFn,
    /// Per writer thread: next handler sequence number and which ones were accepted.
    next: Vec<AtomicU64>,
    accepted: Vec<Vec<AtomicBool>>,
}

static SIG: OnceLock<SigCtx> = OnceLock::new();
/// Sequence numbers per thread the handler may use.
const SIG_CAP: usize = 200_000;

thread_local! {
    /// Index of the writer thread, `usize::MAX` in other threads.
    static SIG_IDX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The handler: writes one message (tid `THREADS + idx`) through the channel. Allocation-free;
/// saves errno.
extern "C" fn on_signal(_: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno; reading and restoring it is safe.
    let errno = unsafe { *libc::__errno_location() };
    let idx = SIG_IDX.with(Cell::get);
    if let (Some(ctx), true) = (SIG.get(), idx != usize::MAX) {
        let seq = ctx.next[idx].load(Ordering::Relaxed);
        if (seq as usize) < SIG_CAP {
            // The handler does not nest with itself (SIGUSR1 is blocked while it runs).
            ctx.next[idx].store(seq + 1, Ordering::Relaxed);
            let mut buf = [0u8; MAX_LEN];
            let len = encode_into((THREADS + idx) as u32, seq, &mut buf);
            if (ctx.write)(&buf[..len]) {
                ctx.accepted[idx][seq as usize].store(true, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn install_handler() {
    // SAFETY: a zeroed sigaction is a valid starting value; the handler is an extern "C" fn
    // taking the signal number, as sa_handler requires.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

/// Child body of the signal tests: `THREADS` writers write `n` messages each while another
/// thread sends them SIGUSR1 in a loop; the handler writes too. Checks, like the other stress
/// tests, every message of both kinds.
fn signal_stress<C: ChannelCallbacks>(chan: &'static Channel<C>, n: usize, overwrite: bool) {
    let ctx = SigCtx {
        write: Box::new(move |m| chan.write(m)),
        next: (0..THREADS).map(|_| AtomicU64::new(0)).collect(),
        accepted: (0..THREADS)
            .map(|_| (0..SIG_CAP).map(|_| AtomicBool::new(false)).collect())
            .collect(),
    };
    assert!(SIG.set(ctx).is_ok());
    let ctx = SIG.get().unwrap();
    install_handler();

    let done = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let signals_stopped = AtomicBool::new(false);
    // Writers start only after the first round of signals, so that signals always overlap
    // writes (on a loaded machine the writers could otherwise finish before the signaller ran).
    let go = AtomicBool::new(false);
    let pthreads: Vec<AtomicU64> = (0..THREADS).map(|_| AtomicU64::new(0)).collect();
    let registered = Barrier::new(THREADS + 1);
    let mut sent = 0u64;
    let (accepted, parsers) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..chan.n_bufs())
            .map(|i| {
                let f = chan.open_file(i).unwrap();
                let done = &done;
                s.spawn(move || reader(f, i, done, overwrite))
            })
            .collect();
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pthreads, registered, finished, stopped, go) =
                    (&pthreads, &registered, &finished, &signals_stopped, &go);
                s.spawn(move || {
                    SIG_IDX.with(|c| c.set(t));
                    // SAFETY: pthread_self has no preconditions.
                    pthreads[t].store(unsafe { libc::pthread_self() } as u64, Ordering::Relaxed);
                    registered.wait();
                    while !go.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    let mut buf = [0u8; MAX_LEN];
                    let mut acc = Vec::with_capacity(n);
                    for seq in 0..n as u64 {
                        let len = encode_into(t as u32, seq, &mut buf);
                        acc.push(chan.write(&buf[..len]));
                    }
                    finished.fetch_add(1, Ordering::AcqRel);
                    // Stay alive (a valid pthread_kill target) until the signaller stops.
                    while !stopped.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    acc
                })
            })
            .collect();
        registered.wait();
        // The signaller: this thread.
        let targets: Vec<libc::pthread_t> = pthreads
            .iter()
            .map(|p| p.load(Ordering::Relaxed) as libc::pthread_t)
            .collect();
        loop {
            for &t in &targets {
                // SAFETY: every target thread is alive until `signals_stopped` is set below.
                assert_eq!(unsafe { libc::pthread_kill(t, libc::SIGUSR1) }, 0);
                sent += 1;
            }
            go.store(true, Ordering::Release);
            if finished.load(Ordering::Acquire) >= THREADS {
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        signals_stopped.store(true, Ordering::Release);
        let mut accepted: Vec<Vec<bool>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        for t in 0..THREADS {
            let k = ctx.next[t].load(Ordering::Relaxed) as usize;
            accepted.push(
                ctx.accepted[t][..k]
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed))
                    .collect(),
            );
        }
        done.store(true, Ordering::Release);
        let parsers: Vec<StreamParser> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        (accepted, parsers)
    });
    let stats = chan.stats();
    let o = Outcome {
        ledger: Ledger { accepted },
        lap_cuts: parsers.iter().map(|p| p.lap_cuts).sum(),
        delivered: parsers.into_iter().map(|p| p.msgs).collect(),
        dropped: stats.iter().map(|s| s.dropped_msgs).sum(),
        dropped_bytes: stats.iter().map(|s| s.dropped_bytes).sum(),
        lapped: stats.iter().map(|s| s.lapped_subbufs).sum(),
    };
    check_signal_outcome(&o, overwrite, sent);
}

/// Checks a signal stress run. Main-context writes (tids `0..THREADS`) are never nested, so
/// their return value is exact. A handler write (tids `THREADS..`) that returned `false` must not
/// appear; one that returned `true` may still be lost only if it was counted as dropped (a nested
/// write can be queued for the interrupted writer, which may then find the buffer full): every
/// message written is delivered once or counted in `dropped_msgs`/`dropped_bytes`.
fn check_signal_outcome(o: &Outcome, overwrite: bool, sent: u64) {
    let acc = &o.ledger.accepted;
    let mut seen: Vec<Vec<bool>> = acc.iter().map(|v| vec![false; v.len()]).collect();
    for &(tid, seq) in o.delivered.iter().flatten() {
        let (t, s) = (tid as usize, seq as usize);
        assert!(
            t < acc.len() && s < acc[t].len(),
            "phantom message {tid}/{seq}"
        );
        assert!(
            acc[t][s],
            "tid {tid} seq {seq} delivered but its write returned false"
        );
        assert!(!seen[t][s], "tid {tid} seq {seq} delivered twice");
        seen[t][s] = true;
    }
    let (rejected, rejected_bytes) = o.ledger.rejected();
    let (mut late, mut late_bytes) = (0, 0);
    for t in 0..acc.len() {
        for s in 0..acc[t].len() {
            if acc[t][s] && !seen[t][s] {
                if t < THREADS {
                    assert!(
                        overwrite,
                        "main write tid {t} seq {s} accepted, never delivered"
                    );
                } else {
                    late += 1;
                    late_bytes += msg_len(t as u32, s as u64);
                }
            }
        }
    }
    let from_handler: usize = acc[THREADS..].iter().map(Vec::len).sum();
    let handler_true = acc[THREADS..].iter().flatten().filter(|&&a| a).count();
    let handler_delivered = seen[THREADS..].iter().flatten().filter(|&&d| d).count();
    assert!(from_handler > 0, "no handler ran ({sent} signals sent)");
    if overwrite {
        // Writers never fail in overwrite mode, in or out of a handler, except a nested write
        // that found no room at all (counted); what readers miss was overwritten, not dropped.
        assert!(acc[..THREADS].iter().flatten().all(|&a| a));
        assert_eq!((o.dropped, o.dropped_bytes), (rejected, rejected_bytes));
    } else {
        assert_eq!(
            (o.dropped, o.dropped_bytes),
            (rejected + late, rejected_bytes + late_bytes),
            "dropped counters vs. writes that returned false + accepted handler writes lost"
        );
        let delivered: usize = o.delivered.iter().map(Vec::len).sum();
        assert_eq!(delivered + o.dropped, o.ledger.written());
    }
    eprintln!(
        "{} signals; handler wrote {from_handler}: {handler_true} returned true, \
         {handler_delivered} delivered, {late} of those lost; main wrote {}; \
         dropped {} lapped {}",
        sent,
        o.ledger.written() - from_handler,
        o.dropped,
        o.lapped
    );
}

fn signal_test(name: &str, mode: &str) {
    let mut child = ChildProc::spawn(
        "child_signal_stress",
        &[
            ("mode", mode.to_string()),
            ("n", scaled(20_000).to_string()),
        ],
    );
    let summary = child.expect_line("RESULT", Duration::from_secs(120));
    child.wait_success(Duration::from_secs(30));
    eprintln!("{name}: {summary}");
}

/// Signal handlers write while the interrupted threads write (per-CPU, no-overwrite): handler
/// messages are whole, in order per (thread, buffer), and delivered + dropped = written.
#[test]
fn signal_handler_writes_per_cpu_no_overwrite() {
    signal_test("signal_handler_writes_per_cpu_no_overwrite", "percpu");
}

/// As above with one global buffer: a handler that interrupts a write finds the only buffer
/// held by its own thread and must neither wait (deadlock) nor write into it; whatever it does
/// with the message (queue it, drop it), every message is delivered once or counted.
#[test]
fn signal_handler_writes_global_no_overwrite() {
    signal_test("signal_handler_writes_global_no_overwrite", "global");
}

/// Signal handlers write in overwrite mode (per-CPU): no torn message, no failed main write.
#[test]
fn signal_handler_writes_per_cpu_overwrite() {
    signal_test("signal_handler_writes_per_cpu_overwrite", "overwrite");
}

/// Child body of the signal tests.
#[test]
fn child_signal_stress() {
    let Some(p) = child_params() else { return };
    let n: usize = p["n"].parse().unwrap();
    let t0 = Instant::now();
    match p["mode"].as_str() {
        "percpu" => {
            let chan = Box::leak(Box::new(
                Channel::open(None, None, 4096, 8, NoOverwrite).unwrap(),
            ));
            signal_stress(chan, n, false);
        }
        "global" => {
            let chan = Box::leak(Box::new(
                Channel::open(None, None, 4096, 8, Global(NoOverwrite)).unwrap(),
            ));
            signal_stress(chan, n, false);
        }
        "overwrite" => {
            let chan = Box::leak(Box::new(
                Channel::open(None, None, 1024, 4, Overwrite).unwrap(),
            ));
            signal_stress(chan, n, true);
        }
        m => panic!("unknown mode {m}"),
    }
    println!("RESULT ok in {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Nested write after a migration
// ---------------------------------------------------------------------------------------------

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity get valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pin to cpu {cpu}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid out-parameter.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Two threads each start a write on their CPU's buffer, are moved to the other CPU while they
/// hold it (as preemption + migration does mid-write), and a signal handler then writes on each.
/// Each handler finds its new CPU's buffer held by the *other* interrupted thread. `write` is
/// documented as safe in a handler that interrupted a write; here it must not wait for a writer
/// that cannot run (which would deadlock both threads): every message is delivered or counted
/// as dropped.
#[test]
fn signal_handler_write_after_migration_does_not_deadlock() {
    let cpus = allowed_cpus();
    let chan = Channel::open(None, None, 4096, 4, NoOverwrite).unwrap();
    if cpus.len() < 2 || chan.n_bufs() < 2 || cpus[0] % chan.n_bufs() == cpus[1] % chan.n_bufs() {
        eprintln!("needs two CPUs with distinct buffers; skipped (cpus {cpus:?})");
        return;
    }
    drop(chan);
    let mut child = ChildProc::spawn(
        "child_migrated_handler",
        &[("a", cpus[0].to_string()), ("b", cpus[1].to_string())],
    );
    match child.try_line("RESULT", Duration::from_secs(10)) {
        Some(summary) => {
            child.wait_success(Duration::from_secs(30));
            eprintln!("signal_handler_write_after_migration_does_not_deadlock: {summary}");
        }
        None => panic!(
            "deadlock (or child failure, see its output above): two signal handlers, each \
             interrupting a write on a thread that had migrated to the other's CPU, waited for \
             each other's buffer lock; child output: {:?}",
            child.output
        ),
    }
}

/// Child body of `signal_handler_write_after_migration_does_not_deadlock`.
#[test]
fn child_migrated_handler() {
    let Some(p) = child_params() else { return };
    let cpu = [p["a"].parse::<usize>().unwrap(), p["b"].parse().unwrap()];
    let chan: &'static Channel<NoOverwrite> = Box::leak(Box::new(
        Channel::open(None, None, 4096, 4, NoOverwrite).unwrap(),
    ));
    let ctx = SigCtx {
        write: Box::new(move |m| chan.write(m)),
        next: (0..2).map(|_| AtomicU64::new(0)).collect(),
        accepted: (0..2)
            .map(|_| (0..SIG_CAP).map(|_| AtomicBool::new(false)).collect())
            .collect(),
    };
    assert!(SIG.set(ctx).is_ok());
    install_handler();
    let both_hold = Barrier::new(2);
    let main_ok: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let both_hold = &both_hold;
                s.spawn(move || {
                    SIG_IDX.with(|c| c.set(t));
                    pin_to(cpu[t]);
                    let msg = encode(t as u32, 0);
                    chan.write_with(msg.len(), |slot| {
                        slot.copy_from_slice(&msg);
                        // Holding cpu[t]'s buffer: move to the other CPU, wait until the other
                        // thread holds its buffer too, then take a signal.
                        pin_to(cpu[1 - t]);
                        both_hold.wait();
                        // SAFETY: raise has no preconditions; the handler is installed.
                        unsafe { libc::raise(libc::SIGUSR1) };
                    })
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(main_ok, [true, true]);
    let ctx = SIG.get().unwrap();
    let handler_ok = (0..2)
        .filter(|&t| ctx.accepted[t][0].load(Ordering::Relaxed))
        .count();
    assert_eq!(ctx.next[0].load(Ordering::Relaxed), 1);
    assert_eq!(ctx.next[1].load(Ordering::Relaxed), 1);
    let mut delivered = Vec::new();
    for i in 0..chan.n_bufs() {
        let mut f = chan.open_file(i).unwrap();
        let mut b = vec![0u8; 4096 * 4];
        let k = f.read(&mut b).unwrap();
        delivered.extend(parse_all(&b[..k]).unwrap());
    }
    let dropped: usize = chan.stats().iter().map(|s| s.dropped_msgs).sum();
    assert_eq!(delivered.len(), 2 + handler_ok);
    assert_eq!(delivered.len() + dropped, 4);
    println!("RESULT handler accepted {handler_ok} dropped {dropped}");
}

// ---------------------------------------------------------------------------------------------
// A handler write nested inside a write of its own thread
// ---------------------------------------------------------------------------------------------

/// A signal taken while the thread is inside `write_with` (holding the buffer) writes from the
/// handler: the nested message returns `true` and lands right after the message it
/// interrupted. If the buffer has no room for it by then (no-overwrite, full), it is dropped
/// and counted in `dropped_msgs`/`dropped_bytes` although the handler's `write` said `true`.
#[test]
fn nested_handler_write_lands_after_interrupted_message() {
    let mut child = ChildProc::spawn("child_nested_handler_write", &[]);
    let summary = child.expect_line("RESULT", Duration::from_secs(30));
    child.wait_success(Duration::from_secs(30));
    eprintln!("nested_handler_write_lands_after_interrupted_message: {summary}");
}

/// Child body of `nested_handler_write_lands_after_interrupted_message`.
#[test]
fn child_nested_handler_write() {
    let Some(_) = child_params() else { return };
    let size = 1024;
    let chan: &'static Channel<Global<NoOverwrite>> = Box::leak(Box::new(
        Channel::open(None, None, size, 2, Global(NoOverwrite)).unwrap(),
    ));
    let ctx = SigCtx {
        write: Box::new(move |m| chan.write(m)),
        next: (0..1).map(|_| AtomicU64::new(0)).collect(),
        accepted: (0..1)
            .map(|_| (0..SIG_CAP).map(|_| AtomicBool::new(false)).collect())
            .collect(),
    };
    assert!(SIG.set(ctx).is_ok());
    let ctx = SIG.get().unwrap();
    install_handler();
    SIG_IDX.with(|c| c.set(0));
    let raise = || {
        // SAFETY: raise has no preconditions; the handler is installed.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
    };
    let (h0, h1) = (encode(THREADS as u32, 0), encode(THREADS as u32, 1));
    let mut f = chan.open_file(0).unwrap();
    let read = |f: &mut RelayFile| {
        let mut b = vec![0u8; 4 * size];
        let k = f.read(&mut b).unwrap();
        b.truncate(k);
        b
    };

    // The handler runs while the interrupted write holds the buffer.
    assert!(chan.write_with(50, |slot| {
        slot.fill(0xAA);
        raise();
    }));
    assert_eq!(
        ctx.next[0].load(Ordering::Relaxed),
        1,
        "handler did not run"
    );
    assert!(
        ctx.accepted[0][0].load(Ordering::Relaxed),
        "nested write returned false although the buffer has room"
    );
    let mut want = vec![0xAA; 50];
    want.extend_from_slice(&h0);
    assert_eq!(
        read(&mut f),
        want,
        "nested message must follow the interrupted one"
    );
    let st = chan.stats()[0];
    assert_eq!((st.dropped_msgs, st.dropped_bytes), (0, 0));

    // Now with no room left for the nested message: finish sub-buffer 0 exactly, fill
    // sub-buffer 1 up to 50 bytes before its end, and interrupt a 50-byte write there. The
    // nested message then needs a third sub-buffer, which the unread buffer does not have.
    let used = 50 + h0.len();
    assert!(chan.write(&vec![0xBB; size - used]));
    assert!(chan.write(&vec![0xCC; size - 50]));
    assert!(chan.write_with(50, |slot| {
        slot.fill(0xDD);
        raise();
    }));
    assert_eq!(
        ctx.next[0].load(Ordering::Relaxed),
        2,
        "handler did not run"
    );
    let st = chan.stats()[0];
    assert_eq!(
        (st.dropped_msgs, st.dropped_bytes),
        (1, h1.len()),
        "the nested message that did not fit must be counted as dropped"
    );
    let mut want = vec![0xBB; size - used];
    want.extend(vec![0xCC; size - 50]);
    want.extend([0xDD; 50]);
    assert_eq!(read(&mut f), want);
    let handler_said = ctx.accepted[0][1].load(Ordering::Relaxed);
    println!("RESULT ok (second nested write returned {handler_said})");
}
