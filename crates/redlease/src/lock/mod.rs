//! The lock: one holder at a time per name. Its scripts, its claim on the shared acquire loop,
//! its guard, and the operator's view of it.

mod guard;
mod inspect;
mod scripts;

use std::sync::Arc;
use std::time::Duration;

use crate::acquire::{self, Ask, Claim};
use crate::engine::Engine;
use crate::error::Error;
use crate::lease::Lease;
use crate::options::{LockOptions, QUEUE_ENTRY_TTL};
use crate::script::Call;
use crate::timing::LeaseTiming;
use crate::token::Token;
pub use guard::Guard;
pub use inspect::{Holder, LockInfo};
pub(crate) use inspect::{force_release, inspect, list};
pub(crate) use scripts::ALL as SCRIPTS;

/// The lock's claim: plain, or fair with a queue entry of `queue_entry_ms`.
struct LockClaim {
    queue_entry_ms: Option<u64>,
}

impl Claim for LockClaim {
    fn attempt(&self, lease: &Lease, timing: &LeaseTiming) -> Call {
        match self.queue_entry_ms {
            None => scripts::acquire(lease, timing),
            Some(entry_ms) => scripts::acquire_fair(lease, timing, entry_ms),
        }
    }

    fn raise_fence(&self, lease: &Lease, fence: u64) -> Call {
        scripts::raise_fence(lease.keys(), fence)
    }

    fn leave_queue(&self, lease: &Lease) -> Option<Call> {
        self.queue_entry_ms
            .map(|_| scripts::leave_queue(lease.keys(), lease.token()))
    }

    fn channel(&self, lease: &Lease) -> String {
        lease.keys().channel()
    }

    /// A release names the head of the fair queue: only that waiter needs to retry.
    fn woken_by(&self, lease: &Lease, payload: &str) -> bool {
        self.queue_entry_ms.is_none() || payload.is_empty() || payload == lease.token().as_str()
    }

    fn refresh_every(&self) -> Option<Duration> {
        self.queue_entry_ms.map(|_| QUEUE_ENTRY_TTL / 3)
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
    ));
    let claim = Arc::new(LockClaim {
        queue_entry_ms: checked.queue_entry_ms,
    });
    let ask = Ask {
        timing: checked.timing,
        retry: checked.retry,
        auto_renew: checked.auto_renew,
        max_hold: checked.max_hold,
    };
    let granted = acquire::acquire(engine, claim, lease, &ask).await?;
    Ok(Guard::new(engine.clone(), granted.lease, granted.fence))
}
