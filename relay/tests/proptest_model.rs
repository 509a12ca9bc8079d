//! Property tests: random sequences of relay operations run against the independent reference
//! model in `model/mod.rs` (relay.c's semantics with the documented corrections). After every
//! step the implementation must agree with the model on the bytes `read` returns, `poll`,
//! `buf_full`, every counter, the padding array, the raw buffer image (what an mmap reader sees)
//! and the arguments of every `subbuf_start` call; and no byte may be duplicated or lost without
//! being counted.
//!
//! Two subjects run the same sequences: the bare core over heap memory, and the user-space
//! channel (global buffer in a shared-memory file) read through a `RelayFile`.

mod model;
mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;

use model::Model;
use proptest::prelude::*;
use relay::core::{Buf, BufState, BufStats, NoWake, SliceSink, SubbufStart};
use relay::user::{Channel, ChannelCallbacks, Global, RelayFile};
use relay::{Callbacks, Geometry, Poll};
use support::TempDir;

/// (slot, prev_slot, prev_padding, accepted) of one `subbuf_start` call.
type StartArgs = (usize, Option<usize>, usize, bool);

/// The test's `subbuf_start`, the one the model mimics: refuse when full (no-overwrite), else
/// reserve `header` bytes filled with `k as u8`, `k` counting successful starts.
struct TestCb {
    header: usize,
    overwrite: bool,
    k: AtomicU64,
    /// Every call.
    calls: Mutex<Vec<StartArgs>>,
}

impl TestCb {
    fn new(header: usize, overwrite: bool) -> Self {
        TestCb {
            header,
            overwrite,
            k: AtomicU64::new(0),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl Callbacks for TestCb {
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        let accept = self.overwrite || !ctx.buf_full();
        self.calls.lock().unwrap().push((
            ctx.subbuf(),
            ctx.prev_subbuf(),
            ctx.prev_padding(),
            accept,
        ));
        if !accept {
            return false;
        }
        let k = self.k.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.reserve(self.header).unwrap();
        assert!(ctx.write_subbuf(0, &vec![k as u8; self.header]));
        true
    }
}

impl ChannelCallbacks for TestCb {}

#[derive(Debug, Clone)]
enum Op {
    Write(usize, u8),
    Reserve(usize, u8),
    Flush,
    Reset,
    Consumed(usize),
    Read(usize),
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(i as u8) | 0x80)
        .collect()
}

/// What both subjects offer.
trait Subject {
    fn write(&mut self, data: &[u8]) -> bool;
    fn reserve(&mut self, data: &[u8]) -> Option<usize>;
    fn flush(&mut self);
    fn reset(&mut self);
    fn consumed(&mut self, n: usize);
    fn read(&mut self, count: usize) -> Vec<u8>;
    fn poll(&mut self) -> Poll;
    fn buf(&self) -> &Buf;
    fn cb(&self) -> &TestCb;
}

/// The core over heap memory.
struct CoreSubject {
    buf: Buf,
    cb: TestCb,
    _state: Box<BufState>,
    _padding: Box<[AtomicUsize]>,
    _data: Box<[u8]>,
}

impl CoreSubject {
    fn new(s: usize, n: usize, h: usize, overwrite: bool) -> Self {
        let geo = Geometry::new(s, n).unwrap();
        let mut state = Box::new(BufState::new());
        let mut padding: Box<[AtomicUsize]> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let mut data = vec![0u8; s * n].into_boxed_slice();
        // SAFETY: the three allocations live in the returned struct as long as `buf`, and are
        // not moved (boxes keep their heap address).
        let buf = unsafe {
            Buf::from_raw(
                (&mut *state).into(),
                std::ptr::NonNull::new(padding.as_mut_ptr()).unwrap(),
                std::ptr::NonNull::new(data.as_mut_ptr()).unwrap(),
                geo,
                0,
            )
        };
        let cb = TestCb::new(h, overwrite);
        // SAFETY: single-threaded test: we are the only writer; the state is fresh.
        unsafe { buf.init(&NoWake(&cb)).unwrap() };
        CoreSubject {
            buf,
            cb,
            _state: state,
            _padding: padding,
            _data: data,
        }
    }
}

// The test is single-threaded, so this thread always has writer and reader exclusivity.
impl Subject for CoreSubject {
    fn write(&mut self, data: &[u8]) -> bool {
        // SAFETY: single-threaded: writer exclusivity.
        unsafe { self.buf.write(&NoWake(&self.cb), data) }
    }
    fn reserve(&mut self, data: &[u8]) -> Option<usize> {
        // SAFETY: single-threaded: writer exclusivity.
        let slot = unsafe { self.buf.reserve(&NoWake(&self.cb), data.len()) }?;
        assert!(slot.pos + slot.len <= self.buf.geometry().size());
        // SAFETY: the slot lies inside the data region (asserted) and `data` is its length.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.buf.slot_ptr(slot), data.len())
        };
        Some(slot.pos)
    }
    fn flush(&mut self) {
        // SAFETY: single-threaded: writer exclusivity.
        unsafe { self.buf.flush(&NoWake(&self.cb)) }
    }
    fn reset(&mut self) {
        // SAFETY: single-threaded: writer and reader exclusivity.
        unsafe { self.buf.reset(&NoWake(&self.cb)).unwrap() }
    }
    fn consumed(&mut self, n: usize) {
        // SAFETY: single-threaded: reader exclusivity.
        unsafe { self.buf.subbufs_consumed(n) }
    }
    fn read(&mut self, count: usize) -> Vec<u8> {
        let mut out = vec![0u8; count];
        let mut sink = SliceSink::new(&mut out);
        // SAFETY: single-threaded: reader exclusivity.
        let got = unsafe { self.buf.read(&mut sink) };
        out.truncate(got);
        out
    }
    fn poll(&mut self) -> Poll {
        self.buf.poll()
    }
    fn buf(&self) -> &Buf {
        &self.buf
    }
    fn cb(&self) -> &TestCb {
        &self.cb
    }
}

