//! Looking at locks from the outside, and breaking a stuck one: for operators and tools such
//! as `redlease status`, `list` and `release --force`.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;

use super::scripts::{self, SHARED};
use crate::backend::{Backend, Durability};
use crate::engine::Engine;
use crate::error::{ConfigError, Error};
use crate::keys::Keys;
use crate::token::Token;

/// Length of a token at the start of a lock key's value; the holder's label follows it.
const TOKEN_LEN: usize = 32;

/// What the servers say about one name right now: a lock's holder, a read-write lock's
/// readers, or a semaphore's permits and limit; its fence counter and waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock's name.
    pub name: String,
    /// Who holds it alone (a lock's holder, a read-write lock's writer), if anyone does on a
    /// majority of the nodes.
    pub holder: Option<Holder>,
    /// The readers sharing it (a read-write lock held for reading), each with its own time
    /// left, longest first.
    pub readers: Vec<Holder>,
    /// A semaphore's permits, by slot.
    pub permits: Vec<Holder>,
    /// A semaphore's limit, kept with its permits while any is held.
    pub limit: Option<u32>,
    /// The fence counter (the largest over the nodes): at least the holder's fence, and below
    /// every later holder's.
    pub fence: u64,
    /// Waiters listed in Redis: `acquire` calls waiting for the lock, across clients (the
    /// largest number over the nodes).
    pub queued: u64,
    /// Of those, the readers waiting for a read-write lock (the rest wait to write, or for a
    /// permit).
    pub queued_readers: u64,
    /// The distinct clients those waiters belong to.
    pub waiting_clients: u64,
    /// How many nodes hold the current holder's key (or the readers').
    pub held_on: usize,
    /// How many nodes answered.
    pub nodes: usize,
}

impl LockInfo {
    /// Whether anything holds the name: a holder, readers or permits.
    pub fn is_held(&self) -> bool {
        self.holder.is_some() || !self.readers.is_empty() || !self.permits.is_empty()
    }
}

/// A current holder: of a lock, a reader's share, or a semaphore permit.
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
    /// A semaphore permit's slot.
    pub slot: Option<u32>,
    /// A semaphore permit's fence.
    pub fence: Option<u64>,
}

impl Holder {
    /// Reads a lock key's value (token, then label).
    fn from_value(value: &str, pttl_ms: i64) -> Self {
        let (token, label) = value.split_at(value.floor_char_boundary(TOKEN_LEN));
        Self::new(token, label, pttl_ms)
    }

    fn new(token: &str, label: &str, remaining_ms: i64) -> Self {
        Self {
            label: label.to_owned(),
            token_fingerprint: Token::from_stored(token).fingerprint(),
            remaining_ttl: u64::try_from(remaining_ms).ok().map(Duration::from_millis),
            slot: None,
            fence: None,
        }
    }

    /// A permit, from what its holder stored: "slot fence label".
    fn permit(token: &str, info: &str, remaining_ms: i64) -> Self {
        let mut fields = info.splitn(3, ' ');
        let slot = fields.next().and_then(|slot| slot.parse().ok());
        let fence = fields.next().and_then(|fence| fence.parse().ok());
        Self {
            slot,
            fence,
            ..Self::new(token, fields.next().unwrap_or_default(), remaining_ms)
        }
    }
}

/// One of several holders on one node: token, what it stored, milliseconds left.
type Hold = (String, String, i64);

/// What one backend has for a name.
#[derive(Debug, Default)]
struct NodeView {
    /// The lock key's value: the holder's token followed by its label (or the readers' value).
    value: Option<String>,
    /// The lock key's remaining time in milliseconds (negative: none).
    pttl_ms: i64,
    fence: u64,
    /// The waiter entries listed (token, mode, the client's wake channel).
    waiters: Vec<String>,
    /// Readers' shares (label stored).
    shares: Vec<Hold>,
    /// A semaphore's permits ("slot fence label" stored).
    permits: Vec<Hold>,
    limit: Option<u32>,
}

/// Reads a name's state on one backend in one script call (`inspect.lua`), without changing it.
async fn view(backend: &Backend, keys: &Keys) -> Result<NodeView, Error> {
    const CONTEXT: &str = "inspecting a lock";
    let call = scripts::inspect(keys);
    let reply = backend
        .call(&call, CONTEXT, backend.command_timeout(), Durability::Plain)
        .await?;
    decode(&reply.detail).ok_or_else(|| backend.protocol_failure(CONTEXT).into())
}

