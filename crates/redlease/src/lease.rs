//! One lease's shared state: its identity on the servers, its deadline, and the loss signal.
//!
//! The guard, the renewer and requests still in flight all hold the lease through an `Arc`.
//! The deadline only moves forward through a renewal or extension whose request was sent after
//! every earlier one, and once the lease is lost it stays lost.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Lost;
use crate::keys::Keys;
use crate::renew::RENEW_DIVISOR;
use crate::token::Token;

#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) name: String,
    pub(crate) keys: Keys,
    pub(crate) token: Token,
    /// Who holds it, for people looking at the lock (stored after the token).
    pub(crate) label: String,
    state: Mutex<State>,
    /// Wakes `lost()` futures when the lease is declared lost.
    lost_notify: Notify,
    /// Created on first use (most leases never need one), cancelled with the loss.
    cancel: OnceLock<CancellationToken>,
}

#[derive(Debug)]
pub(crate) struct State {
    /// Until when the lease can be trusted (monotonic clock).
    pub(crate) valid_until: Instant,
    /// The TTL of the last grant or extension.
    pub(crate) ttl: Duration,
    /// When the request that set `valid_until` was sent; older replies must not overwrite it.
    pub(crate) last_sent: Instant,
    /// `Some` while the renewer keeps this lease alive.
    pub(crate) renewal: Option<Renewal>,
    /// Why the lease ended; set once, never cleared.
    pub(crate) lost: Option<Lost>,
    /// Whether a loss watcher task runs (see [`Lease::cancellation`]).
    watched: bool,
}

/// Renewal bookkeeping, owned by the renewer.
#[derive(Debug)]
pub(crate) struct Renewal {
    /// The TTL each renewal asks for.
    pub(crate) ttl: Duration,
    /// When the next renewal is due.
    pub(crate) due: Instant,
    /// The maximum hold time's end, if any: renewals never extend past it.
    pub(crate) hold_until: Option<Instant>,
    /// A renewal round for this lease is running.
    pub(crate) in_flight: bool,
    /// The last renewal round failed to reach a majority.
    pub(crate) failing: bool,
    /// Renewal stopped because the next one would have passed `hold_until`.
    pub(crate) capped: bool,
}

impl Lease {
    pub(crate) fn new(name: &str, keys: Keys, token: Token, label: String) -> Self {
        let now = Instant::now();
        Self {
            name: name.to_owned(),
            keys,
            token,
            label,
            state: Mutex::new(State {
                valid_until: now,
                ttl: Duration::ZERO,
                last_sent: now,
                renewal: None,
                lost: None,
                watched: false,
            }),
            lost_notify: Notify::new(),
            cancel: OnceLock::new(),
        }
    }

    /// The state, even if a thread panicked while holding the lock: every update leaves it
    /// consistent, so there is nothing to repair.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a grant or extension whose request was sent at `sent`. Returns `false`, changing
    /// nothing, when the lease was lost meanwhile or a later request already moved the deadline:
    /// a late reply never revives a lost lease.
    pub(crate) fn extended(&self, sent: Instant, ttl: Duration, trusted: Duration) -> bool {
        let mut state = self.state();
        if state.lost.is_some() || sent < state.last_sent || Instant::now() >= sent + trusted {
            return false;
        }
        state.valid_until = sent + trusted;
        state.ttl = ttl;
        state.last_sent = sent;
        true
    }

    pub(crate) fn valid_until(&self) -> Instant {
        self.state().valid_until
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.state().ttl
    }

    pub(crate) fn lost_reason(&self) -> Option<Lost> {
        self.state().lost
    }

    /// Trusted right now: not lost, and the deadline has not passed.
    pub(crate) fn is_held(&self) -> bool {
        let state = self.state();
        state.lost.is_none() && Instant::now() < state.valid_until
    }

    /// Declares the lease lost (the first reason sticks), wakes `lost()` futures and cancels
    /// the cancellation token.
    pub(crate) fn mark_lost(&self, reason: Lost) {
        let first = {
            let mut state = self.state();
            let first = state.lost.is_none();
            state.lost.get_or_insert(reason);
            first
        };
        if first {
            self.lost_notify.notify_waiters();
            if let Some(token) = self.cancel.get() {
                token.cancel();
            }
        }
    }

    /// Marks the lease lost if its deadline has passed, with the reason that explains it.
    pub(crate) fn expire_if_due(&self, now: Instant) -> bool {
        let state = self.state();
        if now < state.valid_until {
            return false;
        }
        let reason = match &state.renewal {
            // Renewal stopped at the cap, or the lease ran out within a renewal of it.
            Some(renewal)
                if renewal.capped
                    || renewal
                        .hold_until
                        .is_some_and(|cap| cap <= now + renewal.ttl / RENEW_DIVISOR) =>
            {
                Lost::HoldCapReached
            }
            // The last renewal failed, or is still waiting for an answer at the deadline.
            Some(renewal) if renewal.failing || renewal.in_flight => Lost::Unreachable,
            _ => Lost::Expired,
        };
        drop(state);
        self.mark_lost(reason);
        true
    }

    /// Resolves with the reason once the lease is lost; at the latest at its deadline.
    pub(crate) fn lost(self: &Arc<Self>) -> impl Future<Output = Lost> + Send + 'static {
        let lease = self.clone();
        async move {
            loop {
                let notified = lease.lost_notify.notified();
                tokio::pin!(notified);
                // Registered before looking, so a loss declared in between still wakes us.
                notified.as_mut().enable();
                let (lost, deadline) = {
                    let state = lease.state();
                    (state.lost, state.valid_until)
                };
                if let Some(reason) = lost {
                    return reason;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(deadline.into()) => {
                        lease.expire_if_due(Instant::now());
                    }
                }
            }
        }
    }

    /// A token cancelled when the lease is lost. Leases without renewal get a small task that
    /// waits for their deadline (it ends then, or at release).
    pub(crate) fn cancellation(self: &Arc<Self>) -> CancellationToken {
        let token = self.cancel.get_or_init(CancellationToken::new);
        let mut state = self.state();
        if state.lost.is_some() {
            token.cancel();
        } else if state.renewal.is_none() && !state.watched {
            state.watched = true;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(self.lost());
            }
        }
        token.child_token()
    }
}
