//! `rslock` 0.10 (hexcowboy/redlock-async-rs): async Redlock on tokio and redis 1.x.
//!
//! Its `lock()` makes `retry_count` attempts (default 3); after each failed one it runs the
//! unlock script on every node (a second round trip) and, if attempts remain, sleeps a uniformly
//! random whole number of milliseconds in `0..retry_delay` (default 200 ms), then returns
//! `LockError::Unavailable`. Its `acquire()` just calls `lock()` again forever, hiding those
//! give-ups; the suite calls `lock()` itself and counts them.

use std::time::Duration;

use ::rslock::{Lock, LockError, LockManager};

use super::{Adapter, Failure, TTL};

/// rslock's retry settings (`LockManager::set_retry`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RslockConfig {
    /// Attempts per `lock()` call.
    pub(crate) retry_count: u32,
    /// Upper bound (exclusive, whole milliseconds) of the random pause between attempts.
    pub(crate) retry_delay: Duration,
}

impl RslockConfig {
    /// The library's defaults (`DEFAULT_RETRY_COUNT`, `DEFAULT_RETRY_DELAY`).
    pub(crate) const DEFAULT: Self = Self {
        retry_count: 3,
        retry_delay: Duration::from_millis(200),
    };
    /// Fast polling: pauses of 0 or 1 ms, and enough attempts (about a second's worth) that a
    /// call rarely gives up. (A delay of 0 would panic: `random_range(0..0)`.)
    pub(crate) const TUNED: Self = Self {
        retry_count: 1000,
        retry_delay: Duration::from_millis(2),
    };
}

/// An rslock lock manager.
pub(crate) struct Rslock {
    manager: LockManager,
}

impl Adapter for Rslock {
    type Config = RslockConfig;
    type Held = Lock;
    const BLOCKING: bool = false;

    async fn connect(config: &RslockConfig, urls: &[String]) -> Result<Self, String> {
        for url in urls {
            // LockManager::new unwraps Client::open; check the URLs first so it cannot panic.
            redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        }
        let mut manager = LockManager::new(urls.to_vec());
        manager.set_retry(config.retry_count, config.retry_delay);
        // It connects lazily; a GET through every node connects now, so that a bad server shows
        // up here and the first measured call does not pay for the connection.
        match manager
            .query_redis_for_key_value(b"redlease-bench:probe")
            .await
        {
            Ok(_) | Err(LockError::RedisKeyNotFound) => Ok(Self { manager }),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn acquire(&self, name: &str) -> Result<Lock, Failure> {
        self.manager
            .lock(name.as_bytes(), TTL)
            .await
            .map_err(|e| match e {
                LockError::Unavailable => Failure::GaveUp,
                other => Failure::Error(other.to_string()),
            })
    }

    async fn release(&self, lock: Lock) -> Result<(), String> {
        // Best effort by design: rslock reports nothing.
        self.manager.unlock(&lock).await;
        Ok(())
    }
}
