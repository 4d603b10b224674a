//! Pure statistics over recorded samples: percentiles, idle gaps between holders, spreads.
//!
//! Times are nanoseconds since one run's origin (`Instant`), so every worker's timestamps are
//! on the same monotonic clock and the code here needs no clock at all.

use std::time::{Duration, Instant};

/// Nanoseconds from `origin` to `t` (0 if `t` is earlier), saturating at `u64::MAX`.
pub(crate) fn ns_since(origin: Instant, t: Instant) -> u64 {
    nanos(t.saturating_duration_since(origin))
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A count as a float, for rates and ratios (exact below 2^53, far above any count here).
#[expect(
    clippy::cast_precision_loss,
    reason = "counts stay far below 2^53, where u64 -> f64 is exact"
)]
pub(crate) fn as_f64(n: u64) -> f64 {
    n as f64
}

/// The `p`-th percentile (0 < p ≤ 100) of an ascending slice by the nearest-rank method: the
/// smallest sample such that at least `p`% of the samples are ≤ it. `None` when empty.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // rank = ceil(p/100 * n), clamped to 1..=n; computed in f64 then clamped, so never out of range.
    let rank = (p / 100.0 * as_f64(n as u64)).ceil();
    let rank = if rank.is_nan() || rank < 1.0 {
        1
    } else if rank >= as_f64(n as u64) {
        n
    } else {
        // In 1..n here, so the conversion is exact.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "rank was checked to lie in 1..n"
        )]
        let r = rank as usize;
        r
    };
    Some(sorted[rank - 1])
}

/// Count, median, 99th percentile, maximum and mean of a set of samples (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
    pub(crate) mean: f64,
}

impl Summary {
    /// Summarises `samples` (sorted in place). All zero when empty.
    pub(crate) fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let Some(&max) = samples.last() else {
            return Self::default();
        };
        let count = samples.len() as u64;
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        let mean = as_f64(u64::try_from(sum / u128::from(count)).unwrap_or(u64::MAX));
        Self {
            count,
            p50: percentile(samples, 50.0).unwrap_or(0),
            p99: percentile(samples, 99.0).unwrap_or(0),
            max,
            mean,
        }
    }
}

/// One tenure of the lock: who held it, when its acquire call returned, and when its release
/// call started (both in ns since the run's origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hold {
    pub(crate) worker: usize,
    pub(crate) acquired: u64,
    pub(crate) released: u64,
}

/// What the sequence of holds says about handoffs.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Handoffs {
    /// Idle gap before each counted hold: its acquire return minus the previous holder's
    /// release call start (ns).
    pub(crate) gaps: Vec<u64>,
    /// Counted holds whose worker differs from the previous holder's.
    pub(crate) changed_hands: u64,
    /// Counted holds that began before the previous one's release started: two holders at once,
    /// as seen on the shared clock.
    pub(crate) overlaps: u64,
}

/// Idle gaps between consecutive holds. `holds` is sorted by acquisition time; a hold is
/// counted when its acquisition lies in `[from, to)` and there is a previous hold (which may
/// lie before `from`).
pub(crate) fn handoffs(holds: &mut [Hold], from: u64, to: u64) -> Handoffs {
    holds.sort_unstable_by_key(|h| (h.acquired, h.worker));
    let mut out = Handoffs::default();
    for pair in holds.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        if next.acquired < from || next.acquired >= to {
            continue;
        }
        if next.worker != prev.worker {
            out.changed_hands += 1;
        }
        match next.acquired.checked_sub(prev.released) {
            Some(gap) => out.gaps.push(gap),
            None => out.overlaps += 1,
        }
    }
    out
}

/// Smallest and largest of `counts`, `(0, 0)` when empty.
pub(crate) fn spread(counts: &[u64]) -> (u64, u64) {
    let min = counts.iter().copied().min().unwrap_or(0);
    let max = counts.iter().copied().max().unwrap_or(0);
    (min, max)
}