/// The user-space channel with one global buffer, read through a `RelayFile` opened by path.
struct ChannelSubject {
    chan: Channel<Global<TestCb>>,
    file: RelayFile,
    _dir: TempDir,
}

impl ChannelSubject {
    fn new(s: usize, n: usize, h: usize, overwrite: bool) -> Self {
        let dir = TempDir::new("proptest");
        let chan = Channel::open(
            Some("buf"),
            Some(dir.path()),
            s,
            n,
            Global(TestCb::new(h, overwrite)),
        )
        .unwrap();
        assert!(chan.is_global());
        let file = RelayFile::open(dir.path().join("buf0")).unwrap();
        ChannelSubject {
            chan,
            file,
            _dir: dir,
        }
    }
}

impl Subject for ChannelSubject {
    fn write(&mut self, data: &[u8]) -> bool {
        self.chan.write(data)
    }
    fn reserve(&mut self, data: &[u8]) -> Option<usize> {
        let r = self.chan.reserve(data.len())?;
        assert!(r.fill(0, data));
        Some(r.position().1)
    }
    fn flush(&mut self) {
        self.chan.flush()
    }
    fn reset(&mut self) {
        self.chan.reset().unwrap()
    }
    fn consumed(&mut self, n: usize) {
        // Alternate between the writer-side and the reader-side entry points.
        if n % 2 == 0 {
            self.chan.subbufs_consumed(0, n)
        } else {
            self.file.subbufs_consumed(n).unwrap()
        }
    }
    fn read(&mut self, count: usize) -> Vec<u8> {
        let mut out = vec![0u8; count];
        let got = self.file.read(&mut out).unwrap();
        out.truncate(got);
        out
    }
    fn poll(&mut self) -> Poll {
        self.file.poll_now().unwrap()
    }
    fn buf(&self) -> &Buf {
        self.chan.buf(0).unwrap()
    }
    fn cb(&self) -> &TestCb {
        &self.chan.private_data().0
    }
}

fn check_same(m: &Model, sub: &mut dyn Subject, step: usize) {
    let b = sub.buf();
    let geo = b.geometry();
    let st: BufStats = b.stats();
    let ctx = format!("after step {step}");
    assert_eq!(st.subbufs_produced as u64, m.produced(), "produced {ctx}");
    assert_eq!(st.subbufs_consumed as u64, m.consumed(), "consumed {ctx}");
    assert_eq!(
        st.bytes_consumed,
        m.bytes_consumed(),
        "bytes_consumed {ctx}"
    );
    assert_eq!(st.offset, m.offset(), "offset {ctx}");
    assert_eq!(
        st.dropped_msgs as u64,
        m.dropped_msgs(),
        "dropped_msgs {ctx}"
    );
    assert_eq!(
        st.dropped_bytes as u64,
        m.dropped_bytes(),
        "dropped_bytes {ctx}"
    );
    assert_eq!(st.toobig_msgs as u64, m.toobig_count(), "toobig {ctx}");
    assert_eq!(st.last_toobig, m.last_toobig(), "last_toobig {ctx}");
    assert_eq!(st.lapped_subbufs as u64, m.lapped_subbufs(), "lapped {ctx}");
    assert_eq!(
        st.torn_reads, 0,
        "single-threaded reads are never torn {ctx}"
    );
    assert_eq!(b.buf_full(), m.buffer_full(), "buf_full {ctx}");
    for slot in 0..geo.n_subbufs() {
        assert_eq!(
            b.padding_of(slot),
            Some(m.padding(slot)),
            "padding[{slot}] {ctx}"
        );
    }
    // SAFETY: the data region is `size()` bytes and nobody writes while we look.
    let image = unsafe { std::slice::from_raw_parts(b.data_ptr(), geo.size()) };
    assert_eq!(image, m.image(), "buffer image {ctx}");
    assert_eq!(b.readable_bytes(), m.unread_bytes(), "readable bytes {ctx}");
    let expect_poll = match m.poll_ready() {
        Err(_) => Poll::Finalized,
        Ok(true) => Poll::Readable,
        Ok(false) => Poll::Empty,
    };
    assert_eq!(sub.poll(), expect_poll, "poll {ctx}");
    let calls = sub.cb().calls.lock().unwrap().clone();
    let expect: Vec<_> = m
        .start_calls()
        .iter()
        .map(|c| (c.slot, c.prev_slot, c.prev_padding, c.accepted.is_some()))
        .collect();
    assert_eq!(calls, expect, "subbuf_start calls {ctx}");
}

