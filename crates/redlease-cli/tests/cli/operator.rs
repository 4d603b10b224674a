//! What an operator meets: the command's environment, exit statuses, defaults, durations,
//! logging, help, completions and the man page.

use std::process::Command;

use redlease_testkit::RedisServer;

use crate::{output, redlease, stderr, stdout};

#[test]
fn the_command_gets_no_secret_and_no_configuration_of_redlease() {
    let server = RedisServer::builder()
        .password("s3cret-pw")
        .start()
        .unwrap();
    let with_credentials = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port());
    let env_of_child = |extra: &[&str]| {
        let out = output(
            Command::new(env!("CARGO_BIN_EXE_redlease"))
                .env("REDLEASE_REDIS", &with_credentials)
                .env("REDLEASE_PASSWORD", "s3cret-pw")
                .env("REDLEASE_DEADLINE", "1")
                .env("UNRELATED", "kept")
                .arg("run")
                .args(extra)
                .args(["env-check", "--", "env"]),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let env = env_of_child(&[]);
    assert!(!env.contains("s3cret-pw"), "{env}");
    for line in env.lines() {
        assert!(
            !line.starts_with("REDLEASE_REDIS=")
                && !line.starts_with("REDLEASE_PASSWORD=")
                && !line.starts_with("REDLEASE_DEADLINE="),
            "{line}"
        );
    }
    assert!(env.lines().any(|l| l == "REDLEASE_NAME=env-check"), "{env}");
    assert!(
        env.lines().any(|l| l.starts_with("REDLEASE_FENCE=")),
        "{env}"
    );
    assert!(env.lines().any(|l| l == "UNRELATED=kept"), "{env}");
    // With --max-hold the deadline is there, and it is the hold cap's end.
    let env = env_of_child(&["--max-hold", "1m"]);
    let deadline: u128 = env
        .lines()
        .find_map(|l| l.strip_prefix("REDLEASE_DEADLINE="))
        .expect("REDLEASE_DEADLINE with --max-hold")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        deadline > now + 55_000 && deadline <= now + 60_000,
        "{deadline} vs {now}"
    );
}

#[test]
fn a_denied_permission_exits_77_not_69() {
    let server = RedisServer::start().unwrap();
    let mut conn = redlease::redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redlease::redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "reader",
                "on",
                ">reader-pw",
                "~*",
                "-@all",
                "+ping",
                "+get",
                "+info",
            ][..],
        )
        .query(&mut conn)
        .unwrap();
    let url = format!("redis://reader:reader-pw@127.0.0.1:{}", server.port());
    let out = output(redlease(&[]).args(["--redis", &url, "run", "denied", "--", "true"]));
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("NOPERM"), "{}", stderr(&out));
}

#[test]
fn a_short_ttl_gets_a_fitting_kill_grace_and_only_an_explicit_long_one_is_refused() {
    let server = RedisServer::start().unwrap();
    let out = output(redlease(&[&server]).args(["run", "--ttl", "3s", "short", "--", "true"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = output(redlease(&[&server]).args([
        "run",
        "--ttl",
        "3s",
        "--kill-grace",
        "2s",
        "short",
        "--",
        "true",
    ]));
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("at most half the TTL (1s 500ms)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn durations_take_several_units_and_bare_seconds() {
    let server = RedisServer::start().unwrap();
    let out = output(redlease(&[&server]).args([
        "run",
        "--ttl",
        "1m30s",
        "--wait",
        "1h 30m",
        "--max-hold",
        "2h",
        "--kill-grace",
        "2.5",
        "units",
        "--",
        "true",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out =
        output(redlease(&[&server]).args(["run", "--ttl", "5 fortnights", "x", "--", "true"]));
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1m30s"),
        "the message shows the forms: {}",
        stderr(&out)
    );
}

#[test]
fn verbose_and_rust_log_add_log_lines_coloured_only_on_a_terminal_without_no_color() {
    let server = RedisServer::start().unwrap();
    let quiet = output(redlease(&[&server]).args(["run", "logged", "--", "true"]));
    assert_eq!(stderr(&quiet), "");
    let verbose = output(redlease(&[&server]).args(["-v", "run", "logged", "--", "true"]));
    assert!(
        stderr(&verbose).contains("acquired the lease"),
        "{}",
        stderr(&verbose)
    );
    assert!(!stderr(&verbose).contains('\x1b'), "no colour into a pipe");
    let by_env = output(
        redlease(&[&server])
            .env("RUST_LOG", "debug")
            .args(["run", "logged", "--", "true"]),
    );
    assert!(
        stderr(&by_env).contains("the command started"),
        "{}",
        stderr(&by_env)
    );

    // On a terminal (a pseudo-terminal from `script`): colour, unless NO_COLOR is set.
    let on_terminal = |no_color: bool| {
        let line = format!(
            "{} --redis {} -v run --no-wait logged -- true",
            env!("CARGO_BIN_EXE_redlease"),
            server.url()
        );
        let mut script = Command::new("script");
        script
            .args(["-qec", &line, "/dev/null"])
            .env_remove("REDLEASE_REDIS");
        if no_color {
            script.env("NO_COLOR", "1");
        } else {
            script.env_remove("NO_COLOR");
        }
        let out = output(&mut script);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        stdout(&out)
    };
    let coloured = on_terminal(false);
    assert!(
        coloured.contains("acquired the lease") && coloured.contains('\x1b'),
        "{coloured:?}"
    );
    let plain = on_terminal(true);
    assert!(
        plain.contains("acquired the lease") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

#[test]
fn run_help_has_headings_exit_statuses_the_environment_and_examples() {
    let out = output(redlease(&[]).args(["run", "--help"]));
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    for wanted in [
        "Lease:",
        "Waiting:",
        "Servers:",
        "TLS:",
        "Exit status:",
        "77 ",
        "79 ",
        "REDLEASE_FENCE",
        "REDLEASE_DEADLINE",
        "Examples:",
    ] {
        assert!(help.contains(wanted), "{wanted:?} missing:\n{help}");
    }
    let examples = help.split("Examples:").nth(1).unwrap();
    assert!(examples.matches("redlease ").count() >= 3, "{examples}");
}

#[test]
fn completions_and_the_man_page_come_from_the_same_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = output(redlease(&[]).args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("kill-grace") && script.contains("redis"),
            "{shell}"
        );
    }
    let bash = stdout(&output(redlease(&[]).args(["completions", "bash"])));
    let loaded = output(
        Command::new("bash")
            .args(["--norc", "-c", "eval \"$1\" && complete -p redlease", "-"])
            .arg(&bash),
    );
    assert!(stdout(&loaded).contains("redlease"), "{}", stderr(&loaded));

    let page = stdout(&output(redlease(&[]).args(["man"])));
    assert!(page.contains(".TH redlease 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let out = output(redlease(&[]).arg("man").arg(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run_page = std::fs::read_to_string(dir.path().join("redlease-run.1")).unwrap();
    assert!(run_page.contains("kill\\-grace"), "{run_page}");
}
