//! The lock's scripts, how each call is built, and what their replies mean.

use std::time::Duration;

use redis::{RedisResult, Value};

use crate::acquire::{Earlier, Fresh};
use crate::keys::{Keys, Suffix};
use crate::lease::{HandOff, HoldScripts, Lease};
use crate::script::{Call, Code, Joined, Reply, Script, Sequence};
use crate::timing::LeaseTiming;

/// `SHARED`, the value of a lock key that readers share (for every script that may see or set
/// it).
pub(crate) const SHARED_LUA: &str = include_str!("shared.lua");
/// `hand_off`, which gives a freed lock to the next waiters (writer or readers); needs
/// [`SHARED_LUA`] before it.
pub(crate) const HAND_OFF: &str = include_str!("hand_off.lua");

/// `list_waiter` and `unlist_waiter`, for the waiter entry of every primitive's acquire script.
pub(crate) const WAITING: &str = include_str!("waiting.lua");

/// The value of a lock key that readers share, as `shared.lua` defines it.
pub(crate) const SHARED: &str = "--------------------------------shared by readers";

static ACQUIRE: Script = Script::new(&[WAITING, include_str!("acquire.lua")]);
static ACQUIRE_FAIR: Script = Script::new(&[
    SHARED_LUA,
    HAND_OFF,
    WAITING,
    include_str!("acquire_fair.lua"),
]);
static EXTEND: Script = Script::new(&[include_str!("extend.lua")]);
static CONFIRM: Script = Script::new(&[include_str!("confirm.lua")]);
static RELEASE: Script = Script::new(&[SHARED_LUA, HAND_OFF, include_str!("release.lua")]);
static RAISE_FENCE: Script = Script::new(&[include_str!("raise_fence.lua")]);
static LEAVE: Script = Script::new(&[SHARED_LUA, HAND_OFF, include_str!("leave.lua")]);
static FORCE_RELEASE: Script =
    Script::new(&[SHARED_LUA, HAND_OFF, include_str!("force_release.lua")]);
static INSPECT: Script = Script::new(&[SHARED_LUA, include_str!("inspect.lua")]);

/// Every script of the lock, loaded when a client connects.
pub(crate) static ALL: [&Script; 9] = [
    &ACQUIRE,
    &ACQUIRE_FAIR,
    &EXTEND,
    &CONFIRM,
    &RELEASE,
    &RAISE_FENCE,
    &LEAVE,
    &FORCE_RELEASE,
    &INSPECT,
];

/// How a lock's lease is extended and released.
pub(crate) static HOLD: HoldScripts = HoldScripts {
    extend,
    release,
    confirm,
    leave,
};

/// How long the waiters list lives without a new entry, at most.
const WAITERS_TTL_CAP: Duration = Duration::from_secs(3);

/// How long the waiters list lives without a new entry after a waiter asking for `timing`
/// lists itself: 3 s, or its lease's TTL if shorter, so that no entry outlives its waiter by
/// more than one TTL. Listed waiters retry at least every third of it, so the list outlives
/// every live waiter (of that TTL) and vanishes after the last.
pub(crate) fn waiters_ttl(timing: &LeaseTiming) -> Duration {
    WAITERS_TTL_CAP.min(timing.ttl)
}
/// How long a lock handed to a waiter is kept for it before the waiter confirms it with its
/// own TTL: the most a waiter whose process hangs can hold the lock up.
pub(crate) const CLAIM_TTL: Duration = Duration::from_millis(500);

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// One attempt (see `acquire.lua`, or `acquire_fair.lua` when `fair`): takes the lease, or
/// lists `entry` (if any) among the waiters. Replies as the default
/// [`Claim::vote`](crate::acquire::Claim::vote) reads them.
pub(crate) fn acquire(
    lease: &Lease,
    timing: &LeaseTiming,
    entry: Option<&str>,
    earlier: Earlier,
    fair: bool,
) -> Call {
    let keys = lease.keys();
    let call = if fair {
        freeing(&ACQUIRE_FAIR, keys)
    } else {
        // No hand-off here, so no readers' keys: the uncontended path stays as it was.
        ACQUIRE.call(&[
            keys.lock(),
            keys.key(Suffix::Fence),
            keys.key(Suffix::Waiters),
        ])
    };
    let call = attempt_args(call, lease, timing, entry, earlier).arg(flag(earlier.unknown));
    if fair {
        hand_off_args(call, lease.hand_off())
    } else {
        call
    }
}

/// The arguments every primitive's attempt starts with (`ARGV[1]`..`ARGV[6]` of each acquire
/// script): token, TTL, label, the waiter entry to list, the waiters list's life, and whether
/// the entry may be listed already.
pub(crate) fn attempt_args(
    call: Call,
    lease: &Lease,
    timing: &LeaseTiming,
    entry: Option<&str>,
    earlier: Earlier,
) -> Call {
    call.arg(lease.token().as_str())
        .arg(timing.millis)
        .arg(lease.label())
        .arg(entry.unwrap_or_default())
        .arg(millis(waiters_ttl(timing)))
        .arg(flag(earlier.listed))
}

/// A call that gives a hold back (or leaves the waiters) for `who` — the lease's token, or its
/// waiter entry — with `hand_off.lua`'s arguments, so that the next waiter gets it.
pub(crate) fn giving_back(call: Call, lease: &Lease, who: &str) -> Call {
    hand_off_args(call.arg(who), lease.hand_off())
}

