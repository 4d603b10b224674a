//! A loopback TCP proxy that injects network faults (delays, stalls, lost
//! replies, cut connections, refused connections) between a client and a
//! server.
//!
//! Threads: one acceptor thread polls a non-blocking listener; every client
//! connection gets one thread that connects to the target and then pumps
//! client → server, plus one thread that pumps server → client. Pumps read
//! with a short timeout so they notice fault changes, [`FaultProxy::cut_all`]
//! and shutdown promptly, and apply the fault that is current when a chunk
//! is read or due for delivery.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Error;

/// Longest time a pump blocks in `read` before it re-checks the fault.
const TICK: Duration = Duration::from_millis(20);
/// Shortest read timeout (a zero timeout is rejected by the OS API).
const MIN_WAIT: Duration = Duration::from_millis(1);
/// Pause between polls of the non-blocking listener.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Connect timeout towards the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Under [`Fault::CutAfterRequest`], how long to wait for the server's reply
/// before cutting the client anyway.
const CUT_REPLY_WAIT: Duration = Duration::from_secs(1);
/// How long [`Drop`] waits for connection threads before detaching them.
const DROP_WAIT: Duration = Duration::from_secs(1);
/// Pause between checks whether a connection thread has finished.
const JOIN_POLL: Duration = Duration::from_millis(2);
/// Read buffer size of a pump.
const CHUNK_SIZE: usize = 16 * 1024;

/// The fault a [`FaultProxy`] applies to its traffic.
///
/// A "chunk" is whatever one `read` on the proxy's socket returned: usually
/// one command or one reply for small request/response traffic, but TCP
/// guarantees no framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Forward everything both ways, as fast as possible.
    #[default]
    None,
    /// Deliver every chunk, in both directions, this long after the proxy
    /// read it, preserving order; a request/reply round trip therefore takes
    /// at least twice the delay. Other connections are not slowed down.
    Delay(Duration),
    /// Keep accepting connections and reading from both sides, but forward
    /// nothing either way; when the fault changes, what was held is
    /// delivered in order (subject to the new fault).
    Hold,
    /// Forward requests to the server but discard its replies: the client
    /// sees silence while its commands take effect.
    DropReplies,
    /// Forward the next request chunk to the server, then cut the connection
    /// (both sides) as soon as the server's reply reaches the proxy, without
    /// passing the reply on, or after one second without a reply. The client
    /// sees EOF or a reset although its command took effect ("reply lost
    /// after a successful `SET`"). Each connection is cut at most once, of
    /// course; the fault stays armed for new connections.
    CutAfterRequest,
    /// Accept new connections and close them immediately, and cut the
    /// existing ones: a partition or a dead node, as seen by the client.
    Refuse,
}

