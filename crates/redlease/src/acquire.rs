//! Taking a hold, for every primitive: the attempt loop, its retry schedule, waiting for a
//! release notification, giving back what a failed round won, and cleanup when an attempt's
//! fate is unknown. A primitive says what to send and how to read the answers ([`Claim`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Durability};
use crate::engine::Engine;
use crate::error::{BackendErrorKind, Error};
use crate::lease::Lease;
use crate::outcome::Lost;
use crate::quorum::{Refused, Round, Vote};
use crate::retry::Retry;
use crate::script::{Call, Code, Reply};
use crate::subscribe::Watch;
use crate::timing::LeaseTiming;

/// What one primitive's acquire sends, and how it reads the answers.
pub(crate) trait Claim: Send + Sync + 'static {
    /// One attempt's call to one backend. Every attempt carries the lease's token, so a retry
    /// that finds our own token in the key counts as a grant.
    fn attempt(&self, lease: &Lease, timing: &LeaseTiming) -> Call;

    /// The attempt's answer: `Done` grants with the fence as detail, `Held` carries the
    /// holder's PTTL. `None` for a reply the script never gives.
    fn vote(&self, reply: &Reply) -> Option<Vote> {
        match reply.code {
            Code::Done => Some(Vote::Granted(u64::try_from(reply.number()?).ok()?)),
            Code::Held => Some(Vote::Held(
                u64::try_from(reply.number()?)
                    .ok()
                    .map(Duration::from_millis),
            )),
            Code::Gone => None,
        }
    }

    /// Redlock fencing: raises one backend's fence counter to at least `fence`.
    fn raise_fence(&self, lease: &Lease, fence: u64) -> Call;

    /// The call that takes a waiter out of a queue it joined, if it may have joined one.
    fn leave_queue(&self, lease: &Lease) -> Option<Call>;

    /// The channel releases are announced on.
    fn channel(&self, lease: &Lease) -> String;

    /// Whether a release announced with `payload` is one this waiter should retry for.
    fn woken_by(&self, lease: &Lease, payload: &str) -> bool;

    /// How often a waiter must retry to keep its place in a queue, if it is in one.
    fn refresh_every(&self) -> Option<Duration>;
}

/// What a caller asked for, validated.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) timing: LeaseTiming,
    pub(crate) retry: Retry,
    pub(crate) auto_renew: bool,
    pub(crate) max_hold: Option<Duration>,
}

/// A granted hold.
pub(crate) struct Granted {
    pub(crate) lease: Arc<Lease>,
    pub(crate) fence: u64,
}

/// Takes `lease` as `claim` says, retrying per `ask`.
pub(crate) async fn acquire<C: Claim>(
    engine: &Arc<Engine>,
    claim: Arc<C>,
    lease: Arc<Lease>,
    ask: &Ask,
) -> Result<Granted, Error> {
    let may_queue = claim.leave_queue(&lease).is_some();
    let mut acquisition = Acquisition::new(engine, claim.clone(), lease.clone(), ask);
    let mut unclaimed = Unclaimed {
        engine,
        claim: &*claim,
        lease: &lease,
        maybe_granted: false,
        queued: false,
    };
    loop {
        unclaimed.maybe_granted = true;
        unclaimed.queued |= may_queue;
        let refused = match acquisition.attempt().await {
            Ok(fence) => {
                unclaimed.maybe_granted = false;
                unclaimed.queued = false;
                return Ok(Granted {
                    lease: lease.clone(),
                    fence,
                });
            }
            Err(refused) => refused,
        };
        if matches!(refused.error, Error::Contended { .. }) {
            // A single backend that answered "held by another" holds no grant of ours; with
            // several, one that did not answer might.
            unclaimed.maybe_granted = engine.quorum().len() > 1;
        }
        acquisition.wait(refused).await?;
    }
}

