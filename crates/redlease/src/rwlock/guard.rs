//! A reader's guard: its share of a read-write lock.

use std::future::Future;

use crate::error::Error;
use crate::lock::Guard;
use crate::outcome::ReleaseOutcome;

/// A reader's share of a read-write lock, from [`RwLock::read`](crate::RwLock::read). It is a
/// lease of its own, used through [`Guard`]'s methods (it derefs to one): its deadline, loss
/// signal, renewal and [`extend`](Guard::extend) concern this share only. Its
/// [`fence`](Guard::fence) is at least the latest write grant's. Dropping it releases the share in the
/// background, as for a [`Guard`].
#[derive(Debug)]
#[must_use = "dropping the guard releases the share in the background; keep it while you read"]
pub struct ReadGuard {
    guard: Guard,
}

impl ReadGuard {
    pub(crate) fn new(guard: Guard) -> Self {
        Self { guard }
    }

    /// The share's guard, for the blocking reader.
    #[cfg(feature = "blocking")]
    pub(crate) fn into_guard(self) -> Guard {
        self.guard
    }

    /// Gives the share back (the lock passes to a waiting writer after the last share).
    ///
    /// # Errors
    ///
    /// As for [`Guard::release`].
    ///
    /// # Cancel safety
    ///
    /// As for [`Guard::release`]: a dropped future releases in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(reader: redlease::ReadGuard) -> Result<(), redlease::Error> {
    /// assert_eq!(reader.release().await?, redlease::ReleaseOutcome::Released);
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<ReleaseOutcome, Error> {
        self.guard.release().await
    }

    /// Runs `work` under the share, as [`Guard::run`] does.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] when the share was lost before the work finished.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the work and the share (released in the background).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(reader: redlease::ReadGuard) -> Result<(), redlease::Error> {
    /// let total = reader.run(async { 1 + 1 }).await?;
    /// # let _ = total;
    /// # Ok(()) }
    /// ```
    pub async fn run<T>(self, work: impl Future<Output = T>) -> Result<T, Error> {
        self.guard.run(work).await
    }
}

crate::lock::derefs_to_guard!(ReadGuard);
