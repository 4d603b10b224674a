//! Acquire, extend, release and drop on one node: the key layout and the typed outcomes.

use std::time::Instant;

use redis::AsyncCommands;
use redlease::{Client, Error, Lost, ReleaseOutcome};

use crate::{SECOND, get, ms, pttl, raw, setup};

#[tokio::test]
async fn acquire_writes_token_with_ttl_and_a_fence_counter_without_ttl() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let before = Instant::now();
    let guard = client.try_acquire("orders", 10 * SECOND).await.unwrap();
    let after = Instant::now();

    assert_eq!(guard.name(), "orders");
    assert_eq!(guard.fence(), 1);
    assert_eq!(
        get(&mut conn, "redlease:{orders}").await.as_deref(),
        Some(guard.token().expose())
    );
    let ttl = pttl(&mut conn, "redlease:{orders}").await;
    assert!((9_000..=10_000).contains(&ttl), "lock key PTTL {ttl}");
    assert_eq!(
        pttl(&mut conn, "redlease:{orders}:fence").await,
        -1,
        "fence counter must not expire"
    );

    // Valid from the moment the request was sent, minus 1% + 2 ms of drift.
    let trusted = ms(10_000 - 102);
    assert!(guard.valid_until() >= before + trusted && guard.valid_until() <= after + trusted);
    assert!(guard.is_held());
    assert!(guard.remaining() > 9 * SECOND);
}

#[tokio::test]
async fn custom_prefix_namespaces_every_key() {
    let server = redlease_testkit::RedisServer::start().unwrap();
    let client = Client::builder()
        .url(server.url())
        .prefix("app:locks:")
        .build()
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let guard = client.try_acquire("n", SECOND).await.unwrap();
    assert_eq!(client.prefix(), "app:locks:");
    assert!(get(&mut conn, "app:locks:{n}").await.is_some());
    assert_eq!(
        get(&mut conn, "app:locks:{n}:fence").await.as_deref(),
        Some("1")
    );
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn release_deletes_only_our_key() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let guard = client.try_acquire("r", 10 * SECOND).await.unwrap();
    assert_eq!(guard.release().await.unwrap(), ReleaseOutcome::Released);
    assert_eq!(get(&mut conn, "redlease:{r}").await, None);
    assert_eq!(
        get(&mut conn, "redlease:{r}:fence").await.as_deref(),
        Some("1"),
        "the fence survives release"
    );
}

#[tokio::test]
async fn release_after_expiry_leaves_the_next_holders_key_untouched() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let first = client.try_acquire("x", ms(100)).await.unwrap();
    tokio::time::sleep(ms(200)).await;
    assert!(!first.is_held());
    let second = client.try_acquire("x", 10 * SECOND).await.unwrap();

    assert_eq!(first.release().await.unwrap(), ReleaseOutcome::HeldByOther);
    assert_eq!(
        get(&mut conn, "redlease:{x}").await.as_deref(),
        Some(second.token().expose())
    );
    assert!(pttl(&mut conn, "redlease:{x}").await > 9_000);
    assert_eq!(second.release().await.unwrap(), ReleaseOutcome::Released);
}

#[tokio::test]
async fn release_after_expiry_with_no_other_holder_reports_expired() {
    let (_server, client) = setup().await;
    let guard = client.try_acquire("gone", ms(50)).await.unwrap();
    tokio::time::sleep(ms(120)).await;
    assert_eq!(guard.release().await.unwrap(), ReleaseOutcome::Expired);
}

#[tokio::test]
async fn extend_of_a_held_lease_moves_its_ttl_and_deadline() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let mut guard = client.try_acquire("e", SECOND).await.unwrap();
    let old_deadline = guard.valid_until();
    guard.extend(30 * SECOND).await.unwrap();
    assert!(pttl(&mut conn, "redlease:{e}").await > 29_000);
    assert!(guard.valid_until() > old_deadline + 28 * SECOND);
    assert_eq!(guard.ttl(), 30 * SECOND);
    assert_eq!(guard.fence(), 1, "extending does not take a new fence");
}

