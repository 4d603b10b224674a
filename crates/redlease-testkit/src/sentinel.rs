//! A primary with replicas, watched by Redis Sentinel processes
//! (`redis-server sentinel.conf --sentinel`).

use std::time::Duration;

use redis::Value;

use crate::control::{await_acks, info_field, query, query_text, role, wait_until};
use crate::{Error, RedisServer};

/// The service (master) name the sentinels monitor.
pub(crate) const SERVICE: &str = "redlease-test";
/// How long setting up or failing over may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// A primary, its replicas, and the sentinels watching them, on free loopback ports; every
/// process is killed on drop.
///
/// Server 0 starts as the primary; the others replicate it. The sentinels consider the
/// primary down after 1 s without an answer, and need a majority of themselves to agree.
///
/// ```no_run
/// let group = redlease_testkit::SentinelGroup::start(1, 1)?;
/// assert_eq!(group.primary()?, 0);
/// assert_eq!(group.failover()?, 1);
/// # Ok::<(), redlease_testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct SentinelGroup {
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl SentinelGroup {
    /// Starts a primary with `replicas` replicas and `sentinels` sentinels, and waits until
    /// the replicas are in sync and every sentinel knows them.
    ///
    /// # Errors
    ///
    /// Returns an error if a process cannot be started or the group does not settle within
    /// 15 seconds.
    pub fn start(replicas: usize, sentinels: usize) -> Result<Self, Error> {
        // Replicas sync at once rather than after the default 5 s delay.
        let server = || {
            RedisServer::builder()
                .arg("--repl-diskless-sync-delay")
                .arg("0")
        };
        let primary = server().start()?;
        let primary_port = primary.port().to_string();
        let mut servers = vec![primary];
        for _ in 0..replicas {
            servers.push(
                server()
                    .arg("--replicaof")
                    .arg("127.0.0.1")
                    .arg(primary_port.clone())
                    .start()?,
            );
        }
        for replica in &servers[1..] {
            wait_until("a replica to sync", SETTLE_TIMEOUT, || {
                let info = query_text(replica.port(), &["INFO", "replication"])?;
                Ok(info_field(&info, "master_link_status") == Some("up"))
            })?;
        }
        await_acks(servers[0].port(), replicas, SETTLE_TIMEOUT)?;
        let quorum = sentinels / 2 + 1;
        let config = format!(
            "sentinel resolve-hostnames no\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 5000\n\
             sentinel parallel-syncs {SERVICE} 1\n"
        );
        let mut watchers = Vec::with_capacity(sentinels);
        for _ in 0..sentinels {
            watchers.push(
                RedisServer::builder()
                    .config(config.clone())
                    .arg("--sentinel")
                    .start()?,
            );
        }
        let group = Self {
            servers,
            sentinels: watchers,
        };
        for sentinel in &group.sentinels {
            wait_until(
                "a sentinel to discover the replicas",
                SETTLE_TIMEOUT,
                || Ok(Self::known_replicas(sentinel.port())? == replicas),
            )?;
        }
        Ok(group)
    }

    /// The monitored service's name.
    pub fn service(&self) -> &'static str {
        SERVICE
    }

    /// The sentinels' URLs.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The data servers: server 0 started as the primary.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The data servers, mutably (to pause or kill one).
    pub fn servers_mut(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// The index of the server the first sentinel names as primary.
    ///
    /// # Errors
    ///
    /// Returns an error if the sentinel does not answer or names an unknown server.
    pub fn primary(&self) -> Result<usize, Error> {
        let sentinel = self
            .sentinels
            .first()
            .ok_or_else(|| Error::new("no sentinel"))?;
        let reply = query(
            sentinel.port(),
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
        )?;
        let (_, port): (String, u16) = redis::from_redis_value(reply)
            .map_err(|e| Error::new(format!("unexpected sentinel reply: {e}")))?;
        self.servers
            .iter()
            .position(|server| server.port() == port)
            .ok_or_else(|| Error::new(format!("the sentinel names unknown port {port}")))
    }

    /// Forces a failover (`SENTINEL FAILOVER`, no agreement needed) and waits until a replica
    /// is the primary, the old primary replicates it, and the sentinels name it. Returns the
    /// new primary's index. (The old primary is told to replicate the new one right away,
    /// as the sentinel would within 10 s.)
    ///
    /// # Errors
    ///
    /// Returns an error if the sentinel refuses or the failover does not finish within 15
    /// seconds.
    pub fn failover(&self) -> Result<usize, Error> {
        let old = self.primary()?;
        let sentinel = self
            .sentinels
            .first()
            .ok_or_else(|| Error::new("no sentinel"))?;
        // Right after a change the sentinel may not consider any replica suitable yet.
        wait_until("the sentinel to start a failover", SETTLE_TIMEOUT, || {
            Ok(query(sentinel.port(), &["SENTINEL", "FAILOVER", SERVICE]).is_ok())
        })?;
        let mut new = old;
        wait_until("the sentinel to name a new primary", SETTLE_TIMEOUT, || {
            new = self.primary()?;
            Ok(new != old && role(self.servers[new].port())? == "master")
        })?;
        // The sentinel turns the old primary into a replica when it next looks at it, which
        // may take 10 s; do it now (as it will), so that tests need not wait.
        let new_port = self.servers[new].port().to_string();
        query(
            self.servers[old].port(),
            &["REPLICAOF", "127.0.0.1", &new_port],
        )?;
        self.await_settled(new)?;
        Ok(new)
    }

    /// Waits until the sentinels replace the primary `old` on their own (after it was paused
    /// or killed: they notice within about a second, then elect and promote a replica), and
    /// returns the new primary's index.
    ///
    /// # Errors
    ///
    /// Returns an error if no new primary is named within 15 seconds.
    pub fn await_new_primary(&self, old: usize) -> Result<usize, Error> {
        let mut new = old;
        wait_until("the sentinels to promote a replica", SETTLE_TIMEOUT, || {
            new = self.primary()?;
            Ok(new != old && role(self.servers[new].port())? == "master")
        })?;
        Ok(new)
    }

    /// Waits until the server `primary` is the only primary, every other live server
    /// replicates it and acknowledges its writes, and every sentinel names it.
    ///
    /// # Errors
    ///
    /// Returns an error if that does not happen within 15 seconds.
    pub fn await_settled(&self, primary: usize) -> Result<(), Error> {
        let primary_port = self.servers[primary].port();
        wait_until("the replicas to follow the primary", SETTLE_TIMEOUT, || {
            for (i, server) in self.servers.iter().enumerate() {
                if i == primary || !server.is_running() {
                    continue;
                }
                let info = query_text(server.port(), &["INFO", "replication"])?;
                if info_field(&info, "master_port") != Some(primary_port.to_string().as_str())
                    || info_field(&info, "master_link_status") != Some("up")
                {
                    return Ok(false);
                }
            }
            let live = self
                .servers
                .iter()
                .enumerate()
                .filter(|&(i, server)| i != primary && server.is_running())
                .count();
            if await_acks(primary_port, live, Duration::from_millis(500)).is_err() {
                return Ok(false);
            }
            for sentinel in &self.sentinels {
                let reply = query(
                    sentinel.port(),
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
                )?;
                let (_, port): (String, u16) = redis::from_redis_value(reply)
                    .map_err(|e| Error::new(format!("unexpected sentinel reply: {e}")))?;
                if port != primary_port {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// How many healthy replicas the sentinel on `port` knows.
    fn known_replicas(port: u16) -> Result<usize, Error> {
        let Value::Array(replicas) = query(port, &["SENTINEL", "REPLICAS", SERVICE])? else {
            return Ok(0);
        };
        let mut healthy = 0;
        for replica in replicas {
            let fields: Vec<String> =
                redis::from_redis_value(replica).or_else(|_| Ok::<_, Error>(Vec::new()))?;
            let flags = fields
                .iter()
                .position(|f| f == "flags")
                .and_then(|i| fields.get(i + 1));
            if flags.is_some_and(|f| f == "slave") {
                healthy += 1;
            }
        }
        Ok(healthy)
    }
}
