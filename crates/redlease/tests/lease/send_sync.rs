//! Public futures and guards can cross threads (in the style of tokio's `async_send_sync.rs`).

use std::time::Duration;

use redlease::{
    Client, ClientBuilder, Error, Guard, LockOptions, Permit, ReadGuard, Retry, RwLock, Semaphore,
    Token,
};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>(_: &T) {}

#[allow(dead_code, unused_must_use, clippy::let_underscore_future)]
fn public_types_and_futures_are_send(client: &Client, mut guard: Guard, options: &LockOptions) {
    send_sync(client);
    send_sync(&guard);
    send_sync(options);
    send_sync(&Retry::default());
    send_sync(&Client::builder());
    send_sync::<Option<Token>>(&None);
    send_sync::<Option<Error>>(&None);
    send(&Client::connect("redis://127.0.0.1"));
    send(&ClientBuilder::default().build());
    send(&client.try_acquire("n", Duration::from_secs(1)));
    send(&client.acquire("n", options));
    send(&guard.extend(Duration::from_secs(1)));
    send(&guard.release());
}

#[allow(dead_code, unused_must_use, clippy::let_underscore_future)]
fn semaphores_read_write_locks_and_their_futures_are_send(
    client: &Client,
    permit: Permit,
    reader: ReadGuard,
    options: &LockOptions,
) {
    let semaphore: Semaphore = client.semaphore("n", 2);
    let rwlock: RwLock = client.rwlock("n");
    send_sync(&semaphore);
    send_sync(&rwlock);
    send_sync(&permit);
    send_sync(&reader);
    send(&semaphore.acquire(options));
    send(&semaphore.try_acquire(Duration::from_secs(1)));
    send(&semaphore.resize());
    send(&rwlock.read(options));
    send(&rwlock.try_read(Duration::from_secs(1)));
    send(&rwlock.write(options));
    send(&permit.release());
    send(&reader.release());
}

#[test]
fn errors_are_std_errors_that_cross_threads() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
    assert_error::<redlease::ConfigError>();
    assert_error::<redlease::BackendError>();
}
