//! The notified handoff with bare commands and no lock library: what the wire allows when every
//! waiter is told about every release. Acquire is `SET key token NX PX ttl`; when the key is
//! taken, the client waits for a message on the lock's release channel (it subscribes on its
//! first contention, then tries again before waiting, so a release between its failed `SET` and
//! its subscription is not missed), then sends `SET NX` again. Release is a compare-and-delete
//! script that also `PUBLISH`es on that channel, waking every subscribed waiter at once.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{FutureExt as _, StreamExt as _};
use redis::Script;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};

use super::raw::{self, RawHeld};
use super::{Adapter, FALLBACK_POLL, Failure};

/// Compare-and-delete that announces the release on `ARGV[2]`.
const RELEASE: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', ARGV[2], '')
  return 1
end
return 0";

/// How long a waiter keeps trying before it gives up (a bound, never reached in a healthy run).
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// The wire row has nothing to configure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WireConfig;

/// A command connection and a subscriber connection to the first node.
pub(crate) struct Wire {
    connection: MultiplexedConnection,
    subscriber: PubSubSink,
    /// Release messages of every subscribed channel, in arrival order. Only one acquire waits
    /// on it at a time (S3 gives each worker its own client); the lock keeps `&self` calls safe.
    messages: tokio::sync::Mutex<PubSubStream>,
    /// Channels already subscribed to.
    subscribed: Mutex<HashSet<String>>,
    release: Script,
}

/// The release channel of the lock `key`.
fn channel(key: &str) -> String {
    format!("{key}:released")
}

impl Adapter for Wire {
    type Config = WireConfig;
    type Held = RawHeld;
    const BLOCKING: bool = false;

    async fn connect(_config: &WireConfig, urls: &[String]) -> Result<Self, String> {
        let (client, connection) = raw::connect_first(urls).await?;
        let (subscriber, messages) = client
            .get_async_pubsub()
            .await
            .map_err(|e| e.to_string())?
            .split();
        Ok(Self {
            connection,
            subscriber,
            messages: tokio::sync::Mutex::new(messages),
            subscribed: Mutex::new(HashSet::new()),
            release: Script::new(RELEASE),
        })
    }

    async fn acquire(&self, name: &str) -> Result<RawHeld, Failure> {
        let held = RawHeld::new("wire", name);
        let channel = channel(&held.key);
        let mut connection = self.connection.clone();
        let mut messages = self.messages.lock().await;
        let give_up = Instant::now() + GIVE_UP_AFTER;
        loop {
            // Messages of releases before this attempt say nothing it will not see.
            while let Some(message) = messages.next().now_or_never() {
                if message.is_none() {
                    return Err(Failure::Error("subscriber connection closed".to_owned()));
                }
            }
            if held.set_nx(&mut connection).await? {
                return Ok(held);
            }
            if Instant::now() >= give_up {
                return Err(Failure::GaveUp);
            }
            if self.subscribe(&channel).await? {
                // Subscribed just now: a release may have come before; try again first.
                continue;
            }
            match tokio::time::timeout(FALLBACK_POLL, messages.next()).await {
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => {
                    return Err(Failure::Error("subscriber connection closed".to_owned()));
                }
            }
        }
    }

    async fn release(&self, held: RawHeld) -> Result<(), String> {
        let mut call = self.release.key(&held.key);
        call.arg(&held.token).arg(channel(&held.key));
        raw::release(&mut call, &mut self.connection.clone()).await
    }
}

impl Wire {
    /// Subscribes to `channel` unless already subscribed; whether it subscribed now.
    async fn subscribe(&self, channel: &str) -> Result<bool, Failure> {
        let subscribed = || {
            self.subscribed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if subscribed().contains(channel) {
            return Ok(false);
        }
        self.subscriber
            .clone()
            .subscribe(channel)
            .await
            .map_err(|e| Failure::Error(format!("SUBSCRIBE: {e}")))?;
        subscribed().insert(channel.to_owned());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_is_woken_by_the_release_not_by_its_fallback_poll() {
        let server = redlease_testkit::RedisServer::start().expect("redis-server");
        let urls = [server.url()];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let holder = Wire::connect(&WireConfig, &urls).await.expect("holder");
            let waiter = Wire::connect(&WireConfig, &urls).await.expect("waiter");
            let held = holder.acquire("t").await.expect("free lock taken");
            let waiting = tokio::spawn(async move {
                let got = waiter.acquire("t").await;
                (waiter, got, Instant::now())
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!waiting.is_finished(), "taken while held");
            let released = Instant::now();
            holder.release(held).await.expect("released");
            let (waiter, got, returned) = waiting.await.expect("joined");
            let got = got.expect("taken after the release");
            let woken_after = returned - released;
            assert!(woken_after < FALLBACK_POLL / 4, "{woken_after:?}");
            waiter.release(got).await.expect("released");
            let again = holder.acquire("t").await.expect("free again");
            holder.release(again).await.expect("released");
        });
    }
}
