//! Stream-to-disk glue, as relay-apps gave its users: drain every buffer of a channel into
//! per-CPU files with poll + read until told to stop, then drain what is left.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Channel, ChannelCallbacks, RelayFile};
use crate::core::Poll;

/// How long a reader sleeps in `poll` before checking the stop flag and reading a partly filled
/// sub-buffer anyway.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Drains relay files (user space or kernel) into files on disk.
#[derive(Default)]
pub struct Recorder {
    sources: Vec<(String, RelayFile, PathBuf)>,
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
    /// then drains what is left. Returns per-buffer byte and loss counts.
    pub fn run(self, stop: &AtomicBool) -> io::Result<Vec<BufRecord>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .sources
                .into_iter()
                .map(|(name, file, out)| s.spawn(move || drain(name, file, out, stop)))
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

fn drain(
    name: String,
    mut file: RelayFile,
    out: PathBuf,
    stop: &AtomicBool,
) -> io::Result<BufRecord> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&out)?);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let state = file.poll(Some(POLL_INTERVAL))?;
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            w.write_all(&chunk[..n])?;
            bytes += n as u64;
        }
        if stopping || state == Poll::Finalized {
            break;
        }
    }
    w.flush()?;
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
