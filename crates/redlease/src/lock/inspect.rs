//! Looking at locks from the outside, and breaking a stuck one: for operators and tools such
//! as `redlease status`, `list` and `release --force`.

use std::collections::HashMap;
use std::time::Duration;

use redis::{RedisResult, Value};

use super::scripts;
use crate::backend::{Backend, Durability};
use crate::engine::Engine;
use crate::error::{BackendError, ConfigError, Error};
use crate::keys::{Key, Keys, Suffix};
use crate::token::Token;

/// Length of a token at the start of a lock key's value; the holder's label follows it.
const TOKEN_LEN: usize = 32;

/// What the servers say about one lock right now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock's name.
    pub name: String,
    /// Who holds it, if anyone does on a majority of the nodes.
    pub holder: Option<Holder>,
    /// The fence counter (the largest over the nodes): at least the holder's fence, and below
    /// every later holder's.
    pub fence: u64,
    /// Waiters listed in Redis: `acquire` calls waiting for the lock, across clients (the
    /// largest number over the nodes).
    pub queued: u64,
    /// The distinct clients those waiters belong to.
    pub waiting_clients: u64,
    /// How many nodes hold the current holder's key.
    pub held_on: usize,
    /// How many nodes answered.
    pub nodes: usize,
}

/// The current holder of a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The holder's [`LockOptions::label`](crate::LockOptions::label).
    pub label: String,
    /// A fingerprint of the holder's token (the token itself is a secret).
    pub token_fingerprint: String,
    /// How long its lease still runs (the longest over the nodes holding it); `None` if the
    /// key has no expiry.
    pub remaining_ttl: Option<Duration>,
}

impl Holder {
    /// Reads a lock key's value (token, then label).
    fn from_value(value: &str, pttl_ms: i64) -> Self {
        let (token, label) = value.split_at(value.floor_char_boundary(TOKEN_LEN));
        Self {
            label: label.to_owned(),
            token_fingerprint: Token::from_stored(token).fingerprint(),
            remaining_ttl: u64::try_from(pttl_ms).ok().map(Duration::from_millis),
        }
    }
}

/// What one backend has for a lock.
#[derive(Debug)]
struct NodeView {
    /// The lock key's value: the holder's token followed by its label.
    value: Option<String>,
    /// The lock key's remaining time in milliseconds (negative: none).
    pttl_ms: i64,
    fence: u64,
    /// The waiter entries listed (token, mode, the client's wake channel).
    waiters: Vec<String>,
}

/// Reads a lock's state on one backend in one round trip, without changing it.
async fn view(backend: &Backend, keys: &Keys) -> Result<NodeView, Error> {
    const CONTEXT: &str = "inspecting a lock";
    let read = |name: &str, key: Key<'_>| {
        let mut cmd = redis::cmd(name);
        cmd.arg(key);
        cmd
    };
    let mut waiters = read("LRANGE", keys.key(Suffix::Waiters));
    waiters.arg(0).arg(-1);
    let reads = [
        read("GET", keys.lock()),
        read("PTTL", keys.lock()),
        read("GET", keys.key(Suffix::Fence)),
        waiters,
    ];
    let replies = backend.read_each(&reads, CONTEXT).await?;
    let [value, pttl, fence, waiters] = <[RedisResult<Value>; 4]>::try_from(replies)
        .map_err(|_| Error::Backend(backend.protocol_failure(CONTEXT)))?;
    let checked = |reply: RedisResult<Value>, key: &dyn Fn() -> String| match reply {
        Ok(value) => Ok(value),
        Err(e) if e.code() == Some("WRONGTYPE") => Err(Refusal::WrongType(key())),
        Err(e) => Err(Refusal::Backend(BackendError::from_redis(
            backend.label(),
            CONTEXT,
            e,
        ))),
    };
    let lock_key = || keys.lock.clone();
    let decoded = (|| {
        Ok(NodeView {
            value: parse(checked(value, &lock_key)?)?,
            pttl_ms: parse(checked(pttl, &lock_key)?)?,
            fence: parse::<Option<u64>>(checked(fence, &|| keys.owned(Suffix::Fence))?)?
                .unwrap_or(0),
            waiters: parse(checked(waiters, &|| keys.owned(Suffix::Waiters))?)?,
        })
    })();
    match decoded {
        Ok(view) => Ok(view),
        Err(Refusal::Backend(e)) => Err(e.into()),
        Err(Refusal::Malformed) => Err(backend.protocol_failure(CONTEXT).into()),
        Err(Refusal::WrongType(key)) => Err(wrong_type(backend, key).await),
    }
}

