//! The client: the public handle on the engine, its builder, and connecting.

mod builder;
mod connect;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::error::Error;
use crate::lock::{self, Guard, Holder, LockInfo};
use crate::options::LockOptions;
use crate::retry::Retry;
use crate::rwlock::RwLock;
use crate::semaphore::Semaphore;
pub use builder::{
    ClientBuilder, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_URL,
    EvictionCheck,
};

/// A handle for taking leases on a Redis deployment: one server, a Redlock quorum of
/// independent servers, a Redis Cluster, or the primary of a Sentinel service (see
/// [`ClientBuilder`]).
///
/// Cloning is cheap (an [`Arc`]) and clones share the connections, the renewal task and the
/// subscriber, so create one client per deployment and pass clones around.
///
/// ```no_run
/// # async fn example() -> Result<(), redlease::Error> {
/// use std::time::Duration;
///
/// let client = redlease::Client::connect("redis://127.0.0.1:6379").await?;
/// let guard = client.try_acquire("reports:daily", Duration::from_secs(30)).await?;
/// println!("fencing token {}", guard.fence());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    engine: Arc<Engine>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field(
                "servers",
                &self.engine.quorum().labels().collect::<Vec<_>>(),
            )
            .field("prefix", &self.engine.prefix())
            .field("drift_factor", &self.engine.drift().factor())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Settings for a client; see [`ClientBuilder`] for the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to one Redis server with the default settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a malformed URL; [`Error::Backend`] when the server cannot
    /// be reached within [`DEFAULT_CONNECT_TIMEOUT`] or rejects
    /// the connection.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the connection attempt; nothing is left behind.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), redlease::Error> {
    /// let client = redlease::Client::connect("redis://:password@10.0.0.5:6379/0").await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::builder().url(url).build().await
    }

    pub(crate) fn from_engine(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    /// The key prefix this client uses.
    pub fn prefix(&self) -> &str {
        self.engine.prefix()
    }

    /// Takes the lease on `name` if it is free right now: one attempt, no waiting.
    ///
    /// The lease lasts `ttl` on the server unless released or extended; the guard trusts it for
    /// a little less (see [`Guard::valid_until`]).
    ///
    /// # Errors
    ///
    /// - [`Error::Contended`] when another owner holds it (with its remaining TTL);
    /// - [`Error::InvalidConfig`] for an empty, oversized or braced name, or a TTL that is zero,
    ///   above [`MAX_TTL`](crate::MAX_TTL), or not above the drift allowance;
    /// - [`Error::WrongType`] when the lock's key holds non-lock data;
    /// - [`Error::Backend`] when Redis fails or does not answer in time (a server error such as
    ///   `NOPERM` carries its code, see [`BackendError::code`](crate::BackendError::code));
    /// - [`Error::Backend`] of kind [`NotReplicated`](crate::BackendErrorKind::NotReplicated)
    ///   with [`ClientBuilder::replicas`] on, when too few replicas acknowledged the grant (it
    ///   was released again).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped after the request was sent, the lease may have been granted
    /// without anyone holding the guard. redlease then deletes it in the background (by token,
    /// so nobody else's lease is touched); at worst it expires after `ttl`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// match client.try_acquire("cron:cleanup", Duration::from_secs(60)).await {
    ///     Ok(guard) => {
    ///         // ... do the work, then:
    ///         guard.release().await?;
    ///     }
    ///     Err(redlease::Error::Contended { remaining_ttl }) => {
    ///         println!("another host runs it; free in {remaining_ttl:?}");
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Guard, Error> {
        lock::acquire(
            &self.engine,
            name,
            &LockOptions::new(ttl).retry(Retry::none()),
        )
        .await
    }

    /// Takes the lease on `name`, retrying as `options` say while it is held by someone else.
    ///
    /// Every attempt sends the same token, so when a reply is lost and the next attempt finds
    /// our own token in the key, that counts as success, not as contention.
    ///
    /// A waiter is handed the lock by the release that frees it (see DESIGN.md, "Waiting
    /// without polling"). On one server the guard is returned as soon as that release's
    /// message arrives, before its TTL is confirmed: for about one round trip its
    /// [`remaining`](Guard::remaining) time is the hand-off's claim (at most 500 ms), then the
    /// full TTL. Should the confirmation fail, the lease ends with the claim and
    /// [`Guard::lost`] says so. Call [`Guard::extend`] first if the work needs the full TTL
    /// before it starts.
    ///
    /// # Errors
    ///
    /// - [`Error::Contended`] when the retry policy's attempts ran out;
    /// - [`Error::TimedOut`] when its deadline passed;
    /// - [`Error::InvalidConfig`], [`Error::WrongType`] as for [`try_acquire`](Self::try_acquire);
    /// - [`Error::Backend`] / [`Error::NoQuorum`] when the last attempt failed on the Redis
    ///   side (timeouts, broken connections and unacknowledged grants are retried like
    ///   contention; a denied permission or rejected credentials end the loop at once).
    ///
    /// # Cancel safety
    ///
    /// As for [`try_acquire`](Self::try_acquire): a lease granted to a dropped future is deleted
    /// in the background or expires after its TTL. Nothing else is left running.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::{LockOptions, Retry};
    ///
    /// let options = LockOptions::new(Duration::from_secs(10))
    ///     .retry(Retry::exponential(Duration::from_millis(5), Duration::from_millis(100))
    ///         .timeout(Duration::from_secs(3)));
    /// let guard = client.acquire("inventory:sku-42", &options).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self, name: &str, options: &LockOptions) -> Result<Guard, Error> {
        lock::acquire(&self.engine, name, options).await
    }

    /// A counting semaphore on `name`: at most `limit` permits at once (see [`Semaphore`]).
    /// Nothing is checked or sent until it is used.
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// let permit = client.semaphore("gpus", 4).try_acquire(std::time::Duration::from_secs(30)).await?;
    /// println!("GPU {}", permit.slot());
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: &str, limit: u32) -> Semaphore {
        Semaphore::new(self.engine.clone(), name, limit)
    }

    /// A read-write lock on `name` (see [`RwLock`]): its writers are this client's
    /// [`acquire`](Self::acquire) on the same name. Nothing is checked or sent until it is used.
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// let reader = client.rwlock("catalog").try_read(std::time::Duration::from_secs(10)).await?;
    /// reader.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn rwlock(&self, name: &str) -> RwLock {
        RwLock::new(self.engine.clone(), name)
    }
    /// Reads a lock's state without changing it: holder, time left, fence counter, waiters.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid name; [`Error::WrongType`] when the key holds
    /// non-lock data; [`Error::Backend`] / [`Error::NoQuorum`] when too few nodes answer.
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future has no effect.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// let info = client.inspect("reports:daily").await?;
    /// match info.holder {
    ///     Some(holder) => println!("held by {:?} for {:?} more", holder.label, holder.remaining_ttl),
    ///     None => println!("free; the next fence will be above {}", info.fence),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, name: &str) -> Result<LockInfo, Error> {
        lock::inspect(&self.engine, name).await
    }

    /// Lists the locks currently held whose names match the glob `pattern` (`*` for all;
    /// `jobs:*` for a family), sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty pattern or one with `{` or `}`; otherwise as for
    /// [`inspect`](Self::inspect).
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future has no effect.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// for lock in client.list("jobs:*").await? {
    ///     println!("{} fence {}", lock.name, lock.fence);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, pattern: &str) -> Result<Vec<LockInfo>, Error> {
        lock::list(&self.engine, pattern).await
    }

    /// Breaks a lock whoever holds it: deletes its key on every node and wakes its waiters.
    /// The fence counter is kept, so the next holder's fencing token is still larger than the
    /// broken holder's, and a resource that checks fences rejects the broken holder's writes.
    /// Returns who held it.
    ///
    /// This is an operator's tool for a stuck lock; the holder is not told (its renewals
    /// will find the key gone and report [`Lost`](crate::Lost)).
    ///
    /// # Errors
    ///
    /// As for [`inspect`](Self::inspect).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the key may be deleted on some nodes and not others; run it
    /// again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// if let Some(holder) = client.force_release("deploy:prod").await? {
    ///     eprintln!("broke the lock held by {:?}", holder.label);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn force_release(&self, name: &str) -> Result<Option<Holder>, Error> {
        lock::force_release(&self.engine, name).await
    }
}
