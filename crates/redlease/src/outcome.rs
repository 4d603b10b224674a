//! The words for what happened to a lease, shared by every primitive, script decoder and
//! signal: a hold ends because it `Expired`, is `HeldByOther`, was `Released`, or renewal
//! could not keep it (`Unreachable`, `HoldCapReached`).

use std::fmt;

/// Why a lease ended, as reported by [`Guard::lost`](crate::Guard::lost) and
/// [`Error::Lost`](crate::Error::Lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lost {
    /// The lease ran out: its key is gone from the servers, or its validity deadline passed
    /// without a successful renewal.
    Expired,
    /// The key now holds another owner's token (our lease expired and someone took the lock,
    /// or something overwrote the key).
    HeldByOther,
    /// Renewals could not reach Redis (or a majority of nodes) before the deadline.
    Unreachable,
    /// The lease reached its maximum hold time
    /// ([`LockOptions::max_hold`](crate::LockOptions::max_hold)); renewal stopped.
    HoldCapReached,
    /// The guard released the lease (or was dropped).
    Released,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expired => "it expired",
            Self::HeldByOther => "another owner holds it",
            Self::Unreachable => "renewals could not reach Redis before the deadline",
            Self::HoldCapReached => "it reached its maximum hold time",
            Self::Released => "it was released",
        })
    }
}

/// What [`Guard::release`](crate::Guard::release) found on the servers. None of these is an
/// error: after a release the caller no longer holds the lock whichever way it went, but an
/// expired lease is worth knowing about (the work may have overlapped with the next holder's).
/// `Expired` and `HeldByOther` mean what the [`Lost`] reasons of those names mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReleaseOutcome {
    /// The key held our token and is now deleted.
    Released,
    /// The key was already gone: the lease had expired. Nothing was deleted.
    Expired,
    /// Our lease expired and another owner took the lock; its key was left alone.
    HeldByOther,
}

/// What a compare-and-act script (release, extend) found at a key it acts on only if the key
/// holds our token: `Ok(())` when it did and the script acted, otherwise why the hold is over.
pub(crate) type Ownership = Result<(), Lost>;
