//! The event clock (user space).
//!
//! The timestamp is the largest fixed cost of an event. On x86_64 with an invariant TSC
//! (CPUID 0x80000007 EDX bit 8: constant rate, runs in all C-states, synchronised across cores
//! by the kernel) klog reads the TSC (~10 ns here) instead of `clock_gettime(CLOCK_MONOTONIC)`
//! (~25 ns). Raw TSC values go into the trace together with clock records pairing a TSC value
//! with CLOCK_MONOTONIC (written when the handler opens and when it finishes); the decoder
//! converts by linear interpolation, so printed nanoseconds line up across CPUs and with other
//! CLOCK_MONOTONIC timestamps (including the kernel's).
//!
//! Limits: a TSC that is not synchronised across sockets (rare; the kernel then marks it
//! unstable and we would not know) would misorder events across CPUs; virtual machines that
//! migrate between hosts may step the TSC. Set `KLOG_CLOCK=monotonic` to force the fallback.

use std::time::Duration;

/// Which clock raw timestamps come from (the `source` of docs/FORMAT.md's clock record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// CLOCK_MONOTONIC nanoseconds.
    Monotonic = 0,
    /// The invariant TSC.
    Tsc = 1,
}

/// A clock reference: a raw value and CLOCK_MONOTONIC read at (nearly) the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRef {
    /// Raw clock value.
    pub raw: u64,
    /// CLOCK_MONOTONIC in ns.
    pub mono_ns: u64,
    /// Estimated raw ticks per second.
    pub ticks_per_sec: u64,
}

/// The chosen clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    source: ClockSource,
    ticks_per_sec: u64,
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid` is unsafe before Rust 1.87 (the kernel's toolchain is 1.85)
fn invariant_tsc() -> bool {
    // SAFETY: CPUID is available on every x86_64 CPU; leaf 0x80000000 reports the highest
    // extended leaf, checked before reading 0x80000007.
    unsafe {
        let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
        max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn invariant_tsc() -> bool {
    false
}

impl Clock {
    /// Picks the clock (TSC when invariant, unless `KLOG_CLOCK=monotonic`) and calibrates it
    /// against CLOCK_MONOTONIC over about 10 ms.
    pub fn choose() -> Clock {
        let forced = std::env::var("KLOG_CLOCK").is_ok_and(|v| v == "monotonic");
        if forced || !invariant_tsc() {
            return Clock {
                source: ClockSource::Monotonic,
                ticks_per_sec: 1_000_000_000,
            };
        }
        let mut c = Clock {
            source: ClockSource::Tsc,
            ticks_per_sec: 1,
        };
        let a = c.sample_pair();
        std::thread::sleep(Duration::from_millis(10));
        let b = c.sample_pair();
        let dt = b.1.saturating_sub(a.1).max(1) as u128;
        c.ticks_per_sec = ((b.0.saturating_sub(a.0) as u128 * 1_000_000_000) / dt).max(1) as u64;
        c
    }

    /// The source.
    pub fn source(&self) -> ClockSource {
        self.source
    }

    /// Reads the clock.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        match self.source {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: RDTSC is available on every x86_64 CPU and has no side effects.
            ClockSource::Tsc => unsafe { core::arch::x86_64::_rdtsc() },
            _ => mono_ns(),
        }
    }

    /// (raw, mono_ns) read as close together as possible: the raw value is the midpoint of two
    /// reads bracketing the CLOCK_MONOTONIC read.
    fn sample_pair(&self) -> (u64, u64) {
        let r0 = self.now();
        let m = mono_ns();
        let r1 = self.now();
        (r0 + (r1.wrapping_sub(r0)) / 2, m)
    }

    /// A reference record for the trace.
    pub fn reference(&self) -> ClockRef {
        let (raw, mono_ns) = self.sample_pair();
        ClockRef {
            raw,
            mono_ns,
            ticks_per_sec: self.ticks_per_sec,
        }
    }
}
