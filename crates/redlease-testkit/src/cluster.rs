//! A local Redis Cluster: several `redis-server --cluster-enabled yes` processes joined and
//! given slots programmatically (no `redis-cli` needed).

use std::thread;
use std::time::Duration;

use crate::control::{await_acks_on, info_field, query, query_text, role, wait_until};
use crate::{Error, RedisServer};

/// The number of hash slots of a Redis Cluster.
const SLOTS: usize = 16384;
/// How long the cluster may take to agree on its shape.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Cluster bus timeout: long enough that a busy test machine does not make nodes look dead.
const NODE_TIMEOUT_MS: &str = "5000";

/// A Redis Cluster of `masters` primaries, each with the same number of replicas, on free
/// loopback ports. Every node is a [`RedisServer`], killed on drop.
///
/// Nodes `0..masters` start as primaries, owning equal ranges of slots in order; node
/// `masters + k` starts as a replica of primary `k % masters`.
///
/// ```no_run
/// let cluster = redlease_testkit::RedisCluster::start(3, 1)?;
/// assert_eq!(cluster.nodes().len(), 6);
/// cluster.failover(3)?; // node 3, the replica of node 0, takes over its slots
/// # Ok::<(), redlease_testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    masters: usize,
}

impl RedisCluster {
    /// Starts the nodes, assigns the slots, joins them, attaches the replicas, and waits until
    /// every node reports a healthy cluster with the full topology.
    ///
    /// # Errors
    ///
    /// Returns an error if a server cannot be started, a setup command fails, or the cluster
    /// does not settle within 15 seconds.
    pub fn start(masters: usize, replicas_per_master: usize) -> Result<Self, Error> {
        if masters == 0 {
            return Err(Error::new("a cluster needs at least one master"));
        }
        let total = masters * (1 + replicas_per_master);
        let nodes = start_cluster_nodes(total)?;
        let cluster = Self { nodes, masters };
        cluster.form()?;
        Ok(cluster)
    }

    /// All nodes, primaries first (see the type's documentation for the initial roles).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// All nodes, mutably (to pause or kill one).
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// How many primaries the cluster started with.
    pub fn masters(&self) -> usize {
        self.masters
    }

