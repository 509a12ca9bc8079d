//! Hand-built traces for the decoder tests, written with klog's own wire helpers
//! (`klog::wire`, `klog::arg`), independently of the decoder.
#![allow(dead_code)]

use klog::arg::{Args, Writer};
use klog::callsite::{Kind, Meta};
use klog::clock::ClockRef;
use klog::wire::{self, MetaHeader, SubbufHeader};
use klog::Level;

pub mod golden;

pub const MONO: u8 = 0;
/// The trace id of the hand-built traces (version 3 metadata and headers).
pub const TRACE_ID: u64 = 0x5eed_0f7a_ce1d;
pub const TSC: u8 = 1;

/// A xorshift64 generator for randomized tests (deterministic per seed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A callsite definition to put in the metadata.
pub struct Def {
    pub id: u32,
    pub level: Level,
    pub raw: bool,
    pub fmt: &'static str,
    pub module: &'static str,
    pub types: Vec<u8>,
}

pub fn def(id: u32, level: Level, fmt: &'static str, module: &'static str, types: &[u8]) -> Def {
    Def {
        id,
        level,
        raw: false,
        fmt,
        module,
        types: types.to_vec(),
    }
}

pub fn raw_def(id: u32, module: &'static str) -> Def {
    Def {
        id,
        level: Level::Info,
        raw: true,
        fmt: "",
        module,
        types: Vec::new(),
    }
}

/// The metadata stream: header (of the version klog writes, [`wire::VERSION`]), clock records,
/// callsites.
pub fn metadata(
    n_cpus: u16,
    overwrite: bool,
    subbuf_size: u32,
    n_subbufs: u32,
    clocks: &[(u8, u64, u64, u64)],
    defs: &[Def],
) -> Vec<u8> {
    let mut out = Vec::new();
    wire::meta_header(
        &mut out,
        &MetaHeader {
            n_cpus,
            overwrite,
            subbuf_size,
            n_subbufs,
            trace_id: TRACE_ID,
        },
    );
    for &(source, raw, mono_ns, ticks_per_sec) in clocks {
        wire::meta_clock(
            &mut out,
            source,
            &ClockRef {
                raw,
                mono_ns,
                ticks_per_sec,
            },
        );
    }
    for d in defs {
        let meta = Meta {
            fmt: d.fmt,
            level: d.level,
            kind: if d.raw { Kind::Raw } else { Kind::Fmt },
            module: d.module,
            file: "src/lib.rs",
            line: 42,
            n_args: d.types.len() as u8,
        };
        wire::meta_callsite(&mut out, d.id, &meta, &d.types);
    }
    out
}

/// `meta` (a [`metadata`] stream) with its header's format version set to `version` (1: pair
/// it with [`Stream::v1`]).
pub fn with_version(mut meta: Vec<u8>, version: u16) -> Vec<u8> {
    set_version(&mut meta, version);
    meta
}

/// Patches the format version of a metadata stream's header record (after its one-byte length,
/// its kind and the magic).
pub fn set_version(meta: &mut [u8], version: u16) {
    assert_eq!(&meta[2..10], b"KLOGMETA");
    meta[10..12].copy_from_slice(&version.to_le_bytes());
}

/// Monotonic clock: raw values are nanoseconds.
pub const MONO_CLOCK: &[(u8, u64, u64, u64)] = &[(MONO, 0, 0, 1_000_000_000)];

/// Encodes an argument tuple with klog's encoder.
pub fn args<A: Args>(a: A) -> Vec<u8> {
    let mut buf = vec![0u8; a.encoded_len()];
    let mut w = Writer::new(&mut buf);
    a.encode(&mut w);
    assert_eq!(w.pos(), buf.len());
    buf
}

/// The type tags of an argument tuple.
pub fn tags<A: Args>(a: &A) -> Vec<u8> {
    let mut t = vec![0xffu8; A::N];
    a.types(&mut t);
    t
}

fn varint(out: &mut Vec<u8>, v: u64) {
    let mut b = [0u8; 10];
    let mut w = Writer::new(&mut b);
    w.varint64(v);
    let n = w.pos();
    out.extend_from_slice(&b[..n]);
}

