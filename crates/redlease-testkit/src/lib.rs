//! Starts and hurts real `redis-server` processes for redlease's tests,
//! benchmarks and demo.
//!
//! Nothing here assumes a server is already running: every [`RedisServer`]
//! is a fresh `redis-server` child process on a free loopback port, with its
//! own temporary data directory, which is killed and removed on drop. The
//! server can be killed, restarted on the same port, paused (`SIGSTOP`) and
//! resumed (`SIGCONT`) to simulate crashes and stalls.
//!
//! Network faults (delays, stalls, lost replies, cut or refused connections)
//! are injected by a [`FaultProxy`] placed between a client and a server; see
//! [`RedisServer::proxy`] and [`Fault`].
//!
//! The binary is taken from the [`REDIS_SERVER_ENV`] environment variable if
//! set, otherwise searched for on `PATH` (see [`redis_server_binary`]).
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = redlease_testkit::RedisServer::start()?;
//! let mut stream = TcpStream::connect(server.addr())?;
//! stream.write_all(b"PING\r\n")?;
//! let mut reply = [0u8; 7];
//! stream.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"+PONG\r\n");
//! # Ok(())
//! # }
//! ```

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::{env, fmt, io};

mod cluster;
mod control;
mod proxy;
mod sentinel;
mod server;
mod tls;

pub use cluster::RedisCluster;
pub use proxy::{Fault, FaultProxy};
pub use sentinel::SentinelGroup;
pub use server::{RedisServer, ServerBuilder, start_nodes};
pub use tls::TlsCerts;

/// Env var that overrides the redis-server binary path.
pub const REDIS_SERVER_ENV: &str = "REDLEASE_REDIS_SERVER";

/// Message used when no `redis-server` binary can be found.
const NOT_FOUND_MESSAGE: &str = "redis-server not found on PATH (set REDLEASE_REDIS_SERVER to its path); \
     on Debian/Ubuntu: apt-get update && apt-get install -y redis-server; \
     on macOS: brew install redis";

/// An error from starting or controlling a `redis-server` process.
///
/// It carries a human-readable message, the underlying I/O error where there
/// is one (available through [`std::error::Error::source`]), and, when the
/// server failed to start, the tail of its log, which is included in the
/// [`Display`](fmt::Display) output.
#[derive(Debug)]
pub struct Error {
    message: String,
    source: Option<io::Error>,
    log_tail: Option<String>,
}

impl Error {
    /// An error with only a message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
            log_tail: None,
        }
    }

    /// An error caused by an I/O error.
    pub(crate) fn io(message: impl Into<String>, source: io::Error) -> Self {
        Self {
            message: message.into(),
            source: Some(source),
            log_tail: None,
        }
    }

    /// Attaches the tail of the server's log (ignored if blank).
    pub(crate) fn with_log_tail(mut self, tail: String) -> Self {
        if !tail.trim().is_empty() {
            self.log_tail = Some(tail);
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(tail) = &self.log_tail {
            write!(
                f,
                "\n--- tail of the redis-server log ---\n{}",
                tail.trim_end()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Locates the `redis-server` binary.
///
/// If the [`REDIS_SERVER_ENV`] environment variable is set (and non-empty),
/// its value is used and must name an existing executable file. Otherwise the
/// directories of `PATH` are searched for `redis-server`.
///
/// # Errors
///
/// Returns an error if the environment variable names something that is not
/// an executable file, or if `redis-server` is not on `PATH`; the latter's
/// message explains how to install it.
pub fn redis_server_binary() -> Result<PathBuf, Error> {
    find_binary(
        env::var_os(REDIS_SERVER_ENV),
        env::var_os("PATH").as_deref(),
    )
}

/// [`redis_server_binary`] with the environment passed in, for testing.
fn find_binary(env_override: Option<OsString>, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    if let Some(value) = env_override.filter(|v| !v.is_empty()) {
        let candidate = PathBuf::from(value);
        return if is_executable_file(&candidate) {
            Ok(candidate)
        } else {
            Err(Error::new(format!(
                "{REDIS_SERVER_ENV} is set to {}, but that is not an executable file; \
                 point it at a redis-server binary or unset it to search PATH",
                candidate.display()
            )))
        };
    }
    path.into_iter()
        .flat_map(env::split_paths)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| Error::new(NOT_FOUND_MESSAGE))
}

/// Whether `path` is a regular file with an execute bit set.
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn bad_env_override_mentions_the_variable() {
        let err = find_binary(
            Some("/definitely/not/here/redis-server".into()),
            Some(OsStr::new("/usr/bin:/bin")),
        )
        .expect_err("a missing override must be an error");
        let text = err.to_string();
        assert!(text.contains(REDIS_SERVER_ENV), "{text}");
        assert!(text.contains("/definitely/not/here/redis-server"), "{text}");
    }

    #[test]
    fn env_override_that_is_a_directory_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = find_binary(Some(dir.path().into()), None).expect_err("directory");
        assert!(err.to_string().contains(REDIS_SERVER_ENV));
    }

    #[test]
    fn missing_binary_explains_how_to_install() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = find_binary(None, Some(dir.path().as_os_str())).expect_err("empty PATH dir");
        let text = err.to_string();
        assert_eq!(text, NOT_FOUND_MESSAGE);
        assert!(text.contains("apt-get install -y redis-server"), "{text}");
        assert!(text.contains("brew install redis"), "{text}");
        assert!(text.contains(REDIS_SERVER_ENV), "{text}");

        let err = find_binary(Some(OsString::new()), None).expect_err("no PATH at all");
        assert_eq!(err.to_string(), NOT_FOUND_MESSAGE);
    }

    fn fake_binary(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join("redis-server");
        std::fs::write(&path, "#!/bin/sh\n").expect("write fake binary");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn searches_path_in_order_and_skips_non_executables() {
        let first = tempfile::tempdir().expect("tempdir");
        let second = tempfile::tempdir().expect("tempdir");
        let third = tempfile::tempdir().expect("tempdir");
        fake_binary(first.path(), 0o644);
        let wanted = fake_binary(second.path(), 0o755);
        fake_binary(third.path(), 0o755);
        let path = env::join_paths([first.path(), second.path(), third.path()]).expect("join");
        assert_eq!(find_binary(None, Some(&path)).expect("found"), wanted);
    }

    #[test]
    fn valid_env_override_wins_over_path() {
        let on_path = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        fake_binary(on_path.path(), 0o755);
        let wanted = fake_binary(elsewhere.path(), 0o755);
        let found = find_binary(
            Some(wanted.clone().into()),
            Some(on_path.path().as_os_str()),
        )
        .expect("found");
        assert_eq!(found, wanted);
    }

    #[test]
    fn error_display_includes_log_tail_and_source() {
        let err = Error::io("boom", io::Error::other("inner")).with_log_tail("line 1\n".into());
        let text = err.to_string();
        assert!(text.starts_with("boom\n"), "{text}");
        assert!(text.contains("line 1"), "{text}");
        let source = std::error::Error::source(&err).expect("has a source");
        assert_eq!(source.to_string(), "inner");
        assert!(
            Error::new("x")
                .with_log_tail(" \n".into())
                .log_tail
                .is_none()
        );
    }
}
