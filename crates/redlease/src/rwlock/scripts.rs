//! The read-write lock's reader scripts and how each call is built. Writers are the lock's
//! own scripts (`crate::lock`), whose hand-off gives a freed lock to listed readers too.

use crate::acquire::Earlier;
use crate::keys::Suffix;
use crate::lease::{HoldScripts, Lease};
use crate::lock::{
    HAND_OFF, SHARED_LUA, WAITING, attempt_args, freeing, giving_back, hand_off_args,
};
use crate::script::{Call, HOLDERS, Script};
use crate::timing::LeaseTiming;

static ACQUIRE: Script = Script::new(&[
    SHARED_LUA,
    HOLDERS,
    HAND_OFF,
    WAITING,
    include_str!("acquire.lua"),
]);
const SHARE: &str = include_str!("share.lua");

static EXTEND: Script = Script::new(&[SHARED_LUA, HOLDERS, SHARE, include_str!("extend.lua")]);
static RELEASE: Script = Script::new(&[
    SHARED_LUA,
    HOLDERS,
    HAND_OFF,
    SHARE,
    include_str!("release.lua"),
]);

/// Every reader script, loaded when a client connects.
pub(crate) static ALL: [&Script; 3] = [&ACQUIRE, &EXTEND, &RELEASE];

/// How a reader's share is extended and released.
pub(crate) static HOLD: HoldScripts = HoldScripts {
    extend,
    release,
    confirm,
    leave,
};

/// One reader's attempt (see `acquire.lua`): takes a share, or lists `entry` (if any) among
/// the waiters. Replies as the default [`Claim::vote`](crate::acquire::Claim::vote) reads
/// them.
pub(crate) fn acquire(
    lease: &Lease,
    timing: &LeaseTiming,
    entry: Option<&str>,
    earlier: Earlier,
) -> Call {
    let call = attempt_args(
        freeing(&ACQUIRE, lease.keys()),
        lease,
        timing,
        entry,
        earlier,
    );
    hand_off_args(call, lease.hand_off())
}

/// Compare-and-extend of this reader's own share; read with
/// [`Reply::ownership`](crate::script::Reply::ownership).
fn extend(lease: &Lease, millis: u64) -> Call {
    let keys = lease.keys();
    EXTEND
        .call(&[
            keys.lock(),
            keys.key(Suffix::Readers),
            keys.key(Suffix::ReaderLabels),
        ])
        .arg(lease.token().as_str())
        .arg(millis)
}

/// Confirms a share a release handed to this reader: its TTL and label.
fn confirm(lease: &Lease, timing: &LeaseTiming) -> Call {
    extend(lease, timing.millis).arg(lease.label())
}

/// Gives this reader's share back, handing the lock on after the last; read with
/// [`Reply::ownership`](crate::script::Reply::ownership).
fn release(lease: &Lease) -> Call {
    giving_back(
        freeing(&RELEASE, lease.keys()),
        lease,
        lease.token().as_str(),
    )
}

/// Takes a reader's `entry` out of the waiters, giving back a share handed to it meanwhile.
fn leave(lease: &Lease, entry: &str) -> Call {
    giving_back(freeing(&RELEASE, lease.keys()), lease, entry)
}
