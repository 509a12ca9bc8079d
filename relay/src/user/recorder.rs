//! Stream-to-disk glue, as relay-apps gave its users: drain every buffer of a channel into
//! per-CPU files with poll + read until told to stop, then drain what is left.
//!
//! Nothing consumed is ever only in memory: for user-space buffers the recorder copies the next
//! bytes without consuming them ([`RelayFile::peek`]), writes them to the output file, and only
//! then consumes them, so a recorder killed at any point (even by SIGKILL) leaves what it did not
//! write in the buffer for the next reader. Kernel relay files consume on `read`; their chunks are
//! written straight through (no user-space buffering), so a kill loses at most the one chunk
//! between its `read` and its `write`. Beside each output file `cpuN` an index `cpuN.idx`
//! ([`super::index`]) records every chunk with its CRC-32C and read position.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::index::{self, Chunk};
use super::{Channel, ChannelCallbacks, ReadPos, RelayFile};
use crate::core::Poll;

/// How long a reader sleeps in `poll` before checking the stop flag and reading a partly filled
/// sub-buffer anyway.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Bytes copied per chunk (one write and one index record each).
const CHUNK: usize = 256 * 1024;

/// Drains relay files (user space or kernel) into files on disk.
#[derive(Default)]
pub struct Recorder {
    sources: Vec<(String, RelayFile, PathBuf)>,
    replace: bool,
}

/// What the recorder saw for one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BufRecord {
    /// Name of the source (file name or `cpuN`).
    pub name: String,
    /// Output file.
    pub out: PathBuf,
    /// Bytes written to the output file.
    pub bytes: u64,
    /// Messages the writer dropped (buffer full, busy), when the source reports it.
    pub dropped_msgs: Option<usize>,
    /// Bytes of those messages.
    pub dropped_bytes: Option<usize>,
    /// Sub-buffers skipped because the writer lapped the reader (overwrite mode).
    pub lapped_subbufs: Option<usize>,
    /// Messages dropped as larger than a sub-buffer.
    pub toobig_msgs: Option<usize>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether existing output files (and their indexes) are replaced. By default the recorder
    /// refuses to write over a file it did not create: [`Recorder::run`] fails with
    /// `AlreadyExists` naming it.
    pub fn replace(mut self, yes: bool) -> Self {
        self.replace = yes;
        self
    }

    /// Makes the recorder the one consuming reader of every buffer now (see
    /// [`RelayFile::claim`]), so that a second consumer fails at once rather than when it first
    /// reads.
    pub fn claim(&mut self) -> io::Result<()> {
        for (_, f, _) in &mut self.sources {
            f.claim()?;
        }
        Ok(())
    }

    /// Adds one relay file, recorded into `out`.
    pub fn add(&mut self, name: impl Into<String>, file: RelayFile, out: impl Into<PathBuf>) {
        self.sources.push((name.into(), file, out.into()));
    }

    /// Records every buffer of an in-process channel into `out_dir/{base}{index}`.
    pub fn for_channel<C: ChannelCallbacks>(
        chan: &Channel<C>,
        out_dir: &Path,
        base: &str,
    ) -> io::Result<Self> {
        let mut r = Self::new();
        for i in 0..chan.n_bufs() {
            let file = chan
                .open_file(i)
                .ok_or_else(|| io::Error::other("channel buffer vanished"))?;
            r.add(
                format!("{base}{i}"),
                file,
                out_dir.join(format!("{base}{i}")),
            );
        }
        Ok(r)
    }

    /// Records the relay files `src_dir/{base}0, {base}1, …` (user-space buffer files or a
    /// kernel relay directory in debugfs) into `out_dir` under the same names.
    pub fn for_dir(src_dir: &Path, base: &str, out_dir: &Path) -> io::Result<Self> {
        let mut r = Self::new();
        for i in 0.. {
            let name = format!("{base}{i}");
            let path = src_dir.join(&name);
            if !path.exists() {
                break;
            }
            r.add(name.clone(), RelayFile::open(&path)?, out_dir.join(&name));
        }
        if r.sources.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no relay files {}/{base}0.. found", src_dir.display()),
            ));
        }
        Ok(r)
    }

    /// Runs one poll + read thread per buffer until `stop` is set or every buffer is finalized,
    /// then drains what is left. Returns per-buffer byte and loss counts. A write error (disk
    /// full, I/O error) stops every buffer's thread promptly (what they did not write stays in
    /// the buffers) and is returned naming the file.
    pub fn run(self, stop: &AtomicBool) -> io::Result<Vec<BufRecord>> {
        let abort = AtomicBool::new(false);
        let replace = self.replace;
        std::thread::scope(|s| {
            let abort = &abort;
            let handles: Vec<_> = self
                .sources
                .into_iter()
                .map(|(name, file, out)| {
                    s.spawn(move || {
                        let r = drain(name, file, out, replace, stop, abort);
                        if r.is_err() {
                            abort.store(true, Ordering::Release);
                        }
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("recorder thread panicked")))
                })
                .collect()
        })
    }
}

