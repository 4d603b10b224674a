//! The CLI under faults: worker processes take turns on one lock through `redlease run` (the
//! demo's workers) while Redis nodes die and holders' `redlease run` processes are killed,
//! stopped alone, or frozen together with their guardian and command.

use std::process::Command;

use crate::{output, stderr, stdout};

/// The number on the report line that starts with `label`.
fn figure(report: &str, label: &str) -> u64 {
    let line = report
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in\n{report}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure on {line:?}"))
}

#[test]
fn killed_stopped_and_frozen_holders_never_overlap_unfenced_and_leave_no_process() {
    let out = output(
        Command::new(env!("CARGO_BIN_EXE_redlease"))
            .env_remove("REDLEASE_REDIS")
            .args(["--quiet", "demo", "--duration", "15s", "--workers", "3"]),
    );
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{report}\n{}", stderr(&out));
    for injected in [
        "killed Redis node 3",
        "killed worker",
        "stopped worker",
        "froze worker",
    ] {
        assert!(
            report.contains(injected),
            "{injected:?} not injected:\n{report}"
        );
    }
    assert!(!report.contains("wanted to hurt"), "{report}");
    // Overlaps only with frozen holders, whose late writes fencing refused.
    assert_eq!(
        figure(&report, "mutual-exclusion violations"),
        0,
        "{report}"
    );
    assert!(!report.contains("no frozen holder"), "{report}");
    assert!(
        figure(&report, "stale writes rejected by fencing") >= 1,
        "{report}"
    );
    assert!(
        figure(&report, "commands run under the lease") >= 20,
        "{report}"
    );
    assert_eq!(figure(&report, "processes left running"), 0, "{report}");
}
