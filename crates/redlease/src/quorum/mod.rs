//! Rounds over every backend in parallel, decided by a majority (the decisions themselves are
//! in [`decide`], as pure functions). One backend is a quorum of one, so single-instance mode
//! and Redlock share this code.

mod decide;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::backend::{Backend, Durability};
use crate::error::{BackendError, BackendErrorKind, Error};
use crate::outcome::ReleaseOutcome;
use crate::script::{Call, Reply, Script};
use decide::{AcquireVotes, ExtendVotes, ReleaseVotes, Successes, in_time, majority};
pub(crate) use decide::{Extended, Refused, Vote};

/// The independent backends a client spreads its leases over.
#[derive(Debug)]
pub(crate) struct Quorum {
    backends: Vec<Arc<Backend>>,
}

type Replies<Fut> = FuturesUnordered<Fut>;

/// Lets the requests of a decided round run to completion on the runtime. Dropping them
/// instead could withdraw a request not yet written to its connection, leaving, say, a lease
/// granted on a bare majority rather than on every reachable node.
fn finish_in_background<Fut>(replies: Replies<Fut>)
where
    Fut: Future + Send + 'static,
    Fut::Output: Send,
{
    if !replies.is_empty() {
        tokio::spawn(replies.for_each(|_| async {}));
    }
}

/// How one acquire round ended.
#[derive(Debug)]
pub(crate) enum Round {
    /// A majority granted the lease, fences were reconciled, and it was still valid.
    Granted { fence: u64 },
    /// No valid majority.
    Refused(Refused),
}

impl Quorum {
    pub(crate) fn new(backends: Vec<Backend>) -> Self {
        Self {
            backends: backends.into_iter().map(Arc::new).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.backends.len()
    }

    /// Backend labels, in configuration order.
    pub(crate) fn labels(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|backend| backend.label())
    }

    /// Sends `request` to the backends in `targets` at once; replies arrive in completion
    /// order, tagged with the backend's index. Requests own what they need, so that once a
    /// round is decided the rest can be [finished in the background](finish_in_background).
    fn fan_out<T, F, Fut>(
        &self,
        targets: impl IntoIterator<Item = usize>,
        request: F,
    ) -> Replies<impl Future<Output = (usize, T)> + Send + 'static>
    where
        F: Fn(usize, Arc<Backend>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        targets
            .into_iter()
            .map(|index| {
                let reply = request(index, self.backends[index].clone());
                async move { (index, reply.await) }
            })
            .collect()
    }

    /// The only backend, when there is one: rounds then need no fan-out.
    pub(crate) fn only(&self) -> Option<&Arc<Backend>> {
        match self.backends.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// Loads `scripts` on every backend; succeeds once a majority did, so that a minority that
    /// is down at startup does not stop the client.
    pub(crate) async fn load_scripts(
        &self,
        scripts: &'static [&'static Script],
        limit: Duration,
    ) -> Result<(), Error> {
        let mut replies = self.fan_out(0..self.len(), |_, backend| async move {
            backend.load_scripts(scripts, limit).await
        });
        let mut loaded = Successes::new(self.len());
        while let Some((_, reply)) = replies.next().await {
            loaded.count(reply)?;
            if loaded.reached() {
                finish_in_background(replies);
                return Ok(());
            }
        }
        Err(loaded.shortfall())
    }

