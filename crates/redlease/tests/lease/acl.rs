//! ACL users: the minimal rules documented in DESIGN.md are enough for everything a lock user
//! does, and a user without them gets a clear, immediate error.

use std::time::Instant;

use redlease::{Client, Error, LockOptions, Retry};
use redlease_testkit::RedisServer;

use crate::{SECOND, ms, not_replicated, raw};

/// The minimal ACL of DESIGN.md ("ACL users"), for the default prefix. (Cluster adds
/// `+cluster|slots +asking`, a Sentinel-managed primary `+role`.)
pub(crate) const MINIMAL_ACL: &str = "resetkeys ~redlease:* resetchannels &redlease:* -@all \
     +evalsha +eval +script|load +ping +info \
     +get +set +del +incr +type +exists +pexpire +pttl +publish \
     +lpop +rpush +lrem +lpos +lindex +lrange +llen \
     +time +pexpireat +zadd +zrem +zscore +zcard +zrange +zrangebyscore +zremrangebyscore \
     +hset +hget +hdel +hgetall \
     +subscribe +unsubscribe +scan +wait +echo";

/// Creates `user` with `password` and `rules` on the server at `url`.
pub(crate) async fn create_user(url: &str, user: &str, password: &str, rules: &str) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(user)
        .arg("on")
        .arg(format!(">{password}"));
    for rule in rules.split_whitespace() {
        cmd.arg(rule);
    }
    let () = cmd.query_async(&mut conn).await.unwrap();
}

fn user_url(server: &RedisServer, user: &str, password: &str) -> String {
    format!("redis://{user}:{password}@127.0.0.1:{}", server.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_limited_to_the_prefix_can_do_everything_a_lock_user_does() {
    let server = RedisServer::start().unwrap();
    create_user(&server.url(), "locker", "locker-pw", MINIMAL_ACL).await;
    let client = Client::builder()
        .url(user_url(&server, "locker", "locker-pw"))
        .eviction_check(redlease::EvictionCheck::Refuse) // needs INFO
        .build()
        .await
        .unwrap();

    // Acquire, extend, look, list, wait for a release, release.
    let mut guard = client.try_acquire("reports", 10 * SECOND).await.unwrap();
    guard.extend(10 * SECOND).await.unwrap();
    assert!(client.inspect("reports").await.unwrap().holder.is_some());
    assert_eq!(client.list("*").await.unwrap().len(), 1);
    let waiter = {
        let client = client.clone();
        let slow =
            LockOptions::new(5 * SECOND).retry(Retry::fixed(5 * SECOND).timeout(20 * SECOND));
        tokio::spawn(async move { client.acquire("reports", &slow).await })
    };
    tokio::time::sleep(ms(200)).await;
    assert_eq!(client.inspect("reports").await.unwrap().waiting_clients, 1);
    let released = Instant::now();
    guard.release().await.unwrap();
    let next = tokio::time::timeout(10 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(released.elapsed() < 2 * SECOND, "woken by pub/sub");
    next.release().await.unwrap();

    // Fair mode (sorted sets, TIME) and breaking a lock.
    let fair = LockOptions::new(5 * SECOND).fair(true).retry(Retry::none());
    let guard = client.acquire("queue", &fair).await.unwrap();
    assert!(client.acquire("queue", &fair).await.is_err());
    assert!(client.force_release("queue").await.unwrap().is_some());
    drop(guard);

    // A semaphore's permit and resize, a reader's share, and the view of both.
    let permit = client
        .semaphore("slots", 2)
        .try_acquire(5 * SECOND)
        .await
        .unwrap();
    assert_eq!(
        client.semaphore("slots", 3).resize().await.unwrap(),
        Some(2)
    );
    assert_eq!(client.inspect("slots").await.unwrap().permits.len(), 1);
    permit.release().await.unwrap();
    let mut reader = client.rwlock("doc").try_read(5 * SECOND).await.unwrap();
    reader.extend(5 * SECOND).await.unwrap();
    assert_eq!(client.inspect("doc").await.unwrap().readers.len(), 1);
    reader.release().await.unwrap();

    // WAIT is allowed (it finds no replica here, which is not a permission error).
    let acked = Client::builder()
        .url(user_url(&server, "locker", "locker-pw"))
        .replicas(1, ms(50))
        .build()
        .await
        .unwrap();
    assert_eq!(
        not_replicated(&acked.try_acquire("waited", SECOND).await),
        Some((0, 1))
    );
}

#[tokio::test]
async fn a_user_without_rights_on_the_prefix_gets_a_clear_error_at_once() {
    let server = RedisServer::start().unwrap();
    let elsewhere = MINIMAL_ACL.replace("~redlease:*", "~other:*");
    create_user(&server.url(), "stranger", "stranger-pw", &elsewhere).await;
    let client = Client::builder()
        .url(user_url(&server, "stranger", "stranger-pw"))
        .build()
        .await
        .expect("connecting and loading scripts needs no key rights");
    let started = Instant::now();
    // The default retry policy would try for 10 s: a permission error ends it at once.
    let err = client
        .acquire("reports", &LockOptions::new(SECOND))
        .await
        .unwrap_err();
    assert!(started.elapsed() < 2 * SECOND, "{:?}", started.elapsed());
    let Error::Backend(backend) = &err else {
        panic!("expected a backend error, got {err:?}");
    };
    assert_eq!(backend.code(), Some("NOPERM"), "{err}");
    let shown = err.to_string();
    assert!(shown.contains("minimal ACL"), "{shown}");
    assert!(!shown.contains("stranger-pw"), "{shown}");
    // Nothing was written.
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut raw(&server).await, "*")
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");

    // A user that may not even load scripts is refused when connecting.
    create_user(
        &server.url(),
        "nobody",
        "nobody-pw",
        "resetkeys -@all +ping",
    )
    .await;
    let err = Client::builder()
        .url(user_url(&server, "nobody", "nobody-pw"))
        .build()
        .await
        .unwrap_err();
    let Error::Backend(backend) = &err else {
        panic!("expected a backend error, got {err:?}");
    };
    assert_eq!(backend.code(), Some("NOPERM"), "{err}");
    assert!(err.to_string().contains("minimal ACL"), "{err}");
}
