//! A synchronous API for programs without an async runtime (cargo feature `blocking`).
//!
//! The same client, options, guard, semaphore, read-write lock, renewal, loss reasons and
//! errors as the async API, with calls that block the calling thread. Each [`Client`] owns one background thread running a
//! small Tokio runtime: it drives the connections, renews leases and wakes waiters, so renewal
//! goes on while your thread works. Clones of a client and its guards share that thread; it
//! stops when the last of them is dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use redlease::LockOptions;
//!
//! fn nightly_report() -> Result<(), redlease::Error> {
//!     let client = redlease::blocking::Client::connect("redis://127.0.0.1:6379")?;
//!     let options = LockOptions::new(Duration::from_secs(30)).auto_renew(true);
//!     let guard = client.acquire("reports:daily", &options)?; // waits up to 10 s by default
//!     write_report(guard.fence()); // the store refuses fences below the largest it has seen
//!     guard.release()?;
//!     Ok(())
//! }
//! # fn write_report(_fence: u64) {}
//! ```
//!
//! # Blocking and timeouts
//!
//! A blocking call cannot be cancelled by dropping it, so every call is bounded instead:
//! [`Client::acquire`] by its [`Retry`](crate::Retry) policy (10 s by default, see
//! [`Retry::timeout`](crate::Retry::timeout)), everything else by the client's connect and
//! command timeouts ([`ClientBuilder::connect_timeout`],
//! [`ClientBuilder::command_timeout`](crate::ClientBuilder::command_timeout)). A grant whose
//! reply comes too late is given back in the background, as for a dropped async future.
//!
//! # Inside an async runtime
//!
//! Blocking inside a Tokio runtime would stall its other tasks, so every blocking call made
//! there fails with [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime)
//! instead (it never panics). Use the async [`redlease::Client`](crate::Client) there. The
//! guard's accessors, [`Guard::lost`] and dropping a guard work anywhere.

mod guard;
mod runtime;
mod rwlock;
mod semaphore;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use guard::Guard;
use runtime::Runtime;
pub use rwlock::{ReadGuard, RwLock};
pub use semaphore::{Permit, Semaphore};

use crate::client::{self, ClientBuilder};
use crate::error::Error;
use crate::lock::{Holder, LockInfo};
use crate::options::LockOptions;

/// A blocking handle for taking leases on a Redis deployment: the async
/// [`redlease::Client`](crate::Client) with calls that wait.
///
/// Create one with [`connect`](Self::connect), or configure a [`ClientBuilder`] (several
/// nodes for Redlock, Cluster, Sentinel, TLS, timeouts) and finish it with
/// [`ClientBuilder::build_blocking`]. Cloning is cheap; clones share the connections and the
/// runtime thread.
///
/// ```no_run
/// # fn example() -> Result<(), redlease::Error> {
/// use std::time::Duration;
///
/// let client = redlease::blocking::Client::connect("redis://127.0.0.1:6379")?;
/// let guard = client.try_acquire("reports:daily", Duration::from_secs(30))?;
/// println!("fencing token {}", guard.fence());
/// guard.release()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    // Declared before the runtime: the connections go before the thread that drives them.
    inner: client::Client,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl ClientBuilder {
    /// Connects like [`build`](Self::build), for the [`blocking`](crate::blocking) API: starts
    /// the client's runtime thread, then validates the settings and connects to every node.
    ///
    /// # Errors
    ///
    /// As for [`build`](Self::build); also [`Error::InvalidConfig`] with
    /// [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime) when
    /// called from inside a Tokio runtime, and [`Error::Runtime`] when the runtime thread cannot
    /// be started.
    ///
    /// # Blocking
    ///
    /// Blocks until every node is connected, at most the
    /// [`connect_timeout`](Self::connect_timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example() -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// let client = redlease::Client::builder()
    ///     .url("redis://10.0.0.1:6379")
    ///     .url("redis://10.0.0.2:6379")
    ///     .url("redis://10.0.0.3:6379")
    ///     .command_timeout(Duration::from_millis(500))
    ///     .build_blocking()?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
    pub fn build_blocking(self) -> Result<Client, Error> {
        Runtime::refuse_async_context()?;
        let runtime = Runtime::start()?;
        let inner = runtime.block_on(self.build())?;
        Ok(Client { inner, runtime })
    }
}

