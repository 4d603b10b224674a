//! A semaphore permit's guard.

use std::future::Future;

use crate::error::Error;
use crate::lock::Guard;
use crate::outcome::ReleaseOutcome;

/// A permit of a semaphore, from [`Semaphore::acquire`](crate::Semaphore::acquire): a lease of
/// its own, used through [`Guard`]'s methods (it derefs to one) — deadline, loss signal,
/// renewal, [`extend`](Guard::extend) — and a [`slot`](Self::slot). Dropping it gives the
/// permit back in the background, as for a [`Guard`].
///
/// **Fencing.** Every permit has a slot in `0..limit` that no other current holder has, and a
/// [`fence`](Guard::fence) from the name's one counter, which increases with every grant (so it
/// increases per slot too). A resource guarded per slot keeps the largest fence it has seen for
/// each slot and refuses smaller ones there: a holder whose permit ended and whose slot went to
/// another is refused, while the holders of other slots are not.
#[derive(Debug)]
#[must_use = "dropping the permit gives it back in the background; keep it while you work"]
pub struct Permit {
    guard: Guard,
    slot: u32,
}

impl Permit {
    pub(crate) fn new(guard: Guard, slot: u32) -> Self {
        Self { guard, slot }
    }

    /// The lease's guard and the slot, for the blocking permit.
    #[cfg(feature = "blocking")]
    pub(crate) fn into_parts(self) -> (Guard, u32) {
        (self.guard, self.slot)
    }

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
    /// # Cancel safety
    ///
    /// As for [`Guard::release`]: a dropped future releases in the background.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(permit: redlease::Permit) -> Result<(), redlease::Error> {
    /// assert_eq!(permit.release().await?, redlease::ReleaseOutcome::Released);
    /// # Ok(()) }
    /// ```
    pub async fn release(self) -> Result<ReleaseOutcome, Error> {
        self.guard.release().await
    }

    /// Runs `work` under the permit, as [`Guard::run`] does.
    ///
    /// # Errors
    ///
    /// [`Error::Lost`] when the permit was lost before the work finished.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the work and the permit (given back in the background).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(permit: redlease::Permit) -> Result<(), redlease::Error> {
    /// let slot = permit.slot();
    /// permit.run(async move { println!("GPU {slot} is mine") }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run<T>(self, work: impl Future<Output = T>) -> Result<T, Error> {
        self.guard.run(work).await
    }
}

crate::lock::derefs_to_guard!(Permit);
