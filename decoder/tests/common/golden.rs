//! The small hand-made trace of the golden tests (text, JSON, Chrome).

use super::*;
use klog::ArgType as T;
use klog::Level;

const CLOCK: &[(u8, u64, u64, u64)] = &[(MONO, 0, 100_000_000_000, 1_000_000_000)];

pub fn golden_metadata() -> Vec<u8> {
    metadata(
        2,
        false,
        256,
        4,
        CLOCK,
        &[
            def(
                1,
                Level::Warn,
                "rx queue {0} stalled after {1} us, flags={2:#x}",
                "my_mod::rx",
                &[T::Unsigned as u8, T::Unsigned as u8, T::Unsigned as u8],
            ),
            def(
                2,
                Level::Info,
                "temp {0:>6.2} C, ok={1}, name={2:?}",
                "app::sensor",
                &[T::F64 as u8, T::Bool as u8, T::Str as u8],
            ),
            def(
                3,
                Level::Error,
                "code {0:+05} ch {1:?} bytes {2:?} {{literal}}",
                "app",
                &[T::Signed as u8, T::Char as u8, T::Bytes as u8],
            ),
            raw_def(4, "app::dump"),
        ],
    )
}

/// [`golden_metadata`] of format version `version`.
pub fn golden_metadata_version(version: u16) -> Vec<u8> {
    let mut m = golden_metadata();
    set_version(&mut m, version);
    m
}

pub fn golden_streams() -> Vec<Vec<u8>> {
    golden_streams_version(klog::wire::VERSION)
}

/// The golden streams with the `ts_delta`s of format version `version`.
pub fn golden_streams_version(version: u16) -> Vec<Vec<u8>> {
    let mut c0 = Stream::with_version(0, 256, version);
    c0.sub(1_000_000_000, 0)
        .event(1, 1_000_000_500, (&3u32, &41u64, &0x1fu16))
        .event(2, 1_250_000_000, (&21.456f64, &true, &"e\"th0"));
    let mut c1 = Stream::with_version(1, 256, version);
    c1.sub(1_100_000_000, 0)
        .event(3, 1_100_000_000, (&-7i32, &'x', &[1u8, 2, 255][..]))
        .raw(4, 1_300_000_000, &[0xde, 0xad])
        .sub(1_400_000_000, 1234)
        .event(1, 1_400_000_100, (&4u32, &7u64, &0u16));
    vec![c0.read_stream(), c1.read_stream()]
}