/// The first attempt of a plain lock, without a script: `SET lock <token><label> NX PX ttl`
/// then `INCR fence`. When the lock is held, the counter is still raised: fences grow
/// strictly with every grant but may skip numbers.
pub(crate) fn fresh_acquire(lease: &Lease, timing: &LeaseTiming) -> Sequence {
    let keys = lease.keys();
    let mut set = redis::cmd("SET");
    set.arg(keys.lock())
        .arg(Joined(lease.token().as_str(), lease.label()))
        .arg("NX")
        .arg("PX")
        .arg(timing.millis);
    let mut incr = redis::cmd("INCR");
    incr.arg(keys.key(Suffix::Fence));
    Sequence::new([set, incr])
}

/// Reads [`fresh_acquire`]'s replies: granted when the `SET` was done and the counter gave a
/// fence; given back when the counter failed (it holds something else, which the script
/// attempt then reports).
pub(crate) fn fresh_outcome(replies: &[RedisResult<Value>]) -> Fresh {
    match replies {
        [Ok(Value::Okay), Ok(Value::Int(fence))] => match u64::try_from(*fence) {
            Ok(fence) if fence > 0 => Fresh::Granted(fence),
            _ => Fresh::Undo,
        },
        [Ok(Value::Okay), _] => Fresh::Undo,
        _ => Fresh::Taken,
    }
}

/// Confirms a lock a release handed to this waiter: its value and TTL; read with
/// [`Reply::ownership`].
fn confirm(lease: &Lease, timing: &LeaseTiming) -> Call {
    CONFIRM
        .call(&[lease.keys().lock()])
        .arg(lease.token().as_str())
        .arg(timing.millis)
        .arg(lease.label())
}

/// Compare-and-expire; its reply is read with [`Reply::ownership`].
fn extend(lease: &Lease, millis: u64) -> Call {
    EXTEND
        .call(&[lease.keys().lock()])
        .arg(lease.token().as_str())
        .arg(millis)
}

/// Compare-and-delete, or hand-off to the next waiter; its reply is read with
/// [`Reply::ownership`].
fn release(lease: &Lease) -> Call {
    let call = freeing(&RELEASE, lease.keys()).arg(lease.token().as_str());
    hand_off_args(call, lease.hand_off())
}

/// Raises the fence counter to at least `fence` (Redlock fencing; see DESIGN.md).
pub(crate) fn raise_fence(keys: &Keys, fence: u64) -> Call {
    RAISE_FENCE.call(&[keys.key(Suffix::Fence)]).arg(fence)
}

/// Takes a waiter's `entry` out of the waiters, handing the lock on if it was handed to this
/// waiter or is free.
fn leave(lease: &Lease, entry: &str) -> Call {
    let call = freeing(&LEAVE, lease.keys()).arg(entry);
    hand_off_args(call, lease.hand_off())
}

/// Deletes the lock key whoever holds it (keeping the fence counter), handing the lock to the
/// next waiter.
pub(crate) fn force_release(keys: &Keys, hand_off: HandOff) -> Call {
    hand_off_args(freeing(&FORCE_RELEASE, keys), hand_off)
}

/// A call of a script that may free the lock and hand it on (to a writer, or to readers): its
/// keys, the ones `hand_off.lua` takes.
pub(crate) fn freeing(script: &'static Script, keys: &Keys) -> Call {
    script.call(&[
        keys.lock(),
        keys.key(Suffix::Fence),
        keys.key(Suffix::Waiters),
        keys.key(Suffix::Readers),
        keys.key(Suffix::ReaderLabels),
    ])
}

/// The arguments of `hand_off.lua`: the claim's TTL, and whether an unheard waiter is skipped.
pub(crate) fn hand_off_args(call: Call, hand_off: HandOff) -> Call {
    call.arg(hand_off.claim_ms).arg(flag(hand_off.skip_unheard))
}

/// Reads what a name holds, whatever the primitive (see `inspect.lua`).
pub(crate) fn inspect(keys: &Keys) -> Call {
    INSPECT.call(&[
        keys.lock(),
        keys.key(Suffix::Fence),
        keys.key(Suffix::Waiters),
        keys.key(Suffix::Readers),
        keys.key(Suffix::ReaderLabels),
        keys.key(Suffix::Permits),
    ])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error() -> RedisResult<Value> {
        Err(redis::RedisError::from((redis::ErrorKind::Io, "WRONGTYPE")))
    }

    #[test]
    fn a_fresh_attempt_is_granted_only_with_the_set_done_and_a_positive_fence() {
        assert_eq!(
            fresh_outcome(&[Ok(Value::Okay), Ok(Value::Int(7))]),
            Fresh::Granted(7)
        );
        assert_eq!(fresh_outcome(&[Ok(Value::Okay), error()]), Fresh::Undo);
        assert_eq!(
            fresh_outcome(&[Ok(Value::Okay), Ok(Value::Int(0))]),
            Fresh::Undo
        );
        assert_eq!(
            fresh_outcome(&[Ok(Value::Nil), Ok(Value::Int(8))]),
            Fresh::Taken
        );
        assert_eq!(fresh_outcome(&[error(), error()]), Fresh::Taken);
        assert_eq!(fresh_outcome(&[]), Fresh::Taken);
    }

    #[test]
    fn the_shared_value_is_the_one_the_scripts_write() {
        assert!(SHARED_LUA.contains(&format!("'{SHARED}'")));
        assert!(SHARED.len() > 32 && !SHARED[..32].contains(|c: char| c.is_ascii_hexdigit()));
    }
}
