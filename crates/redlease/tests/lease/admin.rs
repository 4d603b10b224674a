//! Inspecting, listing and breaking locks from the outside.

use std::time::Duration;

use redis::AsyncCommands;
use redlease::{ConfigError, Error, LockOptions, Lost, MAX_LABEL_LEN, Retry};

use crate::{SECOND, ms, raw, setup};

#[tokio::test]
async fn inspect_shows_holder_label_time_left_fence_and_waiters() {
    let (_server, client) = setup().await;
    let free = client.inspect("report").await.unwrap();
    assert_eq!(
        (free.holder, free.fence, free.waiting_clients),
        (None, 0, 0)
    );

    let options = LockOptions::new(10 * SECOND)
        .label("host-a pid 42")
        .retry(Retry::none());
    let guard = client.acquire("report", &options).await.unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .acquire(
                    "report",
                    &LockOptions::new(SECOND).retry(Retry::fixed(SECOND)),
                )
                .await
        })
    };
    tokio::time::sleep(ms(200)).await;
    let info = client.inspect("report").await.unwrap();
    let holder = info.holder.expect("held");
    assert_eq!(holder.label, "host-a pid 42");
    assert_eq!(holder.token_fingerprint, guard.token().fingerprint());
    assert!(holder.remaining_ttl.unwrap() > 9 * SECOND);
    assert_eq!((info.waiting_clients, info.held_on, info.nodes), (1, 1, 1));
    // The waiter's first attempt drew a fence too, but nobody got a fence above it.
    assert!(
        (guard.fence()..=guard.fence() + 1).contains(&info.fence),
        "{}",
        info.fence
    );
    waiter.abort();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn list_finds_held_locks_by_pattern() {
    let (_server, client) = setup().await;
    let _a = client.try_acquire("jobs:a", 10 * SECOND).await.unwrap();
    let _b = client.try_acquire("jobs:b", 10 * SECOND).await.unwrap();
    let _c = client.try_acquire("other", 10 * SECOND).await.unwrap();
    client
        .try_acquire("jobs:released", SECOND)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let names: Vec<String> = client
        .list("jobs:*")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["jobs:a", "jobs:b"]);
    assert_eq!(client.list("*").await.unwrap().len(), 3);
    assert!(matches!(
        client.list("").await,
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        client.list("a}").await,
        Err(Error::InvalidConfig(ConfigError::NameHasBraces))
    ));
}

#[tokio::test]
async fn force_release_breaks_the_lock_keeps_the_fence_and_the_holder_learns_it() {
    let (server, client) = setup().await;
    let options = LockOptions::new(3 * SECOND)
        .label("stuck job")
        .auto_renew(true)
        .retry(Retry::none());
    let stuck = client.acquire("stuck", &options).await.unwrap();
    let broken = client
        .force_release("stuck")
        .await
        .unwrap()
        .expect("someone held it");
    assert_eq!(broken.label, "stuck job");
    let fence: u64 = raw(&server)
        .await
        .get("redlease:{stuck}:fence")
        .await
        .unwrap();
    assert_eq!(fence, 1, "the fence counter is kept");
    let next = client.try_acquire("stuck", SECOND).await.unwrap();
    assert!(next.fence() > stuck.fence());
    let reason = tokio::time::timeout(Duration::from_secs(3), stuck.lost())
        .await
        .unwrap();
    // Its next renewal finds the key gone, or already taken by `next`.
    assert!(
        matches!(reason, Lost::Expired | Lost::HeldByOther),
        "{reason:?}"
    );
    assert_eq!(client.force_release("never-held").await.unwrap(), None);
}

#[tokio::test]
async fn an_oversized_label_is_rejected() {
    let (_server, client) = setup().await;
    let options = LockOptions::new(SECOND).label("x".repeat(MAX_LABEL_LEN + 1));
    let err = client.acquire("n", &options).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ConfigError::LabelTooLong { .. })),
        "{err:?}"
    );
}
