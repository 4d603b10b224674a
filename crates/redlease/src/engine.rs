//! The engine under every primitive: the backends and their quorum, the key prefix, the drift
//! policy, the renewer and the subscriber. Clients, guards and acquisitions hold it through an
//! `Arc`; its state changes only through the methods here.

use std::sync::Arc;

use crate::error::{BackendError, BackendErrorKind, ConfigError, Error};
use crate::keys::Keys;
use crate::lease::Lease;
use crate::outcome::{Lost, ReleaseOutcome};
use crate::quorum::Quorum;
use crate::renew::Renewer;
use crate::subscribe::{Subscriber, Watch};
use crate::telemetry::Meter;
use crate::timing::Drift;

#[derive(Debug)]
pub(crate) struct Engine {
    quorum: Arc<Quorum>,
    prefix: String,
    drift: Drift,
    /// Whether a server's count of a wake-up's receivers is complete (see
    /// [`HandOff::skip_unheard`](crate::lease::HandOff)).
    counts_receivers: bool,
    renewer: Renewer,
    subscriber: Subscriber,
    meter: Meter,
}

impl Engine {
    pub(crate) fn new(
        quorum: Quorum,
        prefix: String,
        drift: Drift,
        subscriber: Subscriber,
        counts_receivers: bool,
        metrics_per_name: bool,
    ) -> Self {
        let quorum = Arc::new(quorum);
        let meter = Meter::new(metrics_per_name);
        Self {
            renewer: Renewer::new(&quorum, drift, meter),
            meter,
            quorum,
            prefix,
            drift,
            counts_receivers,
            subscriber,
        }
    }

    pub(crate) fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn drift(&self) -> Drift {
        self.drift
    }

    /// This client's metrics.
    pub(crate) fn meter(&self) -> Meter {
        self.meter
    }

    /// Whether a server's count of a wake-up's receivers is complete: true when every backend
    /// is a plain server the client's subscriber may listen on directly.
    pub(crate) fn counts_receivers(&self) -> bool {
        self.counts_receivers
    }

    /// The keys of the lock `name` under this client's prefix (validating the name).
    pub(crate) fn keys(&self, name: &str) -> Result<Keys, ConfigError> {
        Keys::new(&self.prefix, name)
    }

    /// Keeps `lease` alive until it is lost or released (its renewal must be started).
    pub(crate) fn renew(&self, lease: Arc<Lease>) {
        self.renewer.register(lease);
    }

    /// Tells the renewer `lease` changed (extended by its holder).
    pub(crate) fn lease_changed(&self, lease: &Lease) {
        self.renewer.changed(lease);
    }

    /// Registers the waiter `token` for its wake-up, subscribing first if needed; `None` when
    /// no subscriber connection can be had (the caller then polls).
    pub(crate) async fn watch(&self, token: &str) -> Option<Watch> {
        self.subscriber.watch(token).await
    }

    /// The backend whose releases can wake this client's waiters, while they can.
    pub(crate) fn wake_backend(&self) -> Option<usize> {
        self.subscriber.live_backend()
    }

    /// This client's wake channel, which its waiters list with their tokens.
    pub(crate) fn wake_channel(&self) -> &str {
        self.subscriber.channel()
    }

    /// Gives `lease` back on every backend: its renewal stops at once.
    pub(crate) async fn release(&self, lease: &Lease) -> Result<ReleaseOutcome, Error> {
        // Marked lost, the lease gets no more renewals; the renewer forgets it at its next
        // plan.
        lease.mark_lost(Lost::Released);
        tracing::trace!(target: "redlease::handoff", name = lease.name(), "release sent");
        let arbiter = self.wake_backend();
        let mut outcome = self
            .quorum
            .release(lease.release_call(), None, arbiter)
            .await;
        // A connection that broke since its last use (a restarted server) fails the first
        // command sent on it, and the connection manager reconnects behind it. Releasing is
        // owner-only, so sending it once more is safe whatever the first one did.
        if outcome.as_ref().is_err_and(broken_connection) {
            outcome = self
                .quorum
                .release(lease.release_call(), None, arbiter)
                .await;
        }
        tracing::trace!(target: "redlease::handoff", name = lease.name(), "release replied");
        self.meter.released(lease.name(), Some(&outcome));
        outcome
    }

    /// Gives `lease` back on the backends in `only` (the grants of a failed round).
    pub(crate) async fn give_back(&self, lease: &Lease, only: &[usize]) {
        // Best effort: what is not given back expires after its TTL.
        let _ = self
            .quorum
            .release(lease.release_call(), Some(only), None)
            .await;
    }

    /// Stops renewing `lease` and gives it back in the background, on the current Tokio runtime
    /// if there is one (otherwise it expires after its TTL). Never blocks.
    pub(crate) fn release_in_background(self: &Arc<Self>, lease: Arc<Lease>) {
        // Marked lost, the lease gets no more renewals; the renewer forgets it at its next
        // plan.
        lease.mark_lost(Lost::Released);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let engine = self.clone();
            runtime.spawn(async move {
                // Best effort: if this fails, the lease expires after its TTL.
                let _ = engine
                    .quorum
                    .release(lease.release_call(), None, None)
                    .await;
            });
        }
    }
}

/// Whether `error` is only broken connections and nothing was released: a retry may reach the
/// servers. (After a partial release a retry would find the keys it deleted gone, and count
/// those nodes as not released.)
fn broken_connection(error: &Error) -> bool {
    let broken = |e: &BackendError| e.kind() == BackendErrorKind::Connection;
    match error {
        Error::Backend(e) => broken(e),
        Error::NoQuorum {
            errors, reached, ..
        } => *reached == 0 && !errors.is_empty() && errors.iter().all(broken),
        _ => false,
    }
}
