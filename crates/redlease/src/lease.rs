//! One lease's shared state: its identity on the servers, its deadline, its renewal
//! bookkeeping, and the loss signal. Every change of state is a method here.
//!
//! The guard, the renewer and requests still in flight all hold the lease through an `Arc`.
//! The deadline only moves forward through a renewal or extension whose request was sent after
//! every earlier one, and once the lease is lost it stays lost.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::keys::Keys;
use crate::outcome::Lost;
use crate::script::Call;
use crate::telemetry::Meter;
use crate::timing::{Drift, LeaseTiming};
use crate::token::Token;

/// How a primitive's holds are extended and given back: its own scripts, with the lease's
/// keys and token (see the primitive's `scripts` module).
#[derive(Debug)]
pub(crate) struct HoldScripts {
    /// Compare-and-expire to this many milliseconds; never recreates the key.
    pub(crate) extend: fn(&Lease, u64) -> Call,
    /// Compare-and-delete.
    pub(crate) release: fn(&Lease) -> Call,
    /// Confirms a hold a release handed to this waiter: the hold gets the waiter's own TTL
    /// (and label) if it is still the waiter's; read with [`Reply::ownership`](crate::script::Reply::ownership).
    pub(crate) confirm: fn(&Lease, &LeaseTiming) -> Call,
    /// Takes the waiter entry out of the waiters (the acquire ended without the hold), giving
    /// back a hold handed to it meanwhile.
    pub(crate) leave: fn(&Lease, &str) -> Call,
}

/// How the scripts that free a hold hand it to the next waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandOff {
    /// How long a hold handed to a waiter is kept for it before it confirms (ms).
    pub(crate) claim_ms: u64,
    /// A waiter whose wake-up reached nobody is gone and is skipped. Only where every
    /// subscriber of a waiter's channel is counted by the server that publishes: a plain
    /// server. A Cluster node counts only its own subscribers, and a Sentinel's demoted
    /// primary still relays the new one's messages, so there a wake-up that reached "nobody"
    /// may yet arrive, and its hand-off must stand.
    pub(crate) skip_unheard: bool,
}

#[derive(Debug)]
pub(crate) struct Lease {
    name: String,
    keys: Keys,
    token: Token,
    /// Who holds it, for people looking at the lock (stored after the token).
    label: String,
    scripts: &'static HoldScripts,
    hand_off: HandOff,
    /// Counts the loss, under this client's metrics settings.
    meter: Meter,
    state: Mutex<State>,
    /// Wakes `lost()` futures when the lease is declared lost.
    lost_notify: Notify,
    /// Created on first use (most leases never need one), cancelled with the loss.
    cancel: OnceLock<CancellationToken>,
}

#[derive(Debug)]
struct State {
    /// Until when the lease can be trusted (monotonic clock).
    valid_until: Instant,
    /// The TTL of the last grant or extension.
    ttl: Duration,
    /// When the request that set `valid_until` was sent; older replies must not overwrite it.
    last_sent: Instant,
    /// `Some` while the renewer keeps this lease alive.
    renewal: Option<Renewal>,
    /// Why the lease ended; set once, never cleared.
    lost: Option<Lost>,
    /// Whether a loss watcher task runs (see [`Lease::cancellation`]).
    watched: bool,
}

/// Renewal bookkeeping.
#[derive(Debug)]
struct Renewal {
    /// The TTL each renewal asks for.
    timing: LeaseTiming,
    /// When the next renewal is due.
    due: Instant,
    /// The maximum hold time's end, if any: renewals never extend past it.
    hold_until: Option<Instant>,
    /// A renewal round for this lease is running.
    in_flight: bool,
    /// The last renewal round failed to reach a majority.
    failing: bool,
    /// Renewal stopped because the next one would have passed `hold_until`.
    capped: bool,
}

/// What the renewer should do about one lease now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Renew it now, with this timing (shortened to end at the hold cap).
    pub(crate) renew: Option<LeaseTiming>,
    /// Look at it again by then.
    pub(crate) wake_at: Instant,
}

