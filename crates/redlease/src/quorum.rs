//! Rounds over every node in parallel, decided by a majority. One node is a quorum of one, so
//! single-instance mode and Redlock share this code.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::error::{BackendError, Error, Lost};
use crate::guard::ReleaseOutcome;
use crate::lease::Lease;
use crate::node::{Acquired, Found, Node};

/// The share of the TTL one node may take to answer an acquire when there are several nodes,
/// so that a dead node cannot use up the lease's validity (Redlock's "much smaller than the
/// TTL"). Bounded below by [`MIN_NODE_TIMEOUT`] and above by the command timeout.
pub const NODE_TIMEOUT_SHARE: f64 = 0.05;
/// The least time one node is given to answer, however short the TTL.
pub const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(10);

/// The independent Redis masters a client spreads its leases over.
#[derive(Debug)]
pub(crate) struct Nodes {
    nodes: Vec<Arc<Node>>,
}

type Replies<Fut> = FuturesUnordered<Fut>;

/// How extending one lease over the nodes ended.
#[derive(Debug)]
pub(crate) enum Extended {
    /// A majority extended it.
    Yes,
    /// Enough nodes found the key gone or taken that no majority can extend it.
    Lost(Lost),
    /// Too few nodes answered (or one answered with a fatal error, such as a wrong type).
    Failed(Error),
}

/// One lease's replies so far, in [`Nodes::extend`].
#[derive(Debug, Clone, Default)]
struct Tally {
    extended: usize,
    gone: usize,
    taken: usize,
    errors: Vec<BackendError>,
    fatal: Option<Error>,
}

impl Tally {
    fn decided(&self, n: usize, quorum: usize) -> Option<Extended> {
        if let Some(fatal) = &self.fatal {
            return Some(Extended::Failed(fatal.clone()));
        }
        if self.extended >= quorum {
            Some(Extended::Yes)
        } else if self.gone + self.taken > n - quorum {
            Some(Extended::Lost(if self.taken > 0 {
                Lost::HeldByOther
            } else {
                Lost::Expired
            }))
        } else {
            None
        }
    }
}

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

/// How one acquire round ended, short of a fatal error.
pub(crate) enum Round {
    /// A majority granted the lease, fences were reconciled, and it was still valid.
    Granted { fence: u64 },
    /// No valid majority. `holder_remaining` bounds the wait before the next attempt;
    /// `granted_on` lists nodes that hold our token and should be released before retrying.
    Failed {
        error: Error,
        holder_remaining: Option<Duration>,
        granted_on: Vec<usize>,
    },
}

