//! Waiting without polling: release scripts publish on a lock's channel, and one subscriber
//! connection per client wakes the client's waiters of that channel.
//!
//! A waiter subscribes *before* the retry that follows its failed attempt, so a release that
//! lands between the two cannot be missed; and it never sleeps past the holder's remaining TTL
//! or its own deadline, so an expiry (which publishes nothing) or a lost message costs at most
//! that wait. If the subscriber connection fails, every waiter is woken and falls back to its
//! retry policy until a new subscriber connects; waiting never hangs on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::conn::PubSubSource;

/// What the waiters of one channel see: how many messages arrived, and the last payload.
pub(crate) type Wakeup = (u64, Arc<str>);

/// The client's subscriber: a task owning one pub/sub connection, started on first use.
pub(crate) struct Subscriber {
    /// Where a subscriber connection can be opened: the nodes' addresses, in order. Empty
    /// when every node is a caller-supplied connection: waiting then polls.
    servers: Vec<PubSubSource>,
    connect_timeout: Duration,
    control: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

enum Command {
    Watch {
        channel: String,
        reply: oneshot::Sender<watch::Receiver<Wakeup>>,
    },
    Unwatch {
        channel: String,
    },
}

/// One waiter's subscription to a lock's channel; unsubscribes when dropped.
pub(crate) struct Watch {
    channel: String,
    wakeups: watch::Receiver<Wakeup>,
    control: mpsc::UnboundedSender<Command>,
}

impl Watch {
    /// Forgets the messages seen so far: [`changed`](Self::changed) waits for a newer one.
    pub(crate) fn mark_seen(&mut self) {
        self.wakeups.borrow_and_update();
    }

    /// Waits for a message newer than the last [`mark_seen`](Self::mark_seen) and returns its
    /// payload; `None` if the subscriber connection is gone.
    pub(crate) async fn changed(&mut self) -> Option<Arc<str>> {
        self.wakeups.changed().await.ok()?;
        Some(self.wakeups.borrow_and_update().1.clone())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let channel = std::mem::take(&mut self.channel);
        let _ = self.control.send(Command::Unwatch { channel });
    }
}

impl Subscriber {
    pub(crate) fn new(servers: Vec<PubSubSource>, connect_timeout: Duration) -> Self {
        Self {
            servers,
            connect_timeout,
            control: Mutex::new(None),
        }
    }

    /// Subscribes to `channel`, returning once the server confirmed it. `None` when no
    /// subscriber connection can be had (the caller then polls).
    pub(crate) async fn watch(&self, channel: &str) -> Option<Watch> {
        if self.servers.is_empty() {
            return None;
        }
        let (reply, confirmed) = oneshot::channel();
        let control = self.control_channel();
        control
            .send(Command::Watch {
                channel: channel.to_owned(),
                reply,
            })
            .ok()?;
        // Connecting and subscribing are bounded by the connect timeout in the task; this
        // bound only guards against a subscriber that stopped answering.
        let wakeups = tokio::time::timeout(self.connect_timeout * 2, confirmed)
            .await
            .ok()?
            .ok()?;
        Some(Watch {
            channel: channel.to_owned(),
            wakeups,
            control,
        })
    }

    /// The running subscriber's command queue, starting a subscriber if there is none.
    fn control_channel(&self) -> mpsc::UnboundedSender<Command> {
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = control.as_ref().filter(|sender| !sender.is_closed()) {
            return sender.clone();
        }
        let (sender, commands) = mpsc::unbounded_channel();
        tokio::spawn(subscriber(
            self.servers.clone(),
            self.connect_timeout,
            commands,
        ));
        *control = Some(sender.clone());
        sender
    }
}

/// A channel's waiters and the sender that wakes them.
struct Channel {
    watchers: usize,
    wake: watch::Sender<Wakeup>,
}

/// The subscriber task: connects to the first node that answers, then applies watch commands
/// and dispatches messages until the connection breaks or the client is dropped. Ending drops
/// every channel's sender, which wakes all waiters with "subscriber gone".
async fn subscriber(
    servers: Vec<PubSubSource>,
    connect_timeout: Duration,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut connection = None;
    for server in &servers {
        if let Ok(Some(pubsub)) = tokio::time::timeout(connect_timeout, server.open()).await {
            connection = Some(pubsub.split());
            break;
        }
    }
    let Some((mut sink, mut messages)) = connection else {
        return;
    };
    let mut channels: HashMap<String, Channel> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Watch { channel, reply }) => {
                    let receiver = if let Some(known) = channels.get_mut(&channel) {
                        known.watchers += 1;
                        known.wake.subscribe()
                    } else {
                        let confirmed = tokio::time::timeout(connect_timeout, sink.subscribe(&channel)).await;
                        if !matches!(confirmed, Ok(Ok(()))) {
                            return;
                        }
                        let (wake, receiver) = watch::channel((0, Arc::from("")));
                        channels.insert(channel.clone(), Channel { watchers: 1, wake });
                        receiver
                    };
                    // The waiter may have given up meanwhile: then nobody will unwatch for it.
                    if reply.send(receiver).is_err() && !unwatch(&mut channels, &mut sink, channel, connect_timeout).await {
                        return;
                    }
                }
                Some(Command::Unwatch { channel }) => {
                    if !unwatch(&mut channels, &mut sink, channel, connect_timeout).await {
                        return;
                    }
                }
            },
            message = messages.next() => {
                let Some(message) = message else {
                    return;
                };
                if let Some(known) = channels.get(message.get_channel_name()) {
                    let payload: Arc<str> = message.get_payload::<String>().unwrap_or_default().into();
                    known.wake.send_modify(|(count, last)| {
                        *count += 1;
                        *last = payload;
                    });
                }
            }
        }
    }
}

/// Drops one watcher of `channel`, unsubscribing when it was the last. `false` when the
/// connection failed.
async fn unwatch(
    channels: &mut HashMap<String, Channel>,
    sink: &mut redis::aio::PubSubSink,
    channel: String,
    timeout: Duration,
) -> bool {
    let Some(known) = channels.get_mut(&channel) else {
        return true;
    };
    known.watchers -= 1;
    if known.watchers > 0 {
        return true;
    }
    channels.remove(&channel);
    matches!(
        tokio::time::timeout(timeout, sink.unsubscribe(&channel)).await,
        Ok(Ok(()))
    )
}
