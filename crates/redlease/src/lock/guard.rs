//! The lock's guard: proof of a lease, with its fencing token, its deadline and its loss
//! signal.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{BackendError, BackendErrorKind, Error};
use crate::lease::Lease;
use crate::outcome::{Lost, ReleaseOutcome};
use crate::quorum::Extended;
use crate::telemetry;
use crate::token::Token;

/// A held lease. Created by [`Client::acquire`](crate::Client::acquire) or
/// [`Client::try_acquire`](crate::Client::try_acquire).
///
/// A lease is not a mutex: it ends when its TTL runs out, whether or not the holder is done.
/// Check [`is_held`](Self::is_held) before acting on the protected resource, watch
/// [`lost`](Self::lost) (or run the work through [`run`](Self::run)), and pass
/// [`fence`](Self::fence) to the resource so that it can reject writes from a holder whose
/// lease has ended (see the crate docs on fencing).
///
/// # Dropping
///
/// Dropping a guard without [`release`](Self::release) never blocks. It stops renewal at once;
/// inside a Tokio runtime it spawns a best-effort release (compare-and-delete by token);
/// outside one, or if that fails, the lease simply expires after its TTL.
#[must_use = "dropping the guard releases the lease in the background; keep it while you work"]
pub struct Guard {
    engine: Arc<Engine>,
    lease: Arc<Lease>,
    fence: u64,
    settled: bool,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("name", &self.lease.name())
            .field("token", self.lease.token())
            .field("fence", &self.fence)
            .field("ttl", &self.ttl())
            .field("remaining", &self.remaining())
            .field("lost", &self.lease.lost_reason())
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub(crate) fn new(engine: Arc<Engine>, lease: Arc<Lease>, fence: u64) -> Self {
        Self {
            engine,
            lease,
            fence,
            settled: false,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.lease.name()
    }

    /// This lease's ownership token (its `Debug`/`Display` show only a fingerprint).
    pub fn token(&self) -> &Token {
        self.lease.token()
    }

    /// The fencing token: strictly greater than the fence of every earlier lease on this name
    /// (as long as Redis keeps the counter: see DESIGN.md). Fences need not be consecutive:
    /// an acquire that found the lock held may have used a number up. Send it with every write to the
    /// protected resource and have the resource reject anything not above the largest it saw.
    /// A semaphore permit's fence increases the same way; guard a resource per
    /// [slot](crate::Permit::slot). A reader's ([`ReadGuard`](crate::ReadGuard)) is at least the
    /// latest write grant's and below the next one's: it tells which writes the reader follows.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The TTL of the last grant, extension or renewal.
    pub fn ttl(&self) -> Duration {
        self.lease.ttl()
    }

    /// Until when the lease can be trusted, on this process's monotonic clock: the instant the
    /// request that granted (or last extended or renewed) it was *sent*, plus the TTL, minus
    /// the drift allowance. The servers keep the key at least this long unless they lose data.
    pub fn valid_until(&self) -> Instant {
        self.lease.valid_until()
    }

    /// How long the lease can still be trusted; zero once it is lost or past
    /// [`valid_until`](Self::valid_until).
    pub fn remaining(&self) -> Duration {
        if self.lease.lost_reason().is_some() {
            return Duration::ZERO;
        }
        self.valid_until().saturating_duration_since(Instant::now())
    }

    /// Whether the lease can still be trusted: not reported lost, and
    /// [`valid_until`](Self::valid_until) not passed. Computed locally, without asking Redis,
    /// so it never stays `true` past the deadline.
    pub fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<Lost> {
        self.lease.lost_reason()
    }

    /// A future that resolves with the reason once the lease is lost: a renewal found the key
    /// gone or taken, renewals could not reach Redis before the deadline, the hold cap was
    /// reached, the guard was released, or — renewing or not — the deadline passed. It fires
    /// no later than [`valid_until`](Self::valid_until).
    ///
    /// The future owns what it needs (it does not borrow the guard), so it can be polled while
    /// the guard is used, moved to another task, or raced against work with `select!`.
    ///
    /// # Cancel safety
    ///
    /// Dropping it has no effect on the lease.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::LockOptions;
    ///
    /// let options = LockOptions::new(Duration::from_secs(10)).auto_renew(true);
    /// let guard = client.acquire("exports", &options).await?;
    /// tokio::select! {
    ///     reason = guard.lost() => eprintln!("lease lost ({reason}); stopping the export"),
    ///     () = export() => {}
    /// }
    /// guard.release().await?;
    /// # Ok(()) }
    /// # async fn export() {}
    /// ```
    pub fn lost(&self) -> impl Future<Output = Lost> + Send + 'static {
        self.lease.lost()
    }

