//! Automatic renewal: one task per client keeps every renewing lease alive, batching all the
//! leases that are due into one pipelined round trip per backend.
//!
//! Schedule (the rules are in `timing`, each lease's bookkeeping in `lease`): a lease is due a
//! third of its TTL after its last renewal. The renewer wakes when the first lease is due and
//! takes along every lease that is due *or within half an interval of being due*, so leases
//! fall into step and share round trips: with 10,000 leases, about twenty round trips per
//! backend per interval (chunks of [`CHUNK`]) instead of 10,000. A lease whose deadline passes
//! without a successful renewal is lost at that instant, whatever the servers are doing; a
//! reply that comes later never revives it.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use tokio::sync::Notify;
use tracing::Instrument;

use crate::lease::Lease;
use crate::quorum::{Extended, Quorum};
use crate::telemetry::{self, Meter};
use crate::timing::{Drift, LeaseTiming};

/// The registry of renewing leases and the handle to wake the renewer task.
#[derive(Debug)]
pub(crate) struct Renewer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    quorum: Weak<Quorum>,
    drift: Drift,
    meter: Meter,
    registry: Mutex<Registry>,
    wake: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Registry {
    leases: Vec<Arc<Lease>>,
    /// When the renewer task is to wake next, as its last plan said (`None`: no plan yet).
    next_wake: Option<Instant>,
    /// The renewer task runs (it stops when the registry empties, and restarts on demand).
    running: bool,
}

/// One lease picked for a renewal round, with the timing to ask for.
struct Due {
    lease: Arc<Lease>,
    timing: LeaseTiming,
}

impl Renewer {
    /// A renewer for leases on `quorum`; it does not keep the quorum alive.
    pub(crate) fn new(quorum: &Arc<Quorum>, drift: Drift, meter: Meter) -> Self {
        Self {
            inner: Arc::new(Inner {
                quorum: Arc::downgrade(quorum),
                drift,
                meter,
                registry: Mutex::new(Registry::default()),
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// Starts renewing `lease` (already granted, with its renewal started).
    pub(crate) fn register(&self, lease: Arc<Lease>) {
        let mut registry = self.inner.registry();
        let wake_at = lease.renewal_wake_at();
        registry.leases.push(lease);
        if !registry.running {
            registry.running = true;
            tokio::spawn(run(Arc::downgrade(&self.inner), self.inner.wake.clone()));
        }
        let sooner = registry.next_wake.is_none_or(|next| wake_at < next);
        drop(registry);
        // Planning looks at every lease: waking the task for each new lease would make taking
        // n leases cost n² (minutes for 100,000), so only a lease due before the planned wake
        // wakes it.
        if sooner {
            self.inner.wake.notify_one();
        }
    }

    /// Tells the renewer that `lease` changed (its holder extended it): the task wakes if the
    /// lease is now due before its planned wake.
    pub(crate) fn changed(&self, lease: &Lease) {
        let wake_at = lease.renewal_wake_at();
        let sooner = self
            .inner
            .registry()
            .next_wake
            .is_none_or(|next| wake_at < next);
        if sooner {
            self.inner.wake.notify_one();
        }
    }
}

impl Inner {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops finished leases, declares expired ones lost, and collects those due for renewal.
    /// Returns when to wake next, or `None` when nothing is left to renew (the task then ends).
    fn plan(&self, now: Instant) -> (Option<Instant>, Vec<Due>) {
        let mut registry = self.registry();
        registry
            .leases
            .retain(|lease| lease.lost_reason().is_none() && !lease.expire_if_due(now));
        if registry.leases.is_empty() {
            registry.running = false;
            registry.next_wake = None;
            return (None, Vec::new());
        }
        let mut wake_at: Option<Instant> = None;
        let mut due = Vec::new();
        for lease in &registry.leases {
            let plan = lease.plan_renewal(now, self.drift);
            if let Some(timing) = plan.renew {
                due.push(Due {
                    lease: lease.clone(),
                    timing,
                });
            }
            wake_at = Some(wake_at.map_or(plan.wake_at, |at| at.min(plan.wake_at)));
        }
        registry.next_wake = wake_at;
        (wake_at, due)
    }
}

/// The renewer task: sleeps until the next lease is due or expires, or until woken.
async fn run(inner: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (wake_at, due) = strong.plan(Instant::now());
        if !due.is_empty() {
            tokio::spawn(renew(strong.clone(), due));
        }
        let Some(wake_at) = wake_at else {
            return;
        };
        drop(strong); // sleeping must not keep the client alive
        tokio::select! {
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = wake.notified() => {}
        }
    }
}

/// How many extensions one round trip carries at most. A pipeline holds every later request
/// on its connection behind it until Redis has run all of it, so a round is sent a chunk at a
/// time and other calls (an acquire with its 10 ms node timeout) get in between: Redis runs
/// 500 extensions in about 5 ms on the machines of BENCHMARKS.md.
const CHUNK: usize = 500;

/// One renewal round for `due`, over every backend, a chunk at a time.
async fn renew(inner: Arc<Inner>, due: Vec<Due>) {
    let Some(quorum) = inner.quorum.upgrade() else {
        return;
    };
    let started = Instant::now();
    let chunks = async {
        for chunk in due.chunks(CHUNK) {
            renew_chunk(&quorum, chunk).await;
        }
    };
    chunks.instrument(telemetry::renewal_span(due.len())).await;
    inner.meter.renewal_round(started.elapsed());
    inner.wake.notify_one();
}

/// Renews `due` in one round trip per backend; validity counts from its send.
async fn renew_chunk(quorum: &Quorum, due: &[Due]) {
    let sent = Instant::now();
    let mut calls = Vec::with_capacity(due.len());
    let mut latest_deadline = sent;
    for item in due {
        calls.push(item.lease.extend_call(item.timing.millis));
        latest_deadline = latest_deadline.max(item.lease.valid_until());
    }
    // Waiting past every lease's deadline is pointless: they are lost by then.
    let limit = latest_deadline.saturating_duration_since(sent);
    let outcomes = quorum.extend(calls, limit).await;
    for (item, outcome) in due.iter().zip(outcomes) {
        let renewed = matches!(outcome, Extended::Yes) && item.lease.extended(sent, &item.timing);
        if let Extended::Lost(reason) = outcome {
            item.lease.mark_lost(reason);
        }
        item.lease.renewal_finished(sent, &item.timing, renewed);
    }
}
