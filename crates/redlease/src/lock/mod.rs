//! The lock: one holder at a time per name. Its scripts, its claim on the shared acquire loop,
//! its guard, and the operator's view of it.

mod guard;
mod inspect;
mod scripts;

use std::sync::Arc;

use crate::acquire::{self, Ask, Claim, Earlier, Fresh};
use crate::engine::Engine;
use crate::error::Error;
use crate::lease::{HandOff, HoldScripts, Lease};
use crate::options::{Checked, LockOptions};
use crate::script::{Call, Sequence};
use crate::timing::LeaseTiming;
use crate::token::Token;
pub use guard::Guard;
pub(crate) use guard::derefs_to_guard;
pub use inspect::{Holder, LockInfo};
pub(crate) use inspect::{force_release, inspect, list};
pub(crate) use scripts::ALL as SCRIPTS;
pub(crate) use scripts::{
    HAND_OFF, SHARED_LUA, WAITING, attempt_args, flag, freeing, giving_back, hand_off_args,
    waiters_ttl,
};

/// The lock's claim: plain (whoever asks first while it is free gets it; wake-ups go to the
/// oldest waiter), or fair (a free lock goes to the oldest waiter only).
struct LockClaim {
    fair: bool,
}

impl Claim for LockClaim {
    fn fresh_attempt(&self, lease: &Lease, timing: &LeaseTiming) -> Option<Sequence> {
        // A fair lock must look at its queue first: only the script can.
        (!self.fair).then(|| scripts::fresh_acquire(lease, timing))
    }

    fn fresh_outcome(&self, replies: &[redis::RedisResult<redis::Value>]) -> Fresh {
        scripts::fresh_outcome(replies)
    }

    fn attempt(
        &self,
        lease: &Lease,
        timing: &LeaseTiming,
        entry: Option<&str>,
        earlier: Earlier,
    ) -> Call {
        scripts::acquire(lease, timing, entry, earlier, self.fair)
    }

    fn entry_mode(&self) -> char {
        if self.fair { 'f' } else { 'n' }
    }
}

/// How this client's releases hand a hold to the next waiter (for every primitive: they share
/// the waiting protocol).
pub(crate) fn hand_off(engine: &Engine) -> HandOff {
    HandOff {
        claim_ms: u64::try_from(scripts::CLAIM_TTL.as_millis()).unwrap_or(u64::MAX),
        skip_unheard: engine.counts_receivers(),
    }
}

/// A new hold's lease on `name` (with the primitive's `scripts`) and what its acquire asks
/// for, from `options` checked against the client: the start of every primitive's acquire
/// (`hold`: how the primitive extends and releases).
pub(crate) fn prepare(
    engine: &Engine,
    name: &str,
    options: &LockOptions,
    hold: &'static HoldScripts,
) -> Result<(Arc<Lease>, Ask, Checked), Error> {
    let keys = engine.keys(name)?;
    let checked = options.check(engine.drift(), engine.quorum().len())?;
    let lease = Arc::new(Lease::new(
        name,
        keys,
        Token::generate()?,
        checked.label.clone(),
        hold,
        hand_off(engine),
        engine.meter(),
    ));
    let ask = Ask {
        claim: engine.drift().lease(scripts::CLAIM_TTL)?,
        timing: checked.timing,
        retry: checked.retry.clone(),
        auto_renew: checked.auto_renew,
        max_hold: checked.max_hold,
        // Listed waiters retry three times per life of the waiters list, so that it outlives
        // every live waiter.
        refresh_every: waiters_ttl(&checked.timing) / 3,
        raise_fence: |lease, fence| scripts::raise_fence(lease.keys(), fence),
    };
    Ok((lease, ask, checked))
}

/// Takes the lock `name` as `options` say.
pub(crate) async fn acquire(
    engine: &Arc<Engine>,
    name: &str,
    options: &LockOptions,
) -> Result<Guard, Error> {
    let (lease, ask, checked) = prepare(engine, name, options, &scripts::HOLD)?;
    let claim = Arc::new(LockClaim { fair: checked.fair });
    let granted = acquire::acquire(engine, claim, lease, &ask).await?;
    Ok(Guard::new(engine.clone(), granted.lease, granted.fence))
}
