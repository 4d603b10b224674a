//! Every bad input gets its own clear error: no panic, no hang, no secret in the message.

use std::time::{Duration, Instant};

use redlease::{Client, ConfigError, Error, LockOptions, MAX_NAME_LEN, MAX_TTL, Retry};

use crate::{SECOND, config_error, ms, setup};

#[tokio::test]
async fn bad_ttls_are_rejected() {
    let (_server, client) = setup().await;
    assert_eq!(
        config_error(client.try_acquire("n", Duration::ZERO).await),
        ConfigError::ZeroTtl
    );
    assert!(matches!(
        config_error(client.try_acquire("n", Duration::MAX).await),
        ConfigError::TtlTooLarge { .. }
    ));
    assert!(matches!(
        config_error(client.try_acquire("n", MAX_TTL + ms(1)).await),
        ConfigError::TtlTooLarge { .. }
    ));
    assert!(matches!(
        config_error(client.try_acquire("n", ms(2)).await),
        ConfigError::TtlNotAboveDrift { .. }
    ));
    let mut guard = client.try_acquire("n", SECOND).await.unwrap();
    assert_eq!(
        config_error(guard.extend(Duration::ZERO).await),
        ConfigError::ZeroTtl
    );
    assert!(guard.is_held(), "a rejected extend changes nothing");
}

#[tokio::test]
async fn bad_names_are_rejected() {
    let (_server, client) = setup().await;
    assert_eq!(
        config_error(client.try_acquire("", SECOND).await),
        ConfigError::EmptyName
    );
    assert_eq!(
        config_error(client.try_acquire("a}b", SECOND).await),
        ConfigError::NameHasBraces
    );
    let long = "n".repeat(MAX_NAME_LEN + 1);
    assert!(matches!(
        config_error(client.try_acquire(&long, SECOND).await),
        ConfigError::NameTooLong { .. }
    ));
}

#[tokio::test]
async fn bad_retry_policies_are_rejected() {
    let (_server, client) = setup().await;
    for retry in [
        Retry::fixed(ms(1)).max_attempts(0),
        Retry::fixed(Duration::ZERO),
    ] {
        let options = LockOptions::new(SECOND).retry(retry);
        assert!(matches!(
            config_error(client.acquire("n", &options).await),
            ConfigError::InvalidRetry(_)
        ));
    }
}

#[tokio::test]
async fn bad_client_settings_are_rejected() {
    let server = redlease_testkit::RedisServer::start().unwrap();
    let builder = || Client::builder().url(server.url());
    assert!(matches!(
        config_error(builder().prefix("a{b}:").build().await),
        ConfigError::InvalidPrefix(_)
    ));
    for factor in [f64::NAN, f64::INFINITY, -0.1, 1.0] {
        assert!(matches!(
            config_error(builder().drift_factor(factor).build().await),
            ConfigError::InvalidDriftFactor(_)
        ));
    }
    assert!(matches!(
        config_error(builder().connect_timeout(Duration::ZERO).build().await),
        ConfigError::ZeroTimeout(_)
    ));
    assert!(matches!(
        config_error(builder().command_timeout(Duration::ZERO).build().await),
        ConfigError::ZeroTimeout(_)
    ));
}

#[tokio::test]
async fn malformed_urls_are_rejected_without_showing_the_password() {
    for url in [
        "",
        "not a url",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
        "redis://127.0.0.1:6379/notadb",
        "redis://:hunter2@127.0.0.1:99999",
    ] {
        let err = Client::connect(url).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig(ConfigError::MalformedUrl { .. })),
            "{url:?}: {err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_with_a_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = Client::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < 3 * SECOND, "{:?}", started.elapsed());
}

/// A server that accepts connections but never answers (here: a paused redis-server) must
/// produce a timeout within the configured bounds, not a hang.
#[tokio::test]
async fn a_silent_server_times_out_instead_of_hanging() {
    let mut server = redlease_testkit::RedisServer::start().unwrap();
    server.pause().unwrap();
    let started = Instant::now();
    let result = async {
        let client = Client::builder()
            .url(server.url())
            .connect_timeout(ms(300))
            .command_timeout(ms(300))
            .build()
            .await?;
        client.try_acquire("n", SECOND).await
    }
    .await;
    let err = result.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < 2 * SECOND, "{:?}", started.elapsed());
    server.resume().unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_a_server_error_that_does_not_echo_it() {
    let server = redlease_testkit::RedisServer::builder()
        .password("right-password")
        .start()
        .unwrap();
    let url = format!("redis://:hunter2@127.0.0.1:{}", server.port());
    let err = Client::connect(&url).await.unwrap_err();
    assert!(
        err.is_backend() && !err.is_connection() && !err.is_timeout(),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let good = format!("redis://:right-password@127.0.0.1:{}", server.port());
    let client = Client::connect(&good).await.unwrap();
    assert!(!format!("{client:?}").contains("right-password"));
    client
        .try_acquire("n", SECOND)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_killed_server_gives_a_connection_error_not_contention() {
    let (mut server, client) = setup().await;
    server.kill();
    let err = client.try_acquire("n", SECOND).await.unwrap_err();
    assert!(err.is_connection() || err.is_timeout(), "{err:?}");
    assert!(!err.is_contended());
}
