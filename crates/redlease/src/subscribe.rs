//! Waiting without polling. Every client has one wake channel and one subscriber connection
//! on it; a waiter lists itself (its token and the channel) in the lock's waiters, and a
//! release hands the lock to the oldest waiter whose client still listens, publishing
//! "token fence lock-key" on that client's channel (a semaphore's: "token fence:slot key"). So a release wakes exactly one waiter, in
//! one process, and nobody else sees a message.
//!
//! A message can arrive before its waiter has registered here (the waiter listed itself in an
//! attempt whose reply is still on its way): it is kept for a while and handed to the waiter
//! when it registers. If the subscriber connection fails, every waiter is told and falls back
//! to its retry policy until a new subscriber connects; waiting never hangs on it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::conn::PubSubSource;

/// How long a hand-off that found no waiter is kept for one that registers late.
const EARLY_WAKE_KEPT: Duration = Duration::from_secs(2);
/// How many such hand-offs are kept at most.
const EARLY_WAKES_MAX: usize = 256;

/// The client's subscriber: a task owning one pub/sub connection, started on first use.
pub(crate) struct Subscriber {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where a subscriber connection can be opened, with the index of the backend each one
    /// is; empty when every backend is a caller-supplied connection (waiting then polls).
    sources: Vec<(usize, PubSubSource)>,
    /// The client's wake channel.
    channel: String,
    connect_timeout: Duration,
    state: Mutex<State>,
    /// The subscription is confirmed and the connection has not failed since.
    live: AtomicBool,
    /// The backend the live connection is on.
    backend: AtomicUsize,
    /// The client is gone: the subscriber task ends.
    shutdown: Notify,
    /// The warning that waiting polls (no sources) was given.
    warned_polling: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Waiters by token.
    waiters: HashMap<String, mpsc::UnboundedSender<Handed>>,
    /// Hand-offs that arrived before their waiter registered.
    early: VecDeque<(String, Handed, Instant)>,
    /// A subscriber task is running (or starting).
    running: bool,
    /// Callers waiting for the subscription to be confirmed.
    confirming: Vec<oneshot::Sender<bool>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("sources", &self.inner.sources.len())
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

/// What a release handed a waiter: the hold's fence, and a semaphore permit's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handed {
    pub(crate) fence: u64,
    pub(crate) slot: Option<u32>,
}

impl Handed {
    /// Reads a hand-off message, `token fence[:slot] key`: the token and what it was handed.
    fn parse(message: &str) -> Option<(&str, Self)> {
        let mut fields = message.splitn(3, ' ');
        let token = fields.next()?;
        let grant = fields.next()?;
        let (fence, slot) = match grant.split_once(':') {
            Some((fence, slot)) => (fence, Some(slot.parse().ok()?)),
            None => (grant, None),
        };
        Some((
            token,
            Self {
                fence: fence.parse().ok()?,
                slot,
            },
        ))
    }
}

/// One waiter's registration; unregisters when dropped.
pub(crate) struct Watch {
    inner: Arc<Inner>,
    token: String,
    handed: mpsc::UnboundedReceiver<Handed>,
}

impl Watch {
    /// Waits until a release hands this waiter the hold, and returns what it was handed;
    /// `None` if the subscriber connection is gone (the caller then polls).
    pub(crate) async fn handed(&mut self) -> Option<Handed> {
        self.handed.recv().await
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.inner.state().waiters.remove(&self.token);
    }
}

