//! What a caller asks for when acquiring: [`LockOptions`], and its validation.

use std::time::Duration;

use crate::error::ConfigError;
use crate::retry::Retry;
use crate::timing::{Drift, LeaseTiming};

/// What to ask for when acquiring: the lease's TTL, how to retry while it is taken, and
/// whether to keep it alive automatically.
///
/// | option | default |
/// |---|---|
/// | [`retry`](Self::retry) | [`Retry::default`] (exponential backoff for up to 10 s) |
/// | [`auto_renew`](Self::auto_renew) | off: the lease ends after `ttl` unless extended |
/// | [`max_hold`](Self::max_hold) | none |
/// | [`fair`](Self::fair) | off: a release wakes the oldest waiter, but whoever asks first while the lock is free gets it |
///
/// Renewal is off by default because a TTL that silently becomes "forever" surprises more
/// than one that ends: turn it on for work of unknown length, and pair it with
/// [`Guard::lost`](crate::Guard::lost) or [`Guard::run`](crate::Guard::run) so the work stops when the lease does.
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
    /// `ttl / 3` until the guard is released or dropped, the lease is lost, or
    /// [`max_hold`](Self::max_hold) is reached. All of a
    /// client's renewing leases share one task and one round trip per node per renewal.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// The longest the lease may be held in total, renewals included: renewal stops so that
    /// the lease ends then, and [`Guard::lost`](crate::Guard::lost) reports [`Lost::HoldCapReached`](crate::Lost).
    /// Guards against a hung holder renewing forever. Must be at least the TTL.
    pub fn max_hold(mut self, limit: Duration) -> Self {
        self.max_hold = Some(limit);
        self
    }

    /// First come, first served. Waiters are always listed in Redis in arrival order and a
    /// release always wakes the oldest one only; without fair mode, a client that asks while
    /// the lock is free (before the woken waiter's retry arrives) takes it, which keeps the
    /// lock busier. In fair mode a free lock goes to the woken (or oldest) waiter only, across
    /// processes, and a newcomer lists itself behind the others.
    ///
    /// What it costs: a handoff always waits for the woken waiter's retry (one round trip
    /// after the wake-up), a waiter whose process hangs (stopped, not dead) holds the lock up
    /// for up to a second once woken, and each handoff costs Redis a few more commands. A
    /// waiter whose process dies is skipped at once (its wake-up reaches nobody), and one
    /// whose `acquire` is dropped leaves the list. Fairness holds among clients that all use
    /// fair mode on that name; a non-fair acquire can still take a free lock ahead of the
    /// list. Fair mode needs a single node (the lists of several Redlock nodes could order
    /// waiters differently).
    pub fn fair(mut self, on: bool) -> Self {
        self.fair = on;
        self
    }

    /// A description of the holder (host, process, job…), stored with the lock so that
    /// [`Client::inspect`](crate::Client::inspect) and `redlease status` can say who holds it. At most
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

/// [`LockOptions`] checked against a client's drift policy and node count, with what the
/// acquire loop derives from them.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub(crate) timing: LeaseTiming,
    pub(crate) retry: Retry,
    pub(crate) auto_renew: bool,
    pub(crate) max_hold: Option<Duration>,
    pub(crate) fair: bool,
    pub(crate) label: String,
}

impl LockOptions {
    /// Validates the options for a client with this drift policy and `nodes` nodes.
    pub(crate) fn check(&self, drift: Drift, nodes: usize) -> Result<Checked, ConfigError> {
        let timing = drift.lease(self.ttl)?;
        self.retry.validate()?;
        if let Some(limit) = self.max_hold
            && limit < self.ttl
        {
            return Err(ConfigError::HoldCapBelowTtl {
                max_hold: limit,
                ttl: self.ttl,
            });
        }
        if self.label.len() > MAX_LABEL_LEN {
            return Err(ConfigError::LabelTooLong {
                len: self.label.len(),
                max: MAX_LABEL_LEN,
            });
        }
        if self.fair && nodes > 1 {
            return Err(ConfigError::FairNeedsOneNode);
        }
        Ok(Checked {
            timing,
            retry: self.retry.clone(),
            auto_renew: self.auto_renew,
            max_hold: self.max_hold,
            fair: self.fair,
            label: self.label.clone(),
        })
    }
}
