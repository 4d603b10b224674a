//! The blocking guard: the async [`Guard`](crate::Guard) with calls that wait, a loss signal
//! on a channel, and a drop that releases within a bound.

use std::fmt;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::runtime::Runtime;
use crate::error::Error;
use crate::lock;
use crate::outcome::{Lost, ReleaseOutcome};
use crate::token::Token;

/// How long dropping a guard waits for its release before leaving it to the runtime thread.
const DROP_RELEASE_WAIT: Duration = Duration::from_secs(1);

/// A held lease, for code without an async runtime. Created by
/// [`blocking::Client::acquire`](super::Client::acquire) or
/// [`try_acquire`](super::Client::try_acquire).
///
/// The same lease as [`redlease::Guard`](crate::Guard) — same fence, deadline, renewal and loss
/// reasons — with calls that block the calling thread instead of futures. A lease is not a
/// mutex: check [`is_held`](Self::is_held) before acting on the protected resource, watch
/// [`lost`](Self::lost), and pass [`fence`](Self::fence) to the resource.
///
/// # Dropping
///
/// Dropping a guard without [`release`](Self::release) stops renewal at once and releases the
/// lease (compare-and-delete by token) on the client's runtime thread. Outside a Tokio runtime
/// the drop waits for that release for at most one second, so that a program which ends right
/// after dropping its guard still frees the lock; whatever is left then finishes on the runtime
/// thread, and if that fails, the lease expires after its TTL. Inside a Tokio runtime the drop
/// does not wait at all.
#[must_use = "dropping the guard releases the lease; keep it while you work"]
pub struct Guard {
    /// `None` only once [`release`](Self::release) or the drop took it.
    inner: Option<lock::Guard>,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Some(guard) => guard.fmt(f),
            None => f.write_str("Guard(released)"),
        }
    }
}

impl Guard {
    pub(super) fn new(inner: lock::Guard, runtime: Arc<Runtime>) -> Self {
        Self {
            inner: Some(inner),
            runtime,
        }
    }

    fn held(&self) -> &lock::Guard {
        self.inner
            .as_ref()
            .expect("only release and drop take the inner guard")
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.held().name()
    }

    /// This lease's ownership token (its `Debug`/`Display` show only a fingerprint).
    pub fn token(&self) -> &Token {
        self.held().token()
    }

    /// The fencing token: strictly greater than the fence of every earlier lease on this name
    /// (see [`Guard::fence`](crate::Guard::fence)). Send it with every write to the protected
    /// resource and have the resource reject anything not above the largest it saw.
    pub fn fence(&self) -> u64 {
        self.held().fence()
    }

    /// The TTL of the last grant, extension or renewal.
    pub fn ttl(&self) -> Duration {
        self.held().ttl()
    }

    /// Until when the lease can be trusted, on this process's monotonic clock (see
    /// [`Guard::valid_until`](crate::Guard::valid_until)).
    pub fn valid_until(&self) -> Instant {
        self.held().valid_until()
    }

    /// How long the lease can still be trusted; zero once it is lost or past
    /// [`valid_until`](Self::valid_until).
    pub fn remaining(&self) -> Duration {
        self.held().remaining()
    }

    /// Whether the lease can still be trusted: not reported lost, and
    /// [`valid_until`](Self::valid_until) not passed. Computed locally, without asking Redis.
    pub fn is_held(&self) -> bool {
        self.held().is_held()
    }

    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<Lost> {
        self.held().lost_reason()
    }

