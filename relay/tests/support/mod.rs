//! Shared helpers of the integration tests in `multiprocess.rs`, `stress.rs`, `reader_api.rs` and
//! `recorder.rs`: a self-checking message format, a stream parser, temporary directories, child
//! processes (re-exec of the test binary) and the callbacks the relay documentation describes.
//!
//! Every test crate uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use relay::core::SubbufStart;
use relay::user::{default_create_buf_file, BufInfo, ChannelCallbacks};
use relay::Callbacks;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Header of every test message: `seq: u64`, `len: u32` (whole message), `tid: u32`.
pub const HDR: usize = 16;
/// Shortest and longest message.
pub const MIN_LEN: usize = HDR;
pub const MAX_LEN: usize = 200;

fn mix(tid: u32, seq: u64) -> u64 {
    // splitmix64 of (tid, seq)
    let mut z = seq
        .wrapping_add((tid as u64) << 40)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Length of message `(tid, seq)`: 16..=200 bytes, a pure function of both.
pub fn msg_len(tid: u32, seq: u64) -> usize {
    MIN_LEN + (mix(tid, seq) % (MAX_LEN - MIN_LEN + 1) as u64) as usize
}

fn payload_byte(x: u64, i: usize) -> u8 {
    (x.rotate_left((i as u32 * 7) % 64) as u8) ^ (i as u8).wrapping_mul(31)
}

/// Encodes message `(tid, seq)` into `out` (which must hold `msg_len` bytes); returns its length.
/// Allocation-free, so a signal handler may use it.
pub fn encode_into(tid: u32, seq: u64, out: &mut [u8]) -> usize {
    let len = msg_len(tid, seq);
    let out = &mut out[..len];
    out[0..8].copy_from_slice(&seq.to_le_bytes());
    out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    out[12..16].copy_from_slice(&tid.to_le_bytes());
    let x = mix(tid, seq);
    for (i, b) in out[HDR..].iter_mut().enumerate() {
        *b = payload_byte(x, i);
    }
    len
}

/// Encodes message `(tid, seq)`.
pub fn encode(tid: u32, seq: u64) -> Vec<u8> {
    let mut v = vec![0u8; MAX_LEN];
    let n = encode_into(tid, seq, &mut v);
    v.truncate(n);
    v
}

/// Result of looking at the start of a byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// A whole, valid message `(tid, seq)` of `len` bytes.
    Msg { tid: u32, seq: u64, len: usize },
    /// Not enough bytes yet to decide.
    Short,
    /// Not a valid message (torn, shifted, corrupted); the text says why.
    Bad(String),
}

/// Checks whether `b` starts with a whole valid message.
pub fn peek(b: &[u8]) -> Peek {
    if b.len() < HDR {
        return Peek::Short;
    }
    let seq = u64::from_le_bytes(b[0..8].try_into().unwrap());
    let len = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
    let tid = u32::from_le_bytes(b[12..16].try_into().unwrap());
    if !(MIN_LEN..=MAX_LEN).contains(&len) || len != msg_len(tid, seq) {
        return Peek::Bad(format!(
            "bad header: seq {seq} len {len} tid {tid} (expected len {})",
            msg_len(tid, seq)
        ));
    }
    if b.len() < len {
        return Peek::Short;
    }
    let x = mix(tid, seq);
    for (i, &byte) in b[HDR..len].iter().enumerate() {
        if byte != payload_byte(x, i) {
            return Peek::Bad(format!(
                "payload of tid {tid} seq {seq} (len {len}) differs at byte {}",
                HDR + i
            ));
        }
    }
    Peek::Msg { tid, seq, len }
}

/// Parses a whole byte sequence into messages; every byte must belong to a valid message.
pub fn parse_all(b: &[u8]) -> Result<Vec<(u32, u64)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        match peek(&b[pos..]) {
            Peek::Msg { tid, seq, len } => {
                out.push((tid, seq));
                pos += len;
            }
            Peek::Short => {
                return Err(format!(
                    "stream ends inside a message at byte {pos} of {}",
                    b.len()
                ))
            }
            Peek::Bad(why) => return Err(format!("at byte {pos} of {}: {why}", b.len())),
        }
    }
    Ok(out)
}

