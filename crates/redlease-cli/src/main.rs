//! The `redlease` command line. For now it only reports its version; `redlease run`,
//! `status`, `list`, `release` and `demo` come next.

use std::process::ExitCode;

/// Exit status for a command line that cannot be understood (BSD `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    if let Some("--version" | "-V") = std::env::args().nth(1).as_deref() {
        println!("redlease {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "redlease {}: the command line is not built yet; use the `redlease` library crate",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(EXIT_USAGE)
}
