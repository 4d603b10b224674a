//! The semaphore's scripts, how each call is built, and what their replies mean.

use crate::acquire::Earlier;
use crate::keys::{Keys, Suffix};
use crate::lease::{HandOff, HoldScripts, Lease};
use crate::lock::{WAITING, attempt_args, flag, giving_back, hand_off_args};
use crate::script::{Call, HOLDERS, Script};
use crate::timing::LeaseTiming;

const PERMITS: &str = include_str!("permits.lua");

static ACQUIRE: Script = Script::new(&[HOLDERS, PERMITS, WAITING, include_str!("acquire.lua")]);
static EXTEND: Script = Script::new(&[HOLDERS, include_str!("extend.lua")]);
static RELEASE: Script = Script::new(&[HOLDERS, PERMITS, include_str!("release.lua")]);
static RESIZE: Script = Script::new(&[HOLDERS, PERMITS, include_str!("resize.lua")]);

/// Every script of the semaphore, loaded when a client connects.
pub(crate) static ALL: [&Script; 4] = [&ACQUIRE, &EXTEND, &RELEASE, &RESIZE];

/// How a permit's lease is extended and released.
pub(crate) static HOLD: HoldScripts = HoldScripts {
    extend,
    release,
    confirm,
    leave,
};

/// A call of a script over the whole semaphore: permits, their info, the fence counter and the
/// waiters.
fn whole(script: &'static Script, keys: &Keys) -> Call {
    script.call(&[
        keys.lock(),
        keys.key(Suffix::Permits),
        keys.key(Suffix::Fence),
        keys.key(Suffix::Waiters),
    ])
}

/// One attempt (see `acquire.lua`): takes a permit under `limit`, or lists `entry` (if any)
/// among the waiters.
pub(crate) fn acquire(
    lease: &Lease,
    timing: &LeaseTiming,
    entry: Option<&str>,
    earlier: Earlier,
    limit: u32,
    fair: bool,
) -> Call {
    let call = attempt_args(whole(&ACQUIRE, lease.keys()), lease, timing, entry, earlier)
        .arg(limit)
        .arg(flag(fair));
    hand_off_args(call, lease.hand_off())
}

/// Compare-and-extend of this holder's own permit; read with
/// [`Reply::ownership`](crate::script::Reply::ownership).
fn extend(lease: &Lease, millis: u64) -> Call {
    let keys = lease.keys();
    EXTEND
        .call(&[keys.lock(), keys.key(Suffix::Permits)])
        .arg(lease.token().as_str())
        .arg(millis)
}

/// Confirms a permit a release handed to this waiter: its TTL and label.
fn confirm(lease: &Lease, timing: &LeaseTiming) -> Call {
    extend(lease, timing.millis).arg(lease.label())
}

/// Gives the permit back, handing it to the oldest waiter; read with
/// [`Reply::ownership`](crate::script::Reply::ownership).
fn release(lease: &Lease) -> Call {
    giving_back(whole(&RELEASE, lease.keys()), lease, lease.token().as_str())
}

/// Takes a waiter's `entry` out of the waiters, giving back a permit handed to it meanwhile.
fn leave(lease: &Lease, entry: &str) -> Call {
    giving_back(whole(&RELEASE, lease.keys()), lease, entry)
}

/// Sets the stored limit of a semaphore whose permits are held (see `resize.lua`).
pub(crate) fn resize(keys: &Keys, limit: u32, hand_off: HandOff) -> Call {
    hand_off_args(whole(&RESIZE, keys).arg(limit), hand_off)
}
