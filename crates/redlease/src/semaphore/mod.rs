//! The semaphore: at most `limit` holders of one name at once. Each permit is a lease of its
//! own (token, TTL, renewal, loss signal) with a slot and a fence; the limit is kept with the
//! permits while any is held. Waiters are listed and handed freed permits, as the lock's are.

mod guard;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::acquire::{self, Claim, Earlier};
use crate::backend::Durability;
use crate::engine::Engine;
use crate::error::{ConfigError, Error};
use crate::lease::Lease;
use crate::lock;
use crate::options::LockOptions;
use crate::quorum::Vote;
use crate::retry::Retry;
use crate::script::{Call, Code, Reply};
use crate::subscribe::Handed;
use crate::timing::LeaseTiming;
pub use guard::Permit;
pub(crate) use scripts::ALL as SCRIPTS;

/// The largest limit a semaphore may have.
pub const MAX_PERMITS: u32 = 10_000;

/// A counting semaphore on one name: at most `limit` [`Permit`]s at once, across clients.
/// Create it with [`Client::semaphore`](crate::Client::semaphore); it is a cheap handle (the
/// client, the name and the limit).
///
/// - **A permit is a lease**: a 128-bit token, a TTL, renewal, [`lost`](crate::Guard::lost),
///   [`max_hold`](LockOptions::max_hold) and owner-only release, as for the lock. A crashed
///   holder's permit comes back when its TTL ends, without anyone's help, and every key of the
///   semaphore is gone once its last permit is (the fence counter stays).
/// - **Slots and fences**: see [`Permit`].
/// - **One limit**: the limit is kept with the permits while any is held; a client asking with
///   another gets [`Error::LimitMismatch`] naming both, unless the limit is changed on purpose
///   with [`resize`](Self::resize). Once no permit is held, the next acquire's limit takes
///   effect.
/// - **Waiting** is woken by releases (no polling): a freed permit goes straight to the oldest
///   listed waiter. With [`LockOptions::fair`], a free permit goes to the oldest waiter even when
///   another client asks first.
/// - **One node**: a server, a Cluster or a Sentinel service. Several independent nodes
///   (Redlock) are refused ([`ConfigError::SemaphoreNeedsOneNode`]): majorities cannot count.
///
/// ```no_run
/// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
/// use std::time::Duration;
/// use redlease::LockOptions;
///
/// let gpus = client.semaphore("gpus", 4);
/// let permit = gpus.acquire(&LockOptions::new(Duration::from_secs(30)).auto_renew(true)).await?;
/// println!("training on GPU {} (fence {})", permit.slot(), permit.fence());
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    engine: Arc<Engine>,
    name: String,
    limit: u32,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// No slot known yet.
const NO_SLOT: u32 = u32::MAX;

/// A permit's claim: one of `limit`, taken when fewer are held. It learns the permit's slot
/// from the grant (or the hand-off).
struct PermitClaim {
    limit: u32,
    fair: bool,
    slot: AtomicU32,
}

impl Claim for PermitClaim {
    fn attempt(
        &self,
        lease: &Lease,
        timing: &LeaseTiming,
        entry: Option<&str>,
        earlier: Earlier,
    ) -> Call {
        scripts::acquire(lease, timing, entry, earlier, self.limit, self.fair)
    }

    /// `DONE "fence slot"`; `HELD` with the time until the first permit ends, or with
    /// `"limit N"` when the holders use another limit.
    fn vote(&self, reply: &Reply) -> Option<Vote> {
        match (reply.code, reply.number()) {
            (Code::Done, _) => {
                let granted = reply.text()?;
                let (fence, slot) = granted.split_once(' ')?;
                self.slot.store(slot.parse().ok()?, Ordering::Release);
                Some(Vote::Granted(fence.parse().ok()?))
            }
            (Code::Held, Some(ms)) => Some(Vote::Held(
                u64::try_from(ms).ok().map(Duration::from_millis),
            )),
            (Code::Held, None) => Some(Vote::Fatal(Error::LimitMismatch {
                asked: self.limit,
                stored: reply.text()?.strip_prefix("limit ")?.parse().ok()?,
            })),
            (Code::Gone, _) => None,
        }
    }

    fn entry_mode(&self) -> char {
        's'
    }

    fn take_handed(&self, handed: Handed) {
        if let Some(slot) = handed.slot {
            self.slot.store(slot, Ordering::Release);
        }
    }
}

