//! Hand-computed layouts for the relay documentation's examples, and `relay_open`'s parameter
//! checks. Every expected byte below was worked out by hand from relay.rst / relay.c.

mod support;

use relay::core::SubbufStart;
use relay::user::{Channel, ChannelCallbacks, Error, Global, RelayFile};
use relay::{Callbacks, Geometry, OpenError, Poll};
use support::TempDir;

/// relay.rst's "padding header" client: each sub-buffer starts with a u32 the client reserves;
/// at each switch it stores the previous sub-buffer's padding there. `overwrite` picks the
/// documentation's overwrite variant (always switch) over the no-overwrite one.
struct PaddingHeader {
    overwrite: bool,
}

impl Callbacks for PaddingHeader {
    fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
        let pad = ctx.prev_padding() as u32;
        ctx.write_prev_subbuf(0, &pad.to_le_bytes());
        if !self.overwrite && ctx.buf_full() {
            return false;
        }
        ctx.reserve(4).is_ok()
    }
}

impl ChannelCallbacks for PaddingHeader {}

fn image(chan: &Channel<Global<PaddingHeader>>) -> Vec<u8> {
    let b = chan.buf(0).unwrap();
    // SAFETY: single-threaded test; the data region is `size()` bytes.
    unsafe { std::slice::from_raw_parts(b.data_ptr(), b.geometry().size()) }.to_vec()
}

#[test]
fn padding_header_no_overwrite() {
    let tmp = TempDir::new("padding_header_no_overwrite");
    let dir = tmp.path();
    // 2 sub-buffers of 16 bytes, 4-byte header each: 12 payload bytes per sub-buffer.
    let chan = Channel::open(
        Some("cpu"),
        Some(dir),
        16,
        2,
        Global(PaddingHeader { overwrite: false }),
    )
    .unwrap();
    let mut f = RelayFile::open(dir.join("cpu0")).unwrap();

    assert!(chan.write(b"AAAAAAA")); // 7 bytes at 4..11
    assert!(chan.write(b"BBBBBB")); // 6 bytes: 11 + 6 > 16 → switch; padding[0] = 16 - 11 = 5
    assert!(chan.write(b"CCCCCC")); // 6 bytes at 10..16 of sub-buffer 1: exact fit, no switch
    assert_eq!(f.poll_now().unwrap(), Poll::Readable);
    // Sub-buffer 0: header = padding 5; then A×7; 5 bytes of zero padding.
    // Sub-buffer 1: header still 0 (its padding is unknown until the next switch); B×6 C×6.
    let mut expect = Vec::new();
    expect.extend_from_slice(&5u32.to_le_bytes());
    expect.extend_from_slice(b"AAAAAAA");
    expect.extend_from_slice(&[0; 5]);
    expect.extend_from_slice(&0u32.to_le_bytes());
    expect.extend_from_slice(b"BBBBBBCCCCCC");
    assert_eq!(image(&chan), expect);
    let st = chan.buf(0).unwrap().stats();
    assert_eq!((st.subbufs_produced, st.offset), (1, 16));
    assert_eq!(chan.buf(0).unwrap().padding_of(0), Some(5));

    // Both sub-buffers unconsumed and the writer needs a third: refused, message dropped.
    assert!(!chan.write(b"D"));
    // D needed a switch: sub-buffer 1 finished with padding 0 (produced 2, full) → refused.
    let st = chan.buf(0).unwrap().stats();
    assert_eq!(
        (st.subbufs_produced, st.offset, st.dropped_msgs),
        (2, 17, 1),
        "switch refused"
    );
    assert!(chan.buf_full(0).unwrap());

    // read() strips padding: 4 + 7 from sub-buffer 0, then all 16 of sub-buffer 1.
    let mut out = vec![0u8; 64];
    let n = f.read(&mut out).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(&5u32.to_le_bytes());
    want.extend_from_slice(b"AAAAAAA");
    want.extend_from_slice(&0u32.to_le_bytes());
    want.extend_from_slice(b"BBBBBBCCCCCC");
    assert_eq!(&out[..n], &want[..]);
    assert!(!chan.buf_full(0).unwrap());

    // The writer resumes in slot 0 (sub-buffer 2). Its reserved header still holds sub-buffer
    // 0's value (5) until the next switch stores the real padding: relay only reserves the
    // header, the client fills it.
    assert!(chan.write(b"EE"));
    let n = f.read(&mut out).unwrap();
    assert_eq!(
        &out[..n],
        &[5, 0, 0, 0, b'E', b'E'],
        "partial sub-buffer readable"
    );
}

