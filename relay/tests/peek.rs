//! `RelayFile::peek` / `consume` / `read_position`: a consumer that copies, stores, then consumes
//! loses nothing when it dies in between; the position it reports is where `read` would start.

use relay::user::{Channel, Global, ReadPos, RelayFile};
use relay::{NoOverwrite, Overwrite};

#[test]
fn peek_copies_without_consuming_and_consume_moves_to_its_end() {
    let chan = Channel::open(None, None, 64, 4, Global(NoOverwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    assert_eq!(f.read_position().unwrap(), Some(ReadPos::default()));
    for i in 0..6u8 {
        assert!(chan.write(&[i; 20]));
    }
    // 3 messages (60 bytes) per 64-byte sub-buffer: 4 bytes of padding, then the rest.
    let mut a = [0u8; 50];
    let (n, start, end) = f.peek(&mut a, None).unwrap();
    assert_eq!(
        (n, start, end),
        (
            50,
            ReadPos::default(),
            ReadPos {
                subbuf: 0,
                offset: 50
            }
        )
    );
    // Nothing moved: the same bytes again, and `read` would return them too.
    let mut b = [0u8; 50];
    assert_eq!(f.peek(&mut b, None).unwrap(), (50, start, end));
    assert_eq!(a, b);
    assert_eq!(f.read_position().unwrap(), Some(start));
    f.consume(end).unwrap();
    assert_eq!(f.read_position().unwrap(), Some(end));
    // A peek ends with its sub-buffer: the rest of it (10 bytes, the padding skipped) ...
    let mut c = [0u8; 100];
    let (n, start2, end2) = f.peek(&mut c, None).unwrap();
    assert_eq!(
        (n, start2, end2),
        (
            10,
            end,
            ReadPos {
                subbuf: 1,
                offset: 0
            }
        )
    );
    assert_eq!(&c[..10], &[2u8; 10]);
    // ... and the next peek goes on from where it ended, without anything consumed yet.
    let (n, start3, end3) = f.peek(&mut c[10..], Some(end2)).unwrap();
    assert_eq!(
        (n, start3, end3),
        (
            60,
            end2,
            ReadPos {
                subbuf: 1,
                offset: 60
            }
        )
    );
    assert_eq!(&c[10..30], &[3u8; 20]);
    assert_eq!(f.read_position().unwrap(), Some(end));
    f.consume(end3).unwrap();
    assert_eq!(f.read(&mut c).unwrap(), 0);
}

/// A consumer that peeked and then "died" (dropped its file without consuming) leaves every byte
/// for the next reader.
#[test]
fn a_reader_that_dies_after_peek_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("relay-peek-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let chan = Channel::open(Some("p"), Some(&dir), 4096, 4, Global(NoOverwrite)).unwrap();
    for i in 0..100u32 {
        assert!(chan.write(&i.to_le_bytes()));
    }
    let mut buf = vec![0u8; 1 << 16];
    {
        let mut f = RelayFile::open(dir.join("p0")).unwrap();
        let (n, _, end) = f.peek(&mut buf[..160], None).unwrap();
        assert_eq!(n, 160);
        f.consume(end).unwrap();
        let (n, _, _) = f.peek(&mut buf, None).unwrap();
        assert_eq!(n, 240);
        // Dies here, before consuming.
    }
    let mut g = RelayFile::open(dir.join("p0")).unwrap();
    assert_eq!(
        g.read_position().unwrap(),
        Some(ReadPos {
            subbuf: 0,
            offset: 160
        })
    );
    let n = g.read(&mut buf).unwrap();
    assert_eq!(n, 240);
    let got: Vec<u32> = buf[..n]
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, (40..100).collect::<Vec<_>>());
    drop(chan);
    let _ = std::fs::remove_dir_all(&dir);
}

/// In overwrite mode a peek that finds itself lapped skips to the oldest intact sub-buffer (as
/// `read` does) and reports that position as the start of what it copied (one sub-buffer).
#[test]
fn peek_after_a_lap_starts_at_the_oldest_intact_subbuf() {
    let chan = Channel::open(None, None, 64, 4, Global(Overwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    for i in 0..30u8 {
        assert!(chan.write(&[i; 32]));
    }
    // 2 messages per sub-buffer, the switch happens at the next write: sub-buffers 0..=13 are
    // produced and the writer's slot holds sub-buffer 14 (full), so 11..=14 are intact.
    let mut b = [0u8; 512];
    let (n, start, end) = f.peek(&mut b, None).unwrap();
    assert_eq!(
        start,
        ReadPos {
            subbuf: 11,
            offset: 0
        }
    );
    assert_eq!(n, 64);
    assert_eq!((b[0], b[n - 1]), (22, 23));
    assert_eq!(
        end,
        ReadPos {
            subbuf: 12,
            offset: 0
        }
    );
    assert_eq!(f.stats().unwrap().lapped_subbufs, 11);
    // The lap itself is applied (those sub-buffers are gone for everyone), the copy is not.
    assert_eq!(f.read_position().unwrap(), Some(start));
}

/// A run of peeks that follows an overwriting writer through more sub-buffers than the buffer
/// has, then one consume: the read position moves to the end of the run (it was once ignored as
/// "too far ahead", and the next read returned the same bytes again).
#[test]
fn consume_accepts_a_run_of_peeks_longer_than_the_buffer() {
    let chan = Channel::open(None, None, 64, 4, Global(Overwrite)).unwrap();
    let mut f = chan.open_file(0).unwrap();
    let mut b = [0u8; 64];
    let mut end = None;
    for i in 0..7u8 {
        assert!(chan.write(&[i; 32]) && chan.write(&[i; 32]));
        let (n, _, e) = f.peek(&mut b, end).unwrap();
        assert_eq!((n, b[0]), (64, i));
        end = Some(e);
    }
    let end = end.unwrap();
    assert_eq!(
        end,
        ReadPos {
            subbuf: 6,
            offset: 64
        }
    );
    f.consume(end).unwrap();
    assert_eq!(f.read_position().unwrap(), Some(end));
    assert_eq!(f.read(&mut b).unwrap(), 0);
}