impl Subscriber {
    pub(crate) fn new(
        sources: Vec<(usize, PubSubSource)>,
        channel: String,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sources,
                channel,
                connect_timeout,
                state: Mutex::new(State::default()),
                live: AtomicBool::new(false),
                backend: AtomicUsize::new(0),
                shutdown: Notify::new(),
                warned_polling: AtomicBool::new(false),
            }),
        }
    }

    /// The client's wake channel: what a waiter lists with its token.
    pub(crate) fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// The backend whose wake-ups reach this client, while the subscription is live: a
    /// waiter lists itself there (and, with several backends, that backend decides first).
    pub(crate) fn live_backend(&self) -> Option<usize> {
        self.inner
            .live
            .load(Ordering::Acquire)
            .then(|| self.inner.backend.load(Ordering::Acquire))
    }

    /// Registers a waiter for `token`, subscribing first if needed; `None` when no
    /// subscriber connection can be had (the caller then polls). A wake-up for `token` that
    /// arrived before this call is not lost.
    pub(crate) async fn watch(&self, token: &str) -> Option<Watch> {
        if self.inner.sources.is_empty() {
            if !self.inner.warned_polling.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "redlease has no pub/sub connection for this client's caller-supplied \
                     connections, so waiters poll on their retry policy instead of being woken \
                     by releases; pass a redis::Client to ClientBuilder::connection_with_pubsub \
                     to have them woken (this is said once per client)"
                );
            }
            return None;
        }
        if !self.inner.live.load(Ordering::Acquire) {
            let (confirmed, confirmation) = oneshot::channel();
            {
                let mut state = self.inner.state();
                state.confirming.push(confirmed);
                if !state.running {
                    state.running = true;
                    tokio::spawn(subscriber(self.inner.clone()));
                }
            }
            // Connecting and subscribing are bounded by the connect timeout in the task; this
            // bound only guards against a task that stopped answering.
            let live = tokio::time::timeout(self.inner.connect_timeout * 2, confirmation).await;
            if !matches!(live, Ok(Ok(true))) {
                return None;
            }
        }
        let (sender, handed) = mpsc::unbounded_channel();
        let mut state = self.inner.state();
        let now = Instant::now();
        state
            .early
            .retain(|&(_, _, at)| now.saturating_duration_since(at) < EARLY_WAKE_KEPT);
        if let Some(at) = state.early.iter().position(|(early, _, _)| early == token)
            && let Some((_, handed, _)) = state.early.remove(at)
        {
            let _ = sender.send(handed);
        }
        state.waiters.insert(token.to_owned(), sender);
        Some(Watch {
            inner: self.inner.clone(),
            token: token.to_owned(),
            handed,
        })
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Stored as a permit if the task is not waiting yet.
        self.inner.shutdown.notify_one();
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the waiter of a hand-off (`token fence[:slot] key`), or keeps it for the waiter.
    fn hand_off(&self, message: &str) {
        let Some((token, handed)) = Handed::parse(message) else {
            return;
        };
        let mut state = self.state();
        if let Some(waiter) = state.waiters.get(token)
            && waiter.send(handed).is_ok()
        {
            return;
        }
        if state.early.len() >= EARLY_WAKES_MAX {
            state.early.pop_front();
        }
        state
            .early
            .push_back((token.to_owned(), handed, Instant::now()));
    }

    /// The subscription is confirmed (`live`) or could not be had: tells the callers waiting
    /// for it.
    fn confirmed(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        for caller in std::mem::take(&mut self.state().confirming) {
            let _ = caller.send(live);
        }
    }

    /// The connection is gone: every registered waiter falls back to polling, and the next
    /// waiter starts a new subscriber.
    fn ended(&self) {
        self.live.store(false, Ordering::Release);
        let mut state = self.state();
        state.running = false;
        for caller in std::mem::take(&mut state.confirming) {
            let _ = caller.send(false);
        }
        // Dropping the senders tells every registered waiter.
        state.waiters.clear();
    }
}

/// The subscriber task: connects to the first backend that answers, subscribes to the
/// client's channel, and dispatches wake-ups until the connection breaks or the client is
/// dropped.
async fn subscriber(inner: Arc<Inner>) {
    let timeout = inner.connect_timeout;
    let mut connection = None;
    for (backend, source) in &inner.sources {
        if let Ok(Some(pubsub)) = tokio::time::timeout(timeout, source.open()).await {
            connection = Some((*backend, pubsub));
            break;
        }
    }
    let Some((backend, mut pubsub)) = connection else {
        inner.ended();
        return;
    };
    if !matches!(
        tokio::time::timeout(timeout, pubsub.subscribe(&inner.channel)).await,
        Ok(Ok(()))
    ) {
        inner.ended();
        return;
    }
    inner.backend.store(backend, Ordering::Release);
    inner.confirmed(true);
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    break;
                };
                tracing::trace!(target: "redlease::handoff", "release message received");
                if let Ok(payload) = message.get_payload::<String>() {
                    inner.hand_off(&payload);
                }
            }
            () = inner.shutdown.notified() => break,
        }
    }
    inner.ended();
}

#[cfg(test)]
mod tests {
    use super::Handed;

    #[test]
    fn hand_off_messages_carry_a_fence_and_maybe_a_slot() {
        let lock = Handed {
            fence: 7,
            slot: None,
        };
        assert_eq!(Handed::parse("t 7 redlease:{a b}"), Some(("t", lock)));
        let permit = Handed {
            fence: 9,
            slot: Some(2),
        };
        assert_eq!(Handed::parse("t 9:2 redlease:{s}"), Some(("t", permit)));
        assert_eq!(Handed::parse("t x:2 k"), None);
        assert_eq!(Handed::parse("t 9:x k"), None);
        assert_eq!(Handed::parse("t"), None);
    }
}
