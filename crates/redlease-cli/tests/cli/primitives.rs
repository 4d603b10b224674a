//! `redlease run --limit N` (a semaphore's permit) and `--shared` (a reader), through the real
//! binary: at most N at once, readers together and writers alone, one limit, what `status` and
//! `list` show, and the guardian covering both.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redlease_testkit::RedisServer;

use crate::{descendants, eventually, output, redlease, running, runs_at_once, stderr, stdout};

/// Whether any key of `name` that holders write exists (the lock key: a writer's, the readers'
/// or a semaphore's permits).
fn held(server: &RedisServer, name: &str) -> bool {
    let mut conn = redlease::redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redlease::redis::cmd("EXISTS")
        .arg(format!("redlease:{{{name}}}"))
        .query::<bool>(&mut conn)
        .unwrap()
}

fn spawn(server: &RedisServer, args: &[&str], script: &str) -> Child {
    redlease(&[server])
        .arg("run")
        .args(args)
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// How many entries `dir` has.
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn eight_processes_with_limit_three_never_run_more_than_three_at_once() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (inside, slots, log) = (
        dir.path().join("in"),
        dir.path().join("slots"),
        dir.path().join("log"),
    );
    std::fs::create_dir(&inside).unwrap();
    std::fs::create_dir(&slots).unwrap();
    // Each run marks itself in, records how many are in, claims its slot (mkdir fails if
    // another holder has it), works, and leaves.
    let script = format!(
        "touch {inside}/$$; ls {inside} | wc -l >> {log}; mkdir {slots}/$REDLEASE_SLOT || exit 9; \
         sleep 0.1; rmdir {slots}/$REDLEASE_SLOT; rm {inside}/$$",
        inside = inside.display(),
        slots = slots.display(),
        log = log.display()
    );
    runs_at_once(
        &server,
        8,
        4,
        &["--limit", "3", "--wait", "60s", "slots", "-c", &script],
    );
    let counts: Vec<usize> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| line.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 32);
    assert_eq!(
        counts.iter().max(),
        Some(&3),
        "never more than 3 at once, and 3 reached: {counts:?}"
    );
    assert_eq!(entries(&inside), 0);
    assert!(!held(&server, "slots"), "every permit given back");
}

#[test]
fn readers_run_together_and_a_writer_runs_alone() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // Each reader waits (up to 5 s) to see the other reader inside: they must overlap.
    let reader = |me: &str, other: &str| {
        format!(
            "touch {d}/{me}; i=0; while [ ! -e {d}/{other} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
             [ -e {d}/{other} ] || exit 3; sleep 0.3; rm {d}/{me}"
        )
    };
    let first = spawn(&server, &["--shared", "doc"], &reader("a", "b"));
    let second = spawn(&server, &["--shared", "doc"], &reader("b", "a"));
    assert!(eventually(Duration::from_secs(5), || held(&server, "doc")));
    std::thread::sleep(Duration::from_millis(200));
    // The writer (a plain run) waits for both readers, and sees neither while it runs.
    let writer = output(redlease(&[&server]).args([
        "run",
        "--wait",
        "20s",
        "doc",
        "-c",
        &format!("ls {d}; echo fence $REDLEASE_FENCE"),
    ]));
    assert!(writer.status.success(), "{}", stderr(&writer));
    // `ls` lists nothing: no reader was inside with the writer. (Its fence need not be 1: a
    // first attempt that finds the lock held still draws a fence.)
    let written = stdout(&writer);
    let fence = written
        .trim()
        .strip_prefix("fence ")
        .unwrap_or_else(|| panic!("no reader was inside with the writer: {written}"));
    assert!(
        fence.parse::<u64>().is_ok_and(|fence| fence >= 1),
        "{written}"
    );
    for reader in [first, second] {
        let done = reader.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "the readers overlapped: {}",
            stderr(&done)
        );
    }
    // A reader after the writer runs with the writer's fence.
    let after = output(redlease(&[&server]).args([
        "run",
        "--shared",
        "doc",
        "-c",
        "echo $REDLEASE_FENCE ${REDLEASE_SLOT-none}",
    ]));
    assert_eq!(stdout(&after).trim(), format!("{fence} none"));
}

