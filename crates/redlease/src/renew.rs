//! Automatic renewal: one task per client keeps every renewing lease alive, batching all the
//! leases that are due into one pipelined round trip per node.
//!
//! Schedule: a lease is due `ttl / RENEW_DIVISOR` (a third of its TTL) after its last renewal.
//! The renewer wakes when the first lease is due and takes along every lease that is due *or
//! within half an interval of being due*, so leases fall into step and share round trips: with
//! 10,000 leases, about two round trips per node per interval instead of 10,000. Each lease is
//! renewed between half an interval and one interval after its previous renewal. A lease whose deadline passes without a successful
//! renewal is lost at that instant, whatever the servers are doing; a reply that comes later
//! never revives it.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::client::Shared;
use crate::lease::{Lease, Renewal};
use crate::quorum::Extended;

/// Renewals happen every `ttl / RENEW_DIVISOR`: a lease survives two failed renewals in a row.
pub const RENEW_DIVISOR: u32 = 3;

/// The least time between two renewal attempts of one lease after a failure.
const RETRY_FLOOR: Duration = Duration::from_millis(10);

/// The registry of renewing leases and the handle to wake the renewer task.
#[derive(Debug, Default)]
pub(crate) struct Renewer {
    registry: Mutex<Registry>,
    wake: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Registry {
    leases: Vec<Arc<Lease>>,
    /// The renewer task runs (it stops when the registry empties, and restarts on demand).
    running: bool,
}

/// One lease picked for a renewal round, with the TTL to ask for.
struct Due {
    lease: Arc<Lease>,
    ttl: Duration,
}

impl Renewer {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts renewing `lease` (already granted, with its renewal state set).
    pub(crate) fn register(&self, shared: Weak<Shared>, lease: Arc<Lease>) {
        let mut registry = self.registry();
        registry.leases.push(lease);
        if !registry.running {
            registry.running = true;
            tokio::spawn(run(shared, self.wake.clone()));
        }
        drop(registry);
        self.wake.notify_one();
    }

    /// Asks the renewer to look at its leases again (a lease was released or extended).
    pub(crate) fn poke(&self) {
        self.wake.notify_one();
    }

    /// Drops finished leases, declares expired ones lost, and collects those due for renewal.
    /// Returns when to wake next, or `None` when nothing is left to renew (the task then ends).
    fn plan(&self, shared: &Shared, now: Instant) -> (Option<Instant>, Vec<Due>) {
        let mut registry = self.registry();
        registry
            .leases
            .retain(|lease| lease.lost_reason().is_none() && !lease.expire_if_due(now));
        if registry.leases.is_empty() {
            registry.running = false;
            return (None, Vec::new());
        }
        let mut wake_at: Option<Instant> = None;
        let mut due = Vec::new();
        for lease in &registry.leases {
            let mut state = lease.state();
            let valid_until = state.valid_until;
            let Some(renewal) = state.renewal.as_mut() else {
                continue;
            };
            let interval = renewal_interval(renewal.ttl);
            let eligible_at = renewal.due.checked_sub(interval / 2).unwrap_or(renewal.due);
            if !renewal.in_flight && !renewal.capped && eligible_at <= now {
                match capped_ttl(shared, renewal, now) {
                    Some(ttl) => {
                        renewal.in_flight = true;
                        due.push(Due {
                            lease: lease.clone(),
                            ttl,
                        });
                    }
                    None => renewal.capped = true,
                }
            }
            // Wake when a lease is due, not when it becomes eligible: the lease that is due
            // then takes along every lease within half an interval of being due.
            let next = if renewal.in_flight || renewal.capped {
                valid_until
            } else {
                valid_until.min(renewal.due.max(now))
            };
            wake_at = Some(wake_at.map_or(next, |at| at.min(next)));
        }
        (wake_at, due)
    }
}

fn renewal_interval(ttl: Duration) -> Duration {
    ttl / RENEW_DIVISOR
}

/// The TTL for the next renewal: the lease's TTL, shortened so the lease ends at its hold cap.
/// `None` once the remaining hold time is too short to be worth a lease.
fn capped_ttl(shared: &Shared, renewal: &Renewal, now: Instant) -> Option<Duration> {
    let ttl = match renewal.hold_until {
        Some(cap) => renewal.ttl.min(cap.saturating_duration_since(now)),
        None => renewal.ttl,
    };
    shared.lease_millis(ttl).ok().map(|_| ttl)
}

/// The renewer task: sleeps until the next lease is due or expires, or until poked.
async fn run(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let (wake_at, due) = strong.renewer.plan(&strong, Instant::now());
        if !due.is_empty() {
            tokio::spawn(renew(strong.clone(), due));
        }
        drop(strong); // sleeping must not keep the client alive
        let Some(wake_at) = wake_at else {
            return;
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = wake.notified() => {}
        }
    }
}

/// One renewal round for `due`, over every node.
async fn renew(shared: Arc<Shared>, due: Vec<Due>) {
    let sent = Instant::now();
    let mut batch = Vec::with_capacity(due.len());
    let mut latest_deadline = sent;
    for item in &due {
        let millis = shared.lease_millis(item.ttl).unwrap_or(1);
        batch.push((item.lease.clone(), millis));
        latest_deadline = latest_deadline.max(item.lease.valid_until());
    }
    // Waiting past every lease's deadline is pointless: they are lost by then.
    let limit = latest_deadline.saturating_duration_since(sent);
    let outcomes = shared.nodes.extend(&batch, limit).await;
    for (item, outcome) in due.iter().zip(outcomes) {
        let trusted = item.ttl.saturating_sub(shared.drift(item.ttl));
        let renewed =
            matches!(outcome, Extended::Yes) && item.lease.extended(sent, item.ttl, trusted);
        if let Extended::Lost(reason) = outcome {
            item.lease.mark_lost(reason);
        }
        let mut state = item.lease.state();
        if let Some(renewal) = state.renewal.as_mut() {
            renewal.in_flight = false;
            renewal.failing = !renewed;
            renewal.due = if renewed {
                sent + renewal_interval(item.ttl)
            } else {
                Instant::now() + (renewal_interval(item.ttl) / 10).max(RETRY_FLOOR)
            };
        }
    }
    shared.renewer.poke();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_leaves_room_for_two_failures() {
        assert_eq!(
            renewal_interval(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            renewal_interval(Duration::from_millis(300)),
            Duration::from_millis(100)
        );
    }
}