/// A lease that may exist on the servers without a guard for it: after a request whose reply
/// was lost, or while a request is in flight. If the acquire ends without a guard (error or
/// cancellation), the lease is deleted in the background by token, and a queued waiter
/// leaves the queue.
struct Unclaimed<'a, C: Claim> {
    engine: &'a Arc<Engine>,
    claim: &'a C,
    lease: &'a Arc<Lease>,
    maybe_granted: bool,
    queued: bool,
}

impl<C: Claim> Drop for Unclaimed<'_, C> {
    fn drop(&mut self) {
        if self.maybe_granted {
            self.engine.release_in_background(self.lease.clone());
        }
        if self.queued
            && let Some(call) = self.claim.leave_queue(self.lease)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let engine = self.engine.clone();
            runtime.spawn(async move {
                engine
                    .quorum()
                    .broadcast(call, "leaving the wait queue")
                    .await;
            });
        }
    }
}

/// One call to `acquire`: the attempts, the retry schedule, and the subscription to the
/// release channel.
struct Acquisition<'a, C> {
    engine: &'a Arc<Engine>,
    claim: Arc<C>,
    lease: Arc<Lease>,
    ask: &'a Ask,
    node_timeout: Duration,
    started: Instant,
    deadline: Option<Instant>,
    rng: fastrand::Rng,
    failed: u32,
    wakeups: Option<Watch>,
    may_subscribe: bool,
}

impl<'a, C: Claim> Acquisition<'a, C> {
    fn new(engine: &'a Arc<Engine>, claim: Arc<C>, lease: Arc<Lease>, ask: &'a Ask) -> Self {
        let started = Instant::now();
        Self {
            engine,
            claim,
            lease,
            ask,
            node_timeout: ask.timing.node_timeout(engine.quorum().len()),
            started,
            deadline: ask.retry.time_limit().map(|t| started + t),
            rng: fastrand::Rng::new(),
            failed: 0,
            wakeups: None,
            may_subscribe: true,
        }
    }

    /// One round over the backends; the fence when granted.
    async fn attempt(&mut self) -> Result<u64, Refused> {
        if let Some(wakeups) = self.wakeups.as_mut() {
            wakeups.mark_seen();
        }
        let sent = Instant::now();
        let timing = self.ask.timing;
        let limit = self.node_timeout;
        let (claim, lease) = (&self.claim, &self.lease);
        let attempt = |backend: Arc<Backend>| {
            let (claim, lease) = (claim.clone(), lease.clone());
            async move { vote(&backend, &*claim, &lease, &timing, limit).await }
        };
        let raise = |backend: Arc<Backend>, fence: u64, limit: Duration| {
            let call = claim.raise_fence(lease, fence);
            async move {
                backend
                    .call(&call, "raising the fence counter", limit, Durability::Plain)
                    .await
                    .map(drop)
            }
        };
        match self
            .engine
            .quorum()
            .acquire(attempt, raise, timing.valid_until(sent))
            .await
        {
            Round::Granted { fence } if self.lease.extended(sent, &timing) => {
                if self.ask.auto_renew {
                    self.lease.start_renewal(timing, sent, self.ask.max_hold);
                    self.engine.renew(self.lease.clone());
                }
                Ok(fence)
            }
            // The validity ran out between the round's check and now: as late as a late reply,
            // and cleaned up the same way.
            Round::Granted { .. } => Err(Refused {
                error: Error::Lost(Lost::Expired),
                holder_remaining: None,
                granted_on: Vec::new(),
            }),
            Round::Refused(refused) => Err(refused),
        }
    }