#[test]
fn a_limit_other_than_the_holders_is_refused_naming_both() {
    let server = RedisServer::start().unwrap();
    let mut holder = spawn(&server, &["--limit", "2", "pool"], "sleep 10");
    assert!(eventually(Duration::from_secs(5), || held(&server, "pool")));
    let started = Instant::now();
    let refused = output(redlease(&[&server]).args(["run", "--limit", "3", "pool", "--", "true"]));
    assert_eq!(refused.status.code(), Some(64), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains("limit of 2, not 3") && message.contains("\"pool\""),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, not after waiting"
    );
    let zero = output(redlease(&[&server]).args(["run", "--limit", "0", "pool", "--", "true"]));
    assert_eq!(zero.status.code(), Some(64), "{}", stderr(&zero));
    let both = output(
        redlease(&[&server]).args(["run", "--limit", "2", "--shared", "pool", "--", "true"]),
    );
    assert_eq!(both.status.code(), Some(64), "{}", stderr(&both));
    holder.kill().unwrap();
    let _ = holder.wait();
}

#[test]
fn status_and_list_show_permits_readers_writers_and_waiters() {
    let server = RedisServer::start().unwrap();
    let permit = spawn(
        &server,
        &["--limit", "1", "--label", "first", "pool"],
        "sleep 10",
    );
    assert!(eventually(Duration::from_secs(5), || held(&server, "pool")));
    let waiter = spawn(&server, &["--limit", "1", "pool"], "true");
    let reader = spawn(
        &server,
        &["--shared", "--label", "reading", "doc"],
        "sleep 10",
    );
    assert!(eventually(Duration::from_secs(5), || held(&server, "doc")));
    let writer = spawn(&server, &["doc"], "true");
    std::thread::sleep(Duration::from_millis(500));

    let pool = stdout(&output(redlease(&[&server]).args(["status", "pool"])));
    assert!(
        pool.contains("1 of 1 permits held: slot 0") && pool.contains("first"),
        "{pool}"
    );
    assert!(pool.contains("1 waiting client(s), 1 queued"), "{pool}");
    let doc = stdout(&output(redlease(&[&server]).args(["status", "doc"])));
    assert!(
        doc.contains("read by 1 reader(s)") && doc.contains("reading"),
        "{doc}"
    );
    assert!(doc.contains("1 queued"), "the writer waits: {doc}");

    let listed = stdout(&output(redlease(&[&server]).args(["list", "--json"])));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let by_name = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    let pool = by_name("pool");
    assert_eq!(
        (pool["kind"].as_str(), pool["limit"].as_u64()),
        (Some("semaphore"), Some(1))
    );
    assert_eq!(pool["permits"][0]["slot"], 0);
    assert_eq!(
        pool["permits"][0]["label"]
            .as_str()
            .map(|l| l.ends_with("first")),
        Some(true)
    );
    assert_eq!(pool["queued"], 1);
    let doc = by_name("doc");
    assert_eq!(doc["kind"], "read");
    assert_eq!(doc["readers"].as_array().unwrap().len(), 1);
    assert_eq!(
        (doc["queued"].as_u64(), doc["queued_readers"].as_u64()),
        (Some(1), Some(0))
    );
    for mut child in [permit, waiter, reader, writer] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn a_killed_redlease_leaves_no_command_running_once_its_permit_or_share_could_pass() {
    let server = RedisServer::start().unwrap();
    for (mode, name) in [("--limit=2", "killed-permit"), ("--shared", "killed-share")] {
        let mut run = redlease(&[&server])
            .args(["run", mode, "--ttl", "3s", "--kill-grace", "1s", name, "--"])
            .args(["sh", "-c", "sleep 30 & sleep 31"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(eventually(Duration::from_secs(5), || held(&server, name)));
        let mut family = Vec::new();
        assert!(eventually(Duration::from_secs(5), || {
            family = descendants(i32::try_from(run.id()).unwrap());
            family.len() >= 3
        }));
        std::thread::sleep(Duration::from_millis(100));
        let pids: Vec<i32> = descendants(i32::try_from(run.id()).unwrap())
            .iter()
            .map(|p| p.pid)
            .collect();
        kill(
            Pid::from_raw(i32::try_from(run.id()).unwrap()),
            Signal::SIGKILL,
        )
        .unwrap();
        run.wait().unwrap();
        let freed = Instant::now();
        while held(&server, name) {
            assert!(
                freed.elapsed() < Duration::from_secs(5),
                "{name} stayed held"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(
            running(&pids),
            [],
            "{mode}: left running when the hold ended"
        );
    }
}
