//! The timing rules, each written once: TTL limits and millisecond rounding, the drift
//! allowance and the validity it leaves, how long one node may take to answer, when a renewal
//! is due, and how long `WAIT` may wait. All instants are on the monotonic clock and count
//! from when a request was *sent*.

use std::time::{Duration, Instant};

use crate::error::ConfigError;

/// The longest TTL a lease may have (one year).
pub const MAX_TTL: Duration = Duration::from_hours(365 * 24);
/// The share of a TTL subtracted from a lease's validity for clock drift between client and
/// server (Redlock's recommended 1%).
pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;
/// Fixed part of the drift allowance, added to `ttl × drift factor` (timer granularity on the
/// server and the client).
pub const DRIFT_FLOOR: Duration = Duration::from_millis(2);

/// A renewing lease is extended every `ttl / RENEW_DIVISOR`: it survives two failed renewals
/// in a row.
const RENEW_DIVISOR: u32 = 3;
/// The share of the TTL one node may take to answer when there are several nodes, so that a
/// dead node cannot use up the lease's validity (Redlock's "much smaller than the TTL").
const NODE_TIMEOUT_SHARE: f64 = 0.05;
/// The least time one of several nodes is given to answer, however short the TTL.
const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(10);
/// The least time between two renewal attempts of one lease after a failure.
const RENEWAL_RETRY_FLOOR: Duration = Duration::from_millis(10);

/// The client's drift allowance: `ttl × factor + DRIFT_FLOOR`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Drift {
    factor: f64,
}

impl Drift {
    /// A drift policy; the factor must be a finite number in `0.0..1.0`.
    pub(crate) fn new(factor: f64) -> Result<Self, ConfigError> {
        if factor.is_finite() && (0.0..1.0).contains(&factor) {
            Ok(Self { factor })
        } else {
            Err(ConfigError::InvalidDriftFactor(factor))
        }
    }

    pub(crate) fn factor(self) -> f64 {
        self.factor
    }

    /// The part of `ttl` a client does not trust.
    pub(crate) fn allowance(self, ttl: Duration) -> Duration {
        ttl.mul_f64(self.factor) + DRIFT_FLOOR
    }

    /// Validates `ttl` (above zero, at most [`MAX_TTL`], above the drift allowance) and returns
    /// what to ask Redis for and what to trust.
    pub(crate) fn lease(self, ttl: Duration) -> Result<LeaseTiming, ConfigError> {
        if ttl.is_zero() {
            return Err(ConfigError::ZeroTtl);
        }
        if ttl > MAX_TTL {
            return Err(ConfigError::TtlTooLarge { ttl, max: MAX_TTL });
        }
        let drift = self.allowance(ttl);
        if ttl <= drift {
            return Err(ConfigError::TtlNotAboveDrift { ttl, drift });
        }
        Ok(LeaseTiming {
            ttl,
            // Rounded up, so that the server never expires a lease before the client stops
            // trusting it.
            millis: u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
            trusted: ttl.saturating_sub(drift),
        })
    }
}

/// The timing of one valid TTL (see [`Drift::lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseTiming {
    /// The TTL asked for.
    pub(crate) ttl: Duration,
    /// The TTL in the whole milliseconds Redis takes.
    pub(crate) millis: u64,
    /// How long after the request was sent the lease can be trusted.
    pub(crate) trusted: Duration,
}

impl LeaseTiming {
    /// Until when a grant or extension whose request was sent at `sent` can be trusted.
    pub(crate) fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.trusted
    }

    /// How long one node may take to answer, among `nodes`: with one node, the whole validity;
    /// with several, a share of the TTL so that one dead node cannot use it all up.
    pub(crate) fn node_timeout(&self, nodes: usize) -> Duration {
        if nodes <= 1 {
            self.trusted
        } else {
            self.ttl
                .mul_f64(NODE_TIMEOUT_SHARE)
                .max(MIN_NODE_TIMEOUT)
                .min(self.trusted)
        }
    }

    /// Time between two renewals.
    pub(crate) fn renewal_interval(&self) -> Duration {
        self.ttl / RENEW_DIVISOR
    }

    /// When the renewal after one whose request was sent at `sent` is due.
    pub(crate) fn renewal_due(&self, sent: Instant) -> Instant {
        sent + self.renewal_interval()
    }

    /// The earliest a renewal due at `due` may be sent: half an interval before, so that
    /// leases fall into step and share round trips.
    pub(crate) fn renewal_eligible(&self, due: Instant) -> Instant {
        due.checked_sub(self.renewal_interval() / 2).unwrap_or(due)
    }

    /// When to try again after a renewal that failed at `now`.
    pub(crate) fn renewal_retry(&self, now: Instant) -> Instant {
        now + (self.renewal_interval() / 10).max(RENEWAL_RETRY_FLOOR)
    }
}

