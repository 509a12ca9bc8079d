//! A writer waiting for a buffer whose holder cannot run (a process stopped with SIGSTOP in the
//! middle of a write) sleeps instead of burning a CPU, and gets the buffer once the holder
//! resumes.
//!
//! The holder is a forked child writing into the inherited channel (writes from a child are
//! serialised with the parent's by the lock words in shared memory): it stops itself while it
//! holds the global buffer's writer lock. A parent thread then writes to the same buffer and
//! measures its own CPU time (`getrusage(RUSAGE_THREAD)`) over the ~1 s it waits. On a busy
//! machine a thread that only spins and yields gets little CPU too, but it is runnable all the
//! time, competing for a CPU: so the test also measures how long the waiter was runnable (on a
//! CPU or queued for one, from `/proc/thread-self/schedstat`), which does not depend on load.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use relay::user::{Channel, Global};
use relay::NoOverwrite;

/// Time the calling thread spent on a CPU and waiting on a run queue (schedstat), if known.
fn thread_runnable() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut f = s.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(Duration::from_nanos(f.next()??.checked_add(f.next()??)?))
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn a_writer_waiting_for_a_stopped_holder_sleeps() {
    let chan = Channel::open(None, None, 4096, 4, Global(NoOverwrite)).unwrap();
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    let r = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    // SAFETY: both descriptors were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // The child only writes into shared memory and uses async-signal-safe calls (write,
    // raise, _exit).
    // SAFETY: so it is sound after fork, and it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        chan.write_with(8, |slot| {
            slot.copy_from_slice(b"childmsg");
            // SAFETY: plain system calls on a valid descriptor and our own process.
            unsafe {
                libc::write(wr.as_raw_fd(), b"h".as_ptr().cast(), 1);
                libc::raise(libc::SIGSTOP);
            }
        });
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    let mut b = [0u8; 1];
    // SAFETY: reads one byte into `b`.
    let r = unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    assert_eq!(r, 1, "the child holds the lock");
    let mut status = 0;
    // SAFETY: waits for our own child to stop.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    assert!(r == pid && libc::WIFSTOPPED(status), "the child stopped");

    let (cpu, runnable, waited) = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let (c0, r0, t0) = (thread_cpu(), thread_runnable(), Instant::now());
            assert!(chan.write(b"parent"));
            let runnable = thread_runnable().zip(r0).map(|(r, r0)| r - r0);
            (thread_cpu() - c0, runnable, t0.elapsed())
        });
        std::thread::sleep(Duration::from_secs(1));
        let still_waiting = !waiter.is_finished();
        // SAFETY: resumes our own child.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        assert!(still_waiting, "the holder is stopped: the writer must wait");
        waiter.join().unwrap()
    });
    // SAFETY: reaps our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    eprintln!(
        "waiting writer: {:.1} ms of CPU, runnable {:.1?} ms, over {:.3} s of waiting",
        cpu.as_secs_f64() * 1e3,
        runnable.map(|r| r.as_secs_f64() * 1e3),
        waited.as_secs_f64()
    );
    assert!(waited >= Duration::from_millis(900));
    assert!(
        cpu < Duration::from_millis(100),
        "the waiting writer burned {cpu:?} of CPU in {waited:?}"
    );
    if let Some(r) = runnable {
        assert!(
            r < waited / 2,
            "the waiting writer was runnable for {r:?} of {waited:?}"
        );
    }
    // Both messages made it, the child's first.
    chan.flush();
    let mut f = chan.open_file(0).unwrap();
    let mut out = vec![0u8; 64];
    let n = f.read(&mut out).unwrap();
    assert_eq!(&out[..n], b"childmsgparent");
}
