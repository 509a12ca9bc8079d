//! A reader must survive whatever is in a buffer file: the control block is shared memory that a
//! crashed or buggy process may have left in any state. Errors, never panics, hangs or
//! out-of-bounds reads.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use relay::user::{Channel, Global, RelayFile};
use relay::{NoOverwrite, Poll};
use support::TempDir;

mod support;

/// Offset of the control block in a buffer file: right after the 80-byte header, 64-aligned.
const STATE_OFF: u64 = 128;
/// The reader lock word: first word of the reader cache line (second line of the state).
const READER_LOCK_OFF: u64 = STATE_OFF + 64;
/// The writer's switch seqlock: seventh word of the writer cache line (core/state.rs).
const SWITCH_SEQ_OFF: u64 = STATE_OFF + 6 * 8;

/// A writer stalled in the middle of a sub-buffer switch (the seqlock left odd, as when it is
/// preempted there) makes readers' snapshots inconclusive; finishing the switch may produce
/// nothing and wake nobody. A reader blocked in `poll(None)` must still see the complete
/// sub-buffer soon after the switch ends, instead of sleeping until the next wakeup.
#[test]
fn poll_recovers_from_a_stalled_switch() {
    let tmp = TempDir::new("stalled_switch");
    let dir = tmp.path();
    let chan = Channel::open(Some("c"), Some(dir), 64, 4, Global(NoOverwrite)).unwrap();
    chan.write(&[1u8; 60]);
    chan.write(&[2u8; 60]); // switches: one complete sub-buffer
    let path = dir.join("c0");
    let raw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut seq = [0u8; 8];
    raw.read_exact_at(&mut seq, SWITCH_SEQ_OFF).unwrap();
    let seq = u64::from_ne_bytes(seq);
    assert_eq!(seq % 2, 0);
    raw.write_all_at(&(seq + 1).to_ne_bytes(), SWITCH_SEQ_OFF)
        .unwrap();
    let f = RelayFile::open(&path).unwrap();
    // The premise: with the seqlock odd the reader cannot tell that data waits.
    assert_eq!(f.poll_now().unwrap(), Poll::Empty);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f.poll(None).map_err(|e| e.to_string()));
    });
    std::thread::sleep(Duration::from_millis(50));
    // The writer resumes and ends the switch without producing anything (nobody is woken).
    raw.write_all_at(&(seq + 2).to_ne_bytes(), SWITCH_SEQ_OFF)
        .unwrap();
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("reader still asleep 5 s after the switch ended");
    assert_eq!(r.unwrap(), Poll::Readable);
    drop(chan);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random bytes over the whole control block and padding array (the reader lock kept free):
    /// `read`, `poll` and `readable_bytes` terminate, never panic, and never return more than the
    /// buffer holds.
    #[test]
    fn corrupt_control_block(garbage in prop::collection::vec(any::<u8>(), 4096 - 128)) {
        let tmp = TempDir::new("corrupt_control_block");
        let dir = tmp.path();
        // 4 × 1024 bytes fill the data mapping exactly: an out-of-bounds copy faults.
        let chan = Channel::open(Some("c"), Some(dir), 1024, 4, Global(NoOverwrite)).unwrap();
        let path = dir.join("c0");
        chan.write(b"some bytes");
        let raw = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut f = RelayFile::open(&path).unwrap();
        drop(chan);
        raw.write_all_at(&garbage, STATE_OFF).unwrap();
        raw.write_all_at(&0usize.to_ne_bytes(), READER_LOCK_OFF).unwrap();

        let start = Instant::now();
        let mut out = vec![0u8; 16 * 1024];
        for _ in 0..8 {
            let n = f.read(&mut out).unwrap();
            prop_assert!(n <= out.len());
            let _ = f.poll_now().unwrap();
        }
        prop_assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// Random bytes as a whole file: opening it is an error or a valid buffer, never a panic.
    #[test]
    fn garbage_file(bytes in prop::collection::vec(any::<u8>(), 0..9000), keep_magic in any::<bool>()) {
        let tmp = TempDir::new("garbage_file");
        let dir = tmp.path();
        let path = dir.join("x0");
        let mut bytes = bytes;
        if keep_magic && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(&relay::user::MAGIC);
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut f) = RelayFile::open(&path) {
            let mut out = vec![0u8; 256];
            let _ = f.read(&mut out);
        }
    }
}

/// A reader process that died holding the reader lock does not block the next reader.
#[test]
fn reader_lock_of_dead_process_is_taken_over() {
    let tmp = TempDir::new("reader_lock_of_dead_process");
    let dir = tmp.path();
    let chan = Channel::open(Some("c"), Some(dir), 64, 4, Global(NoOverwrite)).unwrap();
    let path = dir.join("c0");
    assert!(chan.write(b"after a crash"));
    // A pid that certainly existed and is gone now.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id() as usize;
    child.wait().unwrap();
    let raw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    raw.write_all_at(&dead.to_ne_bytes(), READER_LOCK_OFF)
        .unwrap();
    let mut f = RelayFile::open(&path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = vec![0u8; 64];
        let n = f.read(&mut out).unwrap();
        tx.send(out[..n].to_vec()).unwrap();
    });
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("reader blocked by a dead process's lock");
    assert_eq!(got, b"after a crash");
    assert_eq!(chan.buf(0).unwrap().poll(), Poll::Empty);
}