    /// Every node's URL, for a cluster client's seed list.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Makes replica `node` take over its primary's slots with a coordinated `CLUSTER
    /// FAILOVER` (the primary stops accepting writes, the replica catches up, then they swap),
    /// and waits until every node agrees on the new primary.
    ///
    /// # Errors
    ///
    /// Returns an error if `node` is not a replica, the command fails, or the cluster does not
    /// settle within 15 seconds.
    pub fn failover(&self, node: usize) -> Result<(), Error> {
        let port = self
            .nodes
            .get(node)
            .ok_or_else(|| Error::new(format!("no node {node}")))?
            .port();
        let info = query_text(port, &["INFO", "replication"])?;
        let (Some("slave"), Some(master_port)) = (
            info_field(&info, "role"),
            info_field(&info, "master_port").and_then(|p| p.parse::<u16>().ok()),
        ) else {
            return Err(Error::new(format!("node {node} is not a replica")));
        };
        query(port, &["CLUSTER", "FAILOVER"])?;
        wait_until("the replica to become primary", SETTLE_TIMEOUT, || {
            Ok(role(port)? == "master" && role(master_port)? == "slave")
        })?;
        let new_id = query_text(port, &["CLUSTER", "MYID"])?;
        wait_until("every node to see the new primary", SETTLE_TIMEOUT, || {
            for other in &self.nodes {
                let view = query_text(other.port(), &["CLUSTER", "NODES"])?;
                let agrees = view.lines().any(|line| {
                    let fields: Vec<&str> = line.split(' ').collect();
                    fields.first() == Some(&new_id.as_str())
                        && fields.get(2).is_some_and(|flags| flags.contains("master"))
                        && fields.len() > 8
                });
                if !agrees || !cluster_ok(other.port())? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Assigns slots, joins the nodes, attaches replicas, and waits for agreement.
    fn form(&self) -> Result<(), Error> {
        let ports: Vec<u16> = self.nodes.iter().map(RedisServer::port).collect();
        for (i, &port) in ports.iter().enumerate() {
            let epoch = (i + 1).to_string();
            query(port, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch])?;
        }
        for (i, &port) in ports.iter().take(self.masters).enumerate() {
            let (first, last) = (i * SLOTS / self.masters, (i + 1) * SLOTS / self.masters - 1);
            let range = [
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ];
            if query(port, &range).is_err() {
                // Redis before 7.0 has no ADDSLOTSRANGE: every slot by itself.
                let slots: Vec<String> = (first..=last).map(|slot| slot.to_string()).collect();
                let mut each = vec!["CLUSTER", "ADDSLOTS"];
                each.extend(slots.iter().map(String::as_str));
                query(port, &each)?;
            }
        }
        let seed = ports[0].to_string();
        for &port in &ports[1..] {
            query(port, &["CLUSTER", "MEET", "127.0.0.1", &seed])?;
        }
        let total = ports.len().to_string();
        wait_until("every node to know every other", SETTLE_TIMEOUT, || {
            for &port in &ports {
                let info = query_text(port, &["CLUSTER", "INFO"])?;
                if info_field(&info, "cluster_known_nodes") != Some(total.as_str()) {
                    return Ok(false);
                }
                let view = query_text(port, &["CLUSTER", "NODES"])?;
                if view.contains("handshake") || view.contains("noaddr") {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        let ids = ports
            .iter()
            .map(|&port| query_text(port, &["CLUSTER", "MYID"]))
            .collect::<Result<Vec<_>, _>>()?;
        for (k, &port) in ports.iter().enumerate().skip(self.masters) {
            let master = &ids[(k - self.masters) % self.masters];
            // The replica may not have heard of its master through gossip yet.
            wait_until("a replica to attach to its master", SETTLE_TIMEOUT, || {
                Ok(query(port, &["CLUSTER", "REPLICATE", master]).is_ok())
            })?;
        }
        wait_until("the cluster to settle", SETTLE_TIMEOUT, || {
            for (k, &port) in ports.iter().enumerate() {
                if !cluster_ok(port)? {
                    return Ok(false);
                }
                if k >= self.masters {
                    let info = query_text(port, &["INFO", "replication"])?;
                    if info_field(&info, "master_link_status") != Some("up") {
                        return Ok(false);
                    }
                }
                // Every node sees every replica as one.
                let view = query_text(port, &["CLUSTER", "NODES"])?;
                let replicas = view.lines().filter(|l| l.contains("slave")).count();
                if replicas != ports.len() - self.masters {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        // A replica that has just synced is counted by WAIT only after its first
        // acknowledgement: wait for it, with a key of a slot each primary owns.
        let replicas = (ports.len() - self.masters) / self.masters;
        for (i, &port) in ports.iter().take(self.masters).enumerate() {
            let first = i * SLOTS / self.masters;
            let last = (i + 1) * SLOTS / self.masters - 1;
            let key = (0..100_000)
                .map(|n| format!("redlease-testkit:probe:{n}"))
                .find(|key| {
                    let slot = query(port, &["CLUSTER", "KEYSLOT", key]).ok();
                    let slot: Option<usize> = slot.and_then(|s| redis::from_redis_value(s).ok());
                    slot.is_some_and(|slot| (first..=last).contains(&slot))
                })
                .ok_or_else(|| Error::new("no probe key for a primary's slots"))?;
            await_acks_on(port, &key, replicas, SETTLE_TIMEOUT)?;
        }
        Ok(())
    }
}

/// Whether the node on `port` reports `cluster_state:ok` with every slot served.
fn cluster_ok(port: u16) -> Result<bool, Error> {
    let info = query_text(port, &["CLUSTER", "INFO"])?;
    Ok(info_field(&info, "cluster_state") == Some("ok")
        && info_field(&info, "cluster_slots_ok") == Some("16384"))
}

/// Starts `n` cluster-enabled servers in parallel.
fn start_cluster_nodes(n: usize) -> Result<Vec<RedisServer>, Error> {
    thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    RedisServer::builder()
                        .arg("--cluster-enabled")
                        .arg("yes")
                        .arg("--cluster-config-file")
                        .arg("nodes.conf")
                        .arg("--cluster-node-timeout")
                        .arg(NODE_TIMEOUT_MS)
                        // Replicas sync at once rather than after the default 5 s delay.
                        .arg("--repl-diskless-sync-delay")
                        .arg("0")
                        .start()
                })
            })
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for handle in handles {
            match handle.join() {
                Ok(Ok(server)) => nodes.push(server),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(Error::new("a thread starting redis-server panicked")),
            }
        }
        Ok(nodes)
    })
}
