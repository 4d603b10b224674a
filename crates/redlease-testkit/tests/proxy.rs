//! Tests of the fault-injection proxy against real `redis-server` processes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use redlease_testkit::{Fault, FaultProxy, RedisServer};

const SET_K_V: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
const GET_K: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
const PING: &[u8] = b"PING\r\n";
const PONG: &str = "+PONG\r\n";

/// A connection with a generous read timeout (so a hang fails the test
/// instead of blocking it).
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    stream
}

/// Reads one chunk (enough for the small replies used here).
fn read_chunk(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

/// Sends `command` and reads the reply.
fn request(stream: &mut TcpStream, command: &[u8]) -> io::Result<String> {
    stream.write_all(command)?;
    read_chunk(stream).map(|reply| String::from_utf8_lossy(&reply).into_owned())
}

/// One command on a fresh direct connection to `server`.
fn direct(server: &RedisServer, command: &[u8]) -> String {
    request(&mut connect(server.addr()), command).expect("direct request")
}

/// Whether reading from `stream` shows that the peer closed it: EOF or a
/// reset within `within`.
fn sees_close(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        ),
    }
}

/// Whether reading from `stream` times out (no data, no close) after `wait`.
fn stays_silent(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 64];
    matches!(
        stream.read(&mut buf).map_err(|e| e.kind()),
        Err(io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    )
}

/// Polls `condition` for up to a second.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn no_fault_forwards_and_counts_connections() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    assert_eq!(proxy.fault(), Fault::None);
    assert_eq!(proxy.target(), server.addr());
    assert_eq!(
        proxy.url(),
        format!("redis://127.0.0.1:{}", proxy.addr().port())
    );
    assert_ne!(proxy.addr(), server.addr());
    assert_eq!(proxy.connections(), 0);

    let mut a = connect(proxy.addr());
    assert_eq!(request(&mut a, PING).expect("ping"), PONG);
    assert_eq!(request(&mut a, SET_K_V).expect("set"), "+OK\r\n");
    assert_eq!(request(&mut a, GET_K).expect("get"), "$1\r\nv\r\n");
    assert_eq!(direct(&server, GET_K), "$1\r\nv\r\n");
    assert_eq!(proxy.connections(), 1);

    let mut b = connect(proxy.addr());
    assert_eq!(request(&mut b, PING).expect("ping"), PONG);
    assert_eq!(proxy.connections(), 2);

    drop(a);
    assert!(eventually(|| proxy.connections() == 1), "{proxy:?}");
    drop(b);
    assert!(eventually(|| proxy.connections() == 0), "{proxy:?}");
}

#[test]
fn delay_slows_each_direction_without_blocking_others() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let mut slow = connect(proxy.addr());
    assert_eq!(request(&mut slow, PING).expect("ping"), PONG);

    proxy.set_fault(Fault::Delay(Duration::from_millis(200)));
    assert_eq!(proxy.fault(), Fault::Delay(Duration::from_millis(200)));
    let started = Instant::now();
    slow.write_all(PING).expect("write");
    // Meanwhile, another delayed connection is not stuck behind this one.
    let mut other = connect(proxy.addr());
    assert_eq!(request(&mut other, SET_K_V).expect("set"), "+OK\r\n");
    assert_eq!(
        String::from_utf8_lossy(&read_chunk(&mut slow).expect("pong")),
        PONG
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // Pipelined commands keep their order.
    slow.write_all(b"PING\r\n").expect("write");
    slow.write_all(GET_K).expect("write");
    let mut replies = Vec::new();
    while replies.len() < b"+PONG\r\n$1\r\nv\r\n".len() {
        replies.extend(read_chunk(&mut slow).expect("replies"));
    }
    assert_eq!(String::from_utf8_lossy(&replies), "+PONG\r\n$1\r\nv\r\n");

    proxy.set_fault(Fault::None);
    let started = Instant::now();
    assert_eq!(request(&mut slow, PING).expect("ping"), PONG);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[test]
fn hold_stalls_until_released() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let mut stream = connect(proxy.addr());
    proxy.set_fault(Fault::Hold);
    stream.write_all(PING).expect("write");
    stream.write_all(SET_K_V).expect("write");
    assert!(stays_silent(&mut stream, Duration::from_millis(300)));
    assert_eq!(
        direct(&server, GET_K),
        "$-1\r\n",
        "held request reached the server"
    );

    proxy.set_fault(Fault::None);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    let mut replies = Vec::new();
    while replies.len() < b"+PONG\r\n+OK\r\n".len() {
        replies.extend(read_chunk(&mut stream).expect("held replies"));
    }
    assert_eq!(String::from_utf8_lossy(&replies), "+PONG\r\n+OK\r\n");
    assert_eq!(direct(&server, GET_K), "$1\r\nv\r\n");
}

