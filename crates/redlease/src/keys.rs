//! Where a lock lives in Redis: key names derived from the prefix and the lock name.

use crate::error::ConfigError;

/// Longest accepted lock name and key prefix, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// The keys of one lock name. Every key is the lock key `prefix{name}` followed by a suffix,
/// so all carry the name as their Cluster hash tag and live in one slot: one script can touch
/// them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    /// Holds the owner's token (followed by its label), with the lease's TTL.
    pub(crate) lock: String,
}

/// What follows the lock key in the name of each of its companion keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suffix {
    /// The fencing counter: incremented by every grant, never expires.
    Fence,
    /// The waiters of the lock (a list of waiter entries, oldest first), with a TTL renewed
    /// while anyone waits.
    Waiters,
    /// A read-write lock's shares: a sorted set of reader tokens by expiry (server time in ms),
    /// expiring with the last share.
    Readers,
    /// What each reader stored with its share (its label), expiring with the last share.
    ReaderLabels,
    /// A semaphore's permits: a hash of token → slot, fence and label, and the stored limit;
    /// expiring with the last permit (the permits' expiries are the lock key's sorted set).
    Permits,
}

impl Suffix {
    fn text(self) -> &'static str {
        match self {
            Self::Fence => ":fence",
            Self::Waiters => ":waiters",
            Self::Readers => ":readers",
            Self::ReaderLabels => ":readers:labels",
            Self::Permits => ":permits",
        }
    }
}

/// A key name written into a command without building a string first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key<'a> {
    lock: &'a str,
    suffix: Option<Suffix>,
}

impl redis::ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.lock.as_bytes());
        if let Some(suffix) = self.suffix {
            let _ = arg.write_all(suffix.text().as_bytes());
        }
    }
}

impl Keys {
    pub(crate) fn new(prefix: &str, name: &str) -> Result<Self, ConfigError> {
        validate_name(name)?;
        let keys = Self {
            lock: format!("{prefix}{{{name}}}"),
        };
        debug_assert!(keys.in_one_slot(name), "{keys:?}");
        Ok(keys)
    }

    /// Every key a script may touch carries the same Cluster hash tag, so all live in one
    /// slot (in Cluster mode a script over several slots fails with `CROSSSLOT`). The name and
    /// prefix rules guarantee this: the companion keys extend the lock key, so they share its
    /// tag once it is the whole name.
    fn in_one_slot(&self, name: &str) -> bool {
        hash_tag(&self.lock) == Some(name) && hash_tag(&self.owned(Suffix::Fence)) == Some(name)
    }

    /// The lock key, for a command.
    pub(crate) fn lock(&self) -> Key<'_> {
        Key {
            lock: &self.lock,
            suffix: None,
        }
    }

    /// A companion key, for a command.
    pub(crate) fn key(&self, suffix: Suffix) -> Key<'_> {
        Key {
            lock: &self.lock,
            suffix: Some(suffix),
        }
    }

    /// A companion key's name as a string.
    pub(crate) fn owned(&self, suffix: Suffix) -> String {
        format!("{}{}", self.lock, suffix.text())
    }
}

/// The part of `key` Redis Cluster hashes: the text between the first `{` and the first `}`
/// after it, if not empty (otherwise the whole key, reported here as `None`).
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = key[open + 1..].find('}')?;
    let tag = &key[open + 1..open + 1 + close];
    (!tag.is_empty()).then_some(tag)
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ConfigError::NameTooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if name.contains(['{', '}']) {
        return Err(ConfigError::NameHasBraces);
    }
    Ok(())
}

/// Checks a key prefix: braces in it would become the hash tag and put every lock in one slot.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.len() > MAX_NAME_LEN {
        return Err(ConfigError::InvalidPrefix(format!(
            "it is {} bytes long; the maximum is {MAX_NAME_LEN}",
            prefix.len()
        )));
    }
    if prefix.contains(['{', '}']) {
        return Err(ConfigError::InvalidPrefix(
            "it must not contain '{' or '}' (the lock name is the hash tag)".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_name_as_hash_tag() {
        let keys = Keys::new("redlease:", "jobs:nightly").unwrap();
        assert_eq!(keys.lock, "redlease:{jobs:nightly}");
        assert_eq!(keys.owned(Suffix::Fence), "redlease:{jobs:nightly}:fence");
        assert_eq!(
            keys.owned(Suffix::Waiters),
            "redlease:{jobs:nightly}:waiters"
        );
        let mut cmd = redis::cmd("X");
        cmd.arg(keys.lock()).arg(keys.key(Suffix::Fence));
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .filter_map(|arg| match arg {
                redis::Arg::Simple(bytes) => Some(bytes.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(args[1], b"redlease:{jobs:nightly}");
        assert_eq!(args[2], b"redlease:{jobs:nightly}:fence");
    }

    #[test]
    fn hash_tags_follow_the_cluster_rule() {
        assert_eq!(hash_tag("p:{a}:fence"), Some("a"));
        assert_eq!(hash_tag("p:{}x{a}"), None);
        assert_eq!(hash_tag("p:{a"), None);
        assert_eq!(hash_tag("plain"), None);
        assert_eq!(hash_tag("{a}{b}"), Some("a"));
        let keys = Keys::new("p:", "x").unwrap();
        assert!(keys.in_one_slot("x"));
        let broken = Keys {
            lock: "p:{y}".to_owned(),
        };
        assert!(!broken.in_one_slot("x"));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(Keys::new("p:", ""), Err(ConfigError::EmptyName));
        assert_eq!(Keys::new("p:", "a{b"), Err(ConfigError::NameHasBraces));
        assert_eq!(Keys::new("p:", "}"), Err(ConfigError::NameHasBraces));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            Keys::new("p:", &long),
            Err(ConfigError::NameTooLong {
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
        assert!(Keys::new("p:", &"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(Keys::new("p:", "ünïcode name with spaces").is_ok());
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("app:locks:").is_ok());
        assert!(validate_prefix("app{x}:").is_err());
        assert!(validate_prefix(&"p".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
