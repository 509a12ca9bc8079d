//! The incremental follow-mode decoder (`LiveStream`) gives the same records as the
//! whole-stream decoder whatever the read chunking, and re-asks for metadata on unknown ids.

mod common;

use common::golden::*;
use klog_decode::{decode_stream, parse_metadata, LiveStream, Record, Stats, Step};
use proptest::prelude::*;

fn live_decode(meta: &klog_decode::Metadata, cpu: u16, data: &[u8], chunk: usize) -> Vec<Record> {
    let mut s = LiveStream::new(cpu);
    let mut out = Vec::new();
    for c in data.chunks(chunk.max(1)) {
        s.push(c);
        loop {
            match s.next(meta) {
                Step::Record(r) => out.push(r),
                Step::NeedMore => break,
                Step::NeedMetadata(id) => panic!("callsite {id} is defined"),
            }
        }
    }
    s.finish();
    assert_eq!(s.stats().total_warnings(), 0, "{}", s.stats());
    out
}

#[test]
fn same_records_as_the_whole_stream_decoder() {
    let meta = parse_metadata(&golden_metadata(), &mut Stats::default()).unwrap();
    for (cpu, data) in golden_streams().iter().enumerate() {
        let (want, _) = decode_stream(&meta, cpu as u16, data);
        for chunk in [1, 2, 3, 5, 7, 31, 32, 33, 64, 1000] {
            assert_eq!(
                live_decode(&meta, cpu as u16, data, chunk),
                want,
                "chunk {chunk}"
            );
        }
    }
}

#[test]
fn unknown_callsite_asks_for_metadata_once() {
    let full = parse_metadata(&golden_metadata(), &mut Stats::default()).unwrap();
    // Only the header and clock: no callsite defined yet.
    let mut early = full.clone();
    early.callsites.clear();
    let data = &golden_streams()[0];
    let mut s = LiveStream::new(0);
    s.push(data);
    assert_eq!(s.next(&early), Step::NeedMetadata(1));
    // Re-read: now it decodes.
    let Step::Record(r) = s.next(&full) else {
        panic!()
    };
    assert_eq!(r, decode_stream(&full, 0, data).0[0]);
    // Still unknown after a re-read: skipped with a warning, not asked again.
    assert_eq!(s.next(&early), Step::NeedMetadata(2));
    assert_eq!(s.next(&early), Step::NeedMore);
    assert_eq!(s.stats().skipped_frames, 1);
}

proptest! {
    #[test]
    fn arbitrary_bytes_and_chunks_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk in 1usize..300,
    ) {
        let meta = parse_metadata(&golden_metadata(), &mut Stats::default()).unwrap();
        let mut s = LiveStream::new(0);
        let mut n = 0usize;
        for c in data.chunks(chunk) {
            s.push(c);
            loop {
                match s.next(&meta) {
                    Step::Record(_) => n += 1,
                    Step::NeedMore => break,
                    Step::NeedMetadata(_) => {}
                }
                prop_assert!(n <= data.len());
            }
        }
        s.finish();
    }
}

#[test]
fn headers_of_another_trace_are_not_decoded() {
    let mut meta = parse_metadata(&golden_metadata(), &mut Stats::default()).unwrap();
    meta.header.trace_id = Some(1); // another run's metadata
    for (cpu, data) in golden_streams().iter().enumerate() {
        let (recs, stats) = decode_stream(&meta, cpu as u16, data);
        assert!(recs.is_empty(), "{recs:?}");
        assert_eq!(stats.count(klog_decode::WarningKind::TraceId), 1, "{stats}");
        let mut s = LiveStream::new(cpu as u16);
        s.push(data);
        loop {
            match s.next(&meta) {
                Step::Record(r) => panic!("decoded {r:?} of another trace"),
                Step::NeedMore => break,
                Step::NeedMetadata(_) => {}
            }
        }
        assert!(s.stats().total_warnings() > 0);
    }
}