#[tokio::test]
async fn extend_of_an_expired_lease_fails_and_does_not_recreate_the_key() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let mut guard = client.try_acquire("late", ms(50)).await.unwrap();
    tokio::time::sleep(ms(120)).await;
    assert!(matches!(
        guard.extend(10 * SECOND).await,
        Err(Error::Lost(Lost::Expired))
    ));
    assert_eq!(get(&mut conn, "redlease:{late}").await, None);
}

#[tokio::test]
async fn extend_finds_a_deleted_key_and_does_not_recreate_it() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let mut guard = client.try_acquire("deleted", 10 * SECOND).await.unwrap();
    let _: () = conn.del("redlease:{deleted}").await.unwrap();
    assert!(matches!(
        guard.extend(10 * SECOND).await,
        Err(Error::Lost(Lost::Expired))
    ));
    assert!(
        !guard.is_held(),
        "a failed extend ends the guard's validity"
    );
    assert_eq!(get(&mut conn, "redlease:{deleted}").await, None);
}

#[tokio::test]
async fn extend_finds_another_owner_and_leaves_its_key_alone() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let mut guard = client.try_acquire("stolen", 10 * SECOND).await.unwrap();
    let _: () = conn.set("redlease:{stolen}", "someone-else").await.unwrap();
    assert!(matches!(
        guard.extend(10 * SECOND).await,
        Err(Error::Lost(Lost::HeldByOther))
    ));
    assert_eq!(
        pttl(&mut conn, "redlease:{stolen}").await,
        -1,
        "the other owner's key keeps its TTL"
    );
    assert_eq!(guard.release().await.unwrap(), ReleaseOutcome::HeldByOther);
    assert_eq!(
        get(&mut conn, "redlease:{stolen}").await.as_deref(),
        Some("someone-else")
    );
}

#[tokio::test]
async fn dropping_a_guard_releases_it_in_the_background() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    drop(client.try_acquire("dropped", 60 * SECOND).await.unwrap());
    let deadline = Instant::now() + 5 * SECOND;
    while get(&mut conn, "redlease:{dropped}").await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the dropped guard's key was not deleted"
        );
        tokio::time::sleep(ms(5)).await;
    }
    client
        .try_acquire("dropped", SECOND)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[test]
fn a_guard_dropped_outside_a_runtime_expires_with_its_ttl() {
    let server = redlease_testkit::RedisServer::start().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = runtime.block_on(async {
        let client = Client::connect(&server.url()).await.unwrap();
        client.try_acquire("outside", ms(300)).await.unwrap()
    });
    drop(guard); // no runtime here: nothing is spawned, nothing blocks
    runtime.block_on(async {
        let mut conn = raw(&server).await;
        assert!(get(&mut conn, "redlease:{outside}").await.is_some());
        tokio::time::sleep(ms(400)).await;
        assert_eq!(get(&mut conn, "redlease:{outside}").await, None);
    });
}

#[tokio::test]
async fn a_caller_supplied_connection_works() {
    let server = redlease_testkit::RedisServer::start().unwrap();
    let conn = raw(&server).await;
    let client = Client::builder().connection(conn).build().await.unwrap();
    let guard = client.try_acquire("mine", SECOND).await.unwrap();
    assert!(
        client
            .try_acquire("mine", SECOND)
            .await
            .unwrap_err()
            .is_contended()
    );
    assert_eq!(guard.release().await.unwrap(), ReleaseOutcome::Released);
}

#[tokio::test]
async fn formatting_never_shows_the_token() {
    let (_server, client) = setup().await;
    let guard = client.try_acquire("secret", SECOND).await.unwrap();
    let shown = format!("{guard:?} {client:?}");
    assert!(!shown.contains(guard.token().expose()), "{shown}");
    assert!(shown.contains(&guard.token().fingerprint()));
}
