//! One consuming reader per buffer: a second reader's first consuming operation is refused
//! with `ResourceBusy` naming the holder's pid (in this process or another one), snapshots
//! (mmap, poll, stats) stay allowed, and the claim goes with its file or its process.
//!
//! The other process is this test binary re-executed with a filter for `child_claims` (see
//! `support::ChildProc`).

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use relay::user::{Channel, Global, RelayFile};
use relay::{NoOverwrite, Poll};
use support::*;

const LONG: Duration = Duration::from_secs(60);

fn fill(chan: &Channel<Global<NoOverwrite>>, n: u64) -> Vec<u8> {
    let mut all = Vec::new();
    for seq in 0..n {
        let m = encode(0, seq);
        assert!(chan.write(&m));
        all.extend_from_slice(&m);
    }
    chan.flush();
    all
}

#[test]
fn a_second_reader_in_this_process_is_refused_until_the_first_goes() {
    let dir = TempDir::new("claim_in_process");
    let chan = Channel::open(Some("c"), Some(dir.path()), 4096, 8, Global(NoOverwrite)).unwrap();
    let written = fill(&chan, 200);
    let mut first = chan.open_file(0).unwrap();
    let mut second = chan.open_file(0).unwrap();
    let mut by_path = RelayFile::open(chan.paths()[0].as_ref().unwrap()).unwrap();

    let mut got = vec![0u8; 1000];
    let n = first.read(&mut got).unwrap();
    got.truncate(n);
    assert!(first.is_claimed());
    for other in [&mut second, &mut by_path] {
        let e = other.read(&mut [0u8; 100]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ResourceBusy, "{e}");
        let msg = e.to_string();
        let me = format!("pid {} (this process)", std::process::id());
        assert!(msg.contains(&me), "names the holder: {msg}");
        assert!(msg.contains("/c0"), "names the file: {msg}");
        assert!(msg.contains("--snapshot"), "suggests a snapshot: {msg}");
        assert_eq!(
            other.subbufs_consumed(1).unwrap_err().kind(),
            ErrorKind::ResourceBusy
        );
        assert_eq!(other.claim().unwrap_err().kind(), ErrorKind::ResourceBusy);
        // Non-consuming access stays allowed.
        assert_eq!(other.poll_now().unwrap(), Poll::Readable);
        let map = other.mmap(4096 * 8).unwrap();
        assert_eq!(&map.as_slice()[..n], &written[..n]);
    }
    // The refused readers consumed nothing: the first one reads on where it stopped.
    let mut rest = vec![0u8; written.len()];
    let k = first.read(&mut rest).unwrap();
    got.extend_from_slice(&rest[..k]);
    assert_eq!(got, written);

    // The claim goes with its file.
    drop(first);
    let more = fill(&chan, 10);
    let mut buf = vec![0u8; 4096];
    let k = second.read(&mut buf).unwrap();
    assert_eq!(&buf[..k], &more[..]);
    assert_eq!(
        by_path.read(&mut buf).unwrap_err().kind(),
        ErrorKind::ResourceBusy
    );
}

#[test]
fn a_reader_in_another_process_is_named_and_its_death_releases_the_claim() {
    let dir = TempDir::new("claim_cross_process");
    let chan = Channel::open(Some("c"), Some(dir.path()), 4096, 8, Global(NoOverwrite)).unwrap();
    let written = fill(&chan, 100);
    let path = chan.paths()[0].clone().unwrap();
    let mut child = ChildProc::spawn("child_claims", &[("path", path.display().to_string())]);
    let child_pid = child.expect_line("CLAIMED", LONG);
    let mut f = RelayFile::open(&path).unwrap();
    let e = f.read(&mut [0u8; 64]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResourceBusy);
    assert!(
        e.to_string().contains(&format!("pid {child_pid}")),
        "names the child {child_pid}: {e}"
    );
    // SIGKILL: the kernel releases the lock with the process.
    drop(child);
    let mut buf = vec![0u8; 1 << 16];
    let k = f.read(&mut buf).unwrap();
    assert_eq!(&buf[..k], &written[..], "the child consumed nothing");
}

/// Child body: claims the buffer, reports its pid and waits to be killed.
#[test]
fn child_claims() {
    let Some(p) = child_params() else { return };
    let mut f = RelayFile::open(&p["path"]).unwrap();
    f.claim().unwrap();
    println!("CLAIMED {}", std::process::id());
    child_wait_line();
}