/// One frame: `varint len | varint head | zigzag ts_delta | payload`.
pub fn frame(id: u64, kind: u64, ts_delta: i64, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    varint(&mut body, (id << 2) | kind);
    varint(&mut body, klog::arg::zigzag64(ts_delta));
    body.extend_from_slice(payload);
    let mut out = Vec::new();
    varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// One sub-buffer being built.
#[derive(Clone)]
pub struct Sub {
    pub seq: u64,
    pub base_ts: u64,
    /// Time of the last frame written by [`Stream::frame_at`] (`base_ts` before the first): the
    /// reference of the next frame's `ts_delta` in version 2.
    pub last_ts: u64,
    pub lost: u32,
    pub flags: u16,
    pub frames: Vec<u8>,
    /// Override of the header's prev_padding (else computed).
    pub prev_padding: Option<u32>,
}

/// Builds one CPU's sub-buffers. Frames are given absolute times; their `ts_delta`s are
/// computed for the stream's format version: relative to the previous frame of the sub-buffer
/// (version 2, the default, what klog writes) or to the sub-buffer's `base_ts` (version 1).
pub struct Stream {
    pub cpu: u16,
    pub subbuf_size: usize,
    pub subs: Vec<Sub>,
    /// Format version the deltas are written for.
    pub version: u16,
}

impl Stream {
    pub fn new(cpu: u16, subbuf_size: usize) -> Self {
        Self::with_version(cpu, subbuf_size, wire::VERSION)
    }

    /// A version-1 stream: every `ts_delta` relative to its sub-buffer's `base_ts` (decode it
    /// with [`with_version`]`(.., 1)`).
    pub fn v1(cpu: u16, subbuf_size: usize) -> Self {
        Self::with_version(cpu, subbuf_size, wire::VERSION_BASE_DELTAS)
    }

    pub fn with_version(cpu: u16, subbuf_size: usize, version: u16) -> Self {
        assert!((wire::VERSION_BASE_DELTAS..=wire::VERSION).contains(&version));
        Stream {
            cpu,
            subbuf_size,
            subs: Vec::new(),
            version,
        }
    }

    /// Starts the next sub-buffer (seq = previous + 1, or 0).
    pub fn sub(&mut self, base_ts: u64, lost: u32) -> &mut Self {
        let seq = self.subs.last().map_or(0, |s| s.seq + 1);
        self.sub_seq(seq, base_ts, lost)
    }

    pub fn sub_seq(&mut self, seq: u64, base_ts: u64, lost: u32) -> &mut Self {
        self.subs.push(Sub {
            seq,
            base_ts,
            last_ts: base_ts,
            lost,
            flags: if seq == 0 { wire::FLAG_FIRST } else { 0 },
            frames: Vec::new(),
            prev_padding: None,
        });
        self
    }

    fn cur(&mut self) -> &mut Sub {
        self.subs.last_mut().expect("sub() first")
    }

    /// A `klog!` event at absolute raw time `ts`.
    pub fn event<A: Args>(&mut self, id: u64, ts: u64, a: A) -> &mut Self {
        let p = args(a);
        self.event_bytes(id, ts, &p)
    }

    /// An event frame with a given payload.
    pub fn event_bytes(&mut self, id: u64, ts: u64, payload: &[u8]) -> &mut Self {
        self.frame_at(id, wire::frame::EVENT, ts, payload)
    }

    /// A `klog_raw!` record.
    pub fn raw(&mut self, id: u64, ts: u64, bytes: &[u8]) -> &mut Self {
        self.frame_at(id, wire::frame::RAW, ts, bytes)
    }

    /// A frame of any kind (reserved ones too) at absolute raw time `ts`.
    pub fn frame_at(&mut self, id: u64, kind: u64, ts: u64, payload: &[u8]) -> &mut Self {
        let v2 = self.version != wire::VERSION_BASE_DELTAS;
        let s = self.cur();
        let reference = if v2 { s.last_ts } else { s.base_ts };
        s.last_ts = ts;
        let f = frame(id, kind, ts.wrapping_sub(reference) as i64, payload);
        s.frames.extend_from_slice(&f);
        self.check_room();
        self
    }

    /// The same sub-buffers and frames with the `ts_delta`s of format `version` (the frames
    /// must be well formed: built by [`Stream::frame_at`] and its wrappers).
    pub fn reencoded(&self, version: u16) -> Stream {
        fn read_varint(b: &[u8], at: &mut usize) -> u64 {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = b[*at];
                *at += 1;
                v |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            v
        }
        let from_v2 = self.version != wire::VERSION_BASE_DELTAS;
        let mut out = Stream::with_version(self.cpu, self.subbuf_size, version);
        for s in &self.subs {
            out.subs.push(Sub {
                frames: Vec::new(),
                last_ts: s.base_ts,
                ..s.clone()
            });
            let (mut at, mut reference) = (0, s.base_ts);
            while at < s.frames.len() {
                let len = read_varint(&s.frames, &mut at) as usize;
                let end = at + len;
                let head = read_varint(&s.frames, &mut at);
                let z = read_varint(&s.frames, &mut at);
                let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let ts = reference.wrapping_add(delta as u64);
                if from_v2 {
                    reference = ts;
                }
                out.frame_at(head >> 2, head & 3, ts, &s.frames[at..end]);
                at = end;
            }
        }
        out
    }

    /// Arbitrary bytes in the frame area (a frame among them has the `ts_delta` it was built
    /// with; [`Sub::last_ts`] does not see it).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.cur().frames.extend_from_slice(b);
        self
    }

    /// The sub-buffer header length of the stream's version.
    pub fn hlen(&self) -> usize {
        wire::subbuf_layout(self.version).1
    }

    fn check_room(&self) {
        let s = self.subs.last().unwrap();
        assert!(
            self.hlen() + s.frames.len() <= self.subbuf_size,
            "test sub-buffer overflows"
        );
    }

    /// The header of sub-buffer `k`, prev_padding computed from sub-buffer `k - 1`.
    pub fn header(&self, k: usize) -> SubbufHeader {
        let s = &self.subs[k];
        let computed = if k == 0 {
            0
        } else {
            (self.subbuf_size - self.hlen() - self.subs[k - 1].frames.len()) as u32
        };
        SubbufHeader {
            cpu: self.cpu,
            flags: s.flags,
            seq: s.seq,
            base_ts: s.base_ts,
            prev_padding: s.prev_padding.unwrap_or(computed),
            lost: s.lost,
            trace_id: TRACE_ID,
        }
    }

    /// The `read()` stream: sub-buffers back to back, padding stripped.
    pub fn read_stream(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, s) in self.subs.iter().enumerate() {
            out.extend_from_slice(&self.header(k).to_vec(self.version));
            out.extend_from_slice(&s.frames);
        }
        out
    }

    /// An mmap image of `n` slots: sub-buffer with seq `s` in slot `s % n`, padded with `fill`.
    pub fn snapshot(&self, n: usize, fill: u8) -> Vec<u8> {
        let mut img = vec![0u8; n * self.subbuf_size];
        for (k, s) in self.subs.iter().enumerate() {
            let at = (s.seq as usize % n) * self.subbuf_size;
            let slot = &mut img[at..at + self.subbuf_size];
            slot.fill(fill);
            let h = self.header(k).to_vec(self.version);
            slot[..h.len()].copy_from_slice(&h);
            slot[h.len()..h.len() + s.frames.len()].copy_from_slice(&s.frames);
        }
        img
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "klog-decode-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn write(&self, name: &str, b: &[u8]) {
        std::fs::write(self.0.join(name), b).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits for `child`, killing it after `secs` (the test then fails on its status).
pub fn wait(child: std::process::Child, secs: u64) -> std::process::Output {
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let dog = std::thread::spawn(move || {
        for _ in 0..secs * 10 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if d.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
        }
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let o = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    dog.join().unwrap();
    o
}
