//! The programs in `examples/` run as a user runs them, against servers the testkit starts
//! (their URLs in `REDLEASE_URL` / `REDLEASE_URLS`), and say what they should.
//!
//! `cargo test` builds the examples next to this test's binary before running it; run alone
//! (`cargo test --test examples`) it needs `cargo build --examples` (with `--features blocking`
//! and `--features metrics` for the examples of those features) first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test on error"
)]

use std::path::PathBuf;
use std::process::Command;

use redlease_testkit::{RedisServer, start_nodes};

fn example(name: &str) -> Command {
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let path: PathBuf = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: `cargo test` builds the examples (not `cargo test --test examples` alone)",
        path.display()
    );
    Command::new(path)
}

/// Runs `command`, fails the test unless it succeeds, and returns what it printed.
fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn on_one_server(name: &str) -> String {
    let server = RedisServer::start().unwrap();
    stdout_of(example(name).env("REDLEASE_URL", server.url()))
}

fn assert_says(stdout: &str, lines: &[&str]) {
    for line in lines {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}

#[test]
fn basic() {
    assert_says(
        &on_one_server("basic"),
        &[
            "acquired examples:basic with fence 1",
            "a second holder is refused",
            "released",
        ],
    );
}

#[test]
fn renewal() {
    let stdout = on_one_server("renewal");
    assert_says(
        &stdout,
        &[
            "acquired with fence 1",
            "the work was stopped",
            "release: Expired",
        ],
    );
    assert!(!stdout.contains("the work finished"), "{stdout}");
}

#[test]
fn fencing() {
    assert_says(
        &on_one_server("fencing"),
        &[
            "A wakes up; its guard says held = false",
            "B's write (fence 2) accepted",
            "A's late write (fence 1) refused",
            "the store holds: written by B",
        ],
    );
}

#[test]
fn redlock() {
    let nodes = start_nodes(3).unwrap();
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let stdout = stdout_of(example("redlock").env("REDLEASE_URLS", urls.join(",")));
    assert_says(
        &stdout,
        &["acquired on a majority with fence 1", "release: Released"],
    );
}

#[cfg(feature = "blocking")]
#[test]
fn blocking() {
    assert_says(
        &on_one_server("blocking"),
        &[
            "acquired with fence 1",
            "step 4 done with fence 1, lease still held: true",
            "release: Released",
        ],
    );
}

#[cfg(feature = "metrics")]
#[test]
fn metrics() {
    assert_says(
        &on_one_server("metrics"),
        &[
            "# TYPE redlease_acquire_seconds summary",
            "redlease_acquisitions_total{name=\"examples:metrics\"} 2",
            "redlease_contended_attempts_total{name=\"examples:metrics\"}",
            "redlease_acquire_wait_seconds_count{name=\"examples:metrics\"} 1",
            "redlease_releases_total{outcome=\"released\",name=\"examples:metrics\"} 2",
            "redlease_renewal_rounds_total ",
        ],
    );
}

/// The first Rust example of a README, between its fences.
fn first_rust_example(readme: &str) -> &str {
    let start = readme.find("```rust").expect("a Rust example");
    let body = &readme[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    &body[..body.find("```").unwrap()]
}

/// The workspace README shows the library's example too; only the crate README's copy is a
/// doctest (it is the one in the package), so the two must stay the same.
#[test]
fn the_workspace_readme_shows_the_crate_readmes_example() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = std::fs::read_to_string(crate_dir.join("README.md")).unwrap();
    // The packaged crate has no workspace README.
    let Ok(workspace) = std::fs::read_to_string(crate_dir.join("../../README.md")) else {
        return;
    };
    assert_eq!(first_rust_example(&workspace), first_rust_example(&ours));
}
