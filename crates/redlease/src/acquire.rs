//! Taking a hold, for every primitive: the attempt loop, its retry schedule, waiting for a
//! release to wake this waiter, giving back what a failed round won, and cleanup when an
//! attempt's fate is unknown. A primitive says what to send and how to read the answers
//! ([`Claim`]).
//!
//! Waiting: a failed attempt lists the waiter (its token, the primitive's mode byte and the
//! client's wake channel) on the backend whose wake-ups reach this client, and a release hands
//! the lock to the oldest listed waiter there: it sets the lock key to that waiter's token for
//! a short claim and tells the waiter, who is then the holder. No timer lies on that path. On
//! one backend the waiter returns at once, trusting the claim from the send time of the
//! attempt that listed it (the claim started later, on the server), and confirms the lease
//! with its own TTL in the background. With several backends the waiter holds that one
//! backend — the arbiter of its client's waiters, which only it can be handed — and asks the
//! others at once: waiters cannot split the votes among themselves, since one backend is
//! already theirs alone (see DESIGN.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::backend::{Backend, Durability};
use crate::engine::Engine;
use crate::error::{BackendErrorKind, Error};
use crate::lease::Lease;
use crate::outcome::Lost;
use crate::quorum::{Refused, Round, Vote};
use crate::retry::Retry;
use crate::script::{Call, Code, Reply, Sequence};
use crate::subscribe::{Handed, Watch};
use crate::telemetry;
use crate::timing::LeaseTiming;

/// What earlier attempts of one acquire may have left on a server.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Earlier {
    /// The waiter entry may be listed.
    pub(crate) listed: bool,
    /// An attempt's outcome is unknown: the hold may be ours already.
    pub(crate) unknown: bool,
}

/// How a fresh attempt (plain commands, no script) went on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// The hold is ours, with this fence.
    Granted(u64),
    /// Someone else holds it (or a key is not what it should be): the script attempt says
    /// which, and lists the waiter.
    Taken,
    /// The hold was taken but cannot stand (its fence could not be drawn): it is given back,
    /// and the script attempt says why.
    Undo,
}

/// What one primitive's acquire sends, and how it reads the answers.
pub(crate) trait Claim: Send + Sync + 'static {
    /// The first attempt of an acquire, as plain commands where the primitive has a cheaper
    /// way than its script to take a free hold (Redis runs a short script several times more
    /// slowly than the commands inside it). `None` to always use [`Claim::attempt`].
    fn fresh_attempt(&self, _lease: &Lease, _timing: &LeaseTiming) -> Option<Sequence> {
        None
    }

    /// Reads the replies of [`Claim::fresh_attempt`]'s commands.
    fn fresh_outcome(&self, _replies: &[redis::RedisResult<redis::Value>]) -> Fresh {
        Fresh::Taken
    }

    /// One attempt's call to one backend. Every attempt carries the lease's token, so a retry
    /// that finds our own token counts as a grant (when `earlier.unknown`). `entry` is the
    /// waiter entry to list if the hold is not to be had now (on one backend only).
    fn attempt(
        &self,
        lease: &Lease,
        timing: &LeaseTiming,
        entry: Option<&str>,
        earlier: Earlier,
    ) -> Call;

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

    /// The mode byte of this claim's waiter entries.
    fn entry_mode(&self) -> char;

    /// A hold a release handed to this waiter is taken as it is: what came with it (a
    /// semaphore permit's slot) is the claim's to keep.
    fn take_handed(&self, _handed: Handed) {}
}

