//! `redlock` 2.0 (badboy/redlock-rs): blocking Redlock on redis 0.23.
//!
//! Every command opens a new TCP connection (`Client::get_connection`). `lock()` makes
//! `retry_count` attempts (default 3); after each failed one it runs the unlock script on every
//! node and sleeps a uniformly random whole number of milliseconds in `0..retry_delay` (default
//! 200) — also after the last attempt — then returns `Ok(None)`. Its calls block, so the suite
//! runs this adapter on threads of its own.

use ::redlock::{Lock, RedLock};

use super::{Adapter, Failure, TTL};

/// redlock's retry settings (`RedLock::set_retry`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedlockConfig {
    /// Attempts per `lock()` call.
    pub(crate) retry_count: u32,
    /// Upper bound (exclusive) of the random pause after an attempt, in milliseconds.
    pub(crate) retry_delay_ms: u32,
}

impl RedlockConfig {
    /// The library's defaults (`DEFAULT_RETRY_COUNT`, `DEFAULT_RETRY_DELAY`).
    pub(crate) const DEFAULT: Self = Self {
        retry_count: 3,
        retry_delay_ms: 200,
    };
    /// Fast polling: pauses of 0 or 1 ms and about a second's worth of attempts. (A delay of 0
    /// would panic: `gen_range(0..0)`.)
    pub(crate) const TUNED: Self = Self {
        retry_count: 1000,
        retry_delay_ms: 2,
    };
}

/// A redlock lock manager.
pub(crate) struct Redlock {
    manager: RedLock,
    ttl_ms: usize,
}

/// The resource and owner value of a lock we hold (`redlock::Lock` borrows its manager).
pub(crate) struct RedlockHeld {
    resource: Vec<u8>,
    val: Vec<u8>,
}

impl Adapter for Redlock {
    type Config = RedlockConfig;
    type Held = RedlockHeld;
    const BLOCKING: bool = true;

    async fn connect(config: &RedlockConfig, urls: &[String]) -> Result<Self, String> {
        for url in urls {
            // RedLock::new unwraps Client::open; check the URLs first so it cannot panic.
            redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        }
        let mut manager = RedLock::new(urls.to_vec());
        for server in &manager.servers {
            // It connects for every command; check once that each server accepts connections.
            server.get_connection().map_err(|e| e.to_string())?;
        }
        manager.set_retry(config.retry_count, config.retry_delay_ms);
        Ok(Self {
            manager,
            ttl_ms: usize::try_from(TTL.as_millis()).unwrap_or(usize::MAX),
        })
    }

    async fn acquire(&self, name: &str) -> Result<RedlockHeld, Failure> {
        match self.manager.lock(name.as_bytes(), self.ttl_ms) {
            Ok(Some(lock)) => Ok(RedlockHeld {
                resource: lock.resource,
                val: lock.val,
            }),
            Ok(None) => Err(Failure::GaveUp),
            Err(e) => Err(Failure::Error(e.to_string())),
        }
    }

    async fn release(&self, held: RedlockHeld) -> Result<(), String> {
        // Best effort by design: redlock reports nothing.
        self.manager.unlock(&Lock {
            resource: held.resource,
            val: held.val,
            validity_time: 0,
            lock_manager: &self.manager,
        });
        Ok(())
    }
}
