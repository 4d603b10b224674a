//! The command line: usage errors are reported with exit status 64, without running anything.

use std::process::Command;

fn torture(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_redlease-torture"))
        .args(args)
        .output()
        .expect("the torture binary starts")
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &[][..],
        &["explode"],
        &["run", "--profile", "medium"],
        &["run", "--seed", "abc"],
        &["run", "--seed"],
        &["run", "--nodes", "5"],
        &["scenario", "--nodes", "3"],
        &["scenario", "--renew", "sometimes"],
        &["scenario", "--duration", "1"],
        &["scenario", "--workers", "0"],
        &["scenario", "--faults", "meteor-strike"],
        &["matrix", "--profile", "quick"],
        &["repro", "no-such-bug"],
        &["worker", "--slot"],
    ] {
        let output = torture(args);
        let code = output.status.code();
        let expected = if args.first() == Some(&"worker") {
            1
        } else {
            64
        };
        assert_eq!(code, Some(expected), "{args:?}: {output:?}");
        assert!(!output.stderr.is_empty(), "{args:?} explains itself");
    }
}

#[test]
fn help_lists_the_commands() {
    let output = torture(&["--help"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for command in ["run", "scenario", "matrix", "repro", "--profile", "--seed"] {
        assert!(text.contains(command), "{command}: {text}");
    }
}
