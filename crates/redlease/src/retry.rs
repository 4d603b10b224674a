//! How `acquire` tries again while the lock is taken.

use std::time::Duration;

use crate::error::ConfigError;

/// First delay of the default exponential backoff.
const DEFAULT_DELAY: Duration = Duration::from_millis(10);
/// Largest delay of the default exponential backoff.
const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(200);
/// How long the default retry policy keeps trying before [`Error::TimedOut`](crate::Error::TimedOut).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A retry policy: how long to wait between attempts, and when to give up.
///
/// An attempt is retried when the lock is held by someone else, or when Redis did not answer
/// (timeout, broken connection) — a lost reply may have granted us the lock, and the retry,
/// which reuses the same token, finds out. Configuration errors, wrong-type keys, and server
/// errors that retrying cannot fix (a denied permission, `NOPERM`; rejected credentials) end
/// the loop at once.
///
/// The delays are the *longest* waits between attempts while nobody can hand the lock over:
/// a waiter lists itself in Redis and a release hands the lock straight to the oldest listed
/// waiter, so a listed waiter with a live wake-up subscription does not poll at all; it comes
/// back once a second to keep its place, or when the holder's lease runs out (the holder may
/// have died). Waits also never outlast the deadline set with [`timeout`](Retry::timeout);
/// at the deadline one last attempt is made.
///
/// The default ([`Retry::default`]) is exponential backoff from 10 ms up to 200 ms, with
/// jitter, for at most 10 s; then [`Error::TimedOut`](crate::Error::TimedOut).
///
/// ```
/// use std::time::Duration;
/// use redlease::Retry;
///
/// // Try for up to 5 s, backing off from 20 ms to 1 s.
/// let patient = Retry::exponential(Duration::from_millis(20), Duration::from_secs(1))
///     .timeout(Duration::from_secs(5));
/// // Three attempts, 100 ms apart.
/// let brief = Retry::fixed(Duration::from_millis(100)).max_attempts(3);
/// # let _ = (patient, brief);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Retry {
    backoff: Backoff,
    max_attempts: Option<u32>,
    timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backoff {
    Never,
    Fixed(Duration),
    Exponential { initial: Duration, max: Duration },
}

impl Retry {
    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            backoff: Backoff::Never,
            max_attempts: None,
            timeout: None,
        }
    }

    /// Retry after the same delay each time. Without [`max_attempts`](Self::max_attempts) or
    /// [`timeout`](Self::timeout) it retries until the future is dropped.
    pub fn fixed(delay: Duration) -> Self {
        Self {
            backoff: Backoff::Fixed(delay),
            ..Self::none()
        }
    }

    /// Retry with delays doubling from `initial` up to `max`, each drawn uniformly from the upper
    /// half of its step (`[d/2, d]`) so that waiters spread out. Without
    /// [`max_attempts`](Self::max_attempts) or [`timeout`](Self::timeout) it retries until the
    /// future is dropped.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Self {
            backoff: Backoff::Exponential {
                initial,
                max: max.max(initial),
            },
            ..Self::none()
        }
    }

    /// Give up after `attempts` attempts in total (the first one included).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Give up once `timeout` has passed since the first attempt started.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The limit set with [`timeout`](Self::timeout), if any.
    pub(crate) fn time_limit(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == Some(0) {
            return Err(ConfigError::InvalidRetry("max_attempts must be at least 1"));
        }
        let zero_delay = match self.backoff {
            Backoff::Never => false,
            Backoff::Fixed(d) => d.is_zero(),
            Backoff::Exponential { initial, .. } => initial.is_zero(),
        };
        if zero_delay {
            return Err(ConfigError::InvalidRetry(
                "a retry delay of zero would flood the server",
            ));
        }
        Ok(())
    }

    /// The delay before attempt number `failed + 1`, after `failed` failed attempts, or `None`
    /// when the attempt limit is reached. Deadlines are applied by the caller.
    pub(crate) fn delay_after(&self, failed: u32, rng: &mut fastrand::Rng) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| failed >= max) {
            return None;
        }
        match self.backoff {
            Backoff::Never => None,
            Backoff::Fixed(d) => Some(d),
            Backoff::Exponential { initial, max } => {
                let doublings = failed.saturating_sub(1).min(31);
                let step = initial.saturating_mul(1 << doublings).min(max);
                let half = step / 2;
                let jitter_nanos =
                    u64::try_from(step.saturating_sub(half).as_nanos()).unwrap_or(u64::MAX);
                Some(half + Duration::from_nanos(rng.u64(0..=jitter_nanos)))
            }
        }
    }
}

impl Default for Retry {
    /// Exponential backoff from 10 ms up to 200 ms, with jitter, for at most 10 s.
    fn default() -> Self {
        Self::exponential(DEFAULT_DELAY, DEFAULT_MAX_DELAY).timeout(DEFAULT_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn none_never_retries() {
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(Retry::none().delay_after(1, &mut rng), None);
    }

    #[test]
    fn fixed_repeats_its_delay_until_the_attempt_limit() {
        let mut rng = fastrand::Rng::with_seed(1);
        let retry = Retry::fixed(ms(7)).max_attempts(3);
        assert_eq!(retry.delay_after(1, &mut rng), Some(ms(7)));
        assert_eq!(retry.delay_after(2, &mut rng), Some(ms(7)));
        assert_eq!(retry.delay_after(3, &mut rng), None);
    }

    #[test]
    fn exponential_doubles_within_jitter_bounds_and_caps() {
        let mut rng = fastrand::Rng::with_seed(42);
        let retry = Retry::exponential(ms(10), ms(100));
        for _ in 0..200 {
            let d1 = retry.delay_after(1, &mut rng).unwrap();
            assert!((ms(5)..=ms(10)).contains(&d1), "{d1:?}");
            let d3 = retry.delay_after(3, &mut rng).unwrap();
            assert!((ms(20)..=ms(40)).contains(&d3), "{d3:?}");
            let d30 = retry.delay_after(30, &mut rng).unwrap();
            assert!((ms(50)..=ms(100)).contains(&d30), "{d30:?}");
        }
    }

    #[test]
    fn exponential_jitter_spreads_delays() {
        let mut rng = fastrand::Rng::with_seed(7);
        let retry = Retry::exponential(ms(100), ms(100));
        let delays: std::collections::HashSet<_> =
            (0..50).map(|_| retry.delay_after(1, &mut rng)).collect();
        assert!(delays.len() > 40, "jitter should vary the delay");
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut rng = fastrand::Rng::with_seed(3);
        let retry = Retry::exponential(Duration::from_secs(1), Duration::MAX);
        assert!(retry.delay_after(u32::MAX, &mut rng).is_some());
    }

    #[test]
    fn validation_rejects_unusable_policies() {
        assert!(Retry::fixed(ms(1)).max_attempts(0).validate().is_err());
        assert!(Retry::fixed(Duration::ZERO).validate().is_err());
        assert!(
            Retry::exponential(Duration::ZERO, ms(5))
                .validate()
                .is_err()
        );
        assert!(Retry::default().validate().is_ok());
        assert!(Retry::none().validate().is_ok());
    }

    #[test]
    fn default_is_bounded() {
        assert_eq!(Retry::default().time_limit(), Some(DEFAULT_TIMEOUT));
    }
}
