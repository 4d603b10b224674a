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
/// | [`fair`](Self::fair) | off: whoever retries first after a release wins |
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
    fair: bool,
    label: String,
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
            fair: false,
            label: String::new(),
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

    /// First come, first served: waiters queue in Redis in arrival order, and a free lock goes
    /// to the head of the queue, across processes. A waiter keeps its place by retrying at
    /// least every [`QUEUE_ENTRY_TTL`]` / 3`; a waiter that stops (crashed, or its `acquire`
    /// was dropped without cleanup) loses its place after [`QUEUE_ENTRY_TTL`].
    ///
    /// What it costs: each handoff waits for the head of the queue to retry (a round trip
    /// after the release notification) even if another client could have taken the lock
    /// sooner, and a crashed head can hold the queue up for up to [`QUEUE_ENTRY_TTL`].
    /// Fairness holds among clients that all use fair mode on that name; a non-fair acquire
    /// can still take a free lock ahead of the queue. Fair mode needs a single node (the
    /// queues of several Redlock nodes could order waiters differently).
    pub fn fair(mut self, on: bool) -> Self {
        self.fair = on;
        self
    }

    /// A description of the holder (host, process, job…), stored with the lock so that
    /// [`Client::inspect`] and `redlease status` can say who holds it. At most
    /// [`MAX_LABEL_LEN`] bytes; empty by default. Do not put secrets in it.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The lease's TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The longest accepted [`LockOptions::label`], in bytes.
pub const MAX_LABEL_LEN: usize = 256;

/// How long a fair-mode waiter keeps its place in the queue without retrying.
pub const QUEUE_ENTRY_TTL: Duration = Duration::from_secs(3);

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

/// A lease that may exist on the servers without a guard for it: after a request whose reply
/// was lost, or while a request is in flight. If the acquire ends without a guard (error or
/// cancellation), the lease is deleted in the background by token, and a fair waiter leaves
/// the queue.
struct Unclaimed<'a> {
    client: &'a Client,
    lease: &'a Arc<Lease>,
    maybe_granted: bool,
    queued: bool,
}

impl Drop for Unclaimed<'_> {
    fn drop(&mut self) {
        if self.maybe_granted {
            crate::guard::release_in_background(self.client, self.lease.clone());
        }
        if self.queued
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (client, lease) = (self.client.clone(), self.lease.clone());
            runtime.spawn(async move { client.shared().nodes.leave_queue(&lease).await });
        }
    }
}

/// One call to `acquire`: the attempts, the retry schedule, and the subscription to the lock's
/// release channel.
struct Acquisition<'a> {
    client: &'a Client,
    options: &'a LockOptions,
    lease: Arc<Lease>,
    ttl_ms: u64,
    trusted: Duration,
    node_timeout: Duration,
    queue_entry_ms: Option<u64>,
    started: Instant,
    deadline: Option<Instant>,
    rng: fastrand::Rng,
    failed: u32,
    wakeups: Option<Watch>,
    may_subscribe: bool,
}

/// How one failed attempt ended.
struct Failure {
    error: Error,
    holder_remaining: Option<Duration>,
    granted_on: Vec<usize>,
}

pub(crate) async fn acquire(
    client: &Client,
    name: &str,
    options: &LockOptions,
) -> Result<Guard, Error> {
    let mut acquisition = Acquisition::new(client, name, options)?;
    let lease = acquisition.lease.clone();
    let mut unclaimed = Unclaimed {
        client,
        lease: &lease,
        maybe_granted: false,
        queued: false,
    };
    loop {
        unclaimed.maybe_granted = true;
        unclaimed.queued |= acquisition.queue_entry_ms.is_some();
        let failure = match acquisition.attempt().await? {
            Ok(guard) => {
                unclaimed.maybe_granted = false;
                unclaimed.queued = false;
                return Ok(guard);
            }
            Err(failure) => failure,
        };
        if matches!(failure.error, Error::Contended { .. }) {
            // A single node that answered "held by another" holds no grant of ours; with
            // several nodes, one that did not answer might.
            unclaimed.maybe_granted = client.shared().nodes.len() > 1;
        }
        acquisition.wait(failure).await?;
    }
}

impl<'a> Acquisition<'a> {
    fn new(client: &'a Client, name: &str, options: &'a LockOptions) -> Result<Self, Error> {
        let shared = client.shared();
        let keys = Keys::new(&shared.prefix, name)?;
        let ttl = options.ttl;
        let ttl_ms = shared.lease_millis(ttl)?;
        options.retry.validate()?;
        if let Some(limit) = options.max_hold
            && limit < ttl
        {
            return Err(ConfigError::HoldCapBelowTtl {
                max_hold: limit,
                ttl,
            }
            .into());
        }
        if options.label.len() > MAX_LABEL_LEN {
            return Err(ConfigError::LabelTooLong {
                len: options.label.len(),
                max: MAX_LABEL_LEN,
            }
            .into());
        }
        if options.fair && shared.nodes.len() > 1 {
            return Err(ConfigError::FairNeedsOneNode.into());
        }
        let trusted = ttl.saturating_sub(shared.drift(ttl));
        let started = Instant::now();
        Ok(Self {
            client,
            options,
            lease: Arc::new(Lease::new(
                name,
                keys,
                Token::generate()?,
                options.label.clone(),
            )),
            ttl_ms,
            trusted,
            node_timeout: shared.nodes.acquire_timeout(ttl, trusted),
            queue_entry_ms: options
                .fair
                .then(|| u64::try_from(QUEUE_ENTRY_TTL.as_millis()).unwrap_or(u64::MAX)),
            started,
            deadline: options.retry.get_timeout().map(|t| started + t),
            rng: fastrand::Rng::new(),
            failed: 0,
            wakeups: None,
            may_subscribe: true,
        })
    }

