//! The quorum's decisions, as pure functions of the nodes' answers: no Redis, no clock.
//!
//! A round sends one request to every node and counts the answers as they arrive. A grant
//! needs a majority; contention is told apart from unreachable nodes (a split vote among the
//! reachable majority is contention, too few answers is not); a lease is extended or released
//! once a majority did it, and lost once enough nodes report it gone or taken that no majority
//! can still extend it.

use std::time::{Duration, Instant};

use crate::error::{BackendError, Error};
use crate::outcome::{Lost, Ownership, ReleaseOutcome};

/// How many of `n` nodes make a majority.
pub(crate) fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// One node's answer to an acquire attempt.
#[derive(Debug, Clone)]
pub(crate) enum Vote {
    /// It granted the lease, with its fence counter's value.
    Granted(u64),
    /// It granted the lease (with its fence counter's value) to a second request, after the
    /// round's first request there found it held by another: a grant that counts, and must be
    /// given back if the round fails, but an arbiter that answers so objects (it was handed to
    /// a waiter, who gave it back after losing the other nodes to this round).
    GrantedAfterHeld(u64),
    /// Another owner holds it there, for this much longer (`None`: unknown).
    Held(Option<Duration>),
    /// It could not be reached, did not answer in time, or failed in a way a retry may fix.
    Failed(BackendError),
    /// An answer that ends the attempt (a key of the wrong type, a permission denied).
    Fatal(Error),
}

/// The answers to one acquire attempt so far.
#[derive(Debug, Clone)]
pub(crate) struct AcquireVotes {
    n: usize,
    /// The node whose releases hand the lock to listed waiters (the arbiter, see
    /// [`AcquireVotes::with_arbiter`]) and what it has answered so far.
    arbiter: Option<(usize, ArbiterSays)>,
    granted: Vec<(usize, u64)>,
    held: usize,
    /// How many of the grants came after the node was found held (see
    /// [`Vote::GrantedAfterHeld`]).
    granted_after_held: usize,
    longest_hold: LongestHold,
    errors: Vec<BackendError>,
    fatal: Option<Error>,
}

/// The arbiter's part in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArbiterSays {
    /// No answer yet.
    Nothing,
    /// Another owner holds it there: a listed waiter may have been handed it.
    Held,
    /// Granted, failed or unreachable: the majority decides alone.
    NoObjection,
}

/// The longest remaining hold among the `Held` answers so far.
#[derive(Debug, Clone, Copy)]
enum LongestHold {
    NoneYet,
    Known(Duration),
    /// A holder's key has no expiry (or its time is unknown).
    Unknown,
}

/// How an acquire attempt that did not reach a majority ended.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub(crate) error: Error,
    /// How long the holder's lease runs at most, to bound the wait before the next attempt.
    pub(crate) holder_remaining: Option<Duration>,
    /// Nodes that granted it: they hold our token and should be given back.
    pub(crate) granted_on: Vec<usize>,
}

