//! A reply lost after the server granted the lease must not turn into a phantom conflict.

use redis::AsyncCommands;
use redlease::{LockOptions, Retry};

use crate::{SECOND, get, ms, paused_server, raw};

/// The server is paused, so the first attempts time out on the client while their requests
/// wait in the socket. When it resumes it grants the first queued attempt; the next attempt,
/// carrying the same token, must be told "granted", not "held by someone else".
#[tokio::test]
async fn a_retry_after_a_timed_out_grant_succeeds_with_the_same_token() {
    let (mut server, client) = paused_server(ms(150)).await;
    let options = LockOptions::new(10 * SECOND).retry(Retry::fixed(ms(100)).timeout(20 * SECOND));
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("flaky", &options).await })
    };
    tokio::time::sleep(ms(600)).await;
    server.resume().unwrap();
    let guard = waiter
        .await
        .unwrap()
        .expect("the retry must see its own token as success");

    let mut conn = raw(&server).await;
    assert_eq!(
        get(&mut conn, "redlease:{flaky}").await.as_deref(),
        Some(guard.token().expose())
    );
    assert_eq!(
        guard.fence(),
        1,
        "only the first grant increments the fence"
    );
    let fence: u64 = conn.get("redlease:{flaky}:fence").await.unwrap();
    assert_eq!(fence, 1);
    assert!(guard.is_held());
}

/// When the reply comes back after the lease's validity has ended, the lease is useless:
/// acquire must not return it, and must not leave the key behind.
#[tokio::test]
async fn a_grant_that_arrives_too_late_is_not_returned_and_is_cleaned_up() {
    let (mut server, client) = paused_server(5 * SECOND).await;
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.try_acquire("slow", ms(200)).await })
    };
    tokio::time::sleep(ms(400)).await;
    server.resume().unwrap();
    let err = waiter
        .await
        .unwrap()
        .expect_err("a lease past its validity must not be returned");
    assert!(err.is_timeout(), "{err}");
    let mut conn = raw(&server).await;
    tokio::time::sleep(ms(250)).await;
    assert_eq!(get(&mut conn, "redlease:{slow}").await, None);
}
