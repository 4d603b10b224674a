//! The read-write lock: many readers or one writer per name. Its writers are the lock on that
//! name (a [`Guard`] from [`Client::acquire`](crate::Client::acquire) or [`RwLock::write`]
//! alike); readers share the lock key itself, each with a share of its own that ends on its
//! own, so a writer of any client version sees the lock taken. A freed lock goes to the oldest
//! listed waiter, or to all the readers at the head of the waiters at once; once a writer
//! waits, new readers wait behind it.

mod guard;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use crate::acquire::{self, Claim, Earlier};
use crate::engine::Engine;
use crate::error::Error;
use crate::lease::Lease;
use crate::lock::{self, Guard};
use crate::options::LockOptions;
use crate::retry::Retry;
use crate::script::Call;
use crate::timing::LeaseTiming;
pub use guard::ReadGuard;
pub(crate) use scripts::ALL as SCRIPTS;

/// A read-write lock on one name: shared holds for readers ([`read`](Self::read)), exclusive
/// ones for writers ([`write`](Self::write)). Create it with
/// [`Client::rwlock`](crate::Client::rwlock); it is a cheap handle (the client and the name).
///
/// - **The writer is the lock.** [`write`](Self::write) is [`Client::acquire`](crate::Client::acquire)
///   on the same name, so a plain lock user and a reader exclude each other, as `flock -x` and
///   `flock -s` do on one file. Writers get fencing tokens as the lock's holders do.
/// - **Readers' shares end on their own.** Each reader has its own TTL, renewal and loss
///   signal; a crashed reader's share ends after its TTL, nobody renews another's share, and a
///   short TTL never shortens another reader's.
/// - **Writers are preferred.** Once a writer waits, new readers wait behind it, so a stream of
///   readers cannot starve it: it gets the lock when the readers before it are done. A freed
///   lock goes to the readers at the head of the waiters all at once.
/// - **A reader's fence** ([`Guard::fence`]) is the fence counter's value: at least the latest
///   write grant's and below the next one's, so it tells which writes the reader follows (the
///   counter may have moved without a write: a grant given back in a failed round, a writer's
///   attempt that found the lock held).
///
/// ```no_run
/// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
/// use std::time::Duration;
/// use redlease::LockOptions;
///
/// let config = client.rwlock("config");
/// let reader = config.read(&LockOptions::new(Duration::from_secs(10))).await?;
/// println!("reading the config as written under fence {}", reader.fence());
/// reader.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RwLock {
    engine: Arc<Engine>,
    name: String,
}

impl std::fmt::Debug for RwLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A reader's claim: a share whenever no writer holds the lock or waits ahead of it.
struct ReadClaim;

impl Claim for ReadClaim {
    fn attempt(
        &self,
        lease: &Lease,
        timing: &LeaseTiming,
        entry: Option<&str>,
        earlier: Earlier,
    ) -> Call {
        scripts::acquire(lease, timing, entry, earlier)
    }

    fn entry_mode(&self) -> char {
        'r'
    }
}

impl RwLock {
    pub(crate) fn new(engine: Arc<Engine>, name: &str) -> Self {
        Self {
            engine,
            name: name.to_owned(),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes a share for reading, retrying as `options` say while a writer holds the lock or
    /// waits for it. [`LockOptions::fair`] has no further effect: readers always wait behind
    /// waiting writers.
    ///
    /// # Errors
    ///
    /// As for [`Client::acquire`](crate::Client::acquire): [`Error::Contended`] or
    /// [`Error::TimedOut`] while writers hold or wait, [`Error::InvalidConfig`],
    /// [`Error::WrongType`] when the name holds another primitive's keys (a semaphore's),
    /// [`Error::Backend`] / [`Error::NoQuorum`].
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, a share granted to it is given back in the background (at
    /// worst it ends after its TTL), and its place among the waiters is left at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::{LockOptions, Retry};
    ///
    /// let options = LockOptions::new(Duration::from_secs(10))
    ///     .auto_renew(true)
    ///     .retry(Retry::default().timeout(Duration::from_secs(30)));
    /// let reader = client.rwlock("catalog").read(&options).await?;
    /// let rows = reader.run(async { 42 }).await?;
    /// # let _ = rows;
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, options: &LockOptions) -> Result<ReadGuard, Error> {
        let (lease, ask, _) = lock::prepare(&self.engine, &self.name, options, &scripts::HOLD)?;
        let granted = acquire::acquire(&self.engine, Arc::new(ReadClaim), lease, &ask).await?;
        Ok(ReadGuard::new(Guard::new(
            self.engine.clone(),
            granted.lease,
            granted.fence,
        )))
    }

    /// Takes a share for reading if no writer holds the lock or waits for it: one attempt.
    ///
    /// # Errors
    ///
    /// [`Error::Contended`] when a writer holds or waits (with the writer's remaining TTL, or
    /// the readers' when a writer waits); otherwise as for [`read`](Self::read).
    ///
    /// # Cancel safety
    ///
    /// As for [`read`](Self::read).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// match client.rwlock("catalog").try_read(Duration::from_secs(5)).await {
    ///     Ok(reader) => { reader.release().await?; }
    ///     Err(e) if e.is_contended() => println!("a writer is at work"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_read(&self, ttl: Duration) -> Result<ReadGuard, Error> {
        self.read(&LockOptions::new(ttl).retry(Retry::none())).await
    }

    /// Takes the lock for writing: [`Client::acquire`](crate::Client::acquire) on this name. It
    /// waits for the readers that hold it, and readers arriving meanwhile wait behind it.
    ///
    /// # Errors
    ///
    /// As for [`Client::acquire`](crate::Client::acquire).
    ///
    /// # Cancel safety
    ///
    /// As for [`Client::acquire`](crate::Client::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::LockOptions;
    ///
    /// let writer = client.rwlock("catalog").write(&LockOptions::new(Duration::from_secs(10))).await?;
    /// println!("writing with fence {}", writer.fence());
    /// writer.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, options: &LockOptions) -> Result<Guard, Error> {
        lock::acquire(&self.engine, &self.name, options).await
    }
}
