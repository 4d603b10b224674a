//! The real `redlease` binary against real redis-server processes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

mod basics;
mod faults;
mod guardian;
mod operator;
mod primitives;
mod terminal;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use redlease_testkit::RedisServer;

/// The binary, without the caller's configuration variables, on `servers`.
fn redlease(servers: &[&RedisServer]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redlease"));
    command
        .env_remove("REDLEASE_REDIS")
        .env_remove("REDLEASE_PASSWORD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for server in servers {
        command.arg("--redis").arg(server.url());
    }
    command
}

/// `processes` threads each running `redlease run ARGS…` `runs` times, all at once; every run
/// must succeed.
fn runs_at_once(server: &RedisServer, processes: usize, runs: usize, args: &[&str]) {
    let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    let workers: Vec<_> = (0..processes)
        .map(|_| {
            let (url, args) = (server.url(), args.clone());
            std::thread::spawn(move || {
                for _ in 0..runs {
                    let status = Command::new(env!("CARGO_BIN_EXE_redlease"))
                        .args(["--redis", &url, "run"])
                        .args(&args)
                        .stdin(Stdio::null())
                        .status()
                        .unwrap();
                    assert!(status.success(), "{status:?}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

fn output(command: &mut Command) -> Output {
    command.output().expect("run redlease")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn redis_get(server: &RedisServer, key: &str) -> Option<String> {
    let mut conn = redlease::redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redlease::redis::cmd("GET")
        .arg(key)
        .query(&mut conn)
        .unwrap()
}

/// The key of lock `name` under the default prefix.
fn lock_key(name: &str) -> String {
    format!("redlease:{{{name}}}")
}

fn wait_until_held(server: &RedisServer, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis_get(server, &lock_key(name)).is_none() {
        assert!(Instant::now() < deadline, "{name} never got held");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the lock's key is gone from the server (its lease expired or was released):
/// the moment someone else could take it.
fn wait_until_free(server: &RedisServer, name: &str, at_most: Duration) {
    let deadline = Instant::now() + at_most;
    while redis_get(server, &lock_key(name)).is_some() {
        assert!(Instant::now() < deadline, "{name} stayed held");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One process, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Process {
    pid: i32,
    parent: i32,
    group: i32,
    state: char,
}

fn processes() -> Vec<Process> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?.chars().next()?;
            Some(Process {
                pid,
                parent: fields.next()?.parse().ok()?,
                group: fields.next()?.parse().ok()?,
                state,
            })
        })
        .collect()
}

/// Every process below `root`.
fn descendants(root: i32) -> Vec<Process> {
    let table = processes();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for process in table.iter().filter(|p| p.parent == parent) {
            found.push(*process);
            frontier.push(process.pid);
        }
    }
    found
}

/// Those of `pids` still running (a zombie waiting to be collected does not count).
fn running(pids: &[i32]) -> Vec<Process> {
    processes()
        .into_iter()
        .filter(|p| pids.contains(&p.pid) && p.state != 'Z')
        .collect()
}

/// Polls `condition` every 10 ms for at most `at_most`.
fn eventually(at_most: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + at_most;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