/// `(max − min) / mean` of `counts`: 0 when all are equal, 0.2 when the largest exceeds the
/// smallest by a fifth of the mean. `None` when empty or all zero.
pub(crate) fn relative_spread(counts: &[u64]) -> Option<f64> {
    let (min, max) = spread(counts);
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mean = as_f64(total) / as_f64(counts.len() as u64);
    Some(as_f64(max - min) / mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.1), Some(1));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        // 4 samples: p50 is the 2nd, p99 the 4th.
        assert_eq!(percentile(&[10, 20, 30, 40], 50.0), Some(20));
        assert_eq!(percentile(&[10, 20, 30, 40], 99.0), Some(40));
        assert_eq!(percentile(&[10, 20, 30, 40], 75.1), Some(40));
    }

    #[test]
    fn summary_sorts_and_summarises() {
        let mut v = vec![5, 1, 4, 2, 3];
        let s = Summary::of(&mut v);
        assert_eq!(v, [1, 2, 3, 4, 5]);
        assert_eq!((s.count, s.p50, s.p99, s.max), (5, 3, 5, 5));
        assert!((s.mean - 3.0).abs() < f64::EPSILON);
        assert_eq!(Summary::of(&mut []), Summary::default());
    }

    #[test]
    fn summary_of_large_values_does_not_overflow() {
        let mut v = vec![u64::MAX, u64::MAX];
        let s = Summary::of(&mut v);
        assert_eq!(s.max, u64::MAX);
        assert!(s.mean > 1e19);
    }

    fn hold(worker: usize, acquired: u64, released: u64) -> Hold {
        Hold {
            worker,
            acquired,
            released,
        }
    }

    #[test]
    fn gaps_run_from_release_start_to_next_acquire_return() {
        // Given out of order: sorting by acquisition time is part of the job.
        let mut holds = vec![
            hold(1, 1_300, 2_300),
            hold(0, 0, 1_000),
            hold(1, 2_400, 3_400),
        ];
        let h = handoffs(&mut holds, 0, u64::MAX);
        assert_eq!(h.gaps, [300, 100]);
        assert_eq!(h.changed_hands, 1);
        assert_eq!(h.overlaps, 0);
    }

    #[test]
    fn window_counts_holds_by_acquisition_and_may_look_back() {
        let mut holds = vec![
            hold(0, 0, 1_000),
            hold(1, 1_500, 2_500), // first counted: its predecessor is before the window
            hold(0, 2_700, 3_700),
            hold(1, 5_000, 6_000), // at `to`: not counted
        ];
        let h = handoffs(&mut holds, 1_000, 5_000);
        assert_eq!(h.gaps, [500, 200]);
        assert_eq!(h.changed_hands, 2);
    }

    #[test]
    fn overlapping_holds_are_counted_not_gapped() {
        let mut holds = vec![
            hold(0, 0, 1_000),
            hold(1, 900, 2_000),
            hold(1, 2_000, 3_000),
        ];
        let h = handoffs(&mut holds, 0, u64::MAX);
        assert_eq!(h.overlaps, 1);
        assert_eq!(h.gaps, [0]);
        assert_eq!(h.changed_hands, 1);
    }

    #[test]
    fn fewer_than_two_holds_have_no_gaps() {
        assert_eq!(handoffs(&mut [], 0, 10), Handoffs::default());
        assert_eq!(handoffs(&mut [hold(0, 1, 2)], 0, 10), Handoffs::default());
    }

    #[test]
    fn spread_and_conversions() {
        assert_eq!(spread(&[3, 9, 4]), (3, 9));
        assert_eq!(spread(&[]), (0, 0));
        assert_eq!(relative_spread(&[100, 100, 100]), Some(0.0));
        // Mean 100, max − min 20.
        let s = relative_spread(&[90, 110, 100, 100]).expect("some");
        assert!((s - 0.2).abs() < 1e-12, "{s}");
        assert_eq!(relative_spread(&[]), None);
        assert_eq!(relative_spread(&[0, 0]), None);
        // One starved worker out of two: the spread is 2 (max − min = 2 × mean).
        assert_eq!(relative_spread(&[0, 50]), Some(2.0));
        let origin = Instant::now();
        assert_eq!(ns_since(origin + Duration::from_secs(1), origin), 0);
        assert_eq!(ns_since(origin, origin + Duration::from_micros(5)), 5_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
