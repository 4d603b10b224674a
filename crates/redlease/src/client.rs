//! The client: a cheap handle on one Redis connection and the lease settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ClientBuilder;
use crate::error::{ConfigError, Error};
use crate::guard::Guard;
use crate::lock::{self, LockOptions};
use crate::quorum::Nodes;
use crate::renew::Renewer;
use crate::retry::Retry;
use crate::wait::Waiters;

/// A handle for taking leases on one Redis server.
///
/// Cloning is cheap (an [`Arc`]) and clones share one multiplexed connection, so create one
/// client per server and pass clones around.
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
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) nodes: Nodes,
    pub(crate) prefix: String,
    pub(crate) drift_factor: f64,
    pub(crate) renewer: Renewer,
    pub(crate) waiters: Waiters,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.shared.nodes.labels().collect::<Vec<_>>())
            .field("prefix", &self.shared.prefix)
            .field("drift_factor", &self.shared.drift_factor)
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
    /// be reached within [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT) or rejects
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

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A handle that does not keep the client alive (for the renewer task).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    /// The key prefix this client uses.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
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
    /// - [`Error::NotReplicated`] with [`ClientBuilder::replicas`](crate::ClientBuilder::replicas)
    ///   on, when too few replicas acknowledged the grant (it was released again).
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
        lock::acquire(self, name, &LockOptions::new(ttl).retry(Retry::none())).await
    }

    /// Takes the lease on `name`, retrying as `options` say while it is held by someone else.
    ///
    /// Every attempt sends the same token, so when a reply is lost and the next attempt finds
    /// our own token in the key, that counts as success, not as contention.
    ///
    /// # Errors
    ///
    /// - [`Error::Contended`] when the retry policy's attempts ran out;
    /// - [`Error::TimedOut`] when its deadline passed;
    /// - [`Error::InvalidConfig`], [`Error::WrongType`] as for [`try_acquire`](Self::try_acquire);
    /// - [`Error::Backend`] / [`Error::NotReplicated`] when the last attempt failed on the Redis
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
        lock::acquire(self, name, options).await
    }
}

impl Shared {
    pub(crate) fn drift(&self, ttl: Duration) -> Duration {
        lock::drift(ttl, self.drift_factor)
    }

    pub(crate) fn lease_millis(&self, ttl: Duration) -> Result<u64, ConfigError> {
        lock::lease_millis(ttl, self.drift_factor)
    }
}
