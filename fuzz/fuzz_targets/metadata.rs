//! The metadata parser on arbitrary bytes: never panics; what it keeps is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stats = klog_decode::Stats::default();
    if let Ok(m) = klog_decode::parse_metadata(data, &mut stats) {
        assert!(m.parsed_len <= data.len());
        for (id, cs) in &m.callsites {
            assert_eq!(*id, cs.id);
        }
        let _ = klog_decode::ClockConv::new(&m.clocks, &mut stats);
    }
});