/// Incremental parser of what successive `read` calls return.
///
/// In no-overwrite mode the stream is exactly a concatenation of whole messages (relay never
/// splits a message over sub-buffers and `read` strips the padding), so everything must parse.
/// In overwrite mode a reader that stopped in the middle of a message (its buffer was full) and
/// was then lapped resumes at the start of a later sub-buffer; `feed(.., lapped = true)` allows
/// exactly that: the unfinished message is dropped (counted in `lap_cuts`) and the new bytes must
/// start with a whole message.
#[derive(Default)]
pub struct StreamParser {
    carry: Vec<u8>,
    /// Messages in stream order.
    pub msgs: Vec<(u32, u64)>,
    /// Message bytes parsed.
    pub bytes: u64,
    /// Partial messages abandoned because the reader was lapped.
    pub lap_cuts: usize,
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the bytes of one `read` call; `lapped` says whether the buffer's `lapped_subbufs`
    /// moved during that call.
    pub fn feed(&mut self, bytes: &[u8], lapped: bool) -> Result<(), String> {
        if lapped && !self.carry.is_empty() {
            let mut joined = self.carry.clone();
            joined.extend_from_slice(bytes);
            if !matches!(peek(&joined), Peek::Msg { .. }) {
                self.carry.clear();
                self.lap_cuts += 1;
            }
        }
        self.carry.extend_from_slice(bytes);
        let mut pos = 0;
        loop {
            match peek(&self.carry[pos..]) {
                Peek::Msg { tid, seq, len } => {
                    self.msgs.push((tid, seq));
                    self.bytes += len as u64;
                    pos += len;
                }
                Peek::Short => break,
                Peek::Bad(why) => {
                    return Err(format!(
                        "after {} good messages ({} bytes): {why}",
                        self.msgs.len(),
                        self.bytes
                    ))
                }
            }
        }
        self.carry.drain(..pos);
        Ok(())
    }

    /// The stream must not end inside a message.
    pub fn finish(&self) -> Result<(), String> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "stream ends with {} bytes of an unfinished message",
                self.carry.len()
            ))
        }
    }
}

/// Checks per-(tid, buffer) order: in each buffer's stream, the messages of one writer appear
/// with strictly increasing sequence numbers.
pub fn check_order(buffer: usize, msgs: &[(u32, u64)]) -> Result<(), String> {
    let mut last: HashMap<u32, u64> = HashMap::new();
    for (i, &(tid, seq)) in msgs.iter().enumerate() {
        if let Some(&prev) = last.get(&tid) {
            if seq <= prev {
                return Err(format!(
                    "buffer {buffer}: message {i} is tid {tid} seq {seq} after seq {prev}"
                ));
            }
        }
        last.insert(tid, seq);
    }
    Ok(())
}

/// What writers did: `accepted[tid][seq]` = `write` returned true.
pub struct Ledger {
    pub accepted: Vec<Vec<bool>>,
}

impl Ledger {
    /// Counts per seq of what readers delivered, compared with what writers had accepted: every
    /// accepted message delivered exactly once, no rejected one delivered.
    pub fn check_delivery<'a>(
        &self,
        delivered: impl IntoIterator<Item = &'a (u32, u64)>,
    ) -> Result<usize, String> {
        let mut seen: Vec<Vec<u8>> = self.accepted.iter().map(|v| vec![0; v.len()]).collect();
        let mut n = 0;
        for &(tid, seq) in delivered {
            let t = tid as usize;
            if t >= seen.len() || seq as usize >= seen[t].len() {
                return Err(format!("delivered unknown message tid {tid} seq {seq}"));
            }
            if !self.accepted[t][seq as usize] {
                return Err(format!(
                    "delivered message tid {tid} seq {seq} whose write returned false"
                ));
            }
            seen[t][seq as usize] += 1;
            if seen[t][seq as usize] > 1 {
                return Err(format!("message tid {tid} seq {seq} delivered twice"));
            }
            n += 1;
        }
        for (t, v) in self.accepted.iter().enumerate() {
            for (s, &ok) in v.iter().enumerate() {
                if ok && seen[t][s] == 0 {
                    return Err(format!("accepted message tid {t} seq {s} never delivered"));
                }
            }
        }
        Ok(n)
    }

    pub fn written(&self) -> usize {
        self.accepted.iter().map(Vec::len).sum()
    }

    pub fn n_accepted(&self) -> usize {
        self.accepted.iter().flatten().filter(|&&a| a).count()
    }

    /// Messages and bytes whose write returned false.
    pub fn rejected(&self) -> (usize, usize) {
        let mut n = 0;
        let mut bytes = 0;
        for (t, v) in self.accepted.iter().enumerate() {
            for (s, &ok) in v.iter().enumerate() {
                if !ok {
                    n += 1;
                    bytes += msg_len(t as u32, s as u64);
                }
            }
        }
        (n, bytes)
    }
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// Multiplier for message counts: `RELAY_TEST_SCALE` (default 1).
pub fn scale() -> f64 {
    std::env::var("RELAY_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|&s| s > 0.0)
        .unwrap_or(1.0)
}

/// `n` scaled by [`scale`], at least 1.
pub fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(1)
}

