//! The lock's scripts, how each call is built, and what their replies mean.

use crate::keys::Keys;
use crate::lease::{HoldScripts, Lease};
use crate::script::{Call, Code, Reply, Script};
use crate::timing::LeaseTiming;
use crate::token::Token;

static ACQUIRE: Script = Script::new(include_str!("acquire.lua"));
static ACQUIRE_FAIR: Script = Script::new(include_str!("acquire_fair.lua"));
static EXTEND: Script = Script::new(include_str!("extend.lua"));
static RELEASE: Script = Script::new(include_str!("release.lua"));
static RAISE_FENCE: Script = Script::new(include_str!("raise_fence.lua"));
static LEAVE_QUEUE: Script = Script::new(include_str!("leave_queue.lua"));
static FORCE_RELEASE: Script = Script::new(include_str!("force_release.lua"));

/// Every script of the lock, loaded when a client connects.
pub(crate) static ALL: [&Script; 7] = [
    &ACQUIRE,
    &ACQUIRE_FAIR,
    &EXTEND,
    &RELEASE,
    &RAISE_FENCE,
    &LEAVE_QUEUE,
    &FORCE_RELEASE,
];

/// How a lock's lease is extended and released.
pub(crate) static HOLD: HoldScripts = HoldScripts { extend, release };

/// `SET NX PX` and the fence increment (see `acquire.lua`); replies as the default
/// [`Claim::vote`](crate::acquire::Claim::vote) reads them.
pub(crate) fn acquire(lease: &Lease, timing: &LeaseTiming) -> Call {
    let keys = lease.keys();
    ACQUIRE
        .call(&[&keys.lock, &keys.fence])
        .arg(lease.token().as_str())
        .arg(timing.millis)
        .arg(lease.label())
}

/// The fair variant: waiters served in arrival order, a queue entry living `entry_ms` unless
/// refreshed by another attempt (see `acquire_fair.lua`).
pub(crate) fn acquire_fair(lease: &Lease, timing: &LeaseTiming, entry_ms: u64) -> Call {
    let keys = lease.keys();
    ACQUIRE_FAIR
        .call(&[&keys.lock, &keys.fence, &keys.queue(), &keys.queue_expiry()])
        .arg(lease.token().as_str())
        .arg(timing.millis)
        .arg(entry_ms)
        .arg(lease.label())
}

/// Compare-and-expire; its reply is read with [`Reply::ownership`].
fn extend(lease: &Lease, millis: u64) -> Call {
    EXTEND
        .call(&[&lease.keys().lock])
        .arg(lease.token().as_str())
        .arg(millis)
}

/// Compare-and-delete, waking waiters; its reply is read with [`Reply::ownership`].
fn release(lease: &Lease) -> Call {
    let keys = lease.keys();
    RELEASE
        .call(&[&keys.lock, &keys.queue()])
        .arg(lease.token().as_str())
}

/// Raises the fence counter to at least `fence` (Redlock fencing; see DESIGN.md).
pub(crate) fn raise_fence(keys: &Keys, fence: u64) -> Call {
    RAISE_FENCE.call(&[&keys.fence]).arg(fence)
}

/// Takes a fair waiter out of the queue, waking the others if the lock is free.
pub(crate) fn leave_queue(keys: &Keys, token: &Token) -> Call {
    LEAVE_QUEUE
        .call(&[&keys.lock, &keys.queue(), &keys.queue_expiry()])
        .arg(token.as_str())
}

/// Deletes the lock key whoever holds it (keeping the fence counter) and wakes waiters.
pub(crate) fn force_release(keys: &Keys) -> Call {
    FORCE_RELEASE.call(&[&keys.lock])
}

/// What [`force_release`] deleted: the value (token and label), or `None` if nobody held it.
/// `Err(())` for a reply the script never gives.
pub(crate) fn deleted(reply: &Reply) -> Result<Option<String>, ()> {
    match reply.code {
        Code::Done => reply.text().map(Some).ok_or(()),
        Code::Gone => Ok(None),
        Code::Held => Err(()),
    }
}
