//! Waiting woken by release notifications, and fair (FIFO) mode.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::AsyncCommands;
use redlease::{Client, ConfigError, Error, LockOptions, Retry};
use redlease_testkit::{RedisServer, start_nodes};

use crate::{SECOND, ms, raw, released_to, setup, waiting};

/// A fallback delay far longer than the test: only a notification can wake the waiter.
fn patient() -> LockOptions {
    LockOptions::new(30 * SECOND).retry(Retry::fixed(60 * SECOND).timeout(120 * SECOND))
}

/// Releases `holder` and returns the guard `waiter` gets, which must come long before the
/// waiter's 60 s fallback: only the release notification can have woken it.
async fn release_and_wake(
    holder: redlease::Guard,
    waiter: tokio::task::JoinHandle<Result<redlease::Guard, Error>>,
) -> redlease::Guard {
    let (guard, took) = released_to(holder, waiter).await;
    assert!(took < 5 * SECOND, "took {took:?}; the fallback is 60 s");
    guard
}

#[tokio::test]
async fn a_release_wakes_a_waiter_long_before_its_fallback_timer() {
    let (_server, client) = setup().await;
    let holder = client.try_acquire("notify", 30 * SECOND).await.unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("notify", &patient()).await })
    };
    tokio::time::sleep(ms(200)).await;
    let holder_fence = holder.fence();
    let guard = release_and_wake(holder, waiter).await;
    assert!(guard.fence() > holder_fence);
}

#[tokio::test]
async fn waiters_in_other_clients_are_woken_too() {
    let (server, holder_client) = setup().await;
    let holder = holder_client
        .try_acquire("shared", 30 * SECOND)
        .await
        .unwrap();
    let mut waiters = Vec::new();
    for _ in 0..4 {
        let client = Client::connect(&server.url()).await.unwrap();
        waiters.push(tokio::spawn(async move {
            let guard = client.acquire("shared", &patient()).await?;
            guard.release().await
        }));
    }
    tokio::time::sleep(ms(200)).await;
    holder.release().await.unwrap();
    for waiter in waiters {
        tokio::time::timeout(10 * SECOND, waiter)
            .await
            .expect("each waiter woken in turn")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn a_killed_subscriber_connection_is_replaced_and_waiting_goes_on() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let holder = client
        .try_acquire("resubscribe", 30 * SECOND)
        .await
        .unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("resubscribe", &patient()).await })
    };
    tokio::time::sleep(ms(200)).await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1, "one subscriber connection per client");
    tokio::time::sleep(ms(300)).await; // the waiter notices, retries and subscribes again
    let guard = release_and_wake(holder, waiter).await;
    guard.release().await.unwrap();
}

