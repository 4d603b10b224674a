//! Called from inside a Tokio runtime, the blocking API refuses with an error instead of
//! stalling the runtime or panicking.

use redlease::blocking::Client;
use redlease::{ConfigError, Error, LockOptions};

use crate::{SECOND, get, setup, wait_until_absent};

/// Fails the test unless `result` is the refusal to block inside a runtime.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: &Result<T, Error>) {
    assert!(
        matches!(
            result,
            Err(Error::InvalidConfig(ConfigError::InsideAsyncRuntime))
        ),
        "expected InsideAsyncRuntime, got {result:?}"
    );
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_blocking_call_inside_a_runtime_is_a_config_error() {
    let (server, client) = setup();
    let mut guard = client.try_acquire("inside", 30 * SECOND).unwrap();
    let url = server.url();
    tokio_runtime().block_on(async {
        assert_refused(&Client::connect(&url));
        assert_refused(&redlease::Client::builder().url(&url).build_blocking());
        assert_refused(&client.try_acquire("other", SECOND));
        assert_refused(&client.acquire("other", &LockOptions::new(SECOND)));
        assert_refused(&client.inspect("inside"));
        assert_refused(&client.list("*"));
        assert_refused(&client.force_release("inside"));
        assert_refused(&guard.extend(SECOND));
        let semaphore = client.semaphore("other", 2);
        assert_refused(&semaphore.try_acquire(SECOND));
        assert_refused(&semaphore.acquire(&LockOptions::new(SECOND)));
        assert_refused(&semaphore.resize());
        let rwlock = client.rwlock("other");
        assert_refused(&rwlock.try_read(SECOND));
        assert_refused(&rwlock.read(&LockOptions::new(SECOND)));
        assert_refused(&rwlock.write(&LockOptions::new(SECOND)));
        // What does not block works anywhere.
        assert!(guard.is_held());
        assert_eq!(guard.fence(), 1);
        let err = Error::from(ConfigError::InsideAsyncRuntime);
        assert!(err.to_string().contains("inside a Tokio runtime"), "{err}");
    });
    assert_eq!(get(&server, "redlease:{other}"), None, "nothing was sent");
    assert!(
        guard.remaining() > 29 * SECOND,
        "the refused extend changed nothing"
    );
    guard.release().unwrap();
}

/// A release refused inside a runtime drops the guard, whose release then runs in the
/// background without blocking the runtime.
#[test]
fn a_guard_released_or_dropped_inside_a_runtime_is_released_in_the_background() {
    let (server, client) = setup();
    let refused = client.try_acquire("refused", 30 * SECOND).unwrap();
    let dropped = client.try_acquire("dropped", 30 * SECOND).unwrap();
    tokio_runtime().block_on(async {
        assert_refused(&refused.release());
        let lost = dropped.lost();
        drop(dropped);
        tokio::task::yield_now().await;
        drop(lost);
    });
    wait_until_absent(&server, "redlease:{refused}", 3 * SECOND);
    wait_until_absent(&server, "redlease:{dropped}", 3 * SECOND);
}
