//! Looking at locks from the outside, and breaking a stuck one: for operators and tools such
//! as `redlease status`, `list` and `release --force`.

use std::collections::HashMap;
use std::time::Duration;

use crate::client::Client;
use crate::error::{ConfigError, Error};
use crate::keys::Keys;
use crate::node::NodeView;
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
    /// The fence counter: the last fencing token handed out (the largest over the nodes).
    pub fence: u64,
    /// Fair-mode waiters in the queue.
    pub queued: u64,
    /// Clients with a waiter subscribed to the lock's release channel (one subscriber
    /// connection per client, however many of its tasks wait).
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

impl Client {
    /// Reads a lock's state without changing it: holder, time left, fence counter, waiters.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid name; [`Error::WrongType`] when the key holds
    /// non-lock data; [`Error::Backend`] / [`Error::NoQuorum`] when too few nodes answer.
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future has no effect.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// let info = client.inspect("reports:daily").await?;
    /// match info.holder {
    ///     Some(holder) => println!("held by {:?} for {:?} more", holder.label, holder.remaining_ttl),
    ///     None => println!("free; the next fence will be above {}", info.fence),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn inspect(&self, name: &str) -> Result<LockInfo, Error> {
        let keys = Keys::new(&self.shared().prefix, name)?;
        let nodes = &self.shared().nodes;
        let views = nodes.gather(|node| {
            let keys = keys.clone();
            async move { node.inspect(&keys).await }
        });
        let views = views.await?;
        Ok(summarize(name, &views, nodes.quorum()))
    }

    /// Lists the locks currently held whose names match the glob `pattern` (`*` for all;
    /// `jobs:*` for a family), sorted by name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty pattern or one with `{` or `}`; otherwise as for
    /// [`inspect`](Self::inspect).
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future has no effect.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// for lock in client.list("jobs:*").await? {
    ///     println!("{} fence {}", lock.name, lock.fence);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, pattern: &str) -> Result<Vec<LockInfo>, Error> {
        if pattern.is_empty() {
            return Err(ConfigError::EmptyName.into());
        }
        if pattern.contains(['{', '}']) {
            return Err(ConfigError::NameHasBraces.into());
        }
        let prefix = &self.shared().prefix;
        let glob = format!("{}{{{pattern}}}", escape_glob(prefix));
        let nodes = &self.shared().nodes;
        let found = nodes.gather(|node| {
            let glob = glob.clone();
            async move { node.scan(&glob).await }
        });
        let mut names: Vec<String> = found
            .await?
            .into_iter()
            .flatten()
            .filter_map(|key| {
                Some(
                    key.strip_prefix(prefix.as_str())?
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
            let info = self.inspect(&name).await?;
            // Gone between the scan and the look.
            if info.holder.is_some() {
                locks.push(info);
            }
        }
        Ok(locks)
    }

    /// Breaks a lock whoever holds it: deletes its key on every node and wakes its waiters.
    /// The fence counter is kept, so the next holder's fencing token is still larger than the
    /// broken holder's, and a resource that checks fences rejects the broken holder's writes.
    /// Returns who held it.
    ///
    /// This is an operator's tool for a stuck lock; the holder is not told (its renewals
    /// will find the key gone and report [`Lost`](crate::Lost)).
    ///
    /// # Errors
    ///
    /// As for [`inspect`](Self::inspect).
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped, the key may be deleted on some nodes and not others; run it
    /// again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(client: redlease::Client) -> Result<(), redlease::Error> {
    /// if let Some(holder) = client.force_release("deploy:prod").await? {
    ///     eprintln!("broke the lock held by {:?}", holder.label);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn force_release(&self, name: &str) -> Result<Option<Holder>, Error> {
        let keys = Keys::new(&self.shared().prefix, name)?;
        let nodes = &self.shared().nodes;
        let deleted = nodes.gather(|node| {
            let keys = keys.clone();
            async move { node.force_release(&keys).await }
        });
        let deleted = deleted.await?;
        Ok(most_common(deleted.iter().flatten()).map(|value| Holder::from_value(value, -1)))
    }
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
        queued: views.iter().map(|view| view.queued).max().unwrap_or(0),
        waiting_clients: views.iter().map(|view| view.subscribers).max().unwrap_or(0),
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
            ..NodeView::default()
        }
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