#[tokio::test]
async fn fair_waiters_get_the_lock_in_arrival_order() {
    let (server, client) = setup().await;
    let fair = |ttl| {
        LockOptions::new(ttl)
            .fair(true)
            .retry(Retry::fixed(SECOND).timeout(30 * SECOND))
    };
    let holder = client.acquire("fifo", &fair(30 * SECOND)).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for id in 0..5 {
        // A client each, as if five processes queued one after the other.
        let client = Client::connect(&server.url()).await.unwrap();
        let order = order.clone();
        waiters.push(tokio::spawn(async move {
            let guard = client.acquire("fifo", &fair(30 * SECOND)).await.unwrap();
            order.lock().unwrap().push(id);
            guard.release().await.unwrap();
        }));
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(waiting(&server, "redlease:{fifo}:waiters").await, 5);
    holder.release().await.unwrap();
    for waiter in waiters {
        tokio::time::timeout(10 * SECOND, waiter)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
}

/// A waiter entry for `token` whose wake-ups go to `channel` (as the library writes them).
fn fair_entry(token: char, channel: &str) -> String {
    format!("{}f{channel}", token.to_string().repeat(32))
}

#[tokio::test]
async fn a_dead_fair_waiter_is_skipped_at_once() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // A waiter that listed itself, then its process died: nothing listens on its channel.
    let _: () = conn
        .rpush(
            "redlease:{crash}:waiters",
            fair_entry('g', "redlease:wake:gone"),
        )
        .await
        .unwrap();
    let options = LockOptions::new(SECOND)
        .fair(true)
        .retry(Retry::fixed(ms(100)).timeout(10 * SECOND));
    let started = Instant::now();
    let guard = client.acquire("crash", &options).await.unwrap();
    assert!(
        started.elapsed() < ms(800),
        "waited {:?}",
        started.elapsed()
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_hung_fair_waiter_holds_the_lock_up_only_for_its_turn() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // A waiter whose process hangs: its client still listens, but it never takes its turn.
    let mut hung = redis::Client::open(server.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    hung.subscribe("redlease:wake:hung").await.unwrap();
    let _: () = conn
        .rpush(
            "redlease:{hang}:waiters",
            fair_entry('h', "redlease:wake:hung"),
        )
        .await
        .unwrap();
    let options = LockOptions::new(SECOND)
        .fair(true)
        .retry(Retry::fixed(ms(100)).timeout(10 * SECOND));
    let started = Instant::now();
    let guard = client.acquire("hang", &options).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= ms(400),
        "the hung waiter's turn was honoured: waited {waited:?}"
    );
    assert!(waited < ms(2_500), "waited {waited:?}");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn an_aborted_fair_waiter_leaves_the_queue_at_once() {
    let (server, client) = setup().await;
    let options = LockOptions::new(30 * SECOND)
        .fair(true)
        .retry(Retry::fixed(SECOND));
    let holder = client.acquire("leave", &options).await.unwrap();
    let waiter = {
        let (client, options) = (client.clone(), options.clone());
        tokio::spawn(async move { client.acquire("leave", &options).await })
    };
    tokio::time::sleep(ms(200)).await;
    assert_eq!(waiting(&server, "redlease:{leave}:waiters").await, 1);
    waiter.abort();
    let deadline = Instant::now() + 2 * SECOND;
    loop {
        if waiting(&server, "redlease:{leave}:waiters").await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the aborted waiter is still queued"
        );
        tokio::time::sleep(ms(10)).await;
    }
    holder.release().await.unwrap();
}

#[tokio::test]
async fn fair_mode_needs_one_node() {
    let servers = start_nodes(3).unwrap();
    let client = servers
        .iter()
        .fold(Client::builder(), |b, s| b.url(s.url()))
        .build()
        .await
        .unwrap();
    let err = client
        .acquire("n", &LockOptions::new(SECOND).fair(true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ConfigError::FairNeedsOneNode)),
        "{err:?}"
    );
}

/// A client on a caller-supplied `ConnectionManager` for `server`, with or without a `redis`
/// client to open its pub/sub connection on.
async fn caller_connection_client(server: &RedisServer, pubsub: bool) -> Client {
    let server = redis::Client::open(server.url()).unwrap();
    let manager = redis::aio::ConnectionManager::new(server.clone())
        .await
        .unwrap();
    let builder = if pubsub {
        Client::builder().connection_with_pubsub(manager, server)
    } else {
        Client::builder().connection(manager)
    };
    builder.build().await.unwrap()
}

#[tokio::test]
async fn a_caller_connection_with_a_pubsub_client_is_woken_by_the_release() {
    let (server, holder_client) = setup().await;
    let client = caller_connection_client(&server, true).await;
    let holder = holder_client.try_acquire("own", 30 * SECOND).await.unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("own", &patient()).await })
    };
    // Listed among the waiters: only a waiter whose client subscribed is.
    let deadline = Instant::now() + 5 * SECOND;
    while waiting(&server, "redlease:{own}:waiters").await == 0 {
        assert!(Instant::now() < deadline, "the waiter never listed itself");
        tokio::time::sleep(ms(10)).await;
    }
    let holder_fence = holder.fence();
    let guard = release_and_wake(holder, waiter).await;
    assert!(guard.fence() > holder_fence);
}

/// What a `tracing` subscriber wrote, for tests that check a log line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// One thread (the default test runtime), so that the subscriber set for it sees every event.
#[tokio::test]
async fn a_caller_connection_alone_polls() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let (server, holder_client) = setup().await;
    let client = caller_connection_client(&server, false).await;
    // Contended, so it waits: the first wait of the client says that it polls.
    let contended = LockOptions::new(SECOND).retry(Retry::fixed(ms(20)).timeout(ms(100)));
    let blocker = holder_client
        .try_acquire("blocker", 30 * SECOND)
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            client.acquire("blocker", &contended).await,
            Err(Error::TimedOut { .. })
        ));
    }
    blocker.release().await.unwrap();
    let said = captured.text();
    assert_eq!(
        said.matches("waiters poll on their retry policy").count(),
        1,
        "the polling warning, once per client: {said}"
    );
    assert!(said.contains("WARN"), "{said}");
    let holder = holder_client
        .try_acquire("polls", 30 * SECOND)
        .await
        .unwrap();
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.acquire("polls", &patient()).await })
    };
    tokio::time::sleep(ms(300)).await;
    assert_eq!(
        waiting(&server, "redlease:{polls}:waiters").await,
        0,
        "without a pub/sub connection the waiter cannot be woken, so it is not listed"
    );
    holder.release().await.unwrap();
    // Its next poll is 60 s away: nothing wakes it before.
    tokio::time::sleep(SECOND).await;
    assert!(!waiter.is_finished(), "a polling waiter was woken");
    waiter.abort();
}
