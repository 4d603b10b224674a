//! No command outlives its lease, whatever happens to `redlease run` itself: killed with
//! SIGKILL, or stopped past its TTL; descendants that leave the process group included.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use redlease_testkit::RedisServer;

use crate::{
    Process, descendants, eventually, redlease, running, stderr, wait_until_free, wait_until_held,
};

/// The guardian and the command's processes below `run`, once `at_least` of them exist.
fn family(run: u32, at_least: usize) -> Vec<Process> {
    let run = i32::try_from(run).unwrap();
    let mut found = Vec::new();
    assert!(
        eventually(Duration::from_secs(5), || {
            found = descendants(run);
            found.len() >= at_least
        }),
        "{found:?}"
    );
    // Let the shell finish forking.
    std::thread::sleep(Duration::from_millis(100));
    descendants(run)
}

fn pids(family: &[Process]) -> Vec<i32> {
    family.iter().map(|p| p.pid).collect()
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
}

#[test]
fn redlease_killed_with_sigkill_leaves_no_process_of_the_command_once_the_lease_could_pass() {
    let server = RedisServer::start().unwrap();
    let mut run = redlease(&[&server])
        .args(["run", "--ttl", "3s", "--kill-grace", "1s", "killed", "--"])
        .args(["sh", "-c", "sleep 30 & setsid sleep 31 & sleep 32"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_held(&server, "killed");
    // The guardian, the shell (or its last sleep), and two more sleeps.
    let family = family(run.id(), 4);
    let guardian = family
        .iter()
        .find(|p| p.parent == i32::try_from(run.id()).unwrap())
        .unwrap();
    let command_group = family
        .iter()
        .find(|p| p.parent == guardian.pid)
        .unwrap()
        .group;
    assert!(
        family
            .iter()
            .any(|p| p.pid != guardian.pid && p.group != command_group),
        "the setsid sleep left the command's group: {family:?}"
    );
    signal(run.id(), Signal::SIGKILL);
    run.wait().unwrap();
    wait_until_free(&server, "killed", Duration::from_secs(5));
    assert_eq!(
        running(&pids(&family)),
        [],
        "left running when the lease expired"
    );
}

#[test]
fn redlease_stopped_past_its_ttl_leaves_no_process_of_the_command_and_exits_79_on_sigcont() {
    let server = RedisServer::start().unwrap();
    let run = redlease(&[&server])
        .args([
            "run",
            "--ttl",
            "2s",
            "--kill-grace",
            "500ms",
            "stalled",
            "--",
        ])
        // The command ignores SIGTERM: only SIGKILL, before the deadline, ends it.
        .args(["sh", "-c", "trap '' TERM; sleep 30 & sleep 31"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_held(&server, "stalled");
    let family = family(run.id(), 3);
    signal(run.id(), Signal::SIGSTOP);
    wait_until_free(&server, "stalled", Duration::from_secs(5));
    assert_eq!(
        running(&pids(&family)),
        [],
        "left running when the lease expired"
    );
    signal(run.id(), Signal::SIGCONT);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(79), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopping the command"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn processes_the_command_leaves_behind_are_ended_before_the_lease_is_released() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let straggler = dir.path().join("straggler");
    let out = crate::output(
        redlease(&[&server])
            .args(["run", "--kill-grace", "1s", "leaver", "-c"])
            .arg(format!(
                "sleep 30 & echo $! > {}; exit 4",
                straggler.display()
            )),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let pid: i32 = std::fs::read_to_string(&straggler)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        running(&[pid]),
        [],
        "the background sleep outlived the lease"
    );
}

#[test]
fn signals_sent_to_redlease_reach_the_command_once_and_redlease_survives_them() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (log, ready) = (dir.path().join("log"), dir.path().join("ready"));
    let script = format!(
        "for s in INT HUP QUIT USR1 USR2 WINCH; do trap \"echo $s >> {log}\" $s; done; \
         trap 'echo TERM >> {log}; exit 0' TERM; touch {ready}; \
         while :; do sleep 0.05; done",
        log = log.display(),
        ready = ready.display()
    );
    let run = redlease(&[&server])
        .args(["run", "forwarded", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || ready.exists()));
    let sent = [
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ];
    for (n, forwarded) in sent.into_iter().enumerate() {
        signal(run.id(), forwarded);
        assert!(
            eventually(Duration::from_secs(5), || std::fs::read_to_string(&log)
                .is_ok_and(|text| text.lines().count() > n)),
            "{forwarded} not forwarded"
        );
    }
    signal(run.id(), Signal::SIGTERM);
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        names,
        ["INT", "HUP", "QUIT", "USR1", "USR2", "WINCH", "TERM"]
    );
}