impl Lease {
    pub(crate) fn new(
        name: &str,
        keys: Keys,
        token: Token,
        label: String,
        scripts: &'static HoldScripts,
        hand_off: HandOff,
        meter: Meter,
    ) -> Self {
        let now = Instant::now();
        Self {
            name: name.to_owned(),
            keys,
            token,
            label,
            scripts,
            hand_off,
            meter,
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

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(crate) fn token(&self) -> &Token {
        &self.token
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn hand_off(&self) -> HandOff {
        self.hand_off
    }

    /// The call that extends this lease to `millis` on one backend.
    pub(crate) fn extend_call(&self, millis: u64) -> Call {
        (self.scripts.extend)(self, millis)
    }

    /// The call that gives this lease back on one backend.
    pub(crate) fn release_call(&self) -> Call {
        (self.scripts.release)(self)
    }

    /// The call that confirms this lease, handed to its waiter, with `timing`.
    pub(crate) fn confirm_call(&self, timing: &LeaseTiming) -> Call {
        (self.scripts.confirm)(self, timing)
    }

    /// The call that takes this lease's waiter `entry` out of the waiters.
    pub(crate) fn leave_call(&self, entry: &str) -> Call {
        (self.scripts.leave)(self, entry)
    }

    /// The state, even if a thread panicked while holding the lock: every update leaves it
    /// consistent, so there is nothing to repair.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a grant or extension whose request was sent at `sent`. Returns `false`, changing
    /// nothing, when the lease was lost meanwhile or a later request already moved the deadline,
    /// or the new validity has passed already: a late reply never revives a lost lease.
    pub(crate) fn extended(&self, sent: Instant, timing: &LeaseTiming) -> bool {
        let mut state = self.state();
        let valid_until = timing.valid_until(sent);
        if state.lost.is_some() || sent < state.last_sent || Instant::now() >= valid_until {
            return false;
        }
        state.valid_until = valid_until;
        state.ttl = timing.ttl;
        state.last_sent = sent;
        true
    }

    /// Whether a request sent after `sent` (a renewal, a hand-off's confirmation) moved the
    /// deadline already. Requests on one backend run in the order they were sent, so that
    /// later one is what the servers hold now.
    pub(crate) fn moved_after(&self, sent: Instant) -> bool {
        self.state().last_sent > sent
    }

    /// Starts renewal bookkeeping for a lease granted by a request sent at `granted_at`.
    pub(crate) fn start_renewal(
        &self,
        timing: LeaseTiming,
        granted_at: Instant,
        max_hold: Option<Duration>,
    ) {
        self.state().renewal = Some(Renewal {
            timing,
            due: timing.renewal_due(granted_at),
            hold_until: max_hold.map(|limit| granted_at + limit),
            in_flight: false,
            failing: false,
            capped: false,
        });
    }

    /// After the holder extended the lease itself (sent at `sent`): later renewals ask for
    /// `timing`'s TTL, from then.
    pub(crate) fn retune_renewal(&self, timing: LeaseTiming, sent: Instant) {
        if let Some(renewal) = self.state().renewal.as_mut() {
            renewal.timing = timing;
            renewal.due = timing.renewal_due(sent);
        }
    }

    /// Whether the renewer should renew this lease now (it then counts as in flight), and when
    /// to look again. A lease becomes eligible half an interval before it is due, so that
    /// leases fall into step and share round trips; the renewer wakes when one is *due*, and
    /// takes along every eligible one.
    pub(crate) fn plan_renewal(&self, now: Instant, drift: Drift) -> Plan {
        let mut state = self.state();
        let valid_until = state.valid_until;
        let Some(renewal) = state.renewal.as_mut() else {
            return Plan {
                renew: None,
                wake_at: valid_until,
            };
        };
        let mut renew = None;
        if !renewal.in_flight
            && !renewal.capped
            && renewal.timing.renewal_eligible(renewal.due) <= now
        {
            // The TTL for this renewal, shortened so the lease ends at its hold cap; none once
            // the remaining hold time is too short to be worth a lease.
            let ttl = match renewal.hold_until {
                Some(cap) => renewal.timing.ttl.min(cap.saturating_duration_since(now)),
                None => renewal.timing.ttl,
            };
            match drift.lease(ttl) {
                Ok(timing) => {
                    renewal.in_flight = true;
                    renew = Some(timing);
                }
                Err(_) => renewal.capped = true,
            }
        }
        let wake_at = if renewal.in_flight || renewal.capped {
            valid_until
        } else {
            valid_until.min(renewal.due.max(now))
        };
        Plan { renew, wake_at }
    }

    /// When the renewer should look at this lease next, as [`Lease::plan_renewal`] would say,
    /// without planning anything.
    pub(crate) fn renewal_wake_at(&self) -> Instant {
        let state = self.state();
        match &state.renewal {
            Some(renewal) if !renewal.in_flight && !renewal.capped => {
                state.valid_until.min(renewal.due)
            }
            _ => state.valid_until,
        }
    }

    /// Records the end of a renewal round sent at `sent` with `timing`.
    pub(crate) fn renewal_finished(&self, sent: Instant, timing: &LeaseTiming, renewed: bool) {
        if let Some(renewal) = self.state().renewal.as_mut() {
            renewal.in_flight = false;
            renewal.failing = !renewed;
            renewal.due = if renewed {
                timing.renewal_due(sent)
            } else {
                timing.renewal_retry(Instant::now())
            };
        }
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
            self.meter.lost(&self.name, reason);
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
                        .is_some_and(|cap| cap <= now + renewal.timing.renewal_interval()) =>
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::DEFAULT_DRIFT_FACTOR;

    fn unused_call(_: &Lease) -> Call {
        unreachable!("no Redis in these tests")
    }

    fn unused_extend(_: &Lease, _: u64) -> Call {
        unreachable!("no Redis in these tests")
    }

    fn unused_confirm(_: &Lease, _: &LeaseTiming) -> Call {
        unreachable!("no Redis in these tests")
    }

    fn unused_leave(_: &Lease, _: &str) -> Call {
        unreachable!("no Redis in these tests")
    }

    static SCRIPTS: HoldScripts = HoldScripts {
        extend: unused_extend,
        release: unused_call,
        confirm: unused_confirm,
        leave: unused_leave,
    };

    fn lease() -> Lease {
        let keys = Keys::new("p:", "n").unwrap();
        let hand_off = HandOff {
            claim_ms: 500,
            skip_unheard: true,
        };
        Lease::new(
            "n",
            keys,
            Token::generate().unwrap(),
            String::new(),
            &SCRIPTS,
            hand_off,
            Meter::default(),
        )
    }

    fn drift() -> Drift {
        Drift::new(DEFAULT_DRIFT_FACTOR).unwrap()
    }

    #[test]
    fn a_late_or_older_reply_never_moves_the_deadline() {
        let lease = lease();
        let timing = drift().lease(Duration::from_secs(3)).unwrap();
        let first = Instant::now();
        assert!(lease.extended(first, &timing));
        assert_eq!(lease.valid_until(), timing.valid_until(first));
        let older = first.checked_sub(Duration::from_millis(1)).unwrap();
        assert!(!lease.extended(older, &timing), "an older request's reply");
        let long_ago = first.checked_sub(Duration::from_secs(10)).unwrap_or(first);
        if long_ago < first {
            assert!(!lease.extended(long_ago, &timing));
        }
        lease.mark_lost(Lost::Released);
        assert!(
            !lease.extended(Instant::now(), &timing),
            "a lost lease stays lost"
        );
        lease.mark_lost(Lost::Expired);
        assert_eq!(
            lease.lost_reason(),
            Some(Lost::Released),
            "the first reason sticks"
        );
    }

    #[test]
    fn renewal_is_planned_when_eligible_and_capped_at_the_hold_limit() {
        let lease = lease();
        let timing = drift().lease(Duration::from_secs(3)).unwrap();
        let start = Instant::now();
        assert!(lease.extended(start, &timing));
        lease.start_renewal(timing, start, Some(Duration::from_secs(4)));
        let early = lease.plan_renewal(start, drift());
        assert_eq!(early.renew, None);
        assert_eq!(early.wake_at, start + Duration::from_secs(1));
        let eligible = lease.plan_renewal(start + Duration::from_millis(600), drift());
        assert_eq!(eligible.renew, Some(timing));
        assert_eq!(
            lease
                .plan_renewal(start + Duration::from_millis(700), drift())
                .renew,
            None,
            "in flight"
        );
        lease.renewal_finished(start + Duration::from_millis(600), &timing, true);
        // 3.5 s in, 0.5 s of the 4 s cap is left: the renewal asks for that only.
        let near_cap = lease.plan_renewal(start + Duration::from_millis(3_500), drift());
        assert_eq!(
            near_cap.renew.map(|t| t.ttl),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn expiry_names_the_reason() {
        let timing = drift().lease(Duration::from_secs(3)).unwrap();
        let (plain, failing, capped) = (lease(), lease(), lease());
        let start = Instant::now();
        assert!(plain.extended(start, &timing));
        assert!(!plain.expire_if_due(start));
        assert!(plain.expire_if_due(timing.valid_until(start)));
        assert_eq!(plain.lost_reason(), Some(Lost::Expired));

        assert!(failing.extended(start, &timing));
        failing.start_renewal(timing, start, None);
        let _ = failing.plan_renewal(start + Duration::from_secs(1), drift());
        failing.renewal_finished(start + Duration::from_secs(1), &timing, false);
        assert!(failing.expire_if_due(timing.valid_until(start)));
        assert_eq!(failing.lost_reason(), Some(Lost::Unreachable));

        assert!(capped.extended(start, &timing));
        capped.start_renewal(timing, start, Some(Duration::from_secs(3)));
        assert!(capped.expire_if_due(timing.valid_until(start)));
        assert_eq!(capped.lost_reason(), Some(Lost::HoldCapReached));
    }
}
