//! The guard: proof of a lease, with its fencing token and the deadline to trust it until.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::{BackendError, BackendErrorKind, Error, NotHeld};
use crate::lease::Lease;
use crate::token::Token;

/// What [`Guard::release`] found on the server. None of these is an error: after a release the
/// caller no longer holds the lock whichever way it went, but an expired lease is worth
/// knowing about (the work may have overlapped with the next holder's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReleaseOutcome {
    /// The key held our token and is now deleted.
    Released,
    /// The key was already gone: the lease had expired. Nothing was deleted.
    AlreadyExpired,
    /// Our lease expired and another owner took the lock; its key was left alone.
    HeldByOther,
}

/// A held lease. Created by [`Client::acquire`] or [`Client::try_acquire`].
///
/// A lease is not a mutex: it ends when its TTL runs out, whether or not the holder is done.
/// Check [`is_held`](Self::is_held) or [`remaining`](Self::remaining) before acting on the
/// protected resource, and pass [`fence`](Self::fence) to it so that it can reject writes from
/// a holder whose lease has ended (see the crate docs on fencing).
///
/// # Dropping
///
/// Dropping a guard without [`release`](Self::release) never blocks. Inside a Tokio runtime it
/// spawns a best-effort release (compare-and-delete by token); outside one, or if that fails,
/// the lease simply expires after its TTL.
#[must_use = "dropping the guard releases the lease in the background; keep it while you work"]
pub struct Guard {
    client: Client,
    lease: Arc<Lease>,
    fence: u64,
    ttl: Duration,
    valid_until: Instant,
    settled: bool,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("name", &self.lease.name)
            .field("token", &self.lease.token)
            .field("fence", &self.fence)
            .field("ttl", &self.ttl)
            .field("remaining", &self.remaining())
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub(crate) fn new(
        client: Client,
        lease: Arc<Lease>,
        fence: u64,
        ttl: Duration,
        valid_until: Instant,
    ) -> Self {
        Self {
            client,
            lease,
            fence,
            ttl,
            valid_until,
            settled: false,
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.lease.name
    }

    /// This lease's ownership token (its `Debug`/`Display` show only a fingerprint).
    pub fn token(&self) -> &Token {
        &self.lease.token
    }

    /// The fencing token: strictly greater than the fence of every earlier lease on this name
    /// (as long as Redis keeps the counter: see DESIGN.md). Send it with every write to the
    /// protected resource and have the resource reject anything not above the largest it saw.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The TTL last requested for this lease (at acquire or extend).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Until when the lease can be trusted, on this process's monotonic clock: the instant the
    /// acquiring (or last extending) request was *sent*, plus the TTL, minus the drift
    /// allowance. The server keeps the key at least this long unless it loses data.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// How long the lease can still be trusted; zero once [`valid_until`](Self::valid_until)
    /// has passed.
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Whether the lease can still be trusted, computed locally from
    /// [`valid_until`](Self::valid_until) without asking Redis.
    pub fn is_held(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Gives the lease a new TTL of `ttl` from now, if it is still ours. Compare-and-expire on
    /// the server: an expired lease is never recreated.
    ///
    /// A guard whose [`valid_until`](Self::valid_until) has passed is not extended, even if the
    /// key still exists: it fails with [`NotHeld::Expired`] without a request.
    ///
    /// # Errors
    ///
    /// - [`Error::NotHeld`] when the lease expired or another owner holds the lock; the guard
    ///   then reports [`is_held`](Self::is_held)` == false`;
    /// - [`Error::InvalidConfig`] for an invalid `ttl` (see [`Client::try_acquire`]);
    /// - [`Error::Backend`] when Redis fails or answers too late; the guard keeps its previous
    ///   deadline (the server may or may not have extended the key).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the server may or may not have extended the key; the guard
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
        let shared = self.client.shared();
        let ttl_ms = shared.lease_millis(ttl)?;
        let sent = Instant::now();
        if sent >= self.valid_until {
            return Err(Error::NotHeld(NotHeld::Expired));
        }
        let trusted = ttl.saturating_sub(shared.drift(ttl));
        let limit = shared.nodes.acquire_timeout(ttl, trusted);
        match shared.nodes.extend(&self.lease, ttl_ms, limit).await? {
            Ok(()) if Instant::now() < sent + trusted => {
                self.valid_until = sent + trusted;
                self.ttl = ttl;
                Ok(())
            }
            Ok(()) => Err(Error::Backend(BackendError::new(
                BackendErrorKind::Timeout,
                shared.nodes.labels().next().unwrap_or_default(),
                "extending a lease (the majority answered after the new validity ended)",
                None,
            ))),
            Err(reason) => {
                self.valid_until = sent;
                Err(Error::NotHeld(reason))
            }
        }
    }

    /// Releases the lease: deletes the key if it still holds this guard's token, and leaves
    /// another owner's key alone.
    ///
    /// # Errors
    ///
    /// [`Error::Backend`] when Redis fails or does not answer; the lease then expires after its
    /// TTL. [`Error::WrongType`] if the key was overwritten with non-lock data.
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
    ///     ReleaseOutcome::AlreadyExpired | ReleaseOutcome::HeldByOther => {
    ///         eprintln!("the lease ended before the work did");
    ///     }
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseOutcome, Error> {
        let outcome = self.client.shared().nodes.release(&self.lease, None).await;
        self.settled = true;
        outcome
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.settled {
            release_in_background(&self.client, self.lease.clone());
        }
    }
}

/// Spawns a compare-and-delete of `token`'s lease on the current Tokio runtime, if there is one.
/// Never blocks; bounded by the command timeout.
pub(crate) fn release_in_background(client: &Client, lease: Arc<Lease>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let client = client.clone();
        runtime.spawn(async move {
            // Best effort: if this fails, the lease expires after its TTL.
            let _ = client.shared().nodes.release(&lease, None).await;
        });
    }
}
