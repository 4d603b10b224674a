//! Sentinel: the primary is found through the sentinels and followed across a failover; with
//! replica acknowledgement, a lease the replicas did not confirm is refused.

use redis::AsyncCommands;
use redlease::{Client, ReleaseOutcome};
use redlease_testkit::SentinelGroup;

use crate::acl::{MINIMAL_ACL, create_user};
use crate::{SECOND, config_error, ms, not_replicated};

async fn start(replicas: usize) -> SentinelGroup {
    tokio::task::spawn_blocking(move || SentinelGroup::start(replicas, 1))
        .await
        .unwrap()
        .unwrap()
}

async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_the_primary_across_a_failover() {
    let group = start(1).await;
    // A user with the minimal ACL (plus ROLE, to check a primary is one) on both servers.
    for server in group.servers() {
        create_user(
            &server.url(),
            "locker",
            "locker-pw",
            &format!("{MINIMAL_ACL} +role"),
        )
        .await;
    }
    // Replica acknowledgement makes sure the lease taken before the failover survives it.
    let client = Client::builder()
        .sentinel(group.sentinel_urls(), group.service())
        .sentinel_primary_auth("locker", "locker-pw")
        .replicas(1, SECOND)
        .build()
        .await
        .unwrap();
    let held = client.try_acquire("before", 30 * SECOND).await.unwrap();
    let mut old_primary = conn(&group.servers()[0].url()).await;
    let stored: Option<String> = old_primary.get("redlease:{before}").await.unwrap();
    assert!(stored.unwrap().starts_with(held.token().expose()));

    let group = std::sync::Arc::new(group);
    let switching = group.clone();
    let new = tokio::task::spawn_blocking(move || switching.failover())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new, 1);

    // The lease written before the failover reached the replica, which now serves it. (The
    // first request may meet the connection the demoted primary closed: `acquire` retries.)
    let briefly =
        redlease::LockOptions::new(SECOND).retry(redlease::Retry::fixed(ms(50)).timeout(ms(500)));
    let err = client.acquire("before", &briefly).await.unwrap_err();
    assert!(err.is_contended(), "{err:?}");
    // New leases go to the new primary (the old one, now a replica, refuses writes).
    let after = client.try_acquire("after", 30 * SECOND).await.unwrap();
    let mut new_primary = conn(&group.servers()[new].url()).await;
    let stored: Option<String> = new_primary.get("redlease:{after}").await.unwrap();
    assert!(stored.unwrap().starts_with(after.token().expose()));
    assert!(after.fence() >= 1);
    assert_eq!(held.release().await.unwrap(), ReleaseOutcome::Released);
    assert_eq!(after.release().await.unwrap(), ReleaseOutcome::Released);

    // Waiting still works: the subscriber finds the current primary too.
    let holder = client.try_acquire("wait", 30 * SECOND).await.unwrap();
    let waiter = {
        let client = client.clone();
        let slow = redlease::LockOptions::new(10 * SECOND)
            .retry(redlease::Retry::fixed(5 * SECOND).timeout(20 * SECOND));
        tokio::spawn(async move { client.acquire("wait", &slow).await })
    };
    tokio::time::sleep(ms(200)).await;
    let released = std::time::Instant::now();
    holder.release().await.unwrap();
    let guard = tokio::time::timeout(10 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(released.elapsed() < 2 * SECOND, "{:?}", released.elapsed());
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_acknowledgement_a_lease_the_replica_did_not_confirm_is_refused() {
    let mut group = start(1).await;
    let client = Client::builder()
        .sentinel(group.sentinel_urls(), group.service())
        .replicas(1, ms(200))
        .build()
        .await
        .unwrap();
    let mut guard = client.try_acquire("acked", 30 * SECOND).await.unwrap();
    // Acknowledged means the replica has it now.
    let mut replica = conn(&group.servers()[1].url()).await;
    let stored: Option<String> = replica.get("redlease:{acked}").await.unwrap();
    assert!(stored.unwrap().starts_with(guard.token().expose()));
    guard.extend(30 * SECOND).await.unwrap();

    // A stalled replica acknowledges nothing: the grant is given back, not handed out.
    group.servers_mut()[1].pause().unwrap();
    let unacked = client.try_acquire("unacked", 30 * SECOND).await;
    assert_eq!(not_replicated(&unacked), Some((0, 1)), "{unacked:?}");
    let mut primary = conn(&group.servers()[0].url()).await;
    let stored: Option<String> = primary.get("redlease:{unacked}").await.unwrap();
    assert_eq!(stored, None, "the unreplicated lease was released");
    // An extension that was not replicated fails too; the guard keeps its earlier deadline.
    let deadline = guard.valid_until();
    let extended = guard.extend(60 * SECOND).await;
    assert_eq!(not_replicated(&extended), Some((0, 1)), "{extended:?}");
    assert!(guard.is_held());
    assert_eq!(guard.valid_until(), deadline);
    group.servers_mut()[1].resume().unwrap();

    // More replicas than exist can never acknowledge.
    let greedy = Client::builder()
        .sentinel(group.sentinel_urls(), group.service())
        .replicas(2, ms(100))
        .build()
        .await
        .unwrap();
    let greedy = greedy.try_acquire("greedy", 30 * SECOND).await;
    assert_eq!(not_replicated(&greedy), Some((1, 2)), "{greedy:?}");
    // Once the replica is back, acquiring works again.
    let again = client.try_acquire("unacked", 30 * SECOND).await.unwrap();
    again.release().await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_primary_is_left_for_the_one_the_sentinels_promote() {
    let mut group = start(1).await;
    let client = Client::builder()
        .sentinel(group.sentinel_urls(), group.service())
        .command_timeout(ms(300))
        .build()
        .await
        .unwrap();
    let warm = client.try_acquire("warm-up", SECOND).await.unwrap();
    warm.release().await.unwrap();
    // The primary stops answering, but its connections stay open: only timeouts tell.
    group.servers_mut()[0].pause().unwrap();
    let patient = redlease::LockOptions::new(5 * SECOND)
        .retry(redlease::Retry::fixed(ms(100)).timeout(15 * SECOND));
    let guard = client.acquire("after-stall", &patient).await.unwrap();
    let new = {
        let group = &group;
        tokio::task::block_in_place(|| group.await_new_primary(0)).unwrap()
    };
    assert_eq!(new, 1);
    let stored: Option<String> = conn(&group.servers()[1].url())
        .await
        .get("redlease:{after-stall}")
        .await
        .unwrap();
    assert!(stored.unwrap().starts_with(guard.token().expose()));
    guard.release().await.unwrap();
    group.servers_mut()[0].resume().unwrap();
}

#[tokio::test]
async fn sentinel_settings_are_validated() {
    assert!(matches!(
        config_error(
            Client::builder()
                .sentinel(Vec::<String>::new(), "svc")
                .build()
                .await
        ),
        redlease::ConfigError::NoSeedUrls(_)
    ));
    assert!(matches!(
        config_error(
            Client::builder()
                .sentinel(["redis://127.0.0.1:1"], "")
                .build()
                .await
        ),
        redlease::ConfigError::EmptyServiceName
    ));
    assert!(matches!(
        config_error(
            Client::builder()
                .cluster(Vec::<String>::new())
                .build()
                .await
        ),
        redlease::ConfigError::NoSeedUrls(_)
    ));
    // Nothing listens there: a clear backend error, and the password is not shown.
    let err = Client::builder()
        .sentinel(["redis://:sentinel-secret@127.0.0.1:1"], "svc")
        .sentinel_primary_auth("locker", "primary-secret")
        .connect_timeout(ms(300))
        .build()
        .await
        .unwrap_err();
    assert!(err.is_backend(), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphores_and_read_write_locks_work_on_the_primary_of_a_service() {
    let group = start(1).await;
    let client = Client::builder()
        .sentinel(group.sentinel_urls(), group.service())
        .build()
        .await
        .unwrap();
    let semaphore = client.semaphore("pool", 2);
    let first = semaphore.try_acquire(10 * SECOND).await.unwrap();
    let second = semaphore.try_acquire(10 * SECOND).await.unwrap();
    assert!(
        semaphore
            .try_acquire(SECOND)
            .await
            .unwrap_err()
            .is_contended()
    );
    let waiter = {
        let semaphore = semaphore.clone();
        let patient =
            redlease::LockOptions::new(10 * SECOND).retry(redlease::Retry::fixed(30 * SECOND));
        tokio::spawn(async move { semaphore.acquire(&patient).await })
    };
    tokio::time::sleep(ms(200)).await;
    first.release().await.unwrap();
    let third = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(third.slot(), 0);
    drop((second, third));
    let reader = client.rwlock("doc").try_read(10 * SECOND).await.unwrap();
    assert!(
        client
            .try_acquire("doc", SECOND)
            .await
            .unwrap_err()
            .is_contended()
    );
    assert_eq!(reader.release().await.unwrap(), ReleaseOutcome::Released);
    let writer = client.try_acquire("doc", SECOND).await.unwrap();
    writer.release().await.unwrap();
}
