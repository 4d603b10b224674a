//! Tests against real `redis-server` processes.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use redlease_testkit::{RedisServer, start_nodes};

const SET_K_V: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
const GET_K: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";

/// Sends raw RESP bytes on a fresh connection and returns the first chunk of
/// the reply (enough for the small replies used here).
fn send_with_timeout(addr: SocketAddr, command: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(command)?;
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

fn send(addr: SocketAddr, command: &[u8]) -> io::Result<Vec<u8>> {
    send_with_timeout(addr, command, Duration::from_secs(5))
}

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

#[test]
fn start_and_ping() {
    let server = RedisServer::start().expect("start redis-server");
    assert_eq!(
        text(&send(server.addr(), b"PING\r\n").expect("ping")),
        "+PONG\r\n"
    );
    assert!(server.is_running());
    assert!(server.pid().is_some());
    assert_eq!(server.addr().port(), server.port());
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(
        server.log().contains("Ready to accept connections"),
        "{}",
        server.log()
    );
    // DEBUG is enabled for local connections.
    let reply = send(server.addr(), b"DEBUG SLEEP 0\r\n").expect("debug");
    assert_eq!(text(&reply), "+OK\r\n");
}

#[test]
fn kill_then_restart_on_the_same_port() {
    let mut server = RedisServer::start().expect("start redis-server");
    let port = server.port();
    let old_pid = server.pid().expect("pid");
    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(
        send(server.addr(), b"PING\r\n").is_err(),
        "killed server still answers"
    );
    server.kill(); // idempotent

    server.restart().expect("restart");
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert_ne!(server.pid(), Some(old_pid));
    assert_eq!(
        text(&send(server.addr(), b"PING\r\n").expect("ping")),
        "+PONG\r\n"
    );

    // Restarting a running server also works.
    server.restart().expect("restart while running");
    assert_eq!(
        text(&send(server.addr(), b"PING\r\n").expect("ping")),
        "+PONG\r\n"
    );
}

#[test]
fn persistence_survives_restart() {
    let mut server = RedisServer::builder()
        .persistence(true)
        .start()
        .expect("start redis-server");
    assert_eq!(text(&send(server.addr(), SET_K_V).expect("set")), "+OK\r\n");
    server.kill();
    server.restart().expect("restart");
    assert_eq!(
        text(&send(server.addr(), GET_K).expect("get")),
        "$1\r\nv\r\n"
    );
}

#[test]
fn without_persistence_data_is_lost_on_restart() {
    let mut server = RedisServer::start().expect("start redis-server");
    assert_eq!(text(&send(server.addr(), SET_K_V).expect("set")), "+OK\r\n");
    assert_eq!(
        text(&send(server.addr(), GET_K).expect("get")),
        "$1\r\nv\r\n"
    );
    server.restart().expect("restart");
    assert_eq!(text(&send(server.addr(), GET_K).expect("get")), "$-1\r\n");
}

#[test]
fn pause_makes_ping_time_out_and_resume_answers() {
    let mut server = RedisServer::start().expect("start redis-server");
    server.pause().expect("pause");
    server.pause().expect("pause twice");
    assert!(server.is_running(), "a paused server is still alive");
    let err = send_with_timeout(server.addr(), b"PING\r\n", Duration::from_millis(200))
        .expect_err("a paused server must not answer");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );

    server.resume().expect("resume");
    assert_eq!(
        text(&send(server.addr(), b"PING\r\n").expect("ping")),
        "+PONG\r\n"
    );
}

#[test]
fn kill_and_drop_of_a_paused_server_do_not_hang() {
    let mut server = RedisServer::start().expect("start redis-server");
    server.pause().expect("pause");
    server.kill();
    assert!(!server.is_running());
    assert!(server.pause().is_err(), "cannot pause a killed server");
    assert!(server.resume().is_err(), "cannot resume a killed server");
    server.restart().expect("restart");
    server.pause().expect("pause");
    drop(server);
}

#[test]
fn drop_kills_the_process() {
    let server = RedisServer::start().expect("start redis-server");
    let addr = server.addr();
    drop(server);
    assert!(
        send(addr, b"PING\r\n").is_err(),
        "dropped server still answers"
    );
}

#[test]
fn extra_args_are_passed_through() {
    let server = RedisServer::builder()
        .arg("--maxmemory-policy")
        .arg("allkeys-lru")
        .start()
        .expect("start redis-server");
    let reply = send(server.addr(), b"CONFIG GET maxmemory-policy\r\n").expect("config get");
    assert!(text(&reply).contains("allkeys-lru"), "{}", text(&reply));
    let reply = send(server.addr(), b"CONFIG GET save\r\n").expect("config get");
    assert_eq!(text(&reply), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
}

#[test]
fn a_bad_argument_fails_with_the_servers_complaint() {
    let err = RedisServer::builder()
        .arg("--no-such-option")
        .arg("1")
        .start()
        .expect_err("redis-server must reject the option");
    let message = err.to_string();
    assert!(message.contains("exited during startup"), "{message}");
    assert!(message.contains("no-such-option"), "{message}");
}

#[test]
fn start_nodes_gives_distinct_ports() {
    let nodes = start_nodes(3).expect("start 3 nodes");
    assert_eq!(nodes.len(), 3);
    let ports: HashSet<u16> = nodes.iter().map(RedisServer::port).collect();
    assert_eq!(ports.len(), 3);
    for node in &nodes {
        assert_eq!(
            text(&send(node.addr(), b"PING\r\n").expect("ping")),
            "+PONG\r\n"
        );
    }
    assert!(start_nodes(0).expect("zero nodes").is_empty());
}

#[test]
fn restart_waits_for_a_briefly_occupied_port() {
    let mut server = RedisServer::start().expect("start redis-server");
    server.kill();
    let blocker = std::net::TcpListener::bind(server.addr()).expect("occupy the port");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(blocker);
    });
    server
        .restart()
        .expect("restart once the port is free again");
    release.join().expect("join");
    assert_eq!(
        text(&send(server.addr(), b"PING\r\n").expect("ping")),
        "+PONG\r\n"
    );
}

#[test]
fn restart_gives_up_when_the_port_stays_taken() {
    let mut server = RedisServer::start().expect("start redis-server");
    server.kill();
    let _blocker = std::net::TcpListener::bind(server.addr()).expect("occupy the port");
    let err = server.restart().expect_err("the port is taken");
    let message = err.to_string();
    assert!(message.contains("Address already in use"), "{message}");
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
}
