//! What chaos-writer's events carry, shared with the suite that checks them
//! (examples/tests/chaos.rs): every argument is derived from the thread `t` and its sequence
//! number `seq`, so a checker recomputes it and a damaged value that still decodes is caught.

/// The names of the `retry` form (index `seq % 5`).
pub const NAMES: [&str; 5] = [
    "eth0",
    "nvme0n1",
    "",
    "wlan-ünïcode",
    "a much longer device name",
];

/// `t` of the first fork-storm child (no parent thread has such a `t`).
pub const CHILD_T: u32 = 1_000_000;

/// The `v` argument (and the last word of a raw record).
pub fn mix(t: u32, seq: u64) -> u32 {
    let x = (seq ^ (u64::from(t) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) as u32
}
