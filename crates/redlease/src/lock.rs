//! Taking a lease: the attempt loop, its timing, and cleanup when an attempt's fate is unknown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::{DRIFT_FLOOR, MAX_TTL};
use crate::error::{ConfigError, Error};
use crate::guard::Guard;
use crate::keys::Keys;
use crate::lease::{Lease, Renewal};
use crate::quorum::Round;
use crate::retry::Retry;
use crate::token::Token;
use crate::wait::Watch;

/// What to ask for when acquiring: the lease's TTL, how to retry while it is taken, and
/// whether to keep it alive automatically.
///
/// | option | default |
/// |---|---|
/// | [`retry`](Self::retry) | [`Retry::default`] (exponential backoff for up to 10 s) |
/// | [`auto_renew`](Self::auto_renew) | off: the lease ends after `ttl` unless extended |
/// | [`max_hold`](Self::max_hold) | none |
///
/// Renewal is off by default because a TTL that silently becomes "forever" surprises more
/// than one that ends: turn it on for work of unknown length, and pair it with
/// [`Guard::lost`] or [`Guard::run`] so the work stops when the lease does.
///
/// ```
/// use std::time::Duration;
/// use redlease::{LockOptions, Retry};
///
/// // A 10 s lease, renewed every ~3.3 s, for at most an hour.
/// let options = LockOptions::new(Duration::from_secs(10))
///     .auto_renew(true)
///     .max_hold(Duration::from_secs(3600))
///     .retry(Retry::none());
/// assert_eq!(options.ttl(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct LockOptions {
    ttl: Duration,
    retry: Retry,
    auto_renew: bool,
    max_hold: Option<Duration>,
}

impl LockOptions {
    /// A lease of `ttl`, retried with [`Retry::default`]. The TTL is validated when used: it
    /// must be above zero, at most [`MAX_TTL`](crate::MAX_TTL), and above the drift allowance.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            retry: Retry::default(),
            auto_renew: false,
            max_hold: None,
        }
    }

    /// How to retry while the lock is held by someone else.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Keep the lease alive in the background: the client's renewer extends it every
    /// `ttl / 3` ([`RENEW_DIVISOR`](crate::RENEW_DIVISOR)) until the guard is released or
    /// dropped, the lease is lost, or [`max_hold`](Self::max_hold) is reached. All of a
    /// client's renewing leases share one task and one round trip per node per renewal.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// The longest the lease may be held in total, renewals included: renewal stops so that
    /// the lease ends then, and [`Guard::lost`] reports [`Lost::HoldCapReached`](crate::Lost).
    /// Guards against a hung holder renewing forever. Must be at least the TTL.
    pub fn max_hold(mut self, limit: Duration) -> Self {
        self.max_hold = Some(limit);
        self
    }

    /// The lease's TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The part of `ttl` a client does not trust: clock drift between client and server.
pub(crate) fn drift(ttl: Duration, drift_factor: f64) -> Duration {
    ttl.mul_f64(drift_factor) + DRIFT_FLOOR
}