    /// Waits before the next attempt, or returns the error that ends the acquire.
    async fn wait(&mut self, refused: Refused) -> Result<(), Error> {
        let contended = matches!(refused.error, Error::Contended { .. });
        if refused.error.is_permanent() {
            // A retry would meet the same refusal (wrong type, permission denied, ...).
            return Err(refused.error);
        }
        self.failed = self.failed.saturating_add(1);
        let Some(backoff) = self.ask.retry.delay_after(self.failed, &mut self.rng) else {
            return Err(refused.error);
        };
        // Subscribe to the release channel, then retry at once: a release between the failed
        // attempt and the subscription is seen by that retry, any later one wakes us.
        let just_subscribed = contended && self.wakeups.is_none() && self.may_subscribe;
        if just_subscribed {
            self.may_subscribe = false;
            self.wakeups = self.engine.watch(&self.claim.channel(&self.lease)).await;
        }
        // The retry policy's delay is the longest wait; a release wakes us sooner, and the lock
        // is free anyway when the holder's lease runs out. A queued waiter also comes back in
        // time to keep its place.
        let mut delay = match refused.holder_remaining {
            _ if just_subscribed && self.wakeups.is_some() => Duration::ZERO,
            Some(remaining) => backoff.min(remaining),
            None => backoff,
        };
        if let Some(refresh) = self.claim.refresh_every() {
            delay = delay.min(refresh);
        }
        if let Some(deadline) = self.deadline {
            let now = Instant::now();
            if now >= deadline {
                return Err(match refused.error {
                    Error::Contended { remaining_ttl } => Error::TimedOut {
                        waited: now - self.started,
                        remaining_ttl,
                    },
                    other => other,
                });
            }
            delay = delay.min(deadline - now);
        }
        // Give back what a failed round won, so that competing clients can reach a majority
        // (keeping it would let split votes repeat until every lease expires). This finishes
        // before the next attempt, which reuses the token and must not be undone by it.
        let give_back = async {
            if !refused.granted_on.is_empty() {
                self.engine
                    .give_back(&self.lease, &refused.granted_on)
                    .await;
            }
        };
        // With several backends, waiters woken by the same release would all send their
        // retries at once and split the votes between them; a little spread lets one win.
        let spread = if self.engine.quorum().len() > 1 {
            Duration::from_micros(self.rng.u64(0..2_000))
        } else {
            Duration::ZERO
        };
        let (claim, lease) = (&self.claim, &self.lease);
        let woken = async {
            let Some(watch) = self.wakeups.as_mut() else {
                tokio::time::sleep(delay).await;
                return true;
            };
            let timer = tokio::time::sleep(delay);
            tokio::pin!(timer);
            loop {
                tokio::select! {
                    () = &mut timer => return true,
                    woken = watch.changed() => match woken {
                        None => return false,
                        Some(payload) if claim.woken_by(lease, &payload) => {
                            tokio::time::sleep(spread).await;
                            return true;
                        }
                        Some(_) => {}
                    },
                }
            }
        };
        let ((), subscribed) = tokio::join!(give_back, woken);
        if !subscribed {
            // The subscriber connection broke: poll for now, subscribe again next time.
            self.wakeups = None;
            self.may_subscribe = true;
        }
        Ok(())
    }
}

/// One backend's vote in an attempt. A grant too few replicas acknowledged is given back on
/// that backend at once (a failover could lose it) and counts as that backend's failure.
async fn vote<C: Claim>(
    backend: &Backend,
    claim: &C,
    lease: &Lease,
    timing: &LeaseTiming,
    limit: Duration,
) -> Vote {
    const CONTEXT: &str = "acquiring a lease";
    let call = claim.attempt(lease, timing);
    match backend
        .call(&call, CONTEXT, limit, Durability::Replicated)
        .await
    {
        Ok(reply) => claim
            .vote(&reply)
            .unwrap_or_else(|| Vote::Failed(backend.protocol_failure(CONTEXT))),
        Err(Error::Backend(e)) if e.kind() == BackendErrorKind::NotReplicated => {
            let _ = backend
                .call(
                    &lease.release_call(),
                    "releasing an unreplicated lease",
                    backend.command_timeout(),
                    Durability::Plain,
                )
                .await;
            Vote::Failed(e)
        }
        Err(Error::Backend(e)) => Vote::Failed(e),
        Err(fatal) => Vote::Fatal(fatal),
    }
}