/// Reads `inspect.lua`'s detail: fields written as `length:bytes`.
fn decode(detail: &Value) -> Option<NodeView> {
    let Value::BulkString(bytes) = detail else {
        return None;
    };
    let mut fields = Fields(bytes);
    let value = fields.text()?;
    let pttl_ms = fields.text()?.parse().ok()?;
    let fence = fields.text()?.parse().ok()?;
    let limit = fields.text()?;
    let mut list = |items_per_entry: usize| -> Option<Vec<String>> {
        let count: usize = fields.text()?.parse().ok()?;
        if !count.is_multiple_of(items_per_entry) {
            return None;
        }
        (0..count).map(|_| fields.text()).collect()
    };
    let waiters = list(1)?;
    let holds = |flat: Vec<String>| -> Option<Vec<Hold>> {
        flat.chunks(3)
            .map(|hold| match hold {
                [token, info, ms] => Some((token.clone(), info.clone(), ms.parse().ok()?)),
                _ => None,
            })
            .collect()
    };
    let shares = holds(list(3)?)?;
    let permits = holds(list(3)?)?;
    Some(NodeView {
        value: (!value.is_empty()).then_some(value),
        pttl_ms,
        fence,
        waiters,
        shares,
        permits,
        limit: limit.parse().ok(),
    })
}

/// Fields of `length:bytes`, read in turn.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn text(&mut self) -> Option<String> {
        let colon = self.0.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&self.0[..colon]).ok()?.parse().ok()?;
        let field = self.0.get(colon + 1..colon + 1 + len)?;
        self.0 = &self.0[colon + 1 + len..];
        Some(String::from_utf8_lossy(field).into_owned())
    }
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
        if info.is_held() {
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

/// The holds found on at least `quorum` of the nodes, each with the longest time left there.
fn majority_holds<'a>(
    per_node: impl Iterator<Item = &'a [Hold]>,
    quorum: usize,
) -> Vec<(&'a str, &'a str, i64)> {
    let mut seen: HashMap<&str, (&str, i64, usize)> = HashMap::new();
    for holds in per_node {
        for (token, info, ms) in holds {
            let entry = seen.entry(token).or_insert((info, *ms, 0));
            entry.1 = entry.1.max(*ms);
            entry.2 += 1;
        }
    }
    let mut holds: Vec<_> = seen
        .into_iter()
        .filter(|&(_, (_, _, count))| count >= quorum)
        .map(|(token, (info, ms, _))| (token, info, ms))
        .collect();
    holds.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
    holds
}

fn summarize(name: &str, views: &[NodeView], quorum: usize) -> LockInfo {
    let quorum = quorum.min(views.len());
    let current = most_common(views.iter().filter_map(|view| view.value.as_ref()));
    let holding: Vec<&NodeView> = views
        .iter()
        .filter(|view| view.value.as_ref() == current && current.is_some())
        .collect();
    let holder = current
        .filter(|value| holding.len() >= quorum && value.as_str() != SHARED)
        .map(|value| {
            let pttl = holding.iter().map(|view| view.pttl_ms).max().unwrap_or(-1);
            Holder::from_value(value, pttl)
        });
    let readers = majority_holds(views.iter().map(|view| view.shares.as_slice()), quorum)
        .into_iter()
        .map(|(token, label, ms)| Holder::new(token, label, ms))
        .collect();
    let mut permits: Vec<Holder> =
        majority_holds(views.iter().map(|view| view.permits.as_slice()), quorum)
            .into_iter()
            .map(|(token, info, ms)| Holder::permit(token, info, ms))
            .collect();
    permits.sort_by_key(|permit| permit.slot);
    let count = |entries: &dyn Fn(&NodeView) -> usize| {
        views
            .iter()
            .map(|view| u64::try_from(entries(view)).unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0)
    };
    LockInfo {
        name: name.to_owned(),
        holder,
        readers,
        permits,
        limit: views.iter().find_map(|view| view.limit),
        fence: views.iter().map(|view| view.fence).max().unwrap_or(0),
        queued: count(&|view| view.waiters.len()),
        queued_readers: count(&|view| {
            view.waiters
                .iter()
                .filter(|entry| entry.as_bytes().get(TOKEN_LEN) == Some(&b'r'))
                .count()
        }),
        waiting_clients: views
            .iter()
            .map(|view| clients_of(&view.waiters))
            .max()
            .unwrap_or(0),
        held_on: if current.is_some() {
            holding.len()
        } else {
            views.iter().filter(|view| !view.permits.is_empty()).count()
        },
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
            ..NodeView::default()
        }
    }

    #[test]
    fn a_nodes_view_is_read_from_length_prefixed_fields() {
        let token = "0123456789abcdef0123456789abcdef";
        let encoded = [
            format!("36:{token}x yz"),
            "2:-2".to_owned(),
            "1:7".to_owned(),
            "1:3".to_owned(),
            "1:2".to_owned(),
            "1:a".to_owned(),
            "1:b".to_owned(),
            "1:3".to_owned(),
            format!("32:{token}"),
            "3:l p".to_owned(),
            "3:150".to_owned(),
            "1:0".to_owned(),
        ]
        .concat();
        let view = decode(&Value::BulkString(encoded.into_bytes())).unwrap();
        assert_eq!(view.value.as_deref(), Some(format!("{token}x yz").as_str()));
        assert_eq!((view.pttl_ms, view.fence, view.limit), (-2, 7, Some(3)));
        assert_eq!(view.waiters, ["a", "b"]);
        assert_eq!(view.shares, [(token.to_owned(), "l p".to_owned(), 150)]);
        assert!(view.permits.is_empty());
        assert!(decode(&Value::BulkString(b"9:short".to_vec())).is_none());
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
