//! The incremental follow-mode decoder on arbitrary bytes pushed in arbitrary chunks: never
//! panics, and decodes a well-formed stream the same as the whole-stream decoder does (checked
//! by the unit tests; here: no panic, no unbounded growth).
#![no_main]

use klog_decode::{LiveStream, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let mut stats = klog_decode::Stats::default();
    // Format version 1, 2 or 3 (time deltas relative to the base or to the previous frame;
    // version 3: 40-byte headers with a trace id, here 0).
    let version = 1 + u16::from(chunk % 3);
    let meta_bytes = {
        let mut h = vec![if version >= 3 { 30u8 } else { 22 }, 1];
        h.extend_from_slice(b"KLOGMETA");
        h.extend_from_slice(&version.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.push(0);
        h.extend_from_slice(&256u32.to_le_bytes());
        h.extend_from_slice(&4u32.to_le_bytes());
        if version >= 3 {
            h.extend_from_slice(&0u64.to_le_bytes());
        }
        h
    };
    let meta = klog_decode::parse_metadata(&meta_bytes, &mut stats).expect("valid");
    let mut s = LiveStream::new(0);
    let n = usize::from(chunk).max(1);
    let mut out = 0usize;
    for c in rest.chunks(n) {
        s.push(c);
        loop {
            match s.next(&meta) {
                Step::Record(_) => out += 1,
                Step::NeedMore => break,
                Step::NeedMetadata(_) => {}
            }
            assert!(out <= rest.len());
        }
    }
    s.finish();
});