/// Validates `ttl` and converts it to the whole milliseconds Redis takes, rounding up so that
/// the server never expires a lease before the client stops trusting it.
pub(crate) fn lease_millis(ttl: Duration, drift_factor: f64) -> Result<u64, ConfigError> {
    if ttl.is_zero() {
        return Err(ConfigError::ZeroTtl);
    }
    if ttl > MAX_TTL {
        return Err(ConfigError::TtlTooLarge { ttl, max: MAX_TTL });
    }
    let drift = drift(ttl, drift_factor);
    if ttl <= drift {
        return Err(ConfigError::TtlNotAboveDrift { ttl, drift });
    }
    Ok(u64::try_from(ttl.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// A token that may have been granted a lease nobody holds a guard for yet: after a request
/// whose reply was lost, or while a request is in flight. If the acquire ends without a guard
/// (error or cancellation), the lease is deleted in the background, by token.
struct Unclaimed<'a> {
    client: &'a Client,
    lease: &'a Arc<Lease>,
    maybe_granted: bool,
}

impl Drop for Unclaimed<'_> {
    fn drop(&mut self) {
        if self.maybe_granted {
            crate::guard::release_in_background(self.client, self.lease.clone());
        }
    }
}

pub(crate) async fn acquire(
    client: &Client,
    name: &str,
    options: &LockOptions,
) -> Result<Guard, Error> {
    let shared = client.shared();
    let keys = Keys::new(&shared.prefix, name)?;
    let ttl = options.ttl;
    let ttl_ms = shared.lease_millis(ttl)?;
    let retry = &options.retry;
    retry.validate()?;
    if let Some(limit) = options.max_hold
        && limit < ttl
    {
        return Err(ConfigError::HoldCapBelowTtl {
            max_hold: limit,
            ttl,
        }
        .into());
    }
    let trusted = ttl.saturating_sub(shared.drift(ttl));
    let node_timeout = shared.nodes.acquire_timeout(ttl, trusted);
    let lease = Arc::new(Lease::new(name, keys, Token::generate()?));
    let started = Instant::now();
    let deadline = retry.get_timeout().map(|t| started + t);
    let mut rng = fastrand::Rng::new();
    let mut unclaimed = Unclaimed {
        client,
        lease: &lease,
        maybe_granted: false,
    };
    let mut failed = 0u32;
    let mut wakeups: Option<Watch> = None;
    let mut subscribe = true;
    loop {
        if let Some(wakeups) = wakeups.as_mut() {
            wakeups.mark_seen();
        }
        let sent = Instant::now();
        let valid_until = sent + trusted;
        unclaimed.maybe_granted = true;
        let (failure, holder_remaining, granted_on) = match shared
            .nodes
            .acquire(&lease, ttl_ms, node_timeout, valid_until)
            .await?
        {
            Round::Granted { fence } => {
                if lease.extended(sent, ttl, trusted) {
                    unclaimed.maybe_granted = false;
                    start_renewal(client, &lease, options, sent);
                    return Ok(Guard::new(client.clone(), lease.clone(), fence));
                }
                // The validity ran out between the round's check and now: as late as a late
                // reply, and cleaned up the same way.
                (Error::Lost(crate::Lost::Expired), None, Vec::new())
            }
            Round::Failed {
                error,
                holder_remaining,
                granted_on,
            } => (error, holder_remaining, granted_on),
        };
        let contended = matches!(failure, Error::Contended { .. });
        if contended {
            // A single node that answered "held by another" holds no grant of ours; with
            // several nodes, one that did not answer might.
            unclaimed.maybe_granted = shared.nodes.len() > 1;
        }
        failed = failed.saturating_add(1);
        let Some(backoff) = retry.delay_after(failed, &mut rng) else {
            return Err(failure);
        };
        // Subscribe to the lock's release channel, then retry at once: a release between the
        // failed attempt and the subscription is seen by that retry, any later one wakes us.
        let just_subscribed = contended && wakeups.is_none() && subscribe;
        if just_subscribed {
            subscribe = false;
            wakeups = shared.waiters.watch(&lease.keys.channel).await;
        }
        // The retry policy's delay is the longest wait; a release wakes us sooner, and the
        // lock is free anyway when the holder's lease runs out.
        let mut delay = match holder_remaining {
            _ if just_subscribed && wakeups.is_some() => Duration::ZERO,
            Some(remaining) => backoff.min(remaining),
            None => backoff,
        };
        if let Some(deadline) = deadline {
            let now = Instant::now();
            if now >= deadline {
                return Err(match failure {
                    Error::Contended { remaining_ttl } => Error::TimedOut {
                        waited: now - started,
                        remaining_ttl,
                    },
                    other => other,
                });
            }
            delay = delay.min(deadline - now);
        }
        // Give back what a failed round won, so that competing clients can reach a majority
        // (keeping it would let split votes repeat until every lease expires). This finishes
        // before the next attempt, which reuses the token and must not be undone by it.
        let give_back = async {
            if !granted_on.is_empty() {
                let _ = shared.nodes.release(&lease, Some(&granted_on)).await;
            }
        };
        let wait = async {
            let Some(watch) = wakeups.as_mut() else {
                tokio::time::sleep(delay).await;
                return true;
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => true,
                woken = watch.changed() => woken.is_some(),
            }
        };
        let ((), subscribed) = tokio::join!(give_back, wait);
        if !subscribed {
            // The subscriber connection broke: poll for now, subscribe again next time.
            wakeups = None;
            subscribe = true;
        }
    }
}

/// Hands a fresh lease to the renewer if the options ask for it.
fn start_renewal(client: &Client, lease: &Arc<Lease>, options: &LockOptions, granted_at: Instant) {
    if !options.auto_renew {
        return;
    }
    lease.state().renewal = Some(Renewal {
        ttl: options.ttl,
        due: granted_at + options.ttl / crate::RENEW_DIVISOR,
        hold_until: options.max_hold.map(|limit| granted_at + limit),
        in_flight: false,
        failing: false,
        capped: false,
    });
    client
        .shared()
        .renewer
        .register(client.downgrade(), lease.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_a_share_of_the_ttl_plus_a_floor() {
        assert_eq!(
            drift(Duration::from_secs(10), 0.01),
            Duration::from_millis(102)
        );
        assert_eq!(drift(Duration::from_secs(10), 0.0), DRIFT_FLOOR);
    }

    #[test]
    fn ttls_are_validated_and_rounded_up() {
        assert_eq!(
            lease_millis(Duration::ZERO, 0.01),
            Err(ConfigError::ZeroTtl)
        );
        assert!(matches!(
            lease_millis(MAX_TTL + Duration::from_millis(1), 0.01),
            Err(ConfigError::TtlTooLarge { .. })
        ));
        assert!(matches!(
            lease_millis(Duration::MAX, 0.01),
            Err(ConfigError::TtlTooLarge { .. })
        ));
        assert!(matches!(
            lease_millis(Duration::from_millis(2), 0.01),
            Err(ConfigError::TtlNotAboveDrift { .. })
        ));
        assert_eq!(lease_millis(Duration::from_millis(3), 0.01), Ok(3));
        assert_eq!(lease_millis(Duration::from_micros(3_001), 0.01), Ok(4));
        assert_eq!(lease_millis(Duration::from_secs(30), 0.01), Ok(30_000));
        assert_eq!(lease_millis(MAX_TTL, 0.99), Ok(365 * 24 * 3_600_000));
    }
}
