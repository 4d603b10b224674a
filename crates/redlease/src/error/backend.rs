//! Failures on the Redis side: which server, doing what, and the `redis` crate's error.

use std::fmt;

/// What kind of backend failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The server could not be reached, refused the connection, or the connection broke.
    Connection,
    /// A connection attempt or command took longer than its timeout, or a reply arrived after
    /// the lease it granted was no longer valid.
    Timeout,
    /// The server answered with an error (authentication, ACL permission, out of memory,
    /// read-only replica, ...).
    Server,
    /// The server answered something redlease's scripts never return.
    Protocol,
    /// Too few replicas acknowledged a write within the replica timeout (see
    /// [`ClientBuilder::replicas`](crate::ClientBuilder::replicas)).
    NotReplicated,
}

/// A failure on the Redis side, with the server it concerns and the underlying error.
#[derive(Debug, Clone)]
pub struct BackendError {
    kind: BackendErrorKind,
    node: String,
    context: &'static str,
    source: Option<redis::RedisError>,
    /// For [`BackendErrorKind::NotReplicated`]: replicas that acknowledged, and required.
    replicas: Option<(u32, u32)>,
}

impl BackendError {
    pub(crate) fn new(
        kind: BackendErrorKind,
        node: &str,
        context: &'static str,
        source: Option<redis::RedisError>,
    ) -> Self {
        Self {
            kind,
            node: node.to_owned(),
            context,
            source,
            replicas: None,
        }
    }

    /// Too few replicas acknowledged a write on `node`.
    pub(crate) fn not_replicated(
        node: &str,
        context: &'static str,
        acked: u32,
        wanted: u32,
    ) -> Self {
        Self {
            replicas: Some((acked, wanted)),
            ..Self::new(BackendErrorKind::NotReplicated, node, context, None)
        }
    }

    /// For a [`BackendErrorKind::NotReplicated`] error: how many replicas acknowledged, and how
    /// many were required.
    pub fn replicas(&self) -> Option<(u32, u32)> {
        self.replicas
    }

    /// The server's error code (`NOPERM`, `WRONGPASS`, `READONLY`, ...), if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.source.as_ref().and_then(redis::RedisError::code)
    }

    /// A server error that retrying cannot fix: credentials rejected or permission denied.
    pub(crate) fn is_permanent(&self) -> bool {
        self.kind == BackendErrorKind::Server
            && (matches!(self.code(), Some("NOPERM" | "WRONGPASS" | "NOAUTH"))
                || self.source_is(|e| {
                    matches!(
                        e.kind(),
                        redis::ErrorKind::AuthenticationFailed
                            | redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
                    )
                }))
    }

    /// A hint for the reader, for failures with a common cause.
    fn hint(&self) -> Option<&'static str> {
        let text = self.source.as_ref().map(ToString::to_string)?;
        if self.code() == Some("NOPERM") || text.contains("NOPERM") {
            Some(
                "the Redis user lacks a permission redlease needs (see the minimal ACL in DESIGN.md)",
            )
        } else if self.code() == Some("CROSSSLOT")
            || self.source_is(|e| {
                e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot)
            })
        {
            Some("a script's keys span several Cluster slots")
        } else if text.contains("certificate") || text.contains("UnknownIssuer") {
            Some(
                "TLS certificate verification failed: is the server's CA given with ClientBuilder::tls_root_ca?",
            )
        } else {
            None
        }
    }

    /// Classifies a `redis` crate error.
    pub(crate) fn from_redis(node: &str, context: &'static str, e: redis::RedisError) -> Self {
        let kind = if e.is_timeout() {
            BackendErrorKind::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            BackendErrorKind::Connection
        } else if matches!(
            e.kind(),
            redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
        ) {
            BackendErrorKind::Protocol
        } else {
            BackendErrorKind::Server
        };
        Self::new(kind, node, context, Some(e))
    }

    /// Whether the underlying `redis` error matches `test`.
    pub(crate) fn source_is(&self, test: impl FnOnce(&redis::RedisError) -> bool) -> bool {
        self.source.as_ref().is_some_and(test)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// The server concerned, as `host:port` (never with credentials).
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            BackendErrorKind::Connection => "connection failed",
            BackendErrorKind::Timeout => "timed out",
            BackendErrorKind::Server => "server error",
            BackendErrorKind::Protocol => "unexpected reply",
            BackendErrorKind::NotReplicated => "not replicated",
        };
        write!(f, "Redis {}: {what} while {}", self.node, self.context)?;
        if let Some((acked, wanted)) = self.replicas {
            write!(
                f,
                ": {acked} of {wanted} required replica(s) acknowledged in time"
            )?;
        }
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
