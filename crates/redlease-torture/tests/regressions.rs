//! Bugs the torture run found, as minimal reproductions (`redlease-torture repro NAME`
//! exits 1 while the bug is there). Found with `redlease-torture run --profile quick
//! --seed 7`; see RELIABILITY.md.

use std::process::Command;

fn repro(name: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_redlease-torture"))
        .args(["repro", name])
        .output()
        .expect("the torture binary starts");
    assert!(
        output.status.success(),
        "`redlease-torture repro {name}` reproduced the bug ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Replies lost on a connection that stays open must not shift later replies onto other
/// requests (seed 7, scenario `single-no-renew`, fault `proxy-drop-replies`).
#[test]
fn lost_replies_do_not_hand_one_request_another_ones_reply() {
    repro("lost-replies");
}
