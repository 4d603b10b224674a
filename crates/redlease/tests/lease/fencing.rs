//! Fencing tokens: strictly increasing per name, independent across names.

use crate::{SECOND, ms, setup};

#[tokio::test]
async fn fence_strictly_increases_across_acquisitions_of_one_name() {
    let (_server, client) = setup().await;
    let mut last = 0;
    for _ in 0..50 {
        let guard = client.try_acquire("fenced", SECOND).await.unwrap();
        assert!(guard.fence() > last, "fence {} after {last}", guard.fence());
        last = guard.fence();
        guard.release().await.unwrap();
    }
    assert_eq!(last, 50);
}

#[tokio::test]
async fn fence_increases_after_expiry_too() {
    let (_server, client) = setup().await;
    let first = client.try_acquire("expiring", ms(30)).await.unwrap();
    tokio::time::sleep(ms(80)).await;
    let second = client.try_acquire("expiring", SECOND).await.unwrap();
    assert!(second.fence() > first.fence());
    drop(first);
}

#[tokio::test]
async fn fences_are_independent_across_names() {
    let (_server, client) = setup().await;
    for _ in 0..5 {
        client
            .try_acquire("a", SECOND)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let b = client.try_acquire("b", SECOND).await.unwrap();
    assert_eq!(b.fence(), 1);
    let a = client.try_acquire("a", SECOND).await.unwrap();
    assert_eq!(a.fence(), 6);
}

#[tokio::test]
async fn clients_with_different_prefixes_do_not_share_locks_or_fences() {
    let server = redlease_testkit::RedisServer::start().unwrap();
    let one = redlease::Client::builder()
        .url(server.url())
        .prefix("one:")
        .build()
        .await
        .unwrap();
    let two = redlease::Client::builder()
        .url(server.url())
        .prefix("two:")
        .build()
        .await
        .unwrap();
    let a = one.try_acquire("shared-name", SECOND).await.unwrap();
    let b = two.try_acquire("shared-name", SECOND).await.unwrap();
    assert_eq!((a.fence(), b.fence()), (1, 1));
}