    /// One acquire attempt on every backend (`attempt` sends it to one). Succeeds as soon as a
    /// majority granted (the other requests finish in the background); a failure is decided
    /// once every backend answered or timed out, so that everything the round won can be
    /// given back.
    ///
    /// `arbiter`: the backend this client's waiters are listed on; see
    /// [`AcquireVotes::with_arbiter`].
    ///
    /// On success the fence counters are reconciled (`raise` brings one backend's counter up
    /// to a fence; see [`Self::reconcile_fences`]) before validity is checked against
    /// `valid_until`.
    pub(crate) async fn acquire<A, AFut, R, RFut>(
        &self,
        attempt: A,
        raise: R,
        arbiter: Option<usize>,
        valid_until: Instant,
    ) -> Round
    where
        A: Fn(usize, Arc<Backend>) -> AFut,
        AFut: Future<Output = Vote> + Send + 'static,
        R: Fn(Arc<Backend>, u64, Duration) -> RFut,
        RFut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let mut votes = AcquireVotes::with_arbiter(self.len(), arbiter);
        if let Some(only) = self.only() {
            votes.count(0, attempt(0, only.clone()).await);
            return if votes.won() {
                self.confirm(votes.granted(), raise, valid_until).await
            } else {
                Round::Refused(votes.refused())
            };
        }
        let mut replies = self.fan_out(0..self.len(), attempt);
        while let Some((index, vote)) = replies.next().await {
            votes.count(index, vote);
            if votes.won() {
                finish_in_background(replies);
                return self.confirm(votes.granted(), raise, valid_until).await;
            }
        }
        Round::Refused(votes.refused())
    }

    /// Turns a majority's grants into a lease: reconciles fences, then checks validity.
    async fn confirm<R, RFut>(
        &self,
        granted: &[(usize, u64)],
        raise: R,
        valid_until: Instant,
    ) -> Round
    where
        R: Fn(Arc<Backend>, u64, Duration) -> RFut,
        RFut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let refused = |error| {
            Round::Refused(Refused {
                error,
                holder_remaining: None,
                granted_on: granted.iter().map(|&(index, _)| index).collect(),
            })
        };
        let fence = match self.reconcile_fences(granted, raise, valid_until).await {
            Ok(fence) => fence,
            Err(error) => return refused(error),
        };
        if !in_time(Instant::now(), valid_until) {
            let late = BackendError::new(
                BackendErrorKind::Timeout,
                self.backends[granted[0].0].label(),
                "acquiring a lease (the majority answered after the lease's validity ended)",
                None,
            );
            return refused(Error::Backend(late));
        }
        Round::Granted { fence }
    }

    /// Redlock fencing: the lease's fence is the largest counter among the granting backends,
    /// and a majority of them must hold at least that value before the lease is handed out,
    /// so that every later majority (which shares a backend with this one) increments past
    /// it. Backends already at the maximum need nothing; with one backend this sends nothing.
    async fn reconcile_fences<R, RFut>(
        &self,
        granted: &[(usize, u64)],
        raise: R,
        valid_until: Instant,
    ) -> Result<u64, Error>
    where
        R: Fn(Arc<Backend>, u64, Duration) -> RFut,
        RFut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let fence = granted.iter().map(|&(_, f)| f).max().unwrap_or(0);
        let at_fence = granted.iter().filter(|&&(_, f)| f == fence).count();
        let mut raised = Successes::already(self.len(), at_fence);
        if raised.reached() {
            return Ok(fence);
        }
        let limit = valid_until.saturating_duration_since(Instant::now());
        let behind = granted
            .iter()
            .filter(|&&(_, f)| f < fence)
            .map(|&(index, _)| index);
        let mut replies = self.fan_out(behind, |_, backend| raise(backend, fence, limit));
        while let Some((_, reply)) = replies.next().await {
            raised.count(reply)?;
            if raised.reached() {
                finish_in_background(replies);
                return Ok(fence);
            }
        }
        Err(raised.shortfall())
    }

    /// Runs each extension in `calls` (one per lease) on every backend, with one round trip
    /// per backend (see [`Backend::call_batch`]). A lease is decided as soon as a majority
    /// extended it, or enough backends report it gone or taken that no majority can; the
    /// round returns once every lease is decided (slower backends finish in the background)
    /// or every backend answered.
    pub(crate) async fn extend(&self, calls: Vec<Call>, limit: Duration) -> Vec<Extended> {
        const CONTEXT: &str = "extending leases";
        let n = self.len();
        let mut votes = vec![ExtendVotes::new(n); calls.len()];
        if let Some(only) = self.only() {
            let reply = only
                .call_batch(&calls, CONTEXT, limit, Durability::Replicated)
                .await;
            count_extensions(&mut votes, &reply);
            return votes.into_iter().map(ExtendVotes::outcome).collect();
        }
        let mut undecided = calls.len();
        let calls: Arc<[Call]> = calls.into();
        let mut replies = self.fan_out(0..n, |_, backend| {
            let calls = calls.clone();
            async move {
                backend
                    .call_batch(&calls, CONTEXT, limit, Durability::Replicated)
                    .await
            }
        });
        while let Some((_, reply)) = replies.next().await {
            undecided -= count_extensions(&mut votes, &reply);
            if undecided == 0 {
                finish_in_background(replies);
                break;
            }
        }
        votes.into_iter().map(ExtendVotes::outcome).collect()
    }

    /// Runs `call` (a release) on every backend, or on `only` these. Returns once a majority
    /// released (and `arbiter`, if any, answered: see [`ReleaseVotes::with_arbiter`]), or when
    /// every backend has answered; requests to slower backends are still delivered.
    pub(crate) async fn release(
        &self,
        call: Call,
        only: Option<&[usize]>,
        arbiter: Option<usize>,
    ) -> Result<ReleaseOutcome, Error> {
        const CONTEXT: &str = "releasing a lease";
        let mut votes = ReleaseVotes::with_arbiter(self.len(), arbiter);
        if let (Some(backend), None) = (self.only(), only) {
            let limit = backend.command_timeout();
            let reply = backend.call(&call, CONTEXT, limit, Durability::Plain).await;
            votes.count(0, reply.map(|reply| reply.ownership()))?;
            return if votes.released() {
                Ok(ReleaseOutcome::Released)
            } else {
                votes.outcome()
            };
        }
        let targets: Vec<usize> = only.map_or_else(|| (0..self.len()).collect(), <[usize]>::to_vec);
        let call = Arc::new(call);
        let mut replies = self.fan_out(targets, |_, backend| {
            let call = call.clone();
            async move {
                let limit = backend.command_timeout();
                backend
                    .call(&call, CONTEXT, limit, Durability::Plain)
                    .await
                    .map(|reply| reply.ownership())
            }
        });
        while let Some((index, reply)) = replies.next().await {
            votes.count(index, reply)?;
            if votes.released() {
                finish_in_background(replies);
                return Ok(ReleaseOutcome::Released);
            }
        }
        votes.outcome()
    }

    /// Sends `request` to every backend and collects the answers of those that answered;
    /// fails when fewer than a majority did (with one backend: its error).
    pub(crate) async fn gather<T, F, Fut>(&self, request: F) -> Result<Vec<T>, Error>
    where
        F: Fn(Arc<Backend>) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        let mut replies = self.fan_out(0..self.len(), |_, backend| request(backend));
        let mut answers = Vec::with_capacity(self.len());
        let mut counted = Successes::new(self.len());
        while let Some((_, reply)) = replies.next().await {
            answers.extend(counted.count(reply)?);
        }
        if counted.reached() {
            Ok(answers)
        } else {
            Err(counted.shortfall())
        }
    }

    /// Sends `request` to every backend and returns each one's label and answer.
    pub(crate) async fn each<T, F, Fut>(&self, request: F) -> Vec<(String, T)>
    where
        F: Fn(Arc<Backend>) -> Fut,
        Fut: Future<Output = T>,
    {
        let requests = self.backends.iter().map(|backend| {
            let label = backend.label().to_owned();
            let reply = request(backend.clone());
            async move { (label, reply.await) }
        });
        futures_util::future::join_all(requests).await
    }

    /// Sends `call` to every backend, ignoring the answers: best effort, for cleanup.
    pub(crate) async fn broadcast(&self, call: Call, context: &'static str) {
        let call = Arc::new(call);
        self.each(|backend| {
            let call = call.clone();
            async move {
                let limit = backend.command_timeout();
                let _ = backend.call(&call, context, limit, Durability::Plain).await;
            }
        })
        .await;
    }

    /// How many backends make a majority.
    pub(crate) fn majority(&self) -> usize {
        majority(self.len())
    }
}

/// Counts one backend's answers to a batch of extensions; how many leases this decided.
fn count_extensions(
    votes: &mut [ExtendVotes],
    reply: &Result<Vec<Result<Reply, Error>>, Error>,
) -> usize {
    let mut newly_decided = 0;
    for (index, lease) in votes.iter_mut().enumerate() {
        let was_decided = lease.decided().is_some();
        match reply {
            Ok(per_lease) => {
                if let Some(outcome) = per_lease.get(index) {
                    lease.count(outcome.as_ref().map(Reply::ownership).map_err(Clone::clone));
                }
            }
            Err(e) => lease.count(Err(e.clone())),
        }
        if !was_decided && lease.decided().is_some() {
            newly_decided += 1;
        }
    }
    newly_decided
}