impl Nodes {
    pub(crate) fn new(nodes: Vec<Node>) -> Self {
        Self {
            nodes: nodes.into_iter().map(Arc::new).collect(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The number of nodes that make a majority.
    pub(crate) fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// Node `host:port` labels, in configuration order.
    pub(crate) fn labels(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|node| node.label())
    }

    /// How long one node may take to answer an acquire for a lease trusted for `trusted`.
    pub(crate) fn acquire_timeout(&self, ttl: Duration, trusted: Duration) -> Duration {
        if self.nodes.len() == 1 {
            trusted
        } else {
            ttl.mul_f64(NODE_TIMEOUT_SHARE)
                .max(MIN_NODE_TIMEOUT)
                .min(trusted)
        }
    }

    /// Sends `request` to the nodes in `targets` at once; replies arrive in completion order,
    /// tagged with the node's index. Requests own what they need, so that once a round is
    /// decided the rest can be [finished in the background](finish_in_background).
    fn fan_out<T, F, Fut>(
        &self,
        targets: impl IntoIterator<Item = usize>,
        request: F,
    ) -> Replies<impl Future<Output = (usize, Result<T, Error>)> + Send + 'static>
    where
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
    {
        targets
            .into_iter()
            .map(|index| {
                let reply = request(self.nodes[index].clone());
                async move { (index, reply.await) }
            })
            .collect()
    }

    /// The error for a round that reached too few nodes: with one node, that node's own error.
    fn unreachable(&self, granted: usize, mut errors: Vec<BackendError>) -> Error {
        if self.nodes.len() == 1
            && let Some(error) = errors.pop()
        {
            return match error.replicas() {
                Some((acked, wanted)) => Error::NotReplicated { acked, wanted },
                None => Error::Backend(error),
            };
        }
        Error::NoQuorum {
            needed: self.quorum(),
            reached: granted,
            errors,
        }
    }

    /// Loads the scripts on every node (see [`Node::load_scripts`]); succeeds once a majority
    /// did, so that a minority that is down at startup does not stop the client.
    pub(crate) async fn load_scripts(&self, limit: Duration) -> Result<(), Error> {
        let mut replies = self.fan_out(0..self.nodes.len(), |node| async move {
            node.load_scripts(limit).await
        });
        let mut loaded = 0;
        let mut errors = Vec::new();
        while let Some((_, reply)) = replies.next().await {
            match reply {
                Ok(()) => loaded += 1,
                Err(Error::Backend(e)) => errors.push(e),
                Err(fatal) => return Err(fatal),
            }
            if loaded >= self.quorum() {
                finish_in_background(replies);
                return Ok(());
            }
        }
        Err(self.unreachable(loaded, errors))
    }

    /// One acquire attempt on every node. Succeeds as soon as a majority granted (the other
    /// requests finish in the background); a failure is decided once every node answered or
    /// timed out, so that everything the round won can be given back.
    ///
    /// On success the nodes' fence counters are reconciled (see [`Self::reconcile_fences`])
    /// before validity is checked against `valid_until`.
    pub(crate) async fn acquire(
        &self,
        lease: &Arc<Lease>,
        ttl_ms: u64,
        queue_entry_ms: Option<u64>,
        limit: Duration,
        valid_until: Instant,
    ) -> Result<Round, Error> {
        let n = self.nodes.len();
        let quorum = self.quorum();
        let mut replies = self.fan_out(0..n, |node| {
            let lease = lease.clone();
            async move { node.acquire(&lease, ttl_ms, queue_entry_ms, limit).await }
        });
        let mut granted: Vec<(usize, u64)> = Vec::with_capacity(n);
        let mut held = 0;
        let mut longest_hold: Option<Option<Duration>> = None;
        let mut errors = Vec::new();
        let mut fatal = None;
        while let Some((index, reply)) = replies.next().await {
            match reply {
                Ok(Acquired::Granted { fence }) => granted.push((index, fence)),
                Ok(Acquired::Held { remaining }) => {
                    held += 1;
                    longest_hold = Some(match (longest_hold, remaining) {
                        (Some(None), _) | (_, None) => None,
                        (Some(Some(a)), Some(b)) => Some(a.max(b)),
                        (None, Some(b)) => Some(b),
                    });
                }
                Ok(Acquired::Unreplicated { acked, wanted }) => {
                    errors.push(BackendError::not_replicated(
                        self.nodes[index].label(),
                        "acquiring a lease",
                        acked,
                        wanted,
                    ));
                }
                Err(Error::Backend(e)) => errors.push(e),
                Err(e) => fatal = Some(e),
            }
            if granted.len() >= quorum && fatal.is_none() {
                finish_in_background(replies);
                return self.confirm(lease, &granted, valid_until).await;
            }
        }
        let granted_on = granted.iter().map(|&(index, _)| index).collect();
        let error = match fatal {
            Some(fatal) => fatal,
            // Contention: other owners hold enough nodes that no majority was possible, or a
            // majority of nodes answered and their votes split. Too few answers is not.
            None if held > 0 && (held > n - quorum || granted.len() + held >= quorum) => {
                Error::Contended {
                    remaining_ttl: longest_hold.flatten(),
                }
            }
            None => self.unreachable(granted.len(), errors),
        };
        Ok(Round::Failed {
            error,
            holder_remaining: longest_hold.flatten(),
            granted_on,
        })
    }

    /// Turns a majority's grants into a lease: reconciles fences, then checks validity.
    async fn confirm(
        &self,
        lease: &Arc<Lease>,
        granted: &[(usize, u64)],
        valid_until: Instant,
    ) -> Result<Round, Error> {
        let granted_on = granted.iter().map(|&(index, _)| index).collect();
        let fence = match self.reconcile_fences(lease, granted, valid_until).await {
            Ok(fence) => fence,
            Err(error) => {
                return Ok(Round::Failed {
                    error,
                    holder_remaining: None,
                    granted_on,
                });
            }
        };
        if Instant::now() >= valid_until {
            let late = BackendError::new(
                crate::BackendErrorKind::Timeout,
                self.nodes[granted[0].0].label(),
                "acquiring a lease (the majority answered after the lease's validity ended)",
                None,
            );
            return Ok(Round::Failed {
                error: Error::Backend(late),
                holder_remaining: None,
                granted_on,
            });
        }
        Ok(Round::Granted { fence })
    }

    /// Redlock fencing: the lease's fence is the largest counter among the granting nodes, and
    /// a majority of them must hold at least that value before the lease is handed out, so
    /// that every later majority (which shares a node with this one) increments past it.
    /// Nodes already at the maximum need nothing; with one node this sends nothing.
    async fn reconcile_fences(
        &self,
        lease: &Arc<Lease>,
        granted: &[(usize, u64)],
        valid_until: Instant,
    ) -> Result<u64, Error> {
        let fence = granted.iter().map(|&(_, f)| f).max().unwrap_or(0);
        let mut raised = granted.iter().filter(|&&(_, f)| f == fence).count();
        if raised >= self.quorum() {
            return Ok(fence);
        }
        let limit = valid_until.saturating_duration_since(Instant::now());
        let behind = granted
            .iter()
            .filter(|&&(_, f)| f < fence)
            .map(|&(index, _)| index);
        let mut replies = self.fan_out(behind, |node| {
            let lease = lease.clone();
            async move { node.raise_fence(&lease.keys, fence, limit).await }
        });
        let mut errors = Vec::new();
        while let Some((_, reply)) = replies.next().await {
            match reply {
                Ok(()) => raised += 1,
                Err(Error::Backend(e)) => errors.push(e),
                Err(fatal) => return Err(fatal),
            }
            if raised >= self.quorum() {
                finish_in_background(replies);
                return Ok(fence);
            }
        }
        Err(self.unreachable(raised, errors))
    }

    /// Extends each lease of `batch` on every node, with one pipelined round trip per node
    /// (see [`Node::extend_many`]). A lease is decided as soon as a majority extended it, or
    /// enough nodes report it gone or taken that no majority can; the round returns once every
    /// lease is decided (slower nodes finish in the background) or every node answered.
    pub(crate) async fn extend(
        &self,
        batch: &[(Arc<Lease>, u64)],
        limit: Duration,
    ) -> Vec<Extended> {
        let n = self.nodes.len();
        let quorum = self.quorum();
        let shared_batch: Arc<[(Arc<Lease>, u64)]> = batch.into();
        let mut replies = self.fan_out(0..n, |node| {
            let batch = shared_batch.clone();
            async move { node.extend_many(&batch, limit).await }
        });
        let mut tallies = vec![Tally::default(); batch.len()];
        let mut undecided = batch.len();
        while let Some((_, reply)) = replies.next().await {
            for (index, tally) in tallies.iter_mut().enumerate() {
                let outcome = match &reply {
                    Ok(per_lease) => per_lease.get(index).cloned(),
                    Err(e) => Some(Err(e.clone())),
                };
                let was_decided = tally.decided(n, quorum).is_some();
                match outcome {
                    Some(Ok(Found::Ours)) => tally.extended += 1,
                    Some(Ok(Found::Gone)) => tally.gone += 1,
                    Some(Ok(Found::Other)) => tally.taken += 1,
                    Some(Err(Error::Backend(e))) => tally.errors.push(e),
                    Some(Err(other)) => tally.fatal = Some(other),
                    None => {}
                }
                if !was_decided && tally.decided(n, quorum).is_some() {
                    undecided -= 1;
                }
            }
            if undecided == 0 {
                finish_in_background(replies);
                break;
            }
        }
        tallies
            .into_iter()
            .map(|tally| match tally.decided(n, quorum) {
                Some(decided) => decided,
                None => Extended::Failed(self.unreachable(tally.extended, tally.errors)),
            })
            .collect()
    }

    /// Sends `request` to every node and collects the answers of those that answered;
    /// fails when fewer than a majority did (with one node: that node's error).
    pub(crate) async fn gather<T, F, Fut>(&self, request: F) -> Result<Vec<T>, Error>
    where
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, Error>> + Send + 'static,
        T: Send + 'static,
    {
        let mut replies = self.fan_out(0..self.nodes.len(), request);
        let mut answers = Vec::with_capacity(self.nodes.len());
        let mut errors = Vec::new();
        while let Some((_, reply)) = replies.next().await {
            match reply {
                Ok(answer) => answers.push(answer),
                Err(Error::Backend(e)) => errors.push(e),
                Err(fatal) => return Err(fatal),
            }
        }
        if answers.len() >= self.quorum() {
            Ok(answers)
        } else {
            Err(self.unreachable(answers.len(), errors))
        }
    }

    /// Sends `request` to every node and returns each node's label and answer.
    pub(crate) async fn each<T, F, Fut>(&self, request: F) -> Vec<(String, Result<T, Error>)>
    where
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let requests = self.nodes.iter().map(|node| {
            let label = node.label().to_owned();
            let reply = request(node.clone());
            async move { (label, reply.await) }
        });
        futures_util::future::join_all(requests).await
    }

    /// Takes a fair waiter out of every node's queue (fair mode has one node).
    pub(crate) async fn leave_queue(&self, lease: &Arc<Lease>) {
        for node in &self.nodes {
            let _ = node.leave_queue(&lease.keys, &lease.token).await;
        }
    }

    /// Releases the lease on every node (or on `only` these). Returns once a majority released
    /// it, or when every node has answered; requests to slower nodes are still delivered.
    pub(crate) async fn release(
        &self,
        lease: &Arc<Lease>,
        only: Option<&[usize]>,
    ) -> Result<ReleaseOutcome, Error> {
        let targets: Vec<usize> =
            only.map_or_else(|| (0..self.nodes.len()).collect(), <[usize]>::to_vec);
        let mut replies = self.fan_out(targets, |node| {
            let lease = lease.clone();
            async move { node.release(&lease.keys, &lease.token).await }
        });
        let (mut released, mut taken) = (0, 0);
        let mut errors = Vec::new();
        while let Some((_, reply)) = replies.next().await {
            match reply {
                Ok(Found::Ours) => released += 1,
                Ok(Found::Gone) => {}
                Ok(Found::Other) => taken += 1,
                Err(Error::Backend(e)) => errors.push(e),
                Err(fatal) => return Err(fatal),
            }
            if released >= self.quorum() {
                finish_in_background(replies);
                return Ok(ReleaseOutcome::Released);
            }
        }
        if released + errors.len() >= self.quorum() {
            // Had the silent nodes answered, the lease might have been ours: we cannot tell.
            Err(self.unreachable(released, errors))
        } else if taken > 0 {
            Ok(ReleaseOutcome::HeldByOther)
        } else {
            Ok(ReleaseOutcome::AlreadyExpired)
        }
    }
}