    /// A cancellation token that is cancelled when the lease is lost (see
    /// [`lost`](Self::lost)). Pass it to work that should stop with the lease. Each call
    /// returns a child token: cancelling it yourself does not affect the lease.
    pub fn cancellation(&self) -> CancellationToken {
        self.lease.cancellation()
    }

    /// Runs `work` under the lease: returns its output and releases the lease if it finishes
    /// first; drops (cancels) it at once if the lease is lost first, then releases in the
    /// background without waiting.
    ///
    /// With [`auto_renew`](crate::LockOptions::auto_renew) the lease lasts as long as the work;
    /// without it, the work gets at most the TTL.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] with the reason, when the lease was lost before the work finished.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the work and the guard (which releases in the background).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::LockOptions;
    ///
    /// let options = LockOptions::new(Duration::from_secs(10)).auto_renew(true);
    /// let guard = client.acquire("migrations", &options).await?;
    /// let fence = guard.fence();
    /// let applied = guard.run(async move { migrate(fence).await }).await?;
    /// println!("{applied} migrations applied");
    /// # Ok(()) }
    /// # async fn migrate(_fence: u64) -> usize { 0 }
    /// ```
    pub async fn run<T>(self, work: impl Future<Output = T>) -> Result<T, Error> {
        let lost = self.lost();
        tokio::select! {
            biased;
            output = work => {
                // The work is done whatever the outcome; the lease just ends.
                let _ = self.release().await;
                Ok(output)
            }
            reason = lost => Err(Error::Lost(reason)),
        }
    }