    /// A channel that receives the reason once the lease is lost: a renewal found the key gone
    /// or taken, renewals could not reach Redis before the deadline, the hold cap was reached,
    /// the guard was released or dropped, or the deadline passed. The reason arrives no later
    /// than [`valid_until`](Self::valid_until) (plus the time to wake the receiver).
    ///
    /// Each call returns a new receiver. Wait with `recv`, `recv_timeout` between chunks of
    /// work, or poll with `try_recv`; the sender goes away (the receiver reports a disconnect)
    /// only if the client and all its guards were dropped first.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::LockOptions;
    ///
    /// let options = LockOptions::new(Duration::from_secs(10)).auto_renew(true);
    /// let guard = client.acquire("exports", &options)?;
    /// let lost = guard.lost();
    /// for chunk in 0..100 {
    ///     if let Ok(reason) = lost.try_recv() {
    ///         eprintln!("lease lost ({reason}); stopping the export at chunk {chunk}");
    ///         break;
    ///     }
    ///     export(chunk, guard.fence());
    /// }
    /// guard.release()?;
    /// # Ok(()) }
    /// # fn export(_chunk: u32, _fence: u64) {}
    /// ```
    pub fn lost(&self) -> mpsc::Receiver<Lost> {
        let (send, receive) = mpsc::sync_channel(1);
        let lost = self.held().lost();
        self.runtime.spawn(async move {
            let _ = send.send(lost.await);
        });
        receive
    }

    /// A cancellation token that is cancelled when the lease is lost (see
    /// [`lost`](Self::lost)); check it with `is_cancelled`. Each call returns a child token:
    /// cancelling it yourself does not affect the lease.
    pub fn cancellation(&self) -> CancellationToken {
        self.held().cancellation()
    }

    /// Gives the lease a new TTL of `ttl` from now, if it is still ours (see
    /// [`Guard::extend`](crate::Guard::extend)). With auto-renewal on, later renewals use the
    /// new TTL.
    ///
    /// # Errors
    ///
    /// - [`Error::Lost`] when the lease is lost, expired, or held by another owner;
    /// - [`Error::InvalidConfig`] for an invalid `ttl`, or with
    ///   [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime) when
    ///   called from inside a Tokio runtime (nothing is sent);
    /// - [`Error::Backend`] / [`Error::NoQuorum`] when Redis fails or answers too late; the
    ///   guard keeps its previous deadline.
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip to the servers, at most the client's command timeout (or the
    /// Redlock per-node timeout) per node.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(mut guard: redlease::blocking::Guard) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// guard.extend(Duration::from_secs(30))?;
    /// assert!(guard.remaining() > Duration::from_secs(29));
    /// # Ok(()) }
    /// ```
    pub fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let guard = self
            .inner
            .as_mut()
            .expect("only release and drop take the inner guard");
        self.runtime.block_on(guard.extend(ttl))
    }

    /// Releases the lease: stops renewal, then deletes the key if it still holds this guard's
    /// token, leaving another owner's key alone.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] / [`Error::NoQuorum`] when Redis fails or does not answer; the lease
    /// then expires after its TTL. [`Error::WrongType`] if the key was overwritten with
    /// non-lock data. [`Error::InvalidConfig`] with
    /// [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime) from inside
    /// a Tokio runtime: the guard is then dropped, which releases it in the background.
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip to the servers, at most the client's command timeout (or the
    /// Redlock per-node timeout) per node.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(guard: redlease::blocking::Guard) -> Result<(), redlease::Error> {
    /// use redlease::ReleaseOutcome;
    ///
    /// if guard.release()? != ReleaseOutcome::Released {
    ///     eprintln!("the lease ended before the work did");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn release(mut self) -> Result<ReleaseOutcome, Error> {
        Runtime::refuse_async_context()?;
        let guard = self
            .inner
            .take()
            .expect("only release and drop take the inner guard");
        self.runtime.block_on(guard.release())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(guard) = self.inner.take() else {
            return;
        };
        let (done, finished) = mpsc::sync_channel(1);
        // The task keeps the runtime thread alive until the release is over, even if this was
        // the last handle on it.
        let runtime = self.runtime.clone();
        self.runtime.spawn(async move {
            // Best effort: if this fails, the lease expires after its TTL.
            let _ = guard.release().await;
            let _ = done.send(());
            drop(runtime);
        });
        if Runtime::refuse_async_context().is_ok() {
            let _ = finished.recv_timeout(DROP_RELEASE_WAIT);
        }
    }
}
