//! Exit statuses, and the error that carries one to `main`.

use std::process::ExitStatus;

use redlease::{BackendError, BackendErrorKind, Error};

/// Exit status: the command line could not be understood (BSD `EX_USAGE`).
pub(crate) const EXIT_USAGE: u8 = 64;
/// Exit status: Redis could not be reached, or too few nodes for a quorum (`EX_UNAVAILABLE`).
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;
/// Exit status: something went wrong inside redlease itself (`EX_SOFTWARE`).
pub(crate) const EXIT_INTERNAL: u8 = 70;
/// Exit status: the lock was not acquired (taken, and no wait or the wait timed out;
/// `EX_TEMPFAIL`). `--conflict-exit-code` changes it.
pub(crate) const EXIT_NOT_ACQUIRED: u8 = 75;
/// Exit status: Redis refused the credentials or a permission (`EX_NOPERM`). Unlike 69,
/// trying again will not help.
pub(crate) const EXIT_NO_PERMISSION: u8 = 77;
/// Exit status: the lease was lost while the command ran, and the command was stopped.
pub(crate) const EXIT_LEASE_LOST: u8 = 79;
/// Exit status: the command could not be executed (as shells report it).
pub(crate) const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status: the command was not found (as shells report it).
pub(crate) const EXIT_NOT_FOUND: u8 = 127;

/// An error that ends the program with `code`, after printing `message` (one line).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_INTERNAL,
            message: message.into(),
        }
    }

    /// Maps a library error to the exit status its kind calls for.
    pub(crate) fn from_lock_error(error: &Error) -> Self {
        if let Some(refusal) = credentials_refused(error) {
            return Self {
                code: EXIT_NO_PERMISSION,
                message: refusal,
            };
        }
        let code = match error {
            Error::InvalidConfig(_) | Error::LimitMismatch { .. } => EXIT_USAGE,
            Error::Contended { .. } | Error::TimedOut { .. } => EXIT_NOT_ACQUIRED,
            Error::Backend(_) | Error::NoQuorum { .. } => EXIT_UNAVAILABLE,
            _ => EXIT_INTERNAL,
        };
        Self {
            code,
            message: error.to_string(),
        }
    }
}

/// For an error that is Redis refusing our login or a permission — on the only node, or on
/// every node that failed — the one-line message to print.
fn credentials_refused(error: &Error) -> Option<String> {
    let refused: Vec<&BackendError> = match error {
        Error::Backend(e) => vec![e],
        Error::NoQuorum { errors, .. } => errors.iter().collect(),
        _ => return None,
    };
    if refused.is_empty() || !refused.iter().all(|e| refusal(e).is_some()) {
        return None;
    }
    let nodes: Vec<&str> = refused.iter().map(|e| e.node()).collect();
    let what = refusal(refused[0]).unwrap_or(Refusal::Login);
    Some(match what {
        Refusal::Login => format!(
            "Redis {} refused the login: check the user and password (REDLEASE_PASSWORD, --password-file or the URL)",
            nodes.join(", ")
        ),
        Refusal::Permission => format!(
            "Redis {} denied a command (NOPERM): the ACL user lacks a permission redlease needs (see the minimal ACL in DESIGN.md)",
            nodes.join(", ")
        ),
    })
}

#[derive(Clone, Copy)]
enum Refusal {
    Login,
    Permission,
}

/// What kind of refusal a backend error is, by the server's error code or, where the `redis`
/// crate classified it without one, by its error kind.
fn refusal(error: &BackendError) -> Option<Refusal> {
    if error.kind() != BackendErrorKind::Server {
        return None;
    }
    match error.code() {
        Some("WRONGPASS" | "NOAUTH") => return Some(Refusal::Login),
        Some("NOPERM") => return Some(Refusal::Permission),
        _ => {}
    }
    let source = std::error::Error::source(error)?.downcast_ref::<redlease::redis::RedisError>()?;
    match source.kind() {
        redlease::redis::ErrorKind::AuthenticationFailed => Some(Refusal::Login),
        redlease::redis::ErrorKind::Server(redlease::redis::ServerErrorKind::NoPerm) => {
            Some(Refusal::Permission)
        }
        _ => None,
    }
}

/// A child's exit status as ours: its code, or 128 + the signal that killed it.
pub(crate) fn status_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(EXIT_INTERNAL),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(EXIT_INTERNAL),
        (None, None) => EXIT_INTERNAL,
    }
}
