//! Recording in one line: [`record`] makes this process write a recorded, decodable trace
//! directory, with no other dependency and no ordering to get right.
//!
//! The guard opens a [`RelayHandler`] on a fresh private live directory
//! (`/dev/shm/klog-<pid>-<random>`, or the temporary directory without `/dev/shm`), opens the
//! recorder on its buffers *before* registering it (so nothing is missed), registers it, and
//! drains the per-CPU buffers in the background into `dir/cpuN` (with the checksum index
//! `dir/cpuN.idx`) while `dir/metadata` follows the handler's metadata. Dropping the guard (or
//! [`Recording::finish`]) unregisters, finishes the handler, drains everything, copies the final
//! metadata and removes the live files. On SIGTERM, SIGINT or SIGHUP, when the application has no
//! handler of its own for them, the trace is finished the same way, then the default action is
//! restored and the signal raised again.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use relay::user::{copy_appended, trace_files, BufRecord, Recorder};

use crate::dispatch::{self, RegisterError};
use crate::relay_handler::{HandlerStats, OpenError, RelayConfig, RelayHandler};

/// How often the metadata copy follows the handler's.
const META_TICK: Duration = Duration::from_millis(50);

/// Options of a recording ([`RecordConfig::start`]).
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// The trace directory to write (created if missing).
    pub dir: PathBuf,
    /// Replace a trace already in `dir` (its `metadata`, `cpuN` and `cpuN.idx` files, nothing
    /// else); without it such a directory is an error.
    pub replace: bool,
    /// Sub-buffer size of the live buffers (default 256 KiB).
    pub subbuf_size: usize,
    /// Sub-buffers per live buffer (default 8).
    pub n_subbufs: usize,
    /// Finish the trace on SIGTERM, SIGINT and SIGHUP (for each signal whose action is the
    /// default when the recording starts), then die of the signal as before. Default on.
    pub signals: bool,
}

impl RecordConfig {
    /// Defaults: record into `dir`, refusing an existing trace; 8 × 256 KiB per CPU; signals on.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let d = RelayConfig::new("");
        RecordConfig {
            dir: dir.into(),
            replace: false,
            subbuf_size: d.subbuf_size,
            n_subbufs: d.n_subbufs,
            signals: true,
        }
    }

    /// Starts recording (see [`record`]).
    pub fn start(&self) -> Result<Recording, RecordError> {
        start(self)
    }
}

/// Why a recording could not start or did not finish cleanly. `Debug` prints the message too,
/// so that `main() -> Result<(), Box<dyn Error>>` reports it readably.
pub enum RecordError {
    /// The trace directory already holds a trace (these files); nothing was changed.
    TraceExists {
        /// The directory.
        dir: PathBuf,
        /// The klog files found in it.
        files: Vec<PathBuf>,
    },
    /// The live handler could not be opened.
    Open(OpenError),
    /// Another handler is registered.
    Register(RegisterError),
    /// A file-system error (the message names the path), e.g. a full disk while recording.
    Io(io::Error),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::TraceExists { dir, files } => {
                let names: Vec<String> = files
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                write!(
                    f,
                    "{} already holds a klog trace ({}); nothing was changed: record into \
                     another directory, or set RecordConfig::replace",
                    dir.display(),
                    names.join(", ")
                )
            }
            RecordError::Open(e) => write!(f, "klog::record: {e}"),
            RecordError::Register(e) => write!(f, "klog::record: {e}"),
            RecordError::Io(e) => write!(f, "klog::record: {e}"),
        }
    }
}

impl fmt::Debug for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for RecordError {}

impl From<io::Error> for RecordError {
    fn from(e: io::Error) -> Self {
        RecordError::Io(e)
    }
}

/// What a finished recording wrote.
#[derive(Debug, Clone, Default)]
pub struct RecordSummary {
    /// The trace directory.
    pub dir: PathBuf,
    /// Events written, per CPU buffer.
    pub frames: Vec<u64>,
    /// Events lost (buffer full, nested without room), per CPU buffer.
    pub lost: Vec<u64>,
    /// Per-buffer byte counts of the recorder.
    pub buffers: Vec<BufRecord>,
}

impl fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} events, {} lost, {} bytes",
            self.dir.display(),
            self.frames.iter().sum::<u64>(),
            self.lost.iter().sum::<u64>(),
            self.buffers.iter().map(|b| b.bytes).sum::<u64>()
        )
    }
}

/// A running recording; dropping it finishes the trace ([`Recording::finish`] returns what
/// happened instead).
#[must_use = "the recording stops when the guard is dropped"]
pub struct Recording {
    state: Arc<Mutex<Option<Running>>>,
    watcher: Option<JoinHandle<()>>,
}

