//! redlease, this workspace's library, through its public API only.

use ::redlease::{Client, ClientBuilder, Error, Guard, LockOptions, ReleaseOutcome, Retry};

use super::{Adapter, Failure, TTL};

/// How redlease is set up for a variant.
#[derive(Debug, Clone)]
pub(crate) struct RedleaseConfig {
    /// The retry policy `acquire` is called with (with pub/sub wake-ups, its delays are only
    /// the longest wait between attempts).
    pub(crate) retry: Retry,
    /// First come, first served (`LockOptions::fair`; single node only).
    pub(crate) fair: bool,
}

/// A redlease client and the options every acquire uses.
pub(crate) struct Redlease {
    client: Client,
    options: LockOptions,
}

impl Adapter for Redlease {
    type Config = RedleaseConfig;
    type Held = Guard;
    const BLOCKING: bool = false;

    async fn connect(config: &RedleaseConfig, urls: &[String]) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("no server".to_owned());
        }
        let builder = urls.iter().fold(Client::builder(), ClientBuilder::url);
        let client = builder.build().await.map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            options: LockOptions::new(TTL)
                .retry(config.retry.clone())
                .fair(config.fair),
        })
    }

    async fn acquire(&self, name: &str) -> Result<Guard, Failure> {
        self.client
            .acquire(name, &self.options)
            .await
            .map_err(|e| match e {
                Error::Contended { .. } | Error::TimedOut { .. } => Failure::GaveUp,
                other => Failure::Error(other.to_string()),
            })
    }

    async fn release(&self, guard: Guard) -> Result<(), String> {
        match guard.release().await {
            Ok(ReleaseOutcome::Released) => Ok(()),
            Ok(other) => Err(format!("release: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}