/// `WAIT`'s timeout in milliseconds for a request bounded by `limit`: the configured timeout,
/// but at most half the limit so that the reply can still arrive in time; never 0, which would
/// make `WAIT` block forever.
pub(crate) fn wait_millis(configured: Duration, limit: Duration) -> u64 {
    let ms = configured.min(limit / 2).as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift() -> Drift {
        Drift::new(DEFAULT_DRIFT_FACTOR).unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn drift_is_a_share_of_the_ttl_plus_a_floor() {
        assert_eq!(drift().allowance(Duration::from_secs(10)), ms(102));
        assert_eq!(Drift::new(0.0).unwrap().allowance(ms(10)), DRIFT_FLOOR);
        for bad in [-0.1, 1.0, f64::NAN, f64::INFINITY] {
            assert!(Drift::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttls_are_validated_and_rounded_up() {
        let d = drift();
        assert_eq!(d.lease(Duration::ZERO), Err(ConfigError::ZeroTtl));
        assert!(matches!(
            d.lease(MAX_TTL + ms(1)),
            Err(ConfigError::TtlTooLarge { .. })
        ));
        assert!(matches!(
            d.lease(Duration::MAX),
            Err(ConfigError::TtlTooLarge { .. })
        ));
        assert!(matches!(
            d.lease(ms(2)),
            Err(ConfigError::TtlNotAboveDrift { .. })
        ));
        assert_eq!(d.lease(ms(3)).map(|t| t.millis), Ok(3));
        assert_eq!(
            d.lease(Duration::from_micros(3_001)).map(|t| t.millis),
            Ok(4)
        );
        assert_eq!(
            d.lease(Duration::from_secs(30)).map(|t| t.millis),
            Ok(30_000)
        );
        let huge = Drift::new(0.99).unwrap().lease(MAX_TTL).unwrap();
        assert_eq!(huge.millis, 365 * 24 * 3_600_000);
    }

    #[test]
    fn validity_counts_from_the_send_time_minus_drift() {
        let timing = drift().lease(Duration::from_secs(10)).unwrap();
        assert_eq!(timing.trusted, ms(9_898));
        let sent = Instant::now();
        assert_eq!(timing.valid_until(sent), sent + timing.trusted);
    }

    #[test]
    fn one_node_may_use_the_validity_several_only_a_share() {
        let timing = drift().lease(Duration::from_secs(10)).unwrap();
        assert_eq!(timing.node_timeout(1), timing.trusted);
        assert_eq!(timing.node_timeout(3), ms(500));
        let short = drift().lease(ms(100)).unwrap();
        assert_eq!(short.node_timeout(3), MIN_NODE_TIMEOUT);
        let tiny = Drift::new(0.0).unwrap().lease(ms(5)).unwrap();
        assert_eq!(
            tiny.node_timeout(5),
            tiny.trusted,
            "never more than the validity"
        );
    }

    #[test]
    fn renewal_leaves_room_for_two_failures() {
        let timing = drift().lease(Duration::from_secs(3)).unwrap();
        assert_eq!(timing.renewal_interval(), Duration::from_secs(1));
        let sent = Instant::now();
        let due = timing.renewal_due(sent);
        assert_eq!(due, sent + Duration::from_secs(1));
        assert_eq!(timing.renewal_eligible(due), sent + ms(500));
        assert_eq!(timing.renewal_retry(sent), sent + ms(100));
        let short = drift().lease(ms(30)).unwrap();
        assert_eq!(short.renewal_retry(sent), sent + RENEWAL_RETRY_FLOOR);
        // Two renewals fit before the server's TTL runs out, and both before the deadline.
        assert!(timing.renewal_interval() * 2 < timing.trusted);
    }

    #[test]
    fn wait_timeouts_fit_the_request_and_are_never_zero() {
        assert_eq!(wait_millis(ms(100), Duration::from_secs(10)), 100);
        assert_eq!(wait_millis(ms(100), ms(50)), 25);
        assert_eq!(wait_millis(ms(100), ms(1)), 1);
        assert_eq!(wait_millis(ms(100), Duration::ZERO), 1);
    }
}