#[test]
fn drop_replies_applies_commands_silently() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let mut stream = connect(proxy.addr());
    proxy.set_fault(Fault::DropReplies);
    stream.write_all(SET_K_V).expect("write");
    assert!(stays_silent(&mut stream, Duration::from_millis(300)));
    assert_eq!(direct(&server, GET_K), "$1\r\nv\r\n");

    // The connection itself still works once replies flow again.
    proxy.set_fault(Fault::None);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    assert_eq!(request(&mut stream, PING).expect("ping"), PONG);
}

#[test]
fn cut_after_request_loses_the_reply_of_a_successful_set() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let mut stream = connect(proxy.addr());
    assert_eq!(request(&mut stream, PING).expect("ping"), PONG);

    proxy.set_fault(Fault::CutAfterRequest);
    stream.write_all(SET_K_V).expect("write");
    assert!(sees_close(&mut stream, Duration::from_secs(1)));
    assert_eq!(direct(&server, GET_K), "$1\r\nv\r\n");
    assert!(eventually(|| proxy.connections() == 0), "{proxy:?}");

    // Still armed for the next connection.
    let mut again = connect(proxy.addr());
    again
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nw\r\n")
        .expect("write");
    assert!(sees_close(&mut again, Duration::from_secs(1)));
    assert_eq!(direct(&server, GET_K), "$1\r\nw\r\n");

    proxy.set_fault(Fault::None);
    let mut fine = connect(proxy.addr());
    assert_eq!(request(&mut fine, GET_K).expect("get"), "$1\r\nw\r\n");
}

#[test]
fn refuse_cuts_existing_and_closes_new_connections() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let mut existing = connect(proxy.addr());
    assert_eq!(request(&mut existing, PING).expect("ping"), PONG);

    proxy.set_fault(Fault::Refuse);
    assert_eq!(proxy.connections(), 0);
    assert!(sees_close(&mut existing, Duration::from_millis(500)));

    for _ in 0..3 {
        // Connecting may succeed (the proxy accepts, then closes) but the
        // connection is closed at once.
        if let Ok(mut fresh) = TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(1)) {
            let started = Instant::now();
            let _ = fresh.write_all(PING);
            assert!(sees_close(&mut fresh, Duration::from_millis(500)));
            assert!(started.elapsed() < Duration::from_millis(400));
        }
    }
    assert_eq!(proxy.connections(), 0);

    proxy.set_fault(Fault::None);
    let mut healed = connect(proxy.addr());
    assert_eq!(request(&mut healed, PING).expect("ping"), PONG);
}

#[test]
fn cut_all_closes_connections_and_clients_can_reconnect() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let mut a = connect(proxy.addr());
    let mut b = connect(proxy.addr());
    assert_eq!(request(&mut a, PING).expect("ping"), PONG);
    assert_eq!(request(&mut b, PING).expect("ping"), PONG);
    assert_eq!(proxy.connections(), 2);

    proxy.cut_all();
    assert_eq!(proxy.connections(), 0);
    assert!(sees_close(&mut a, Duration::from_millis(500)));
    assert!(sees_close(&mut b, Duration::from_millis(500)));

    let mut c = connect(proxy.addr());
    assert_eq!(request(&mut c, PING).expect("ping"), PONG);
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn cut_all_discards_held_data() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let mut stream = connect(proxy.addr());
    proxy.set_fault(Fault::Hold);
    stream.write_all(SET_K_V).expect("write");
    assert!(eventually(|| proxy.connections() == 1));
    proxy.cut_all();
    assert!(sees_close(&mut stream, Duration::from_millis(500)));
    proxy.set_fault(Fault::None);
    assert_eq!(direct(&server, GET_K), "$-1\r\n");
}

#[test]
fn drop_stops_the_listener_and_connections_without_hanging() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = server.proxy().expect("start proxy");
    let addr = proxy.addr();
    let mut idle = connect(addr);
    assert_eq!(request(&mut idle, PING).expect("ping"), PONG);
    let mut held = connect(addr);
    proxy.set_fault(Fault::Hold);
    held.write_all(PING).expect("write");
    assert!(eventually(|| proxy.connections() == 2));

    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    assert!(sees_close(&mut idle, Duration::from_millis(500)));
    assert!(sees_close(&mut held, Duration::from_millis(500)));
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(_) => {}
        Ok(mut late) => assert!(sees_close(&mut late, Duration::from_millis(500))),
    }
}

#[test]
fn unreachable_target_closes_the_client() {
    let mut server = RedisServer::start().expect("start redis-server");
    let proxy = FaultProxy::start(server.addr()).expect("start proxy");
    server.kill();
    let mut stream = connect(proxy.addr());
    assert!(sees_close(&mut stream, Duration::from_secs(1)));
    assert!(eventually(|| proxy.connections() == 0));

    server.restart().expect("restart");
    let mut stream = connect(proxy.addr());
    assert_eq!(request(&mut stream, PING).expect("ping"), PONG);
}

#[test]
fn proxy_is_send_and_sync_and_debug() {
    fn assert_send_sync<T: Send + Sync + std::fmt::Debug>() {}
    assert_send_sync::<FaultProxy>();
}