fn run(sub: &mut dyn Subject, s: usize, n: usize, h: usize, overwrite: bool, ops: &[Op]) {
    let mut m = Model::open(s, n, h, overwrite);
    check_same(&m, sub, 0);
    // Byte accounting: everything accepted is read, still unread, lapped or reset away.
    let mut accepted = h as u64; // the first header
    let mut read_total = 0u64;
    let mut discarded = 0u64;
    for (i, op) in ops.iter().enumerate() {
        let starts_before = m.starts_k();
        match *op {
            Op::Write(len, seed) => {
                let d = payload(len, seed);
                let ok = m.write(&d);
                assert_eq!(sub.write(&d), ok, "write({len}) result at step {i}");
                if ok {
                    accepted += len as u64;
                }
            }
            Op::Reserve(len, seed) => {
                let d = payload(len, seed);
                let pos = m.reserve(&d);
                assert_eq!(sub.reserve(&d), pos, "reserve({len}) position at step {i}");
                if let Some(p) = pos {
                    assert!(p + len <= s * n, "reserve out of bounds at step {i}");
                    accepted += len as u64;
                }
            }
            Op::Flush => {
                m.flush();
                sub.flush();
            }
            Op::Reset => {
                m.reset();
                sub.reset();
                accepted = 0;
                read_total = 0;
                discarded = 0;
            }
            Op::Consumed(k) => {
                let before = m.unread_bytes() as u64;
                m.subbufs_consumed(k);
                sub.consumed(k);
                discarded += before - m.unread_bytes() as u64;
            }
            Op::Read(count) => {
                let want = m.read(count);
                let got = sub.read(count);
                assert_eq!(got, want, "read({count}) bytes at step {i}");
                read_total += got.len() as u64;
            }
        }
        accepted += (m.starts_k() - starts_before) * h as u64;
        check_same(&m, sub, i + 1);
        if !overwrite {
            assert_eq!(
                accepted,
                read_total + m.unread_bytes() as u64 + discarded,
                "byte accounting at step {i}"
            );
        }
    }
    // Drain: nothing left behind, nothing returned twice.
    let rest = sub.read(2 * s * n + 64);
    assert_eq!(rest, m.read_all());
    assert!(sub.read(4096).is_empty(), "data after draining");
}

fn geometry() -> impl Strategy<Value = (usize, usize, usize, bool)> {
    (1usize..=24, 1usize..=4, any::<bool>(), any::<bool>()).prop_map(|(s, n, hdr, ow)| {
        let h = if hdr && s >= 4 { 1 + s % 3 } else { 0 };
        (s, n, h, ow)
    })
}

fn ops(s: usize) -> impl Strategy<Value = Vec<Op>> {
    let max = s + 3;
    let op = prop_oneof![
        6 => (0..=max, any::<u8>()).prop_map(|(l, b)| Op::Write(l, b)),
        2 => (0..=max, any::<u8>()).prop_map(|(l, b)| Op::Reserve(l, b)),
        1 => Just(Op::Flush),
        1 => Just(Op::Reset),
        1 => (0usize..=6).prop_map(Op::Consumed),
        4 => (0usize..=2 * s + 3).prop_map(Op::Read),
    ];
    prop::collection::vec(op, 1..120)
}

fn case() -> impl Strategy<Value = ((usize, usize, usize, bool), Vec<Op>)> {
    geometry().prop_flat_map(|g| (Just(g), ops(g.0)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn core_matches_model(((s, n, h, ow), ops) in case()) {
        let mut sub = CoreSubject::new(s, n, h, ow);
        run(&mut sub, s, n, h, ow, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn user_channel_matches_model(((s, n, h, ow), ops) in case()) {
        let mut sub = ChannelSubject::new(s, n, h, ow);
        run(&mut sub, s, n, h, ow, &ops);
    }
}