impl Recorder {
    /// [`Recorder::run`] with `tick` called every `interval` beside it (a klog recorder copies
    /// the growing `metadata` there with [`copy_appended`]), until `stop()` says so or `tick`
    /// fails; then, the buffers drained, `tick` once more. A buffer's error comes first (it
    /// names the `cpuN` file), then the tick's.
    pub fn run_following(
        self,
        interval: Duration,
        stop: impl Fn() -> bool,
        mut tick: impl FnMut() -> io::Result<()>,
    ) -> io::Result<Vec<BufRecord>> {
        let inner = AtomicBool::new(false);
        let mut err = tick().err();
        let buffers = std::thread::scope(|s| {
            // Started even when the first tick failed: it stops at once below and reports its
            // own errors, and the buffers keep what it did not write.
            let h = s.spawn(|| self.run(&inner));
            loop {
                if err.is_some() || stop() {
                    inner.store(true, Ordering::Release);
                }
                if h.is_finished() {
                    break;
                }
                std::thread::sleep(interval);
                if err.is_none() {
                    err = tick().err();
                }
            }
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("recorder thread panicked")))
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        tick()?;
        Ok(buffers)
    }
}

/// Appends what the append-only file `src` (klog's `metadata`, whose whole content `read`
/// returns) has beyond `copied` bytes to `dst`, and advances `copied`. `src` shorter than
/// `copied` (rewritten) is copied anew; `src` gone after a first copy (its writer removed it)
/// keeps the copy. Errors name the file.
pub fn copy_appended(
    read: impl FnOnce() -> io::Result<Vec<u8>>,
    src: &Path,
    dst: &Path,
    copied: &mut u64,
) -> io::Result<()> {
    let b = match read() {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound && *copied > 0 => return Ok(()),
        Err(e) => return Err(annotate("reading", src)(e)),
    };
    if (b.len() as u64) < *copied {
        std::fs::write(dst, &b).map_err(annotate("writing", dst))?;
    } else if (b.len() as u64) > *copied || *copied == 0 {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dst)
            .map_err(annotate("writing", dst))?;
        f.write_all(&b[*copied as usize..])
            .map_err(annotate("writing", dst))?;
    }
    *copied = b.len() as u64;
    Ok(())
}

/// The files of a recorded klog trace in `dir`: `metadata`, `cpuN`, `cpuN.idx` (empty when `dir`
/// does not exist). What a recorder refuses to overwrite, and all it replaces when told to.
pub fn trace_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    let ours = |n: &str| {
        let n = n.strip_suffix(".idx").unwrap_or(n);
        n.strip_prefix("cpu")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    Ok(rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n == "metadata" || ours(&n)
        })
        .map(|e| e.path())
        .collect())
}