impl AcquireVotes {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            n,
            arbiter: None,
            granted: Vec::with_capacity(n),
            held: 0,
            granted_after_held: 0,
            longest_hold: LongestHold::NoneYet,
            errors: Vec::new(),
            fatal: None,
        }
    }

    /// A round of a client whose waiters are listed on node `arbiter`, of several: a majority
    /// wins only once the arbiter answered, and not while another owner holds the arbiter.
    /// A release hands the arbiter's copy to its oldest waiter and frees the other nodes, so
    /// without this rule a newcomer (the releasing worker coming back, say) takes those other
    /// nodes, a majority, before the handed waiter's round reaches them, and waiters starve.
    /// Giving a majority back is always safe; the arbiter's vote only orders the contenders.
    pub(crate) fn with_arbiter(n: usize, arbiter: Option<usize>) -> Self {
        Self {
            arbiter: arbiter
                .filter(|&node| n > 1 && node < n)
                .map(|node| (node, ArbiterSays::Nothing)),
            ..Self::new(n)
        }
    }

    /// Counts node `node`'s vote.
    pub(crate) fn count(&mut self, node: usize, vote: Vote) {
        if let Some((arbiter, says)) = &mut self.arbiter
            && *arbiter == node
        {
            *says = if matches!(vote, Vote::Held(_) | Vote::GrantedAfterHeld(_)) {
                ArbiterSays::Held
            } else {
                ArbiterSays::NoObjection
            };
        }
        match vote {
            Vote::Granted(fence) => self.granted.push((node, fence)),
            Vote::GrantedAfterHeld(fence) => {
                self.granted.push((node, fence));
                self.granted_after_held += 1;
            }
            Vote::Held(remaining) => {
                self.held += 1;
                self.longest_hold = match (self.longest_hold, remaining) {
                    (LongestHold::Unknown, _) | (_, None) => LongestHold::Unknown,
                    (LongestHold::Known(a), Some(b)) => LongestHold::Known(a.max(b)),
                    (LongestHold::NoneYet, Some(b)) => LongestHold::Known(b),
                };
            }
            Vote::Failed(error) => self.errors.push(error),
            Vote::Fatal(error) => self.fatal = Some(error),
        }
    }

    /// A majority granted, the arbiter (if any) does not object, and no answer so far ended
    /// the attempt: the round is won (the other requests may finish in the background).
    pub(crate) fn won(&self) -> bool {
        self.granted.len() >= majority(self.n)
            && self.fatal.is_none()
            && self
                .arbiter
                .is_none_or(|(_, says)| says == ArbiterSays::NoObjection)
    }

    /// The nodes that granted, with their fence counters.
    pub(crate) fn granted(&self) -> &[(usize, u64)] {
        &self.granted
    }

    /// Once every node answered without a win: why the attempt failed.
    pub(crate) fn refused(self) -> Refused {
        let quorum = majority(self.n);
        let holder_remaining = match self.longest_hold {
            LongestHold::Known(remaining) => Some(remaining),
            LongestHold::NoneYet | LongestHold::Unknown => None,
        };
        let granted_on = self.granted.iter().map(|&(node, _)| node).collect();
        let error = match self.fatal {
            Some(fatal) => fatal,
            // Contention: other owners hold enough nodes that no majority was possible, or a
            // majority of nodes answered and their votes split. Too few answers is not.
            None if self.held + self.granted_after_held > 0
                && (self.held > self.n - quorum || self.granted.len() + self.held >= quorum) =>
            {
                Error::Contended {
                    remaining_ttl: holder_remaining,
                }
            }
            None => unreachable(self.n, self.granted.len(), self.errors),
        };
        Refused {
            error,
            holder_remaining,
            granted_on,
        }
    }
}

/// Whether a won round leaves a valid lease: its majority answered (and its fence counters
/// were reconciled) before the validity, counted from when the requests were sent, ran out.
/// A majority that answers later is refused like a late reply.
pub(crate) fn in_time(now: Instant, valid_until: Instant) -> bool {
    now < valid_until
}

/// The error for a round that reached too few of `n` nodes (`reached` agreed): with one node,
/// that node's own error.
pub(crate) fn unreachable(n: usize, reached: usize, mut errors: Vec<BackendError>) -> Error {
    if n == 1
        && let Some(error) = errors.pop()
    {
        return Error::Backend(error);
    }
    Error::NoQuorum {
        needed: majority(n),
        reached,
        errors,
    }
}

/// Answers that only need counting: a majority of successes decides (script loading, fence
/// raising, reads).
#[derive(Debug, Clone)]
pub(crate) struct Successes {
    n: usize,
    done: usize,
    errors: Vec<BackendError>,
}

impl Successes {
    pub(crate) fn new(n: usize) -> Self {
        Self::already(n, 0)
    }

    /// A count that starts with `done` successes known without asking.
    pub(crate) fn already(n: usize, done: usize) -> Self {
        Self {
            n,
            done,
            errors: Vec::new(),
        }
    }

    /// Counts one answer; a fatal error ends the round with it.
    pub(crate) fn count<T>(&mut self, answer: Result<T, Error>) -> Result<Option<T>, Error> {
        match answer {
            Ok(value) => {
                self.done += 1;
                Ok(Some(value))
            }
            Err(Error::Backend(e)) => {
                self.errors.push(e);
                Ok(None)
            }
            Err(fatal) => Err(fatal),
        }
    }

    pub(crate) fn reached(&self) -> bool {
        self.done >= majority(self.n)
    }

    /// The error once every node answered and too few succeeded.
    pub(crate) fn shortfall(self) -> Error {
        unreachable(self.n, self.done, self.errors)
    }
}

/// How extending one lease over the nodes ended.
#[derive(Debug, Clone)]
pub(crate) enum Extended {
    /// A majority extended it.
    Yes,
    /// Enough nodes found the key gone or taken that no majority can extend it.
    Lost(Lost),
    /// Too few nodes answered (or one answered with a fatal error, such as a wrong type).
    Failed(Error),
}

