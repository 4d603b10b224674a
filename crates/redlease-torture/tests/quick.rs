//! The quick torture profile, run as part of `cargo test --workspace` (and so of CI):
//! 5-node Redlock with renewal, one node without, the negative control, the semaphore and
//! read-write lock with 8 workers and their negative control, and the bad-input matrix, about
//! three minutes. The binary exits 0 only if every check passed.

use std::process::Command;
use std::time::Instant;

#[test]
fn the_quick_profile_passes() {
    let out =
        std::env::temp_dir().join(format!("redlease-torture-quick-{}.md", std::process::id()));
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_redlease-torture"))
        .args(["run", "--profile", "quick", "--out"])
        .arg(&out)
        .output()
        .expect("the torture binary starts");
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    assert!(
        output.status.success(),
        "the quick torture profile failed ({}):\n{}\n{report}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("ALL CHECKS PASSED"), "{report}");
    assert!(
        started.elapsed().as_secs() < 240,
        "the quick profile took {:?}",
        started.elapsed()
    );
}
