//! One clock for every process of a run.
//!
//! `CLOCK_MONOTONIC` is system-wide on Linux (and is what `std::time::Instant` reads), so
//! nanosecond readings taken by the workers, the oracle and the fault scheduler can be
//! compared directly. The oracle stamps what it receives with its own readings, so a paused
//! worker cannot misreport when something reached the resource.

use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub(crate) fn now_ns() -> u64 {
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is readable");
    u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(ts.tv_nsec()).unwrap_or(0)
}

/// `at` (an `Instant` of this process) on the shared clock.
pub(crate) fn instant_ns(at: Instant) -> u64 {
    let (now, now_mono) = (Instant::now(), now_ns());
    if at >= now {
        now_mono.saturating_add(dur_ns(at - now))
    } else {
        now_mono.saturating_sub(dur_ns(now - at))
    }
}

/// A duration in nanoseconds (saturating).
pub(crate) fn dur_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds as fractional milliseconds, for reports.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// A signed difference `a - b` in fractional milliseconds.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn diff_ms(a: u64, b: u64) -> f64 {
    if a >= b {
        (a - b) as f64 / 1e6
    } else {
        -((b - a) as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_map_onto_the_shared_clock() {
        let now = Instant::now();
        let later = now + Duration::from_millis(250);
        let (a, b) = (instant_ns(now), instant_ns(later));
        let gap = b - a;
        assert!(gap.abs_diff(250_000_000) < 1_000_000, "{gap}");
        assert!(now_ns() >= a);
        assert!((diff_ms(a, b) + 250.0).abs() < 1.0);
        assert!((ms(1_500_000) - 1.5).abs() < f64::EPSILON);
    }
}