struct Running {
    handler: Arc<RelayHandler>,
    stop: Arc<AtomicBool>,
    drain: JoinHandle<io::Result<Vec<BufRecord>>>,
    live: PathBuf,
    dir: PathBuf,
}

/// Starts recording this process's `klog!` events into the trace directory `dir`, which must
/// not already hold a trace. See the module documentation and [`RecordConfig`].
///
/// ```no_run
/// let rec = klog::record("trace")?;
/// klog::klog!("hello {}", 42);
/// let summary = rec.finish()?; // or just drop it
/// # Ok::<(), klog::RecordError>(())
/// ```
pub fn record(dir: impl Into<PathBuf>) -> Result<Recording, RecordError> {
    RecordConfig::new(dir).start()
}

/// A fresh live directory path that does not exist yet.
fn live_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let pid = std::process::id();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(pid) << 32);
    loop {
        // xorshift: only needs to differ between attempts and runs.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let p = base.join(format!("klog-{pid}-{:08x}", seed as u32));
        if !p.exists() {
            return p;
        }
    }
}

fn start(cfg: &RecordConfig) -> Result<Recording, RecordError> {
    let mut existing = trace_files(&cfg.dir)?;
    existing.sort();
    if !existing.is_empty() {
        if !cfg.replace {
            return Err(RecordError::TraceExists {
                dir: cfg.dir.clone(),
                files: existing,
            });
        }
        for p in existing {
            std::fs::remove_file(&p)
                .map_err(|e| io::Error::new(e.kind(), format!("removing {}: {e}", p.display())))?;
        }
    }
    std::fs::create_dir_all(&cfg.dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", cfg.dir.display())))?;
    let live = live_dir();
    let rcfg = RelayConfig {
        subbuf_size: cfg.subbuf_size,
        n_subbufs: cfg.n_subbufs,
        ..RelayConfig::new(&live)
    };
    let handler = Arc::new(RelayHandler::open(&rcfg).map_err(|e| {
        remove_live(&live);
        RecordError::Open(e)
    })?);
    // The recorder opens the buffers before any event can be written.
    let recorder = Recorder::for_dir(&live, "cpu", &cfg.dir).and_then(|mut r| {
        r.claim()?;
        Ok(r)
    });
    let recorder = match recorder {
        Ok(r) => r,
        Err(e) => {
            drop(handler);
            remove_live(&live);
            return Err(e.into());
        }
    };
    if let Err(e) = dispatch::register(handler.clone()) {
        drop(handler);
        remove_live(&live);
        return Err(RecordError::Register(e));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let (stop, meta_src, meta_dst) = (
            stop.clone(),
            live.join("metadata"),
            cfg.dir.join("metadata"),
        );
        std::thread::Builder::new()
            .name("klog-record".into())
            .spawn(move || drain(recorder, &stop, &meta_src, &meta_dst))
    };
    let drain = match drain {
        Ok(d) => d,
        Err(e) => {
            dispatch::unregister();
            drop(handler);
            remove_live(&live);
            return Err(e.into());
        }
    };
    let state = Arc::new(Mutex::new(Some(Running {
        handler,
        stop,
        drain,
        live,
        dir: cfg.dir.clone(),
    })));
    let watcher = if cfg.signals {
        signals::watch(state.clone())
    } else {
        None
    };
    Ok(Recording { state, watcher })
}

/// The background side: the recorder's threads drain the buffers while the metadata copy
/// follows the handler's, until `stop`; then the final copy.
fn drain(
    recorder: Recorder,
    stop: &AtomicBool,
    meta_src: &Path,
    meta_dst: &Path,
) -> io::Result<Vec<BufRecord>> {
    let mut copied = 0u64;
    recorder.run_following(
        META_TICK,
        || stop.load(Ordering::Acquire),
        || copy_appended(|| std::fs::read(meta_src), meta_src, meta_dst, &mut copied),
    )
}

/// Removes what the handler created in the live directory, then the directory if empty.
fn remove_live(live: &Path) {
    if let Ok(rd) = std::fs::read_dir(live) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            let ours = n == "metadata"
                || n.strip_prefix("cpu")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            if ours {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(live);
}

impl Running {
    fn finish(self) -> Result<RecordSummary, RecordError> {
        if dispatch::is_registered() {
            dispatch::unregister();
        }
        let st: HandlerStats = self.handler.finish();
        self.stop.store(true, Ordering::Release);
        let res = self
            .drain
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("klog recorder panicked")));
        drop(self.handler);
        remove_live(&self.live);
        Ok(RecordSummary {
            dir: self.dir,
            frames: st.frames,
            lost: st.lost,
            buffers: res?,
        })
    }
}