impl Client {
    /// Connects to one Redis server with the default settings.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a malformed URL, or with
    /// [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime) from inside
    /// a Tokio runtime; [`Error::Backend`] when the server cannot be reached within
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT) or rejects the connection;
    /// [`Error::Runtime`] when the runtime thread cannot be started.
    ///
    /// # Blocking
    ///
    /// Blocks until connected, at most
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example() -> Result<(), redlease::Error> {
    /// let client = redlease::blocking::Client::connect("redis://:password@10.0.0.5:6379/0")?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub fn connect(url: &str) -> Result<Self, Error> {
        client::Client::builder().url(url).build_blocking()
    }

    /// The key prefix this client uses.
    pub fn prefix(&self) -> &str {
        self.inner.prefix()
    }

    fn guard(&self, held: Result<crate::lock::Guard, Error>) -> Result<Guard, Error> {
        held.map(|inner| Guard::new(inner, self.runtime.clone()))
    }

    /// Takes the lease on `name` if it is free right now: one attempt, no waiting (see
    /// [`Client::try_acquire`](crate::Client::try_acquire)).
    ///
    /// # Errors
    ///
    /// - [`Error::Contended`] when another owner holds it (with its remaining TTL);
    /// - [`Error::InvalidConfig`] for an invalid name or TTL, or with
    ///   [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime) from
    ///   inside a Tokio runtime (nothing is sent);
    /// - [`Error::WrongType`] when the lock's key holds non-lock data;
    /// - [`Error::Backend`] / [`Error::NoQuorum`] when Redis fails or does not answer in time.
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip, at most the command timeout (or the Redlock per-node
    /// timeout). A grant whose reply comes too late is deleted in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// match client.try_acquire("cron:cleanup", Duration::from_secs(60)) {
    ///     Ok(guard) => {
    ///         // ... do the work, then:
    ///         guard.release()?;
    ///     }
    ///     Err(redlease::Error::Contended { remaining_ttl }) => {
    ///         println!("another host runs it; free in {remaining_ttl:?}");
    ///     }
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Guard, Error> {
        self.guard(self.runtime.block_on(self.inner.try_acquire(name, ttl)))
    }

    /// Takes the lease on `name`, waiting as `options` say while someone else holds it (see
    /// [`Client::acquire`](crate::Client::acquire)): woken by the holder's release, never
    /// sleeping past the holder's TTL.
    ///
    /// # Errors
    ///
    /// - [`Error::Contended`] when the retry policy's attempts ran out;
    /// - [`Error::TimedOut`] when its deadline passed;
    /// - [`Error::InvalidConfig`], [`Error::WrongType`] as for
    ///   [`try_acquire`](Self::try_acquire);
    /// - [`Error::Backend`] / [`Error::NoQuorum`] when the last attempt failed on the Redis
    ///   side.
    ///
    /// # Blocking
    ///
    /// Blocks until the lease is granted or the retry policy gives up: at most its
    /// [`timeout`](crate::Retry::timeout) (10 s by default) plus one round trip. That timeout
    /// is how a blocking wait is cancelled: the waiter leaves its subscription and, in fair
    /// mode, its place in the queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::{LockOptions, Retry};
    ///
    /// let options = LockOptions::new(Duration::from_secs(10))
    ///     .retry(Retry::default().timeout(Duration::from_secs(3)));
    /// match client.acquire("inventory:sku-42", &options) {
    ///     Ok(guard) => drop(guard), // released on drop
    ///     Err(e) if e.is_contended() => eprintln!("still busy after 3 s"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn acquire(&self, name: &str, options: &LockOptions) -> Result<Guard, Error> {
        self.guard(self.runtime.block_on(self.inner.acquire(name, options)))
    }

    /// A counting semaphore on `name`: at most `limit` permits at once (see [`Semaphore`]).
    /// Nothing is checked or sent until it is used.
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// let permit = client.semaphore("gpus", 4).try_acquire(std::time::Duration::from_secs(30))?;
    /// println!("GPU {}", permit.slot());
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: &str, limit: u32) -> Semaphore {
        Semaphore::new(self.inner.semaphore(name, limit), self.runtime.clone())
    }

    /// A read-write lock on `name` (see [`RwLock`]): its writers are this client's
    /// [`acquire`](Self::acquire) on the same name. Nothing is checked or sent until it is used.
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// let reader = client.rwlock("catalog").try_read(std::time::Duration::from_secs(10))?;
    /// reader.release()?;
    /// # Ok(()) }
    /// ```
    pub fn rwlock(&self, name: &str) -> RwLock {
        RwLock::new(self.inner.rwlock(name), self.runtime.clone())
    }

    /// Reads a lock's state without changing it (see
    /// [`Client::inspect`](crate::Client::inspect)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid name or from inside a Tokio runtime;
    /// [`Error::WrongType`] when the key holds non-lock data; [`Error::Backend`] /
    /// [`Error::NoQuorum`] when too few nodes answer.
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip, at most the command timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// let info = client.inspect("reports:daily")?;
    /// match info.holder {
    ///     Some(holder) => println!("held by {:?} for {:?} more", holder.label, holder.remaining_ttl),
    ///     None => println!("free; the next fence will be above {}", info.fence),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn inspect(&self, name: &str) -> Result<LockInfo, Error> {
        self.runtime.block_on(self.inner.inspect(name))
    }

    /// Lists the locks currently held whose names match the glob `pattern`, sorted by name
    /// (see [`Client::list`](crate::Client::list)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty pattern or one with `{` or `}`; otherwise as for
    /// [`inspect`](Self::inspect).
    ///
    /// # Blocking
    ///
    /// Blocks while the keys are scanned, one command timeout per request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// for lock in client.list("jobs:*")? {
    ///     println!("{} fence {}", lock.name, lock.fence);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(&self, pattern: &str) -> Result<Vec<LockInfo>, Error> {
        self.runtime.block_on(self.inner.list(pattern))
    }

    /// Breaks a lock whoever holds it, keeping its fence counter (see
    /// [`Client::force_release`](crate::Client::force_release)). Returns who held it.
    ///
    /// # Errors
    ///
    /// As for [`inspect`](Self::inspect).
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip, at most the command timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// if let Some(holder) = client.force_release("deploy:prod")? {
    ///     eprintln!("broke the lock held by {:?}", holder.label);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn force_release(&self, name: &str) -> Result<Option<Holder>, Error> {
        self.runtime.block_on(self.inner.force_release(name))
    }
}