/// What a caller asked for, validated.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    /// How long a hold handed to a waiter by a release is kept for it before it confirms.
    pub(crate) claim: LeaseTiming,
    pub(crate) timing: LeaseTiming,
    pub(crate) retry: Retry,
    pub(crate) auto_renew: bool,
    pub(crate) max_hold: Option<Duration>,
    /// How often a listed waiter retries at least, keeping the waiters list alive.
    pub(crate) refresh_every: Duration,
    /// Redlock fencing: the call that raises one backend's fence counter to at least a fence
    /// (every primitive's counter is the name's one).
    pub(crate) raise_fence: fn(&Lease, u64) -> Call,
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
    let span = telemetry::acquire_span(lease.name());
    let mut acquisition = Acquisition::new(engine, claim, lease.clone(), ask);
    let result = attempts(&mut acquisition).instrument(span.clone()).await;
    if let Ok(fence) = result {
        telemetry::granted(&span, fence);
    }
    engine.meter().acquire_finished(
        lease.name(),
        &result,
        acquisition.started.elapsed(),
        acquisition.waited,
    );
    result.map(|fence| Granted { lease, fence })
}

/// The attempts of one acquire, until one is granted (the fence) or the acquire fails.
async fn attempts<C: Claim>(acquisition: &mut Acquisition<'_, C>) -> Result<u64, Error> {
    let (engine, lease) = (acquisition.engine, acquisition.lease.clone());
    let mut unclaimed = Unclaimed {
        engine,
        lease: &lease,
        maybe_granted: false,
        listed: None,
    };
    loop {
        unclaimed.maybe_granted = true;
        let refused = match acquisition.attempt().await {
            Ok(fence) => {
                unclaimed.maybe_granted = false;
                unclaimed.listed = None;
                return Ok(fence);
            }
            Err(refused) => refused,
        };
        unclaimed.listed.clone_from(&acquisition.listed_entry());
        let contended = matches!(refused.error, Error::Contended { .. });
        if contended {
            engine.meter().contended(lease.name());
        }
        let known = contended && engine.quorum().len() == 1;
        if known {
            // A single backend that answered "held by another" holds no grant of ours; with
            // several, one that did not answer might.
            unclaimed.maybe_granted = false;
        } else {
            acquisition.earlier.unknown = true;
        }
        acquisition.wait(refused).await?;
    }
}

/// What may exist on the servers without a guard for it: a hold whose reply was lost, or
/// whose request is in flight, and a listed waiter entry. If the acquire ends without a guard
/// (error or cancellation), the hold is deleted in the background by token, and the entry
/// leaves the waiters (waking the next one if the lock is free).
struct Unclaimed<'a> {
    engine: &'a Arc<Engine>,
    lease: &'a Arc<Lease>,
    maybe_granted: bool,
    listed: Option<String>,
}

impl Drop for Unclaimed<'_> {
    fn drop(&mut self) {
        if self.maybe_granted {
            self.engine.release_in_background(self.lease.clone());
        }
        if let Some(entry) = &self.listed
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let call = self.lease.leave_call(entry);
            let engine = self.engine.clone();
            runtime.spawn(async move {
                engine.quorum().broadcast(call, "leaving the waiters").await;
            });
        }
    }
}

