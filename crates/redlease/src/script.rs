//! The Lua scripts and how a call to one is built, checked and retried.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::{Arg, Cmd, Script, Value};

/// The Lua scripts, loaded on every node when the client connects (and again after a server
/// restart), then invoked by hash with `EVALSHA`.
pub(crate) static SCRIPTS: LazyLock<[Script; 7]> = LazyLock::new(|| SOURCES.map(Script::new));
pub(crate) const SOURCES: [&str; 7] = [
    include_str!("scripts/acquire.lua"),
    include_str!("scripts/release.lua"),
    include_str!("scripts/extend.lua"),
    include_str!("scripts/raise_fence.lua"),
    include_str!("scripts/acquire_fair.lua"),
    include_str!("scripts/leave_queue.lua"),
    include_str!("scripts/force_release.lua"),
];

/// Indexes into [`SCRIPTS`].
#[derive(Clone, Copy)]
pub(crate) enum Lua {
    Acquire = 0,
    Release = 1,
    Extend = 2,
    RaiseFence = 3,
    AcquireFair = 4,
    LeaveQueue = 5,
    ForceRelease = 6,
}

/// `EVALSHA <script> <number of keys> <keys…> <nonce>`; the caller appends the arguments.
///
/// The nonce, unique to the request within this process, comes back as the last element of
/// the script's reply: a reply that carries another request's nonce means the connection has
/// lost track of which reply answers which request (a reply swallowed on a connection that
/// stayed open), and must not be believed.
pub(crate) fn evalsha(script: Lua, keys: &[&str]) -> Cmd {
    static NONCES: AtomicU64 = AtomicU64::new(1);
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(SCRIPTS[script as usize].get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(NONCES.fetch_add(1, Ordering::Relaxed));
    cmd
}

/// `SCAN cursor MATCH pattern COUNT 1000`.
pub(crate) fn scan_cmd(cursor: u64, pattern: &str) -> Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000);
    cmd
}

/// The nonce of a script call made by [`evalsha`] (or its `EVAL` form).
pub(crate) fn nonce_of(cmd: &Cmd) -> Option<Vec<u8>> {
    let mut args = cmd.args_iter().skip(2);
    let Some(Arg::Simple(keys)) = args.next() else {
        return None;
    };
    let keys: usize = std::str::from_utf8(keys).ok()?.parse().ok()?;
    match args.nth(keys) {
        Some(Arg::Simple(nonce)) => Some(nonce.to_vec()),
        _ => None,
    }
}

/// Splits a script reply `[…, nonce]` into its items, checking the nonce against `cmd`'s.
pub(crate) fn echoed(cmd: &Cmd, reply: Value) -> Result<Vec<Value>, Value> {
    let Value::Array(mut items) = reply else {
        return Err(reply);
    };
    match (items.pop(), nonce_of(cmd)) {
        (Some(Value::BulkString(echo)), Some(nonce)) if echo == nonce => Ok(items),
        (echo, _) => Err(echo.unwrap_or(Value::Nil)),
    }
}

pub(crate) fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// A Cluster redirection inside a pipeline reply, which the cluster client does not follow.
pub(crate) fn is_redirect(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::Moved | redis::ServerErrorKind::Ask)
    )
}

/// The same script call as `EVAL` with the script's source, for a server that does not have
/// the script cached (and caches it on the way). `None` for anything but an `EVALSHA` of ours.
pub(crate) fn to_eval(cmd: &Cmd) -> Option<Cmd> {
    let mut args = cmd.args_iter();
    if !matches!(args.next(), Some(Arg::Simple(name)) if name.eq_ignore_ascii_case(b"EVALSHA")) {
        return None;
    }
    let Some(Arg::Simple(sha)) = args.next() else {
        return None;
    };
    let index = SCRIPTS
        .iter()
        .position(|script| script.get_hash().as_bytes() == sha)?;
    let mut eval = redis::cmd("EVAL");
    eval.arg(SOURCES[index]);
    for arg in args {
        if let Arg::Simple(bytes) = arg {
            eval.arg(bytes);
        }
    }
    Some(eval)
}

/// The first key of a script call (`EVALSHA sha numkeys key…`).
pub(crate) fn first_key(cmd: &Cmd) -> Option<Vec<u8>> {
    match cmd.args_iter().nth(3) {
        Some(Arg::Simple(key)) => Some(key.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_call_becomes_an_eval_with_the_same_arguments() {
        let mut call = evalsha(Lua::Release, &["p:{n}"]);
        call.arg("token");
        let eval = to_eval(&call).unwrap();
        let args: Vec<Vec<u8>> = eval
            .args_iter()
            .filter_map(|arg| match arg {
                Arg::Simple(bytes) => Some(bytes.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(args[0], b"EVAL");
        assert_eq!(args[1], SOURCES[Lua::Release as usize].as_bytes());
        let nonce = nonce_of(&call).unwrap();
        assert_eq!(
            args[2..],
            [
                b"1".to_vec(),
                b"p:{n}".to_vec(),
                nonce.clone(),
                b"token".to_vec()
            ]
        );
        assert_eq!(nonce_of(&eval), Some(nonce));
        assert_eq!(first_key(&call), Some(b"p:{n}".to_vec()));
        assert!(to_eval(&redis::cmd("GET")).is_none());
    }

    #[test]
    fn replies_are_believed_only_with_their_own_nonce() {
        let first = evalsha(Lua::Release, &["p:{n}"]);
        let second = evalsha(Lua::Release, &["p:{n}"]);
        assert_ne!(nonce_of(&first), nonce_of(&second));
        let reply = |cmd: &Cmd| {
            Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::BulkString(nonce_of(cmd).unwrap()),
            ])
        };
        assert_eq!(
            echoed(&first, reply(&first)),
            Ok(vec![Value::Int(1), Value::Int(0)])
        );
        assert!(
            echoed(&second, reply(&first)).is_err(),
            "another request's reply"
        );
        assert!(echoed(&first, Value::Int(1)).is_err());
        assert!(echoed(&first, Value::Array(vec![])).is_err());
    }
}