impl Recording {
    /// The trace directory.
    pub fn dir(&self) -> Option<PathBuf> {
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|r| r.dir.clone())
    }

    /// Finishes the trace: unregisters the handler, finishes it (final flush and records),
    /// drains every buffer, copies the final metadata and removes the live files. Returns what
    /// was recorded, or the first error (a full disk, ...).
    pub fn finish(mut self) -> Result<RecordSummary, RecordError> {
        self.finish_inner()
            .unwrap_or_else(|| Err(io::Error::other("the recording was already finished").into()))
    }

    fn finish_inner(&mut self) -> Option<Result<RecordSummary, RecordError>> {
        let running = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.watcher.take() {
            signals::unwatch(w);
        }
        running.map(Running::finish)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.finish_inner() {
            // Nobody to return it to: say it once.
            eprintln!("{e}");
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP: a handler that writes the signal number into a pipe, and a
/// thread that finishes the recording when it reads one, then restores the default action and
/// raises the signal again.
mod signals {
    use super::*;

    const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

    /// Write end of the pipe (-1: none); the handler only reads it.
    static PIPE_W: AtomicI32 = AtomicI32::new(-1);
    /// Which of `SIGNALS` got our handler.
    static INSTALLED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

    extern "C" fn on_signal(sig: libc::c_int) {
        let fd = PIPE_W.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = sig as u8;
            // SAFETY: write(2) is async-signal-safe; `b` is one readable byte.
            let _ = unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
        }
    }

    fn current(sig: libc::c_int) -> Option<libc::sighandler_t> {
        // SAFETY: a zeroed sigaction is a valid out-parameter.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: queries the action only (null new action).
        let r = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        (r == 0).then_some(old.sa_sigaction)
    }

    fn set(sig: libc::c_int, handler: libc::sighandler_t) {
        // SAFETY: a zeroed sigaction (empty mask, no flags) is valid to fill in.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_RESTART;
        // SAFETY: installs a valid handler (an async-signal-safe function, or SIG_DFL).
        unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) };
    }

    /// Installs the handler for every signal still at its default action and starts the
    /// watcher thread; `None` when there is nothing to watch.
    pub(super) fn watch(state: Arc<Mutex<Option<Running>>>) -> Option<JoinHandle<()>> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        let (r, w) = (fds[0], fds[1]);
        PIPE_W.store(w, Ordering::Release);
        let mut any = false;
        for (i, &sig) in SIGNALS.iter().enumerate() {
            if current(sig) == Some(libc::SIG_DFL) {
                set(
                    sig,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                );
                INSTALLED[i].store(true, Ordering::Release);
                any = true;
            }
        }
        let spawned = any
            .then(|| {
                std::thread::Builder::new()
                    .name("klog-record-signals".into())
                    .spawn(move || wait(r, state))
                    .ok()
            })
            .flatten();
        if spawned.is_none() {
            restore();
            close_pipe();
            // SAFETY: `r` is our pipe's read end, not used elsewhere.
            unsafe { libc::close(r) };
        }
        spawned
    }

    fn wait(r: libc::c_int, state: Arc<Mutex<Option<Running>>>) {
        let mut b = 0u8;
        let sig = loop {
            // SAFETY: reads one byte into `b`.
            let n = unsafe { libc::read(r, (&mut b as *mut u8).cast(), 1) };
            if n == 1 {
                break Some(libc::c_int::from(b));
            }
            if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break None;
            }
        };
        let Some(sig) = sig else {
            // SAFETY: `r` is this thread's pipe end, closed once.
            unsafe { libc::close(r) };
            return; // the recording finished: the pipe was closed
        };
        // Default actions first: a second signal while the trace is finished ends the process
        // at once (a second Ctrl-C always works).
        restore();
        close_pipe();
        // SAFETY: `r` is this thread's pipe end, closed once.
        unsafe { libc::close(r) };
        let running = state.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(run) = running {
            if let Err(e) = run.finish() {
                eprintln!("{e}");
            }
        }
        // Die of the signal as the process would have without us.
        // SAFETY: plain raise(3) of a signal whose action is now the default.
        unsafe { libc::raise(sig) };
    }

    /// Restores the default action where our handler is still installed.
    fn restore() {
        let ours = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        for (i, &sig) in SIGNALS.iter().enumerate() {
            if INSTALLED[i].swap(false, Ordering::AcqRel) && current(sig) == Some(ours) {
                set(sig, libc::SIG_DFL);
            }
        }
    }

    fn close_pipe() {
        let w = PIPE_W.swap(-1, Ordering::AcqRel);
        if w >= 0 {
            // SAFETY: our pipe's write end, closed once (swapped out above).
            unsafe { libc::close(w) };
        }
    }

    /// Stops watching: default actions back, the pipe closed (the watcher sees end of file).
    pub(super) fn unwatch(w: JoinHandle<()>) {
        restore();
        close_pipe();
        // A watcher that is finishing the recording itself ends with the process.
        if w.thread().id() != std::thread::current().id() {
            let _ = w.join();
        }
    }
}