/// One call to `acquire`: the attempts, the retry schedule, and the waiter's registration.
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
    earlier: Earlier,
    /// The waiter entry, once wake-ups can reach this client.
    entry: Option<Arc<str>>,
    /// The last attempt carried the entry, on this backend.
    entry_sent_to: Option<usize>,
    /// When the first attempt that may have listed the entry (since the last hand-off) was
    /// sent: a release that hands this waiter the lock runs after that.
    listed_since: Option<Instant>,
    wakeups: Option<Watch>,
    may_subscribe: bool,
    /// A release handed this waiter the hold.
    handed: Option<Handed>,
    /// The time spent between attempts so far.
    waited: Duration,
    /// The last wait was cut short to list the waiter again (see [`Acquisition::wait`]).
    relisted: bool,
    /// The last attempt followed a hand-off: the arbiter's grant in it was handed to us.
    handed_round: bool,
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
            earlier: Earlier::default(),
            entry: None,
            entry_sent_to: None,
            listed_since: None,
            wakeups: None,
            may_subscribe: true,
            handed: None,
            waited: Duration::ZERO,
            relisted: false,
            handed_round: false,
        }
    }

    /// The entry an attempt may have listed, for cleanup.
    fn listed_entry(&self) -> Option<String> {
        self.earlier
            .listed
            .then(|| self.entry.as_deref().map(str::to_owned))
            .flatten()
    }

    /// The waiter entry, when wake-ups can reach this client now, and the backend to list
    /// it on.
    fn entry_target(&mut self) -> Option<(Arc<str>, usize)> {
        let backend = self.engine.wake_backend()?;
        let entry = self.entry.get_or_insert_with(|| {
            format!(
                "{}{}{}",
                self.lease.token().as_str(),
                self.claim.entry_mode(),
                self.engine.wake_channel()
            )
            .into()
        });
        Some((entry.clone(), backend))
    }

    /// One round over the backends (or a hand-off taken as it is); the fence when granted.
    async fn attempt(&mut self) -> Result<u64, Refused> {
        self.handed_round = self.handed.is_some();
        if let Some(handed) = self.handed.take()
            && self.take_hand_off()
        {
            self.claim.take_handed(handed);
            return Ok(handed.fence);
        }
        let sent = Instant::now();
        tracing::trace!(target: "redlease::handoff", name = self.lease.name(), "attempt sent");
        let timing = self.ask.timing;
        let limit = self.node_timeout;
        let target = self.entry_target();
        self.entry_sent_to = target.as_ref().map(|&(_, backend)| backend);
        let earlier = self.earlier;
        // Only an acquire's first attempt tries the fresh way: a retry has met the hold taken.
        let first = self.failed == 0;
        if target.is_some() {
            self.earlier.listed = true;
            self.listed_since.get_or_insert(sent);
        }
        let (claim, lease) = (&self.claim, &self.lease);
        let attempt = |index: usize, backend: Arc<Backend>| {
            let entry = target
                .as_ref()
                .filter(|&&(_, at)| at == index)
                .map(|(entry, _)| entry.clone());
            let (claim, lease) = (claim.clone(), lease.clone());
            async move {
                let mut found_held = false;
                if let Some(sequence) = claim.fresh_attempt(&lease, &timing).filter(|_| first) {
                    match fresh_vote(&backend, &*claim, &lease, &sequence, limit).await {
                        Ok(vote) => return vote,
                        Err(FreshFallback { held }) => found_held = held,
                    }
                }
                let call = claim.attempt(&lease, &timing, entry.as_deref(), earlier);
                match vote(&backend, &*claim, &lease, &call, limit).await {
                    Vote::Granted(fence) if found_held => Vote::GrantedAfterHeld(fence),
                    vote => vote,
                }
            }
        };
        let raise = |backend: Arc<Backend>, fence: u64, limit: Duration| {
            let call = (self.ask.raise_fence)(lease, fence);
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
            .acquire(attempt, raise, self.entry_sent_to, timing.valid_until(sent))
            .await
        {
            Round::Granted { fence } if self.lease.extended(sent, &timing) => {
                tracing::trace!(target: "redlease::handoff", name = self.lease.name(), fence, "lease granted");
                self.renew_from(sent);
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

    /// Starts renewal from a grant whose request was sent at `sent`, if asked for.
    fn renew_from(&self, sent: Instant) {
        if self.ask.auto_renew {
            self.lease
                .start_renewal(self.ask.timing, sent, self.ask.max_hold);
            self.engine.renew(self.lease.clone());
        }
    }

    /// A release handed this waiter the lock: on one backend, takes it as it is when the claim
    /// can still be trusted for a while, and confirms it in the background; `false` when the
    /// next attempt should confirm it first (several backends, or too little of the claim
    /// left).
    fn take_hand_off(&mut self) -> bool {
        let Some(listed) = self.listed_since.take() else {
            return false;
        };
        let claim = self.ask.claim;
        let trusted_until = claim.valid_until(listed);
        let worth_it = trusted_until.saturating_duration_since(Instant::now()) >= claim.trusted / 2;
        if self.engine.quorum().only().is_none()
            || !worth_it
            || !self.lease.extended(listed, &claim)
        {
            return false;
        }
        tracing::trace!(target: "redlease::handoff", name = self.lease.name(), "lease granted");
        let confirm = confirm(
            self.engine.clone(),
            self.lease.clone(),
            self.ask.clone(),
            listed,
        );
        tokio::spawn(confirm);
        true
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
        // Register for this waiter's wake-up. If the failed attempt could not list the waiter
        // (wake-ups did not reach this client yet), retry at once to list it: a release in
        // between is seen by that retry, any later one wakes us.
        let mut list_now = false;
        if contended && self.wakeups.is_none() && self.may_subscribe {
            self.may_subscribe = false;
            self.wakeups = self.engine.watch(self.lease.token().as_str()).await;
            list_now = self.wakeups.is_some() && self.entry_sent_to.is_none();
        }
        // A round that the backend listing the waiter granted took the entry off the list (a
        // grant does), and the round failed elsewhere (several backends): no release would
        // wake us, so list again at once, but not twice in a row (that would spin while
        // someone else keeps the other backends).
        let unlisted = self
            .entry_sent_to
            .is_some_and(|backend| refused.granted_on.contains(&backend));
        // A round after a hand-off that failed elsewhere (a newcomer took the other backends
        // first) keeps the arbiter's grant for one more round at once: given back, the arbiter
        // would be free, and a newcomer whose request reaches it only then would win. The
        // newcomer finds it held and gives its backends back (see `quorum::decide`).
        let keep_arbiter = unlisted && contended && self.handed_round;
        let mut give_back_on = refused.granted_on;
        if keep_arbiter {
            give_back_on.retain(|&backend| Some(backend) != self.entry_sent_to);
        }
        if unlisted {
            self.earlier.listed = false;
            list_now |= contended && self.wakeups.is_some() && !self.relisted;
        }
        list_now |= keep_arbiter;
        // The kept round does not count: if it fails too, the next one lists the waiter again
        // (the arbiter it gives back goes to the next waiter), else it would poll.
        self.relisted = unlisted && list_now && !keep_arbiter;
        // A listed waiter that wake-ups reach waits for its hand-off: it comes back only to
        // keep the waiters list alive, or when the holder's lease runs out (the holder may be
        // gone without a release). Otherwise the retry policy's delay is the longest wait.
        let handed_over = self.earlier.listed && self.wakeups.is_some();
        let pause = if handed_over {
            self.ask.refresh_every
        } else {
            backoff
        };
        let mut delay = match refused.holder_remaining {
            _ if list_now => Duration::ZERO,
            Some(remaining) => pause.min(remaining),
            None => pause,
        };
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
            if !give_back_on.is_empty() {
                self.engine.give_back(&self.lease, &give_back_on).await;
            }
        };
        let lease = &self.lease;
        let wakeups = self.wakeups.as_mut();
        let woken = async {
            // No timer on the way to an immediate retry: even a zero sleep waits for the
            // timer wheel's next millisecond tick.
            if delay.is_zero() {
                return (None, true);
            }
            let Some(watch) = wakeups else {
                tokio::time::sleep(delay).await;
                return (None, true);
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => (None, true),
                handed = watch.handed() => {
                    if handed.is_some() {
                        tracing::trace!(target: "redlease::handoff", name = lease.name(), "waiter woken");
                    }
                    (handed, handed.is_some())
                }
            }
        };
        let waiting_since = Instant::now();
        let ((), (handed, subscribed)) = tokio::join!(give_back, woken);
        self.waited += waiting_since.elapsed();
        self.handed = handed;
        if handed.is_none() && !subscribed {
            // The subscriber connection broke: poll for now, register again next time.
            self.wakeups = None;
            self.may_subscribe = true;
        }
        Ok(())
    }
}

/// Confirms a lease a release handed to this waiter (and that it took as it was): the hold
/// gets the waiter's value and TTL. Validity then counts from the confirmation's send time;
/// renewal starts from there (a hold cap from `granted`). A confirmation that finds the lease
/// gone (it was released meanwhile, or the claim ran out) leaves it to be lost at its
/// deadline; one that fails to reach the server, likewise.
async fn confirm(engine: Arc<Engine>, lease: Arc<Lease>, ask: Ask, granted: Instant) {
    const CONTEXT: &str = "confirming a handed-over lease";
    let sent = Instant::now();
    let call = lease.confirm_call(&ask.timing);
    let Some(backend) = engine.quorum().only() else {
        return;
    };
    let reply = backend
        .call(&call, CONTEXT, ask.timing.trusted, Durability::Replicated)
        .await;
    if reply.is_ok_and(|reply| reply.ownership().is_ok())
        && lease.extended(sent, &ask.timing)
        && ask.auto_renew
    {
        lease.start_renewal(ask.timing, granted, ask.max_hold);
        engine.renew(lease);
    }
}

/// One backend's vote in an attempt. A grant too few replicas acknowledged is given back on
/// that backend at once (a failover could lose it) and counts as that backend's failure.
async fn vote<C: Claim>(
    backend: &Backend,
    claim: &C,
    lease: &Lease,
    call: &Call,
    limit: Duration,
) -> Vote {
    match backend
        .call(call, ACQUIRING, limit, Durability::Replicated)
        .await
    {
        Ok(reply) => claim
            .vote(&reply)
            .unwrap_or_else(|| Vote::Failed(backend.protocol_failure(ACQUIRING))),
        Err(Error::Backend(e)) if e.kind() == BackendErrorKind::NotReplicated => {
            give_back_on(backend, lease).await;
            Vote::Failed(e)
        }
        Err(Error::Backend(e)) => Vote::Failed(e),
        Err(fatal) => Vote::Fatal(fatal),
    }
}

/// A fresh attempt that the script attempt must follow, to list the waiter or to say what is
/// wrong.
struct FreshFallback {
    /// The fresh attempt found the lease held by another.
    held: bool,
}

/// One backend's vote in a fresh attempt (see [`Claim::fresh_attempt`]).
async fn fresh_vote<C: Claim>(
    backend: &Backend,
    claim: &C,
    lease: &Lease,
    sequence: &Sequence,
    limit: Duration,
) -> Result<Vote, FreshFallback> {
    let (replies, shortfall) = match backend
        .run(sequence, ACQUIRING, limit, Durability::Replicated)
        .await
    {
        Ok(answer) => answer,
        Err(Error::Backend(e)) => return Ok(Vote::Failed(e)),
        Err(fatal) => return Ok(Vote::Fatal(fatal)),
    };
    match (claim.fresh_outcome(&replies), shortfall) {
        (Fresh::Granted(fence), None) => Ok(Vote::Granted(fence)),
        (Fresh::Granted(_), Some(shortfall)) => {
            give_back_on(backend, lease).await;
            Ok(Vote::Failed(shortfall))
        }
        (Fresh::Undo, _) => {
            give_back_on(backend, lease).await;
            Err(FreshFallback { held: false })
        }
        (Fresh::Taken, _) => Err(FreshFallback { held: true }),
    }
}

/// Deletes a hold of `lease` on one backend (by token), ignoring failures: the hold then
/// expires with its TTL.
async fn give_back_on(backend: &Backend, lease: &Lease) {
    let _ = backend
        .call(
            &lease.release_call(),
            "giving back a lease",
            backend.command_timeout(),
            Durability::Plain,
        )
        .await;
}

const ACQUIRING: &str = "acquiring a lease";