impl Semaphore {
    pub(crate) fn new(engine: Arc<Engine>, name: &str, limit: u32) -> Self {
        Self {
            engine,
            name: name.to_owned(),
            limit,
        }
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit this handle asks for.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The limit and the deployment are fit for a semaphore.
    fn check(&self) -> Result<(), ConfigError> {
        if self.limit == 0 || self.limit > MAX_PERMITS {
            return Err(ConfigError::LimitOutOfRange {
                limit: self.limit,
                max: MAX_PERMITS,
            });
        }
        if self.engine.quorum().len() > 1 {
            return Err(ConfigError::SemaphoreNeedsOneNode);
        }
        Ok(())
    }

    /// Takes a permit, retrying as `options` say while `limit` permits are held.
    ///
    /// # Errors
    ///
    /// - [`Error::Contended`] / [`Error::TimedOut`] when every permit stayed held (with the time
    ///   until the first of them ends);
    /// - [`Error::LimitMismatch`] when the permits are held under another limit;
    /// - [`Error::InvalidConfig`] for a limit of 0 or above [`MAX_PERMITS`], several Redlock
    ///   nodes ([`ConfigError::SemaphoreNeedsOneNode`]), or bad options (as for
    ///   [`Client::acquire`](crate::Client::acquire));
    /// - [`Error::WrongType`] when the name holds another primitive's keys (a lock's);
    /// - [`Error::Backend`] when Redis fails.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, a permit granted to it is given back in the background (at
    /// worst it ends after its TTL), and its place among the waiters is left at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::{LockOptions, Retry};
    ///
    /// let options = LockOptions::new(Duration::from_secs(60))
    ///     .auto_renew(true)
    ///     .label("deploy runner 7")
    ///     .retry(Retry::default().timeout(Duration::from_secs(600)));
    /// let permit = client.semaphore("deploy-slots", 3).acquire(&options).await?;
    /// permit.run(async { /* deploy */ }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, options: &LockOptions) -> Result<Permit, Error> {
        self.check()?;
        let (lease, ask, checked) =
            lock::prepare(&self.engine, &self.name, options, &scripts::HOLD)?;
        let claim = Arc::new(PermitClaim {
            limit: self.limit,
            fair: checked.fair,
            slot: AtomicU32::new(NO_SLOT),
        });
        let granted = acquire::acquire(&self.engine, claim.clone(), lease, &ask).await?;
        let guard = lock::Guard::new(self.engine.clone(), granted.lease, granted.fence);
        Ok(Permit::new(guard, claim.slot.load(Ordering::Acquire)))
    }

    /// Takes a permit if one is free right now: one attempt, no waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Contended`] when every permit is held (with the time until the first ends);
    /// otherwise as for [`acquire`](Self::acquire).
    ///
    /// # Cancel safety
    ///
    /// As for [`acquire`](Self::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// match client.semaphore("api-quota", 10).try_acquire(Duration::from_secs(5)).await {
    ///     Ok(permit) => { permit.release().await?; }
    ///     Err(e) if e.is_contended() => println!("all 10 in use"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self, ttl: Duration) -> Result<Permit, Error> {
        self.acquire(&LockOptions::new(ttl).retry(Retry::none()))
            .await
    }

    /// Changes the limit kept with the held permits to this handle's limit: an operator's
    /// decision, after which clients must ask with the new limit. Returns the previous limit,
    /// or `None` when no permit was held (there is nothing to change: the next acquire's limit
    /// takes effect).
    ///
    /// A higher limit hands the new permits to waiters at once. A lower one revokes nothing at
    /// once: holders whose slot is not below the new limit keep their permit until its current
    /// TTL ends, but it is not renewed any more (their renewal reports
    /// [`Lost::Expired`](crate::Lost::Expired), so their work stops), and no permit is granted
    /// until fewer than the new limit are held. So the new limit holds everywhere within one
    /// TTL of the holders.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a limit of 0 or above [`MAX_PERMITS`] or several Redlock
    /// nodes; [`Error::WrongType`] when the name holds another primitive's keys;
    /// [`Error::Backend`] when Redis fails.
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the limit may or may not have changed; run it again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// if let Some(previous) = client.semaphore("deploy-slots", 5).resize().await? {
    ///     println!("deploy slots: {previous} -> 5");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn resize(&self) -> Result<Option<u32>, Error> {
        const CONTEXT: &str = "resizing a semaphore";
        self.check()?;
        let keys = self.engine.keys(&self.name)?;
        let call = scripts::resize(&keys, self.limit, lock::hand_off(&self.engine));
        let Some(backend) = self.engine.quorum().only() else {
            return Err(ConfigError::SemaphoreNeedsOneNode.into());
        };
        let reply = backend
            .call(&call, CONTEXT, backend.command_timeout(), Durability::Plain)
            .await?;
        match (reply.code, reply.number()) {
            (Code::Done, Some(previous)) => Ok(u32::try_from(previous).ok()),
            (Code::Gone, _) => Ok(None),
            _ => Err(backend.protocol_failure(CONTEXT).into()),
        }
    }
}