/// A TCP proxy on `127.0.0.1` in front of one target address, injecting a
/// switchable [`Fault`] into the traffic.
///
/// Dropping it closes the listener and every connection (both sides); its
/// threads are joined, or detached if they do not finish within about a
/// second.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
/// use std::time::Duration;
/// use redlease_testkit::{Fault, RedisServer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = RedisServer::start()?;
/// let proxy = server.proxy()?;
/// let mut stream = TcpStream::connect(proxy.addr())?;
/// proxy.set_fault(Fault::Hold);
/// stream.write_all(b"PING\r\n")?;
/// stream.set_read_timeout(Some(Duration::from_millis(100)))?;
/// let mut reply = [0u8; 7];
/// assert!(stream.read(&mut reply).is_err(), "held: no reply");
/// proxy.set_fault(Fault::None);
/// stream.set_read_timeout(Some(Duration::from_secs(5)))?;
/// stream.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"+PONG\r\n");
/// # Ok(())
/// # }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy listening on `127.0.0.1:<free port>` that forwards
    /// every accepted connection to `target`, initially with [`Fault::None`].
    ///
    /// A connection whose target cannot be reached is closed right after it
    /// was accepted.
    ///
    /// # Errors
    ///
    /// Returns an error if no loopback port can be bound or the acceptor
    /// thread cannot be spawned.
    pub fn start(target: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("cannot bind a proxy port on 127.0.0.1", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the proxy's local address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("cannot make the proxy's listener non-blocking", e))?;
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State::default()),
        });
        let acceptor = thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&shared, &listener)
            })
            .map_err(|e| Error::io("cannot spawn the proxy's acceptor thread", e))?;
        Ok(Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The proxy's address, `127.0.0.1:port`; connect clients here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's URL, `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Switches the fault; it applies from now on to existing and new
    /// connections. Switching to [`Fault::Refuse`] cuts every current
    /// connection.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.lock().fault = fault;
        if fault == Fault::Refuse {
            self.cut_all();
        }
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.shared.lock().fault
    }

    /// Closes every current connection, both towards the client and towards
    /// the server, right now (data held or delayed by the proxy is lost).
    /// New connections are still accepted.
    pub fn cut_all(&self) {
        let conns: Vec<Arc<Conn>> = self.shared.lock().conns.drain().map(|(_, c)| c).collect();
        for conn in conns {
            conn.close();
        }
    }

    /// How many client connections are currently open through the proxy.
    ///
    /// A connection counts from the moment the proxy accepts it until it is
    /// cut or both sides have closed it; a client's `connect` may return a
    /// moment before the proxy has accepted the connection.
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("fault", &self.fault())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        // The acceptor polls, so it notices the flag within a few ms; it
        // drops (closes) the listener when it returns.
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let (conns, threads) = {
            let mut state = self.shared.lock();
            let conns: Vec<Arc<Conn>> = state.conns.drain().map(|(_, c)| c).collect();
            (conns, std::mem::take(&mut state.threads))
        };
        for conn in conns {
            conn.close();
        }
        let deadline = Instant::now() + DROP_WAIT;
        for handle in threads {
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(JOIN_POLL);
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
            // Otherwise the handle is dropped, detaching the thread; its
            // sockets are shut down, so it exits on its own soon.
        }
    }
}

/// State shared by the proxy handle and its threads.
struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    fault: Fault,
    /// Set when the proxy is dropped; no new connections or threads after.
    shutdown: bool,
    next_id: u64,
    /// Open connections, by id.
    conns: HashMap<u64, Arc<Conn>>,
    /// Connection threads, for joining on drop (finished ones are pruned).
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault a pump of `conn` must apply now, or `None` if the pump must
    /// stop because the proxy is shutting down or the connection was cut.
    fn fault_for(&self, conn: &Conn) -> Option<Fault> {
        let fault = {
            let state = self.lock();
            if state.shutdown {
                return None;
            }
            state.fault
        };
        (!conn.lock().cut).then_some(fault)
    }

    /// Closes `conn` and forgets it.
    fn cut(&self, conn: &Conn) {
        conn.close();
        self.lock().conns.remove(&conn.id);
    }

    /// Called when a pump of `conn` ends; the last one forgets the
    /// connection.
    fn pump_done(&self, conn: &Conn) {
        let remaining = {
            let mut inner = conn.lock();
            inner.pumps = inner.pumps.saturating_sub(1);
            inner.pumps
        };
        if remaining == 0 {
            self.cut(conn);
        }
    }
}

/// One proxied client connection.
struct Conn {
    id: u64,
    client: TcpStream,
    inner: Mutex<ConnInner>,
}

struct ConnInner {
    /// The connection to the target, once established.
    server: Option<TcpStream>,
    /// Whether the connection was closed by the proxy.
    cut: bool,
    /// Pump threads still running.
    pumps: usize,
    /// Under [`Fault::CutAfterRequest`]: when the request that triggers the
    /// cut was forwarded.
    cut_pending_since: Option<Instant>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shuts both sockets down (which also wakes pumps blocked on them).
    fn close(&self) {
        let mut inner = self.lock();
        inner.cut = true;
        let _ = self.client.shutdown(Shutdown::Both);
        if let Some(server) = &inner.server {
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    fn cut_pending(&self) -> bool {
        self.lock().cut_pending_since.is_some()
    }

    /// Whether a pending cut has waited long enough for the reply.
    fn cut_overdue(&self) -> bool {
        self.lock()
            .cut_pending_since
            .is_some_and(|since| since.elapsed() >= CUT_REPLY_WAIT)
    }
}

/// Accepts connections until the proxy is dropped.
fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    loop {
        if shared.lock().shutdown {
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => admit(shared, stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock, or a transient error such as a connection aborted
            // before it was accepted or a lack of file descriptors.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

/// Registers a freshly accepted client connection and starts its thread,
/// or closes it right away under [`Fault::Refuse`].
fn admit(shared: &Arc<Shared>, client: TcpStream) {
    let reader = client
        .set_nonblocking(false)
        .and_then(|()| client.set_nodelay(true))
        .and_then(|()| client.try_clone());
    let mut state = shared.lock();
    let reader = match reader {
        Ok(reader) if !state.shutdown && state.fault != Fault::Refuse => reader,
        _ => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    state.threads.retain(|handle| !handle.is_finished());
    let id = state.next_id;
    state.next_id += 1;
    let conn = Arc::new(Conn {
        id,
        client,
        inner: Mutex::new(ConnInner {
            server: None,
            cut: false,
            pumps: 1,
            cut_pending_since: None,
        }),
    });
    let spawned = thread::Builder::new()
        .name(format!("fault-proxy-conn-{id}"))
        .spawn({
            let shared = Arc::clone(shared);
            let conn = Arc::clone(&conn);
            move || run_connection(&shared, &conn, reader)
        });
    if let Ok(handle) = spawned {
        state.threads.push(handle);
        state.conns.insert(id, conn);
    } else {
        drop(state);
        conn.close();
    }
}

/// Connects `conn` to the target, starts the reply pump and runs the
/// request pump.
fn run_connection(shared: &Arc<Shared>, conn: &Arc<Conn>, client_reader: TcpStream) {
    let end = match connect(shared, conn) {
        Some(server_writer) => pump(
            shared,
            conn,
            Direction::Request,
            client_reader,
            server_writer,
        ),
        None => End::Cut,
    };
    if end == End::Cut {
        shared.cut(conn);
    }
    shared.pump_done(conn);
}

/// Connects to the target and spawns the reply pump; returns the server
/// socket for the request pump, or `None` if the connection must be cut.
fn connect(shared: &Arc<Shared>, conn: &Arc<Conn>) -> Option<TcpStream> {
    let server = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT).ok()?;
    let clones = server
        .set_nodelay(true)
        .and_then(|()| Ok((server.try_clone()?, server.try_clone()?)))
        .and_then(|(reader, kept)| Ok((reader, kept, conn.client.try_clone()?)));
    let Ok((server_reader, server_kept, client_writer)) = clones else {
        let _ = server.shutdown(Shutdown::Both);
        return None;
    };
    {
        let mut inner = conn.lock();
        if inner.cut {
            let _ = server.shutdown(Shutdown::Both);
            return None;
        }
        inner.server = Some(server_kept);
        inner.pumps += 1;
    }
    let mut state = shared.lock();
    if state.shutdown {
        return None;
    }
    let spawned = thread::Builder::new()
        .name(format!("fault-proxy-reply-{}", conn.id))
        .spawn({
            let shared = Arc::clone(shared);
            let conn = Arc::clone(conn);
            move || {
                let end = pump(
                    &shared,
                    &conn,
                    Direction::Reply,
                    server_reader,
                    client_writer,
                );
                if end == End::Cut {
                    shared.cut(&conn);
                }
                shared.pump_done(&conn);
            }
        })
        .ok()?;
    state.threads.push(spawned);
    Some(server)
}

/// Which way a pump moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Reply,
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Its source reached EOF and everything was delivered; the write side
    /// of its destination has been shut down.
    Closed,
    /// The whole connection must be (or already was) cut.
    Cut,
}

/// Data read by a pump and not yet delivered.
struct Chunk {
    /// When it was read.
    read_at: Instant,
    data: Vec<u8>,
}

/// Moves data from `src` to `dst`, applying the current fault, until the
/// source is closed and drained, the connection is cut or the proxy stops.
fn pump(
    shared: &Shared,
    conn: &Conn,
    direction: Direction,
    mut src: TcpStream,
    mut dst: TcpStream,
) -> End {
    let mut queue: VecDeque<Chunk> = VecDeque::new();
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut src_open = true;
    loop {
        let Some(fault) = shared.fault_for(conn) else {
            return End::Cut;
        };
        if fault == Fault::Refuse || (direction == Direction::Reply && conn.cut_overdue()) {
            return End::Cut;
        }
        if deliver(&mut queue, fault, direction, &mut dst).is_err() {
            return End::Cut;
        }
        let wait = next_wait(&queue, fault);
        if !src_open {
            if direction == Direction::Reply && conn.cut_pending() {
                return End::Cut;
            }
            if queue.is_empty() {
                let _ = dst.shutdown(Shutdown::Write);
                return End::Closed;
            }
            thread::sleep(wait);
            continue;
        }
        if src.set_read_timeout(Some(wait)).is_err() {
            return End::Cut;
        }
        match src.read(&mut buf) {
            Ok(0) => src_open = false,
            Ok(n) => {
                let chunk = Chunk {
                    read_at: Instant::now(),
                    data: buf[..n].to_vec(),
                };
                if accept_chunk(shared, conn, direction, chunk, &mut queue, &mut dst)
                    == Some(End::Cut)
                {
                    return End::Cut;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return End::Cut,
        }
    }
}

/// Queues, forwards or discards a chunk just read, according to the fault
/// that is current now. Returns `Some(End::Cut)` if the connection must be
/// cut.
fn accept_chunk(
    shared: &Shared,
    conn: &Conn,
    direction: Direction,
    chunk: Chunk,
    queue: &mut VecDeque<Chunk>,
    dst: &mut TcpStream,
) -> Option<End> {
    let Some(fault) = shared.fault_for(conn) else {
        return Some(End::Cut);
    };
    match direction {
        // Once the cut is armed, further requests go nowhere.
        Direction::Request if conn.cut_pending() => {}
        Direction::Request if fault == Fault::CutAfterRequest => {
            // Earlier requests first; then arm the cut *before* forwarding
            // this one, so its reply cannot slip through to the client.
            if deliver(queue, Fault::None, direction, dst).is_err() {
                return Some(End::Cut);
            }
            conn.lock().cut_pending_since = Some(Instant::now());
            if dst.write_all(&chunk.data).is_err() {
                return Some(End::Cut);
            }
        }
        // The reply to the request that armed the cut: lose it.
        Direction::Reply if conn.cut_pending() => return Some(End::Cut),
        Direction::Reply if fault == Fault::DropReplies => {}
        Direction::Request | Direction::Reply => queue.push_back(chunk),
    }
    None
}

/// Writes the queued chunks that `fault` lets through now, in order.
///
/// # Errors
///
/// Returns an error if writing to `dst` fails.
fn deliver(
    queue: &mut VecDeque<Chunk>,
    fault: Fault,
    direction: Direction,
    dst: &mut TcpStream,
) -> io::Result<()> {
    match fault {
        Fault::Hold | Fault::Refuse => Ok(()),
        Fault::DropReplies if direction == Direction::Reply => {
            queue.clear();
            Ok(())
        }
        Fault::Delay(delay) => {
            let now = Instant::now();
            while let Some(chunk) = queue.front() {
                if now.saturating_duration_since(chunk.read_at) < delay {
                    break;
                }
                dst.write_all(&chunk.data)?;
                queue.pop_front();
            }
            Ok(())
        }
        Fault::None | Fault::DropReplies | Fault::CutAfterRequest => {
            while let Some(chunk) = queue.pop_front() {
                dst.write_all(&chunk.data)?;
            }
            Ok(())
        }
    }
}

/// How long a pump may block before something is due: until the oldest
/// delayed chunk is due, at most [`TICK`].
fn next_wait(queue: &VecDeque<Chunk>, fault: Fault) -> Duration {
    match (fault, queue.front()) {
        (Fault::Delay(delay), Some(chunk)) => delay
            .saturating_sub(chunk.read_at.elapsed())
            .clamp(MIN_WAIT, TICK),
        _ => TICK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_wait_is_bounded() {
        let mut queue = VecDeque::new();
        assert_eq!(next_wait(&queue, Fault::None), TICK);
        assert_eq!(next_wait(&queue, Fault::Delay(Duration::MAX)), TICK);
        queue.push_back(Chunk {
            read_at: Instant::now(),
            data: Vec::new(),
        });
        assert_eq!(next_wait(&queue, Fault::Delay(Duration::MAX)), TICK);
        assert_eq!(next_wait(&queue, Fault::Delay(Duration::ZERO)), MIN_WAIT);
        assert_eq!(next_wait(&queue, Fault::Hold), TICK);
    }

    #[test]
    fn fault_defaults_to_none() {
        assert_eq!(Fault::default(), Fault::None);
    }

    #[test]
    fn proxy_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<FaultProxy>();
    }
}
