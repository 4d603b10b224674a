//! The lock: one holder at a time per name. Its scripts, its claim on the shared acquire loop,
//! its guard, and the operator's view of it.

mod guard;
mod inspect;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use crate::acquire::{self, Ask, Claim, Earlier, Fresh};
use crate::engine::Engine;
use crate::error::Error;
use crate::lease::{HandOff, Lease};
use crate::options::LockOptions;
use crate::script::{Call, Sequence};
use crate::timing::LeaseTiming;
use crate::token::Token;
pub use guard::Guard;
pub use inspect::{Holder, LockInfo};
pub(crate) use inspect::{force_release, inspect, list};
pub(crate) use scripts::ALL as SCRIPTS;

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

    fn raise_fence(&self, lease: &Lease, fence: u64) -> Call {
        scripts::raise_fence(lease.keys(), fence)
    }

    fn confirm(&self, lease: &Lease, timing: &LeaseTiming) -> Call {
        scripts::confirm(lease, timing)
    }

    fn leave(&self, lease: &Lease, entry: &str) -> Call {
        scripts::leave(lease, entry)
    }

    fn entry_mode(&self) -> char {
        if self.fair { 'f' } else { 'n' }
    }

    fn refresh_every(&self, timing: &LeaseTiming) -> Duration {
        scripts::waiters_ttl(timing) / 3
    }
}

/// How this client's releases hand the lock to the next waiter.
fn hand_off(engine: &Engine) -> HandOff {
    HandOff {
        claim_ms: u64::try_from(scripts::CLAIM_TTL.as_millis()).unwrap_or(u64::MAX),
        skip_unheard: engine.counts_receivers(),
    }
}

/// Takes the lock `name` as `options` say.
pub(crate) async fn acquire(
    engine: &Arc<Engine>,
    name: &str,
    options: &LockOptions,
) -> Result<Guard, Error> {
    let keys = engine.keys(name)?;
    let checked = options.check(engine.drift(), engine.quorum().len())?;
    let lease = Arc::new(Lease::new(
        name,
        keys,
        Token::generate()?,
        checked.label,
        &scripts::HOLD,
        hand_off(engine),
        engine.meter(),
    ));
    let claim = Arc::new(LockClaim { fair: checked.fair });
    let ask = Ask {
        claim: engine.drift().lease(scripts::CLAIM_TTL)?,
        timing: checked.timing,
        retry: checked.retry,
        auto_renew: checked.auto_renew,
        max_hold: checked.max_hold,
    };
    let granted = acquire::acquire(engine, claim, lease, &ask).await?;
    Ok(Guard::new(engine.clone(), granted.lease, granted.fence))
}
