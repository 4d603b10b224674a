//! Redis Cluster: one lock per slot owner, keys of a name in one slot, waiting through
//! cluster-wide pub/sub, and a primary's failover during contention.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::AsyncCommands;
use redlease::{Client, ConfigError, Error, EvictionCheck, LockOptions, Retry};
use redlease_testkit::RedisCluster;

use crate::acl::{MINIMAL_ACL, create_user};
use crate::{SECOND, ms};

async fn cluster_client(cluster: &RedisCluster) -> Client {
    Client::builder()
        .cluster(cluster.urls())
        .build()
        .await
        .expect("connect to the cluster")
}

/// A plain connection to one node, for looking at what it holds.
async fn node_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keyslot(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_spread_over_the_primaries_and_a_names_keys_share_one_slot() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap()
        .unwrap();
    // A user with the minimal ACL (plus what a cluster client needs) on every node.
    let rules = format!("{MINIMAL_ACL} +cluster|slots +asking");
    for node in cluster.nodes() {
        create_user(&node.url(), "locker", "locker-pw", &rules).await;
    }
    let urls: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|node| format!("redis://locker:locker-pw@127.0.0.1:{}", node.port()))
        .collect();
    let client = Client::builder()
        .cluster(urls.clone())
        .eviction_check(EvictionCheck::Refuse)
        .build()
        .await
        .unwrap();
    let names: Vec<String> = (0..48).map(|i| format!("job:{i}")).collect();
    let mut guards = Vec::new();
    for name in &names {
        guards.push(client.try_acquire(name, 30 * SECOND).await.unwrap());
    }

    // Each primary holds some of the locks, and with each lock key its fence counter.
    let mut held_per_node = Vec::new();
    for node in cluster.nodes() {
        let mut conn = node_conn(&node.url()).await;
        let keys: Vec<String> = conn.keys("redlease:*").await.unwrap();
        let locks: HashSet<&str> = keys
            .iter()
            .filter_map(|key| key.strip_suffix(":fence"))
            .collect();
        for lock in &locks {
            assert!(keys.iter().any(|key| key == lock), "{lock} is on this node");
            assert_eq!(
                keyslot(&mut conn, lock).await,
                keyslot(&mut conn, &format!("{lock}:fence")).await
            );
        }
        held_per_node.push(locks.len());
    }
    assert_eq!(held_per_node.iter().sum::<usize>(), names.len());
    assert!(
        held_per_node.iter().all(|&n| n > 0),
        "spread over every primary: {held_per_node:?}"
    );

    // Looking at locks works across the cluster too.
    let listed = client.list("job:*").await.unwrap();
    assert_eq!(listed.len(), names.len());
    let info = client.inspect("job:7").await.unwrap();
    assert_eq!(
        info.holder.unwrap().token_fingerprint,
        guards[7].token().fingerprint()
    );
    assert!(client.try_acquire("job:7", SECOND).await.is_err());

    for guard in guards {
        assert_eq!(
            guard.release().await.unwrap(),
            redlease::ReleaseOutcome::Released
        );
    }
    assert!(client.list("*").await.unwrap().is_empty());

    renewal_works_across_slots(&client, &urls, &names[..6]).await;
    eviction_check_reads_every_primary(&cluster, urls).await;
}

/// Leases of names in different slots, renewed together, over a caller's cluster connection.
async fn renewal_works_across_slots(client: &Client, urls: &[String], names: &[String]) {
    let connection = redis::cluster::ClusterClient::new(urls.to_vec())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let own = Client::builder()
        .cluster_connection(connection)
        .build()
        .await
        .unwrap();
    let renewing = LockOptions::new(ms(600))
        .auto_renew(true)
        .retry(Retry::none());
    let mut renewed = Vec::new();
    for name in names {
        renewed.push(own.acquire(name, &renewing).await.unwrap());
    }
    tokio::time::sleep(ms(1500)).await;
    for guard in renewed {
        assert!(guard.is_held(), "{} was renewed", guard.name());
        assert!(client.try_acquire(guard.name(), SECOND).await.is_err());
        guard.release().await.unwrap();
    }
}

