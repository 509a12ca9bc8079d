//! Check 4, `poll`: a reader blocked in `poll(POLLIN)` on a Rust relay file is woken by a
//! completed sub-buffer, by `flush`, and (with POLLERR) by `close`; never before.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use super::{drain, expect_bytes, open_cpu, write, Failures};
use crate::model::Model;
use crate::proto::{Command, Ctl, Side};
use crate::seqs::Geom;
use crate::sys;
use crate::util::{diag, Ctx, Readiness};

const GEOM: Geom = Geom {
    s: 4096,
    n: 4,
    h: 0,
    overwrite: false,
};
const POLL_TIMEOUT_MS: i32 = 5000;
const MAX_WAKE: Duration = Duration::from_secs(4);

type PollResult = Result<(i16, Instant), String>;

/// A thread blocked in poll on one file.
struct Poller {
    done: Receiver<PollResult>,
}

impl Poller {
    /// Spawn; returns once the thread is about to call poll.
    fn start(path: PathBuf) -> Result<Poller, String> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (done_tx, done_rx) = mpsc::channel::<PollResult>();
        thread::Builder::new()
            .name("poller".into())
            .spawn(move || {
                let f = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("open {}: {e}", path.display())));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let r = sys::poll_one(&f, libc::POLLIN, POLL_TIMEOUT_MS)
                    .map(|rev| (rev, Instant::now()))
                    .map_err(|e| format!("poll: {e}"));
                let _ = done_tx.send(r);
            })
            .ctx("spawn poller")?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(Poller { done: done_rx }),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("poller did not start: {e}")),
        }
    }

    /// Must still be blocked.
    fn still_blocked(&self, when: &str) -> Result<(), String> {
        match self.done.try_recv() {
            Err(TryRecvError::Empty) => Ok(()),
            Ok(Ok((rev, _))) => Err(format!(
                "poll returned {} {when}",
                Readiness::from_revents(rev)
            )),
            Ok(Err(e)) => Err(format!("{e} ({when})")),
            Err(TryRecvError::Disconnected) => Err(format!("poller died {when}")),
        }
    }

    /// Wait for the result; `event` = when the waking command was sent.
    fn wait(self, event: Instant, want: Readiness, what: &str) -> Result<(), String> {
        let (rev, at) = match self.done.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => r.map_err(|e| format!("{what}: {e}"))?,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "{what}: poller still blocked 10 s later (timeout was {POLL_TIMEOUT_MS} ms)"
                ))
            }
            Err(RecvTimeoutError::Disconnected) => return Err(format!("{what}: poller died")),
        };
        let got = Readiness::from_revents(rev);
        let Some(elapsed) = at.checked_duration_since(event) else {
            return Err(format!(
                "{what}: poll returned {got} before the waking event"
            ));
        };
        diag(&format!(
            "{what}: poll returned {got} (revents {rev:#x}) {} ms after the event",
            elapsed.as_millis()
        ));
        if rev == 0 {
            return Err(format!("{what}: poll timed out, no wakeup"));
        }
        if got != want {
            return Err(format!("{what}: poll returned {got}, expected {want}"));
        }
        if elapsed >= MAX_WAKE {
            return Err(format!("{what}: wakeup took {} ms", elapsed.as_millis()));
        }
        Ok(())
    }
}

fn idle_first(f: &std::fs::File, m: &Model, what: &str) -> Result<(), String> {
    let r = sys::poll_one(f, libc::POLLIN, 0).ctx(what)?;
    let got = Readiness::from_revents(r);
    let want = Readiness::of_model(m);
    if got != Readiness::Idle || want != Readiness::Idle {
        return Err(format!(
            "{what}: precondition: poll = {got}, model = {want}, expected nothing ready"
        ));
    }
    Ok(())
}

fn run(ctl: &Ctl, ncpu: usize, fails: &mut Failures) -> Result<(), String> {
    let g = GEOM;
    let mut models = super::models(g, ncpu);
    let path = ctl.cpu_path(Side::Rust, 0);
    let mut reader = open_cpu(ctl, Side::Rust, 0)?;

    // 1. A sub-buffer completes.
    idle_first(&reader, &models[0], "part 1")?;
    let p = Poller::start(path.clone())?;
    thread::sleep(Duration::from_millis(200));
    p.still_blocked("before any write")?;
    write(ctl, &mut models, 0, 1500, 1)?;
    write(ctl, &mut models, 0, 1500, 2)?;
    thread::sleep(Duration::from_millis(50));
    p.still_blocked("after two writes (no complete sub-buffer yet)")?;
    let event = Instant::now();
    write(ctl, &mut models, 0, 1500, 3)?;
    fails.check(p.wait(event, Readiness::In, "sub-buffer complete"));
    let got = drain(&mut reader, 4096, 1 << 20, "rust/cpu0")?;
    fails.check(expect_bytes("part 1 read", &got, &models[0].read_all()));

    // 2. A small write, then flush.
    idle_first(&reader, &models[0], "part 2")?;
    let p = Poller::start(path.clone())?;
    thread::sleep(Duration::from_millis(200));
    write(ctl, &mut models, 0, 100, 4)?;
    thread::sleep(Duration::from_millis(100));
    p.still_blocked("after a small write")?;
    let event = Instant::now();
    ctl.send(&Command::Flush).ctx("flush")?;
    models.iter_mut().for_each(Model::flush);
    fails.check(p.wait(event, Readiness::In, "flush"));
    let got = drain(&mut reader, 4096, 1 << 20, "rust/cpu0")?;
    fails.check(expect_bytes("part 2 read", &got, &models[0].read_all()));

    // 3. close wakes with POLLERR.
    idle_first(&reader, &models[0], "part 3")?;
    let p = Poller::start(path)?;
    thread::sleep(Duration::from_millis(200));
    p.still_blocked("before close")?;
    let event = Instant::now();
    ctl.send(&Command::Close).ctx("close")?;
    models.iter_mut().for_each(Model::close);
    fails.check(p.wait(event, Readiness::Err, "close"));
    let got = drain(&mut reader, 4096, 1 << 20, "rust/cpu0 after close")?;
    fails.check(expect_bytes("part 3 read", &got, &models[0].read_all()));
    Ok(())
}

pub fn check(ctl: &Ctl) -> Result<(), String> {
    let g = GEOM;
    ctl.send(&Command::Open {
        s: g.s,
        n: g.n,
        h: g.h,
        overwrite: g.overwrite,
    })
    .ctx("open")?;
    let mut fails = Failures::default();
    let r = ctl.count_both().and_then(|ncpu| run(ctl, ncpu, &mut fails));
    if let Err(e) = r {
        fails.add(e);
        // Part 3 closes the channel itself; make sure it is closed on early errors too.
        let _ = ctl.send(&Command::Close);
    }
    fails.into_result()
}