    /// One round over the nodes. Every attempt carries the same token.
    async fn attempt(&mut self) -> Result<Result<Guard, Failure>, Error> {
        if let Some(wakeups) = self.wakeups.as_mut() {
            wakeups.mark_seen();
        }
        let shared = self.client.shared();
        let sent = Instant::now();
        let valid_until = sent + self.trusted;
        let round = shared
            .nodes
            .acquire(
                &self.lease,
                self.ttl_ms,
                self.queue_entry_ms,
                self.node_timeout,
                valid_until,
            )
            .await?;
        Ok(match round {
            Round::Granted { fence }
                if self.lease.extended(sent, self.options.ttl, self.trusted) =>
            {
                start_renewal(self.client, &self.lease, self.options, sent);
                Ok(Guard::new(self.client.clone(), self.lease.clone(), fence))
            }
            // The validity ran out between the round's check and now: as late as a late reply,
            // and cleaned up the same way.
            Round::Granted { .. } => Err(Failure {
                error: Error::Lost(crate::Lost::Expired),
                holder_remaining: None,
                granted_on: Vec::new(),
            }),
            Round::Failed {
                error,
                holder_remaining,
                granted_on,
            } => Err(Failure {
                error,
                holder_remaining,
                granted_on,
            }),
        })
    }

    /// Waits before the next attempt, or returns the error that ends the acquire.
    async fn wait(&mut self, failure: Failure) -> Result<(), Error> {
        let shared = self.client.shared();
        let contended = matches!(failure.error, Error::Contended { .. });
        if failure.error.is_permanent() {
            // A retry would meet the same refusal (wrong type, permission denied, ...).
            return Err(failure.error);
        }
        self.failed = self.failed.saturating_add(1);
        let Some(backoff) = self.options.retry.delay_after(self.failed, &mut self.rng) else {
            return Err(failure.error);
        };
        // Subscribe to the lock's release channel, then retry at once: a release between the
        // failed attempt and the subscription is seen by that retry, any later one wakes us.
        let just_subscribed = contended && self.wakeups.is_none() && self.may_subscribe;
        if just_subscribed {
            self.may_subscribe = false;
            self.wakeups = shared.waiters.watch(&self.lease.keys.channel()).await;
        }
        // The retry policy's delay is the longest wait; a release wakes us sooner, and the lock
        // is free anyway when the holder's lease runs out. A fair waiter also comes back in
        // time to keep its place in the queue.
        let mut delay = match failure.holder_remaining {
            _ if just_subscribed && self.wakeups.is_some() => Duration::ZERO,
            Some(remaining) => backoff.min(remaining),
            None => backoff,
        };
        if self.queue_entry_ms.is_some() {
            delay = delay.min(QUEUE_ENTRY_TTL / 3);
        }
        if let Some(deadline) = self.deadline {
            let now = Instant::now();
            if now >= deadline {
                return Err(match failure.error {
                    Error::Contended { remaining_ttl } => Error::TimedOut {
                        waited: now - self.started,
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
            if !failure.granted_on.is_empty() {
                let _ = shared
                    .nodes
                    .release(&self.lease, Some(&failure.granted_on))
                    .await;
            }
        };
        // With several nodes, waiters woken by the same release would all send their retries at
        // once and split the nodes' votes between them; a little spread lets one win.
        let spread = if shared.nodes.len() > 1 {
            Duration::from_micros(self.rng.u64(0..2_000))
        } else {
            Duration::ZERO
        };
        let fair = self.queue_entry_ms.is_some();
        let token = self.lease.token.as_str();
        let woken = async {
            let Some(watch) = self.wakeups.as_mut() else {
                tokio::time::sleep(delay).await;
                return true;
            };
            let timer = tokio::time::sleep(delay);
            tokio::pin!(timer);
            loop {
                tokio::select! {
                    () = &mut timer => return true,
                    woken = watch.changed() => match woken {
                        None => return false,
                        // Fair mode: the release names the head of the queue; others keep waiting.
                        Some(head) if fair && !head.is_empty() && *head != *token => {}
                        Some(_) => {
                            tokio::time::sleep(spread).await;
                            return true;
                        }
                    },
                }
            }
        };
        let ((), subscribed) = tokio::join!(give_back, woken);
        if !subscribed {
            // The subscriber connection broke: poll for now, subscribe again next time.
            self.wakeups = None;
            self.may_subscribe = true;
        }
        Ok(())
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