/// The eviction check reads every primary's policy.
async fn eviction_check_reads_every_primary(cluster: &RedisCluster, urls: Vec<String>) {
    let mut admin = node_conn(&cluster.nodes()[2].url()).await;
    for (name, value) in [("maxmemory", "100mb"), ("maxmemory-policy", "volatile-ttl")] {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    match Client::builder()
        .cluster(urls)
        .eviction_check(EvictionCheck::Refuse)
        .build()
        .await
    {
        Err(Error::InvalidConfig(ConfigError::EvictingPolicy { node, policy })) => {
            assert_eq!(policy, "volatile-ttl");
            assert!(
                node.ends_with(&cluster.nodes()[2].port().to_string()),
                "{node}"
            );
        }
        other => panic!("expected EvictingPolicy, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_any_primary_wakes_waiters_through_cluster_pub_sub() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap()
        .unwrap();
    // Subscribing goes to the first seed node; pick names owned by the other primaries.
    let client = cluster_client(&cluster).await;
    let mut conn = node_conn(&cluster.nodes()[0].url()).await;
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("wake:{i}");
        let slot = keyslot(&mut conn, &format!("redlease:{{{name}}}")).await;
        if usize::from(slot) >= 16384 / 3 {
            names.push(name);
        }
        if names.len() == 3 {
            break;
        }
    }
    for name in names {
        let holder = client.try_acquire(&name, 30 * SECOND).await.unwrap();
        // Polling alone would take 5 s: only a notification can wake the waiter sooner.
        let slow_polling =
            LockOptions::new(10 * SECOND).retry(Retry::fixed(5 * SECOND).timeout(20 * SECOND));
        let waiter = {
            let client = client.clone();
            let name = name.clone();
            tokio::spawn(async move { client.acquire(&name, &slow_polling).await })
        };
        tokio::time::sleep(ms(200)).await;
        let released = Instant::now();
        holder.release().await.unwrap();
        let guard = tokio::time::timeout(10 * SECOND, waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            released.elapsed() < 2 * SECOND,
            "woken after {:?}",
            released.elapsed()
        );
        guard.release().await.unwrap();
    }
}

/// Per lock name: whether someone is inside, and the last fence handed out.
#[derive(Default)]
struct Oracle {
    inside: HashMap<String, AtomicBool>,
    last_fence: Mutex<HashMap<String, u64>>,
    violations: AtomicU64,
    granted: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_failover_during_contention_never_hands_out_a_false_lease() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap()
        .unwrap();
    let cluster = Arc::new(cluster);
    // With replica acknowledgement: every grant waits for the primary's replica, through
    // the redirections the failover causes.
    let client = Client::builder()
        .cluster(cluster.urls())
        .command_timeout(ms(500))
        .replicas(1, ms(200))
        .build()
        .await
        .unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("contended:{i}")).collect();
    let oracle = Arc::new(Oracle {
        inside: names
            .iter()
            .map(|name| (name.clone(), AtomicBool::new(false)))
            .collect(),
        ..Oracle::default()
    });
    // A separate cluster client checks, after each grant, that the key holds the winner's token.
    let checker = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let after_failover = Arc::new(AtomicU64::new(0));
    let failed_over = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (client, oracle, stop) = (client.clone(), oracle.clone(), stop.clone());
        let (names, mut checker) = (names.clone(), checker.clone());
        let (after_failover, failed_over) = (after_failover.clone(), failed_over.clone());
        workers.push(tokio::spawn(async move {
            let mut round = worker;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let name = &names[round % names.len()];
                let options =
                    LockOptions::new(5 * SECOND).retry(Retry::default().timeout(2 * SECOND));
                let Ok(guard) = client.acquire(name, &options).await else {
                    continue; // contention or the failover: both are fine, a false grant is not
                };
                oracle.granted.fetch_add(1, Ordering::Relaxed);
                if failed_over.load(Ordering::Relaxed) {
                    after_failover.fetch_add(1, Ordering::Relaxed);
                }
                if oracle.inside[name].swap(true, Ordering::SeqCst) {
                    oracle.violations.fetch_add(1, Ordering::Relaxed);
                }
                {
                    let mut fences = oracle.last_fence.lock().unwrap();
                    let last = fences.entry(name.clone()).or_default();
                    if guard.fence() <= *last {
                        oracle.violations.fetch_add(1, Ordering::Relaxed);
                    }
                    *last = guard.fence();
                }
                let key = format!("redlease:{{{name}}}");
                let stored: Option<String> = checker.get(&key).await.unwrap_or(None);
                if !stored.is_some_and(|value| value.starts_with(guard.token().expose())) {
                    oracle.violations.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(ms(2)).await;
                oracle.inside[name].store(false, Ordering::SeqCst);
                let _ = guard.release().await;
            }
        }));
    }
    tokio::time::sleep(ms(700)).await;
    let before = oracle.granted.load(Ordering::Relaxed);
    // Node 3 replicates node 0: it takes over a third of the slots while the workers run.
    let switching = cluster.clone();
    tokio::task::spawn_blocking(move || switching.failover(3))
        .await
        .unwrap()
        .unwrap();
    failed_over.store(true, Ordering::Relaxed);
    // Contend on after the switch: until enough grants were made, or 10 s at most.
    let deadline = Instant::now() + 10 * SECOND;
    while after_failover.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        tokio::time::sleep(ms(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        tokio::time::timeout(10 * SECOND, worker)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(before > 0, "grants before the failover");
    assert!(
        after_failover.load(Ordering::Relaxed) > 0,
        "grants after the failover"
    );
    assert_eq!(oracle.violations.load(Ordering::Relaxed), 0);

    // Every name is grantable again, including those whose primary changed.
    for name in &names {
        let guard = client.try_acquire(name, SECOND).await.unwrap();
        guard.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphores_and_read_write_locks_keep_their_keys_in_one_slot_and_wake_across_the_cluster() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap()
        .unwrap();
    let client = cluster_client(&cluster).await;
    let waiter_client = cluster_client(&cluster).await;
    // Names on every primary: permits, then readers waiting for a writer to finish.
    let mut kept = Vec::new();
    for i in 0..6 {
        let name = format!("pool:{i}");
        let semaphore = client.semaphore(&name, 2);
        let first = semaphore.try_acquire(30 * SECOND).await.unwrap();
        let second = semaphore.try_acquire(30 * SECOND).await.unwrap();
        assert_eq!((first.slot(), second.slot()), (0, 1));
        let waiter = {
            let semaphore = waiter_client.semaphore(&name, 2);
            let patient = LockOptions::new(10 * SECOND).retry(Retry::fixed(30 * SECOND));
            tokio::spawn(async move { semaphore.acquire(&patient).await })
        };
        tokio::time::sleep(ms(100)).await;
        let released = Instant::now();
        first.release().await.unwrap();
        let third = tokio::time::timeout(5 * SECOND, waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(released.elapsed() < SECOND, "woken across the cluster");
        assert_eq!(third.slot(), 0);
        assert_eq!(client.inspect(&name).await.unwrap().permits.len(), 2);
        kept.push((second, third));

        let doc = format!("doc:{i}");
        let writer = client.try_acquire(&doc, 30 * SECOND).await.unwrap();
        let reader = {
            let rw = waiter_client.rwlock(&doc);
            let patient = LockOptions::new(10 * SECOND).retry(Retry::fixed(30 * SECOND));
            tokio::spawn(async move { rw.read(&patient).await })
        };
        tokio::time::sleep(ms(100)).await;
        let released = Instant::now();
        writer.release().await.unwrap();
        let reader = tokio::time::timeout(5 * SECOND, reader)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(released.elapsed() < SECOND, "woken across the cluster");
        assert_eq!(client.inspect(&doc).await.unwrap().readers.len(), 1);
        reader.release().await.unwrap();
    }
    let listed = client.list("pool:*").await.unwrap();
    assert_eq!(listed.len(), 6);
    assert!(listed.iter().all(|info| info.limit == Some(2)));
}