/// Why a backend's view of a lock could not be read.
enum Refusal {
    WrongType(String),
    Backend(BackendError),
    Malformed,
}

fn parse<T: redis::FromRedisValue>(value: Value) -> Result<T, Refusal> {
    redis::from_redis_value(value).map_err(|_| Refusal::Malformed)
}

/// `key` holds the wrong type: which one, asked with `TYPE`.
async fn wrong_type(backend: &Backend, key: String) -> Error {
    let mut cmd = redis::cmd("TYPE");
    cmd.arg(&key);
    let found = match backend.read_each(&[cmd], "reading a key's type").await {
        Ok(replies) => match replies.into_iter().next() {
            Some(Ok(Value::SimpleString(kind))) => kind,
            Some(Ok(Value::BulkString(kind))) => String::from_utf8_lossy(&kind).into_owned(),
            _ => "value".to_owned(),
        },
        Err(_) => "value".to_owned(),
    };
    Error::WrongType { key, found }
}

/// The number of distinct clients among waiter entries (an entry ends with its client's wake
/// channel, after the 32-character token and the mode byte).
fn clients_of(entries: &[String]) -> u64 {
    let mut channels: Vec<&str> = entries
        .iter()
        .filter_map(|entry| entry.get(TOKEN_LEN + 1..))
        .collect();
    channels.sort_unstable();
    channels.dedup();
    u64::try_from(channels.len()).unwrap_or(u64::MAX)
}

/// Reads a lock's state without changing it (see [`Client::inspect`](crate::Client::inspect)).
pub(crate) async fn inspect(engine: &Engine, name: &str) -> Result<LockInfo, Error> {
    let keys = engine.keys(name)?;
    let quorum = engine.quorum();
    let views = quorum.gather(|backend| {
        let keys = keys.clone();
        async move { view(&backend, &keys).await }
    });
    let views = views.await?;
    Ok(summarize(name, &views, quorum.majority()))
}

/// The held locks whose names match `pattern` (see [`Client::list`](crate::Client::list)).
pub(crate) async fn list(engine: &Engine, pattern: &str) -> Result<Vec<LockInfo>, Error> {
    if pattern.is_empty() {
        return Err(ConfigError::EmptyName.into());
    }
    if pattern.contains(['{', '}']) {
        return Err(ConfigError::NameHasBraces.into());
    }
    let prefix = engine.prefix();
    let glob = format!("{}{{{pattern}}}", escape_glob(prefix));
    let found = engine.quorum().gather(|backend| {
        let glob = glob.clone();
        async move { backend.scan(&glob).await }
    });
    let mut names: Vec<String> = found
        .await?
        .into_iter()
        .flatten()
        .filter_map(|key| {
            Some(
                key.strip_prefix(prefix)?
                    .strip_prefix('{')?
                    .strip_suffix('}')?
                    .to_owned(),
            )
        })
        .collect();
    names.sort();
    names.dedup();
    let mut locks = Vec::with_capacity(names.len());
    for name in names {
        let info = inspect(engine, &name).await?;
        // Gone between the scan and the look.
        if info.holder.is_some() {
            locks.push(info);
        }
    }
    Ok(locks)
}

