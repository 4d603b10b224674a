//! The basics: exclusion, exit statuses, signals, quorum, bad input, inspection, passwords,
//! deployments.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redlease_testkit::{RedisServer, start_nodes};

use crate::{output, redis_get, redlease, runs_at_once, stderr, wait_until_held};

#[test]
fn eight_processes_times_five_runs_never_lose_an_increment() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    std::fs::write(&counter, "0").unwrap();
    // Read, sleep, write: any overlap loses an increment.
    let script = format!(
        "n=$(cat {0}); sleep 0.02; echo $((n + 1)) > {0}",
        counter.display()
    );
    runs_at_once(&server, 8, 5, &["--wait", "60s", "counter", "-c", &script]);
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "40");
}

#[test]
fn the_commands_exit_status_passes_through_and_the_lease_is_released() {
    let server = RedisServer::start().unwrap();
    let out = output(redlease(&[&server]).args(["run", "job", "--", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(
        redis_get(&server, "redlease:{job}"),
        None,
        "released after the command"
    );
    let out = output(redlease(&[&server]).args(["run", "job", "-c", "kill -9 $$"]));
    assert_eq!(out.status.code(), Some(128 + 9));
}

#[test]
fn no_wait_on_a_held_lock_exits_75_without_running_the_command() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let mut holder = redlease(&[&server])
        .args(["run", "busy", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    wait_until_held(&server, "busy");
    let out = output(
        redlease(&[&server])
            .args(["run", "--no-wait", "busy", "--", "touch"])
            .arg(&marker),
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(!marker.exists(), "the command must not run");
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = output(redlease(&[&server]).args([
        "run",
        "--no-wait",
        "--conflict-exit-code",
        "3",
        "busy",
        "--",
        "true",
    ]));
    assert_eq!(out.status.code(), Some(3));
    holder.kill().unwrap();
    let _ = holder.wait();
}

#[test]
fn the_fence_in_the_environment_strictly_increases() {
    let server = RedisServer::start().unwrap();
    let mut last = 0u64;
    for _ in 0..5 {
        let out = output(redlease(&[&server]).args([
            "run",
            "--max-hold",
            "20s",
            "fenced",
            "-c",
            "echo $REDLEASE_FENCE $REDLEASE_NAME $REDLEASE_DEADLINE",
        ]));
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let words: Vec<&str> = text.split_whitespace().collect();
        let fence: u64 = words[0].parse().unwrap();
        assert!(fence > last);
        last = fence;
        assert_eq!(words[1], "fenced");
        let deadline: u128 = words[2].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert!(
            deadline > now + 19_000 && deadline <= now + 20_000,
            "the --max-hold end: deadline {deadline} vs now {now}"
        );
    }
}

#[test]
fn a_lease_broken_by_force_release_stops_the_command() {
    let server = RedisServer::start().unwrap();
    let started = Instant::now();
    let child = redlease(&[&server])
        .args([
            "run",
            "--ttl",
            "3s",
            "--kill-grace",
            "500ms",
            "stuck",
            "--",
            "sleep",
            "60",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_held(&server, "stuck");
    let out = output(redlease(&[&server]).args(["release", "--force", "stuck"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("released") && said.contains("pid"), "{said}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    assert!(stderr(&out).contains("lost"), "{}", stderr(&out));
    // Noticed at the next renewal (every second) and stopped at once: well within TTL + grace.
    assert!(
        started.elapsed()
            < Duration::from_secs(3) + Duration::from_millis(500) + Duration::from_secs(2)
    );
}

#[test]
fn a_key_expired_by_a_nemesis_stops_the_command() {
    let server = RedisServer::start().unwrap();
    let child = redlease(&[&server])
        .args([
            "run",
            "--ttl",
            "2s",
            "--kill-grace",
            "300ms",
            "victim",
            "-c",
            "trap '' TERM; sleep 60",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_held(&server, "victim");
    let mut conn = redlease::redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redlease::redis::cmd("PEXPIRE")
        .arg("redlease:{victim}")
        .arg(1)
        .query(&mut conn)
        .unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    // Even a command that ignores SIGTERM is gone after the grace period.
    assert!(
        started.elapsed()
            < Duration::from_secs(2) + Duration::from_millis(300) + Duration::from_secs(1)
    );
}

#[test]
fn sigterm_to_redlease_reaches_the_command_and_the_lease_is_released() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("got-term");
    let script = format!(
        "trap 'touch {}; exit 0' TERM; sleep 60 & wait",
        marker.display()
    );
    let child = redlease(&[&server])
        .args(["run", "signalled", "-c", &script])
        .spawn()
        .unwrap();
    wait_until_held(&server, "signalled");
    std::thread::sleep(Duration::from_millis(200));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(marker.exists(), "the command got the signal");
    assert_eq!(redis_get(&server, "redlease:{signalled}"), None);
}

#[test]
fn two_of_five_nodes_down_still_runs_three_down_is_unavailable() {
    let mut servers = start_nodes(5).unwrap();
    servers[0].kill();
    servers[1].kill();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let out = output(redlease(&refs).args(["run", "quorum", "--", "true"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    servers[2].kill();
    let refs: Vec<&RedisServer> = servers.iter().collect();
    let out =
        output(redlease(&refs).args(["--connect-timeout", "500ms", "run", "quorum", "--", "true"]));
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}

#[test]
fn bad_input_gets_a_one_line_message_and_its_code() {
    let server = RedisServer::start().unwrap();
    let cases: [(&[&str], i32); 6] = [
        (&["run", "name"], 64),
        (&["run", "--ttl", "soon", "name", "--", "true"], 64),
        (
            &[
                "run",
                "--kill-grace",
                "10s",
                "--ttl",
                "5s",
                "name",
                "--",
                "true",
            ],
            64,
        ),
        (&["run", "", "--", "true"], 64),
        (&["--redis", "http://nope", "run", "name", "--", "true"], 64),
        (
            &[
                "--redis",
                "redis://127.0.0.1:1",
                "run",
                "name",
                "--",
                "true",
            ],
            69,
        ),
    ];
    for (args, code) in cases {
        let out = output(redlease(&[&server]).args(args));
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {message}");
        assert!(!message.trim().is_empty(), "{args:?}");
        if code != 64 || !message.contains("Usage") {
            assert_eq!(message.trim().lines().count(), 1, "{args:?}: {message}");
        }
    }
    let out = output(redlease(&[]).args([
        "--redis",
        "redis://:hunter2@127.0.0.1:notaport",
        "status",
        "x",
    ]));
    assert_eq!(out.status.code(), Some(64));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

#[test]
fn status_and_list_report_the_holder_in_text_and_json() {
    let server = RedisServer::start().unwrap();
    let mut holder = redlease(&[&server])
        .args([
            "run",
            "--label",
            "nightly",
            "jobs:report",
            "--",
            "sleep",
            "10",
        ])
        .spawn()
        .unwrap();
    wait_until_held(&server, "jobs:report");
    let out = output(redlease(&[&server]).args(["status", "jobs:report"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("held by") && text.contains("nightly") && text.contains("fence 1"),
        "{text}"
    );
    let out = output(redlease(&[&server]).args(["list", "jobs:*", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["name"], "jobs:report");
    assert_eq!(json[0]["held"], true);
    assert_eq!(json[0]["fence"], 1);
    assert!(
        json[0]["holder"]["label"]
            .as_str()
            .unwrap()
            .ends_with("nightly")
    );
    holder.kill().unwrap();
    let _ = holder.wait();
    let out = output(redlease(&[&server]).args(["status", "--json", "free-lock"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["held"], false);
}

#[test]
fn the_password_comes_from_the_environment_or_a_file_and_is_never_printed() {
    let server = RedisServer::builder()
        .password("s3cret-pw")
        .start()
        .unwrap();
    let out = output(
        redlease(&[&server])
            .env("REDLEASE_PASSWORD", "s3cret-pw")
            .args(["run", "authed", "--", "true"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret-pw\n").unwrap();
    let out = output(
        redlease(&[&server])
            .arg("--password-file")
            .arg(&file)
            .args(["status", "authed"]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = output(
        redlease(&[&server])
            .env("REDLEASE_PASSWORD", "wrong-pw")
            .args(["status", "authed"]),
    );
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused the login"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("wrong-pw"));
}

#[test]
fn cluster_tls_and_eviction_flags_reach_the_library() {
    // A Redis Cluster of three primaries.
    let cluster = redlease_testkit::RedisCluster::start(3, 0).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_redlease"));
    command.env_remove("REDLEASE_REDIS").stdin(Stdio::null());
    for url in cluster.urls() {
        command.arg("--cluster").arg(url);
    }
    let out = output(command.args(["run", "on-a-cluster", "-c", "echo $REDLEASE_FENCE"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // TLS with our own CA: works with --tls-ca, fails clearly without it.
    let certs = redlease_testkit::TlsCerts::generate().unwrap();
    let server = RedisServer::builder().tls(&certs).start().unwrap();
    let tls_url = server.tls_url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certs.ca_pem).unwrap();
    let tls = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_redlease"));
        command
            .env_remove("REDLEASE_REDIS")
            .stdin(Stdio::null())
            .args(["--redis", &tls_url])
            .args(extra);
        command
    };
    let out = output(&mut tls(&[
        "--tls-ca",
        ca.to_str().unwrap(),
        "run",
        "secure",
        "--",
        "true",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = output(&mut tls(&["run", "secure", "--", "true"]));
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));

    // A server that may evict keys: a warning by default, a refusal on request.
    let evicting = RedisServer::builder()
        .arg("--maxmemory")
        .arg("100mb")
        .arg("--maxmemory-policy")
        .arg("allkeys-lru")
        .start()
        .unwrap();
    let out = output(redlease(&[&evicting]).args(["run", "evictable", "--", "true"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("allkeys-lru"), "{}", stderr(&out));
    let out = output(redlease(&[&evicting]).args([
        "--eviction-check",
        "refuse",
        "run",
        "evictable",
        "--",
        "true",
    ]));
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}
