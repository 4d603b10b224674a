//! The blocking read-write lock: the async [`RwLock`](crate::RwLock) with calls that wait.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::guard::Guard;
use super::runtime::Runtime;
use crate::error::Error;
use crate::options::LockOptions;
use crate::outcome::ReleaseOutcome;
use crate::rwlock;

/// A read-write lock on one name, for code without an async runtime: the async
/// [`RwLock`](crate::RwLock) (shares that end one by one, preferred writers, the plain lock as
/// the write side) with calls that block. Create it with
/// [`blocking::Client::rwlock`](super::Client::rwlock).
///
/// ```no_run
/// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
/// use std::time::Duration;
/// use redlease::LockOptions;
///
/// let catalog = client.rwlock("catalog");
/// let reader = catalog.read(&LockOptions::new(Duration::from_secs(10)))?;
/// println!("reading with fence {}", reader.fence());
/// reader.release()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RwLock {
    inner: rwlock::RwLock,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for RwLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl RwLock {
    pub(super) fn new(inner: rwlock::RwLock, runtime: Arc<Runtime>) -> Self {
        Self { inner, runtime }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    fn reader(&self, held: Result<rwlock::ReadGuard, Error>) -> Result<ReadGuard, Error> {
        held.map(|reader| ReadGuard {
            guard: Guard::new(reader.into_guard(), self.runtime.clone()),
        })
    }

    /// Takes a share for reading, waiting as `options` say while a writer holds the lock or
    /// waits for it (see [`RwLock::read`](crate::RwLock::read)).
    ///
    /// # Errors
    ///
    /// As for [`RwLock::read`](crate::RwLock::read); also [`Error::InvalidConfig`] with
    /// [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime) from inside
    /// a Tokio runtime (nothing is sent).
    ///
    /// # Blocking
    ///
    /// Blocks until a share is granted or the retry policy gives up: at most its
    /// [`timeout`](crate::Retry::timeout) (10 s by default) plus one round trip. That timeout
    /// is how a blocking wait is cancelled: the reader leaves the waiters at once, and a share
    /// granted too late is given back in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::{LockOptions, Retry};
    ///
    /// let options = LockOptions::new(Duration::from_secs(10))
    ///     .auto_renew(true)
    ///     .retry(Retry::default().timeout(Duration::from_secs(30)));
    /// let reader = client.rwlock("catalog").read(&options)?;
    /// drop(reader); // the share is given back
    /// # Ok(()) }
    /// ```
    pub fn read(&self, options: &LockOptions) -> Result<ReadGuard, Error> {
        self.reader(self.runtime.block_on(self.inner.read(options)))
    }

    /// Takes a share for reading if no writer holds the lock or waits for it: one attempt.
    ///
    /// # Errors
    ///
    /// [`Error::Contended`] when a writer holds or waits; otherwise as for
    /// [`read`](Self::read).
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip, at most the command timeout (or the Redlock per-node
    /// timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// match client.rwlock("catalog").try_read(Duration::from_secs(5)) {
    ///     Ok(reader) => { reader.release()?; }
    ///     Err(e) if e.is_contended() => println!("a writer is at work"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_read(&self, ttl: Duration) -> Result<ReadGuard, Error> {
        self.reader(self.runtime.block_on(self.inner.try_read(ttl)))
    }

    /// Takes the lock for writing: [`blocking::Client::acquire`](super::Client::acquire) on
    /// this name. It waits for the readers that hold it, and readers arriving meanwhile wait
    /// behind it.
    ///
    /// # Errors
    ///
    /// As for [`blocking::Client::acquire`](super::Client::acquire).
    ///
    /// # Blocking
    ///
    /// As for [`blocking::Client::acquire`](super::Client::acquire).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::LockOptions;
    ///
    /// let writer = client.rwlock("catalog").write(&LockOptions::new(Duration::from_secs(10)))?;
    /// println!("writing with fence {}", writer.fence());
    /// writer.release()?;
    /// # Ok(()) }
    /// ```
    pub fn write(&self, options: &LockOptions) -> Result<Guard, Error> {
        self.runtime
            .block_on(self.inner.write(options))
            .map(|guard| Guard::new(guard, self.runtime.clone()))
    }
}

/// A reader's share of a read-write lock, for code without an async runtime: a lease of its
/// own, used through the blocking [`Guard`]'s methods (it derefs to one); its deadline, loss
/// channel, renewal and [`extend`](Guard::extend) concern this share only. Dropping it gives
/// the share back as dropping a blocking [`Guard`] does (waiting at most one second).
#[derive(Debug)]
#[must_use = "dropping the guard gives the share back; keep it while you read"]
pub struct ReadGuard {
    guard: Guard,
}

impl ReadGuard {
    /// Gives the share back (the lock passes to a waiting writer after the last share).
    ///
    /// # Errors
    ///
    /// As for [`Guard::release`].
    ///
    /// # Blocking
    ///
    /// As for [`Guard::release`]: one round trip, at most the command timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(reader: redlease::blocking::ReadGuard) -> Result<(), redlease::Error> {
    /// assert_eq!(reader.release()?, redlease::ReleaseOutcome::Released);
    /// # Ok(()) }
    /// ```
    pub fn release(self) -> Result<ReleaseOutcome, Error> {
        self.guard.release()
    }
}

crate::lock::derefs_to_guard!(ReadGuard => Guard);