    /// Gives the lease a new TTL of `ttl` from now, if it is still ours. Compare-and-expire on
    /// the servers: an expired lease is never recreated. With auto-renewal on, later renewals
    /// use the new TTL.
    ///
    /// A guard that is lost or past [`valid_until`](Self::valid_until) is not extended, even if
    /// the key still exists: it fails with [`Lost`] without a request. If a renewal (or the
    /// confirmation of a handed-over lock) sent after this call answers first, its deadline
    /// stands: it is what the servers hold.
    ///
    /// # Errors
    ///
    /// - [`Error::Lost`] when the lease is lost, expired, or held by another owner; the guard
    ///   then reports [`is_held`](Self::is_held)` == false`;
    /// - [`Error::InvalidConfig`] for an invalid `ttl` (see [`Client::try_acquire`](crate::Client::try_acquire));
    /// - [`Error::Backend`] / [`Error::NoQuorum`] when Redis fails or answers too late; the
    ///   guard keeps its previous deadline (the servers may or may not have extended the key);
    /// - [`Error::Backend`] of kind
    ///   [`NotReplicated`](crate::BackendErrorKind::NotReplicated) with
    ///   [`ClientBuilder::replicas`](crate::ClientBuilder::replicas) on, when too few replicas
    ///   acknowledged the extension; the guard keeps its previous deadline.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the servers may or may not have extended the key; the guard
    /// keeps its previous deadline, which is the safe assumption.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mut guard: redlease::Guard) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// guard.extend(Duration::from_secs(30)).await?;
    /// assert!(guard.remaining() > Duration::from_secs(29));
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let span = telemetry::extend_span(self.lease.name(), self.fence);
        self.extend_lease(ttl).instrument(span).await
    }

    async fn extend_lease(&mut self, ttl: Duration) -> Result<(), Error> {
        let timing = self.engine.drift().lease(ttl)?;
        let sent = Instant::now();
        if let Some(reason) = self.lease.lost_reason() {
            return Err(Error::Lost(reason));
        }
        if self.lease.expire_if_due(sent) {
            return Err(Error::Lost(
                self.lease.lost_reason().unwrap_or(Lost::Expired),
            ));
        }
        let quorum = self.engine.quorum();
        let limit = timing.node_timeout(quorum.len());
        let call = self.lease.extend_call(timing.millis);
        match quorum.extend(vec![call], limit).await.pop() {
            Some(Extended::Yes) if self.lease.extended(sent, &timing) => {
                self.lease.retune_renewal(timing, sent);
                self.engine.lease_changed(&self.lease);
                Ok(())
            }
            Some(Extended::Yes) => match self.lease.lost_reason() {
                Some(reason) => Err(Error::Lost(reason)),
                // A renewal or confirmation sent after this extension has moved the deadline
                // already: the lease is held, with that request's deadline.
                None if self.lease.moved_after(sent) => Ok(()),
                None => Err(Error::Backend(BackendError::new(
                    BackendErrorKind::Timeout,
                    quorum.labels().next().unwrap_or_default(),
                    "extending a lease (the majority answered after the new validity ended)",
                    None,
                ))),
            },
            Some(Extended::Lost(reason)) => {
                self.lease.mark_lost(reason);
                Err(Error::Lost(reason))
            }
            Some(Extended::Failed(error)) => Err(error),
            None => Err(Error::Lost(Lost::Expired)),
        }
    }

    /// Releases the lease: stops renewal, then deletes the key if it still holds this guard's
    /// token, leaving another owner's key alone.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] / [`Error::NoQuorum`] when Redis fails or does not answer; the lease
    /// then expires after its TTL. A connection found broken (a restarted server) is retried
    /// once on the reconnected one first; releasing twice is harmless, it is owner-only.
    /// [`Error::WrongType`] if the key was overwritten with non-lock data.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before the reply, the guard is dropped with it and its
    /// background release runs (see [Dropping](Self#dropping)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(guard: redlease::Guard) -> Result<(), redlease::Error> {
    /// use redlease::ReleaseOutcome;
    ///
    /// match guard.release().await? {
    ///     ReleaseOutcome::Released => {}
    ///     ReleaseOutcome::Expired | ReleaseOutcome::HeldByOther => {
    ///         eprintln!("the lease ended before the work did");
    ///     }
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseOutcome, Error> {
        let span = telemetry::release_span(self.lease.name(), self.fence);
        let outcome = self.engine.release(&self.lease).instrument(span).await;
        self.settled = true;
        outcome
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.settled {
            self.engine.meter().released(self.lease.name(), None);
            self.engine.release_in_background(self.lease.clone());
        }
    }
}

/// Makes a primitive's guard, a struct with a `guard: Guard` field, usable as that [`Guard`]
/// (deadline, loss signal, extend): every hold is a lease, whatever the primitive.
macro_rules! derefs_to_guard {
    ($holder:ty) => {
        $crate::lock::derefs_to_guard!($holder => $crate::lock::Guard);
    };
    ($holder:ty => $guard:ty) => {
        impl std::ops::Deref for $holder {
            type Target = $guard;

            fn deref(&self) -> &$guard {
                &self.guard
            }
        }

        impl std::ops::DerefMut for $holder {
            fn deref_mut(&mut self) -> &mut $guard {
                &mut self.guard
            }
        }
    };
}
pub(crate) use derefs_to_guard;