/// Breaks a lock whoever holds it (see [`Client::force_release`](crate::Client::force_release)).
pub(crate) async fn force_release(engine: &Engine, name: &str) -> Result<Option<Holder>, Error> {
    const CONTEXT: &str = "breaking a lock";
    let keys = engine.keys(name)?;
    let hand_off = super::hand_off(engine);
    let deleted = engine.quorum().gather(|backend| {
        let keys = keys.clone();
        async move {
            let call = scripts::force_release(&keys, hand_off);
            let limit = backend.command_timeout();
            let reply = backend
                .call(&call, CONTEXT, limit, Durability::Plain)
                .await?;
            scripts::deleted(&reply).map_err(|()| backend.protocol_failure(CONTEXT).into())
        }
    });
    let deleted = deleted.await?;
    Ok(most_common(deleted.iter().flatten()).map(|value| Holder::from_value(value, -1)))
}

/// The value held by the most nodes.
fn most_common<'a>(values: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(value, count)| (count, value))
        .map(|(value, _)| value)
}

fn summarize(name: &str, views: &[NodeView], quorum: usize) -> LockInfo {
    let current = most_common(views.iter().filter_map(|view| view.value.as_ref()));
    let holding: Vec<&NodeView> = views
        .iter()
        .filter(|view| view.value.as_ref() == current && current.is_some())
        .collect();
    let holder = current
        .filter(|_| holding.len() >= quorum.min(views.len()))
        .map(|value| {
            let pttl = holding.iter().map(|view| view.pttl_ms).max().unwrap_or(-1);
            Holder::from_value(value, pttl)
        });
    LockInfo {
        name: name.to_owned(),
        holder,
        fence: views.iter().map(|view| view.fence).max().unwrap_or(0),
        queued: views
            .iter()
            .map(|view| u64::try_from(view.waiters.len()).unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0),
        waiting_clients: views
            .iter()
            .map(|view| clients_of(&view.waiters))
            .max()
            .unwrap_or(0),
        held_on: holding.len(),
        nodes: views.len(),
    }
}

/// Escapes the glob metacharacters of a literal (the key prefix) for `SCAN MATCH`.
fn escape_glob(literal: &str) -> String {
    let mut escaped = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(value: Option<&str>, pttl_ms: i64, fence: u64) -> NodeView {
        NodeView {
            value: value.map(str::to_owned),
            pttl_ms,
            fence,
            waiters: Vec::new(),
        }
    }

    #[test]
    fn waiters_are_counted_per_client() {
        let entry =
            |token: char, client: &str| format!("{}n{client}", token.to_string().repeat(32));
        let entries = [
            entry('a', "p:wake:1"),
            entry('b', "p:wake:1"),
            entry('c', "p:wake:2"),
        ];
        assert_eq!(clients_of(&entries), 2);
        assert_eq!(clients_of(&["short".to_owned()]), 0);
    }

    #[test]
    fn the_majority_holder_is_reported_with_its_label() {
        let token = "0123456789abcdef0123456789abcdef";
        let value = format!("{token}host-a pid 42");
        let views = [
            view(Some(&value), 900, 7),
            view(Some(&value), 1000, 7),
            view(None, -2, 8),
        ];
        let info = summarize("n", &views, 2);
        let holder = info.holder.unwrap();
        assert_eq!(holder.label, "host-a pid 42");
        assert_eq!(holder.remaining_ttl, Some(Duration::from_secs(1)));
        assert!(!holder.token_fingerprint.contains(token));
        assert_eq!((info.fence, info.held_on, info.nodes), (8, 2, 3));
    }

    #[test]
    fn a_minority_holder_is_not_a_holder() {
        let views = [
            view(Some("x"), 500, 1),
            view(None, -2, 1),
            view(None, -2, 1),
        ];
        assert_eq!(summarize("n", &views, 2).holder, None);
    }

    #[test]
    fn short_or_foreign_values_do_not_panic() {
        let holder = Holder::from_value("hand-written ünïcode", -1);
        assert_eq!(holder.remaining_ttl, None);
        assert_eq!(Holder::from_value("", 5).label, "");
    }

    #[test]
    fn globs_in_the_prefix_are_escaped() {
        assert_eq!(escape_glob("app*:[x]"), "app\\*:\\[x\\]");
        assert_eq!(escape_glob("redlease:"), "redlease:");
    }
}