/// A directory under the system temporary directory, unique per process and test, removed on
/// drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "relay-it-{}-{test}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A sub-directory (created).
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).expect("create sub dir");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------

#[allow(unused_imports)]
pub use relay::user::Global;

/// Size of the padding header of [`PaddingHeader`].
pub const PAD_HDR: usize = 4;

/// The relay documentation's `subbuf_start` for mmap consumers: every sub-buffer starts with a
/// `u32` holding its padding, written when the next sub-buffer starts; no-overwrite.
pub struct PaddingHeader {
    pub global: bool,
}

impl Callbacks for PaddingHeader {
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        let pad = ctx.prev_padding() as u32;
        ctx.write_prev_subbuf(0, &pad.to_ne_bytes());
        if ctx.buf_full() {
            return false;
        }
        ctx.reserve(PAD_HDR).expect("header fits");
        true
    }
}

impl ChannelCallbacks for PaddingHeader {
    fn create_buf_file(
        &self,
        name: Option<&str>,
        parent: Option<&Path>,
        mode: u32,
        _buf: &BufInfo,
        is_global: &mut bool,
    ) -> std::io::Result<Option<std::fs::File>> {
        *is_global = self.global;
        default_create_buf_file(name, parent, mode)
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// Environment variable that turns a `child_*` test into a child process body.
pub const CHILD_ENV: &str = "RELAY_IT_CHILD";

/// The child's parameters, if this process is a child started by [`ChildProc::spawn`].
pub fn child_params() -> Option<HashMap<String, String>> {
    let raw = std::env::var(CHILD_ENV).ok()?;
    Some(
        raw.split(';')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect(),
    )
}

/// A child process re-running this test binary with only test `test` (an `#[test]` that acts as
/// the child when [`CHILD_ENV`] is set). Lines the child prints are available through
/// [`ChildProc::line`]; the child is killed if it outlives the handle.
pub struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub output: Vec<String>,
}

impl ChildProc {
    pub fn spawn(test: &str, params: &[(&str, String)]) -> Self {
        let env: String = params.iter().map(|(k, v)| format!("{k}={v};")).collect();
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child test process");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProc {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            output: Vec::new(),
        }
    }

    /// Waits for a line containing `prefix` and returns what follows it; `None` if the child
    /// printed no such line within `timeout` (or exited without it).
    pub fn try_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).ok()?;
            self.output.push(line.clone());
            // libtest may have printed "test name ... " on the same line first.
            if let Some(at) = line.find(prefix) {
                return Some(line[at + prefix.len()..].trim().to_string());
            }
        }
    }

    /// Like [`ChildProc::try_line`], but kills the child and panics if the line does not come.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        match self.try_line(prefix, timeout) {
            Some(rest) => rest,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "child: no line {prefix:?} within {timeout:?}; output so far:\n{}",
                    self.output.join("\n")
                );
            }
        }
    }

    /// Sends one line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// Waits for the child to exit successfully within `timeout` (killing it otherwise).
    pub fn wait_success(mut self, timeout: Duration) {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                while let Ok(line) = self.lines.try_recv() {
                    self.output.push(line);
                }
                assert!(
                    status.success(),
                    "child failed: {status}; output:\n{}",
                    self.output.join("\n")
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "child did not exit within {timeout:?}; output:\n{}",
                    self.output.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// In a child: reads one line from stdin (blocks until the parent sends it).
pub fn child_wait_line() -> String {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s).expect("read stdin");
    s.trim().to_string()
}

/// Writes `(tid, seq)` pairs to a file, 12 bytes each.
pub fn save_msgs(path: &Path, msgs: &[(u32, u64)]) {
    let mut v = Vec::with_capacity(msgs.len() * 12);
    for &(t, s) in msgs {
        v.extend_from_slice(&t.to_le_bytes());
        v.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, v).expect("write result file");
}

/// Reads a file written by [`save_msgs`].
pub fn load_msgs(path: &Path) -> Vec<(u32, u64)> {
    let v = std::fs::read(path).expect("read result file");
    assert_eq!(v.len() % 12, 0);
    v.chunks_exact(12)
        .map(|c| {
            (
                u32::from_le_bytes(c[0..4].try_into().unwrap()),
                u64::from_le_bytes(c[4..12].try_into().unwrap()),
            )
        })
        .collect()
}