/// `path` with `.idx` appended: the index of a recorded file.
pub fn index_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".idx");
    PathBuf::from(p)
}

fn annotate<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn create(path: &Path, replace: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true);
    if replace {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    o.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: already exists; not overwritten (record into a new directory, or \
                     replace it explicitly)",
                    path.display()
                ),
            )
        } else {
            annotate("creating", path)(e)
        }
    })
}

fn to_idx(p: Option<ReadPos>) -> index::IdxPos {
    p.map(|p| (p.subbuf, p.offset as u64))
}

/// The index record of `data`, written at `offset` of the output file from read position `at`.
fn piece(offset: u64, data: &[u8], at: Option<ReadPos>) -> Chunk {
    Chunk {
        offset,
        len: data.len() as u64,
        crc: index::crc32c(data),
        pos: to_idx(at),
    }
}

fn drain(
    name: String,
    mut file: RelayFile,
    out: PathBuf,
    replace: bool,
    stop: &AtomicBool,
    abort: &AtomicBool,
) -> io::Result<BufRecord> {
    let idx_path = index_path(&out);
    let mut w = create(&out, replace)?;
    let mut idx = create(&idx_path, replace)?;
    // The position and the bytes before it in its sub-buffer, together (the kernel copies
    // them under its reader lock). Without the prefix (an older kernel module, a reused slot)
    // the decoder still resynchronises at the next header and reports the bytes before it.
    let (start, prefix) = file.read_prefix()?;
    idx.write_all(&index::encode_start(to_idx(start), &prefix))
        .map_err(annotate("writing", &idx_path))?;
    let mut chunk = vec![0u8; CHUNK];
    let mut pieces = Vec::new();
    let mut bytes = 0u64;
    let kernel = file.is_kernel();
    'run: loop {
        let stopping = stop.load(Ordering::Acquire);
        let state = file.poll(Some(POLL_INTERVAL))?;
        loop {
            if abort.load(Ordering::Acquire) {
                break 'run;
            }
            // User space: copy (one piece per sub-buffer, up to CHUNK bytes), write, then
            // consume. Kernel: `read` consumes; write at once.
            pieces.clear();
            let mut filled = 0;
            let mut end = None;
            if kernel {
                let at = file.read_position()?;
                let n = file.read(&mut chunk)?;
                if n > 0 {
                    pieces.push(piece(bytes, &chunk[..n], at));
                }
                filled = n;
            } else {
                while filled < chunk.len() {
                    let (n, at, e) = file.peek(&mut chunk[filled..], end)?;
                    if n == 0 {
                        break;
                    }
                    let at_file = bytes + filled as u64;
                    pieces.push(piece(at_file, &chunk[filled..filled + n], Some(at)));
                    filled += n;
                    end = Some(e);
                }
            }
            if filled == 0 {
                break;
            }
            w.write_all(&chunk[..filled])
                .map_err(annotate("writing", &out))?;
            if let Some(end) = end {
                file.consume(end)?;
            }
            // Indexed last: bytes in the file but not in the index may still be in the buffer
            // (the recorder stopped before consuming them), so the decoder never prints them.
            let mut rec = Vec::with_capacity(pieces.len() * 64);
            for p in &pieces {
                rec.extend(index::encode_chunk(p));
            }
            idx.write_all(&rec)
                .map_err(annotate("writing", &idx_path))?;
            bytes += filled as u64;
        }
        if stopping || state == Poll::Finalized {
            break;
        }
    }
    let st = file.stats();
    Ok(BufRecord {
        name,
        out,
        bytes,
        dropped_msgs: st.map(|s| s.dropped_msgs),
        dropped_bytes: st.map(|s| s.dropped_bytes),
        lapped_subbufs: st.map(|s| s.lapped_subbufs),
        toobig_msgs: st.map(|s| s.toobig_msgs),
    })
}