/// One lease's answers to an extension so far.
#[derive(Debug, Clone)]
pub(crate) struct ExtendVotes {
    n: usize,
    extended: usize,
    gone: usize,
    taken: usize,
    errors: Vec<BackendError>,
    fatal: Option<Error>,
}

impl ExtendVotes {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            n,
            extended: 0,
            gone: 0,
            taken: 0,
            errors: Vec::new(),
            fatal: None,
        }
    }

    pub(crate) fn count(&mut self, answer: Result<Ownership, Error>) {
        match answer {
            Ok(Ok(())) => self.extended += 1,
            Ok(Err(Lost::HeldByOther)) => self.taken += 1,
            Ok(Err(_)) => self.gone += 1,
            Err(Error::Backend(e)) => self.errors.push(e),
            Err(fatal) => self.fatal = Some(fatal),
        }
    }

    /// The outcome, once it is decided whatever the remaining nodes answer.
    pub(crate) fn decided(&self) -> Option<Extended> {
        let quorum = majority(self.n);
        if let Some(fatal) = &self.fatal {
            return Some(Extended::Failed(fatal.clone()));
        }
        if self.extended >= quorum {
            Some(Extended::Yes)
        } else if self.gone + self.taken > self.n - quorum {
            Some(Extended::Lost(if self.taken > 0 {
                Lost::HeldByOther
            } else {
                Lost::Expired
            }))
        } else {
            None
        }
    }

    /// The outcome once every node answered (or the round ended).
    pub(crate) fn outcome(self) -> Extended {
        self.decided()
            .unwrap_or_else(|| Extended::Failed(unreachable(self.n, self.extended, self.errors)))
    }
}

/// The answers to a release so far.
#[derive(Debug, Clone)]
pub(crate) struct ReleaseVotes {
    n: usize,
    /// The arbiter (see [`ReleaseVotes::with_arbiter`]), and whether it answered.
    arbiter: Option<(usize, bool)>,
    released: usize,
    taken: usize,
    errors: Vec<BackendError>,
}

impl ReleaseVotes {
    /// A release by a client whose waiters are listed on node `arbiter`, of several: decided
    /// only once the arbiter answered too (or failed). Every client of the same nodes has the
    /// same arbiter, and their acquires do not take a majority while the arbiter is held (see
    /// [`AcquireVotes::with_arbiter`]): a release that returned before the arbiter ran it
    /// would leave anyone acting on its return (taking the lock at once, say) contended.
    pub(crate) fn with_arbiter(n: usize, arbiter: Option<usize>) -> Self {
        Self {
            n,
            arbiter: arbiter
                .filter(|&node| n > 1 && node < n)
                .map(|node| (node, false)),
            released: 0,
            taken: 0,
            errors: Vec::new(),
        }
    }

    /// Counts node `node`'s answer; a fatal error ends the round with it.
    pub(crate) fn count(
        &mut self,
        node: usize,
        answer: Result<Ownership, Error>,
    ) -> Result<(), Error> {
        if let Some((arbiter, answered)) = &mut self.arbiter
            && *arbiter == node
        {
            *answered = true;
        }
        match answer {
            Ok(Ok(())) => self.released += 1,
            Ok(Err(Lost::HeldByOther)) => self.taken += 1,
            Ok(Err(_)) => {}
            Err(Error::Backend(e)) => self.errors.push(e),
            Err(fatal) => return Err(fatal),
        }
        Ok(())
    }

    /// A majority released it (and the arbiter, if any, answered): decided, whatever the rest
    /// answer.
    pub(crate) fn released(&self) -> bool {
        self.released >= majority(self.n) && self.arbiter.is_none_or(|(_, answered)| answered)
    }

    /// The outcome once every node answered without a majority releasing.
    pub(crate) fn outcome(self) -> Result<ReleaseOutcome, Error> {
        if self.released + self.errors.len() >= majority(self.n) {
            // Had the silent nodes answered, the lease might have been ours: we cannot tell.
            Err(unreachable(self.n, self.released, self.errors))
        } else if self.taken > 0 {
            Ok(ReleaseOutcome::HeldByOther)
        } else {
            Ok(ReleaseOutcome::Expired)
        }
    }
}

#[cfg(test)]
mod tests;
