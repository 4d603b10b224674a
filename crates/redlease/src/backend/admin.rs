//! Reads for operators and tools: key scans, and the server's
//! eviction policy. None of them changes anything.

use std::time::Duration;

use redis::Value;

use super::Backend;
use crate::error::Error;

impl Backend {
    /// The keys matching a glob `pattern` (already prefixed), found with `SCAN`.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<String>, Error> {
        let cx = self.context("listing locks", self.command_timeout);
        self.deployment.scan(pattern, cx).await
    }

    /// Reads `maxmemory` and `maxmemory-policy` (from `INFO memory`, which a restricted user
    /// is more often allowed than `CONFIG GET`). On a Cluster, every primary answers.
    pub(crate) async fn eviction(&self, limit: Duration) -> Result<Vec<Eviction>, Error> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("memory");
        let cx = self.context("reading the eviction policy", limit);
        // Bounded by `limit` alone: this runs while connecting, before the command timeout
        // matters.
        let reply = crate::conn::bounded(cx.node, cx.what, limit, async {
            let mut handle = self.deployment.connection().handle();
            cmd.query_async::<Value>(&mut handle).await
        })
        .await?;
        let mut found = Vec::new();
        collect_info(reply, &self.label, &mut found);
        Ok(found)
    }
}

/// What one server said about eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Eviction {
    /// The server, as `host:port`.
    pub(crate) node: String,
    /// `Ok(Some(policy))`: keys may be evicted under this policy; `Ok(None)`: they may not
    /// (`noeviction`, or no memory limit); `Err(reason)`: unknown.
    pub(crate) risk: Result<Option<String>, String>,
}

/// Gathers the `INFO memory` texts in `reply` (one per node on a Cluster).
fn collect_info(reply: Value, node: &str, found: &mut Vec<Eviction>) {
    match reply {
        Value::Map(per_node) => {
            for (address, reply) in per_node {
                let address =
                    redis::from_redis_value::<String>(address).unwrap_or_else(|_| node.to_owned());
                collect_info(reply, &address, found);
            }
        }
        Value::BulkString(bytes) => found.push(Eviction {
            node: node.to_owned(),
            risk: Ok(eviction_risk(&String::from_utf8_lossy(&bytes))),
        }),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => found.push(Eviction {
            node: node.to_owned(),
            risk: Ok(eviction_risk(&text)),
        }),
        Value::ServerError(e) => found.push(Eviction {
            node: node.to_owned(),
            risk: Err(e.to_string()),
        }),
        _ => found.push(Eviction {
            node: node.to_owned(),
            risk: Err("unexpected reply to INFO memory".to_owned()),
        }),
    }
}

/// The policy under which lock keys may be evicted, from an `INFO memory` text; `None` when
/// they cannot be (`noeviction`, or `maxmemory` 0: no limit).
fn eviction_risk(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let limited = field("maxmemory").is_some_and(|max| max != "0");
    match field("maxmemory_policy") {
        Some(policy) if limited && policy != "noeviction" => Some(policy.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_risk_needs_a_limit_and_an_evicting_policy() {
        let info = |max: &str, policy: &str| {
            format!(
                "# Memory\r\nmaxmemory:{max}\r\nmaxmemory_human:x\r\nmaxmemory_policy:{policy}\r\n"
            )
        };
        assert_eq!(eviction_risk(&info("0", "allkeys-lru")), None);
        assert_eq!(eviction_risk(&info("104857600", "noeviction")), None);
        assert_eq!(
            eviction_risk(&info("104857600", "volatile-ttl")),
            Some("volatile-ttl".to_owned())
        );
        assert_eq!(eviction_risk("garbage"), None);
    }
}
