//! The blocking semaphore: the async [`Semaphore`](crate::Semaphore) with calls that wait.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::guard::Guard;
use super::runtime::Runtime;
use crate::error::Error;
use crate::options::LockOptions;
use crate::outcome::ReleaseOutcome;
use crate::semaphore;

/// A counting semaphore on one name, for code without an async runtime: the async
/// [`Semaphore`](crate::Semaphore) (same permits, slots, fences, limit checks and waiting) with
/// calls that block. Create it with [`blocking::Client::semaphore`](super::Client::semaphore).
///
/// ```no_run
/// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
/// use std::time::Duration;
/// use redlease::LockOptions;
///
/// let gpus = client.semaphore("gpus", 4);
/// let permit = gpus.acquire(&LockOptions::new(Duration::from_secs(30)).auto_renew(true))?;
/// println!("training on GPU {} (fence {})", permit.slot(), permit.fence());
/// permit.release()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: semaphore::Semaphore,
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Semaphore {
    pub(super) fn new(inner: semaphore::Semaphore, runtime: Arc<Runtime>) -> Self {
        Self { inner, runtime }
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The limit this handle asks for.
    pub fn limit(&self) -> u32 {
        self.inner.limit()
    }

    fn permit(&self, held: Result<semaphore::Permit, Error>) -> Result<Permit, Error> {
        held.map(|permit| {
            let (guard, slot) = permit.into_parts();
            Permit {
                guard: Guard::new(guard, self.runtime.clone()),
                slot,
            }
        })
    }

    /// Takes a permit, waiting as `options` say while `limit` permits are held (see
    /// [`Semaphore::acquire`](crate::Semaphore::acquire)).
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::acquire`](crate::Semaphore::acquire); also
    /// [`Error::InvalidConfig`] with
    /// [`ConfigError::InsideAsyncRuntime`](crate::ConfigError::InsideAsyncRuntime) from inside
    /// a Tokio runtime (nothing is sent).
    ///
    /// # Blocking
    ///
    /// Blocks until a permit is granted or the retry policy gives up: at most its
    /// [`timeout`](crate::Retry::timeout) (10 s by default) plus one round trip. That timeout
    /// is how a blocking wait is cancelled: the waiter leaves the waiters at once, and a permit
    /// granted too late is given back in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    /// use redlease::{LockOptions, Retry};
    ///
    /// let options = LockOptions::new(Duration::from_secs(60))
    ///     .retry(Retry::default().timeout(Duration::from_secs(600)));
    /// let permit = client.semaphore("deploy-slots", 3).acquire(&options)?;
    /// println!("deploying in slot {}", permit.slot());
    /// permit.release()?;
    /// # Ok(()) }
    /// ```
    pub fn acquire(&self, options: &LockOptions) -> Result<Permit, Error> {
        self.permit(self.runtime.block_on(self.inner.acquire(options)))
    }

    /// Takes a permit if one is free right now: one attempt, no waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Contended`] when every permit is held (with the time until the first ends);
    /// otherwise as for [`acquire`](Self::acquire).
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip, at most the command timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// use std::time::Duration;
    ///
    /// match client.semaphore("api-quota", 10).try_acquire(Duration::from_secs(5)) {
    ///     Ok(permit) => { permit.release()?; }
    ///     Err(e) if e.is_contended() => println!("all 10 in use"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_acquire(&self, ttl: Duration) -> Result<Permit, Error> {
        self.permit(self.runtime.block_on(self.inner.try_acquire(ttl)))
    }

    /// Changes the limit kept with the held permits to this handle's limit (see
    /// [`Semaphore::resize`](crate::Semaphore::resize)); returns the previous limit, or `None`
    /// when no permit was held.
    ///
    /// # Errors
    ///
    /// As for [`Semaphore::resize`](crate::Semaphore::resize); also from inside a Tokio
    /// runtime, as for [`acquire`](Self::acquire).
    ///
    /// # Blocking
    ///
    /// Blocks for one round trip, at most the command timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(client: redlease::blocking::Client) -> Result<(), redlease::Error> {
    /// if let Some(previous) = client.semaphore("deploy-slots", 5).resize()? {
    ///     println!("deploy slots: {previous} -> 5");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn resize(&self) -> Result<Option<u32>, Error> {
        self.runtime.block_on(self.inner.resize())
    }
}

/// A semaphore permit, for code without an async runtime: a lease of its own, used through
/// the blocking [`Guard`]'s methods (it derefs to one) — deadline, [`lost`](Guard::lost)
/// channel, renewal, [`extend`](Guard::extend) — and a [`slot`](Self::slot). Slots and fences
/// mean what they mean for the async [`Permit`](crate::Permit). Dropping it gives the permit
/// back as dropping a blocking [`Guard`] does (waiting at most one second).
#[derive(Debug)]
#[must_use = "dropping the permit gives it back; keep it while you work"]
pub struct Permit {
    guard: Guard,
    slot: u32,
}

impl Permit {
    /// This permit's slot, in `0..limit`: no other current holder has it.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Gives the permit back; it goes to the oldest waiter at once.
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
    /// # fn example(permit: redlease::blocking::Permit) -> Result<(), redlease::Error> {
    /// assert_eq!(permit.release()?, redlease::ReleaseOutcome::Released);
    /// # Ok(()) }
    /// ```
    pub fn release(self) -> Result<ReleaseOutcome, Error> {
        self.guard.release()
    }
}

crate::lock::derefs_to_guard!(Permit => Guard);