#[test]
fn padding_header_overwrite_lap() {
    let tmp = TempDir::new("padding_header_overwrite_lap");
    let dir = tmp.path();
    let chan = Channel::open(
        Some("cpu"),
        Some(dir),
        8,
        2,
        Global(PaddingHeader { overwrite: true }),
    )
    .unwrap();
    let mut f = chan.open_file(0).unwrap();
    // 4 payload bytes per sub-buffer: each 3-byte write fills one sub-buffer (padding 1).
    for msg in [b"111", b"222", b"333", b"444"] {
        assert!(chan.write(msg));
    }
    // Sub-buffers 0..2 produced; the writer is in sub-buffer 3 (slot 1). The reader lags by 3,
    // which is ≥ n_subbufs: it skips to sub-buffer 2 (slot 0), the oldest intact one.
    let mut out = vec![0u8; 64];
    let n = f.read(&mut out).unwrap();
    let mut want = Vec::new();
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(b"333");
    // Sub-buffer 3 (slot 1) is in progress: its header still holds sub-buffer 1's padding (1).
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(b"444");
    assert_eq!(&out[..n], &want[..]);
    assert_eq!(chan.buf(0).unwrap().stats().lapped_subbufs, 2);
}

#[test]
fn open_parameter_checks() {
    assert_eq!(Geometry::new(0, 4), Err(OpenError::ZeroSize));
    assert_eq!(Geometry::new(4096, 0), Err(OpenError::ZeroSize));
    assert_eq!(Geometry::new(usize::MAX, 2), Err(OpenError::TooLarge));
    // 4 GiB exactly is one byte over relay's UINT_MAX limit.
    assert_eq!(Geometry::new(1 << 20, 4096), Err(OpenError::TooLarge));
    assert!(Geometry::new((1 << 20) - 1, 4096).is_ok());
    assert_eq!(Geometry::new(4096, 8).unwrap().alloc_size(4096), 32768);
    assert_eq!(Geometry::new(100, 3).unwrap().alloc_size(4096), 4096);

    let tmp = TempDir::new("open_parameter_checks");
    let dir = tmp.path();
    match Channel::open(Some("x"), Some(dir), 0, 2, relay::NoOverwrite) {
        Err(Error::Param(OpenError::ZeroSize)) => {}
        other => panic!("expected ZeroSize, got {:?}", other.err()),
    }
    match Channel::open(Some("a/b"), Some(dir), 64, 2, relay::NoOverwrite) {
        Err(Error::BadName(_)) => {}
        other => panic!("expected BadName, got {:?}", other.err()),
    }

    struct BigHeader;
    impl Callbacks for BigHeader {
        fn subbuf_start(&self, ctx: &mut SubbufStart<'_>) -> bool {
            // relay.c: BUG_ON(length >= subbuf_size - 1) → 63 is one too many for 64.
            let _ = ctx.reserve(63);
            true
        }
    }
    impl ChannelCallbacks for BigHeader {}
    match Channel::open(Some("h"), Some(dir), 64, 2, BigHeader) {
        Err(Error::Param(OpenError::HeaderTooLarge {
            len: 63,
            subbuf_size: 64,
        })) => {}
        other => panic!("expected HeaderTooLarge, got {:?}", other.err()),
    }
    // A failed open leaves no files behind.
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
    // An existing file is an error from create_buf_file, not a silent reuse.
    std::fs::write(dir.join("e0"), b"x").unwrap();
    assert!(matches!(
        Channel::open(Some("e"), Some(dir), 64, 2, relay::NoOverwrite),
        Err(Error::Io { .. })
    ));
}

#[test]
fn toobig_reported_at_close() {
    let chan = Channel::open(None, None, 32, 2, relay::NoOverwrite).unwrap();
    assert!(!chan.write(&[0u8; 33]));
    assert!(chan.write(&[0u8; 32]));
    let report = chan.close();
    assert_eq!(report.last_toobig, Some(33));
    assert_eq!(
        report.to_string(),
        "relay: one or more items not logged [item size (33) > sub-buffer size (32)]"
    );
}

#[test]
fn write_with_max_switches_on_max_publishes_used() {
    let chan = Channel::open(None, None, 16, 2, Global(relay::NoOverwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    // Room for 10 is found at offset 0; only 3 bytes are used and published.
    assert!(chan.write_with_max(10, |s| {
        s[..3].copy_from_slice(b"abc");
        3
    }));
    assert_eq!(chan.buf(0).unwrap().stats().offset, 3);
    // 3 + 14 > 16: the switch happens on `max`, although the 2 bytes used would have fit.
    assert!(chan.write_with_max(14, |s| {
        s[..2].copy_from_slice(b"de");
        2
    }));
    let b = chan.buf(0).unwrap();
    assert_eq!(b.padding_of(0), Some(13));
    assert_eq!((b.stats().subbufs_produced, b.stats().offset), (1, 2));
    // A fill that claims more than `max` is clamped to `max`.
    // SAFETY: this test is the only writer of the channel.
    assert!(unsafe {
        chan.write_with_max_unlocked(0, 4, |s| {
            s[..4].copy_from_slice(b"fghi");
            99
        })
    });
    assert_eq!(b.stats().offset, 6);
    let mut out = [0u8; 32];
    let n = f.read(&mut out).unwrap();
    assert_eq!(&out[..n], b"abcdefghi");
    // SAFETY: as above.
    unsafe { chan.flush_unlocked(0) };
    assert_eq!(b.stats().subbufs_produced, 2);
    // SAFETY: as above.
    let wrote = unsafe { chan.write_with_max_unlocked(7, 1, |_| 1) };
    assert!(!wrote, "no buffer 7");
}
