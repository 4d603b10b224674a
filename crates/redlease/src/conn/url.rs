//! Redis URLs: parsing, where they point (to spot a server listed twice), and redaction.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::tls::{self, Certificates};
use crate::error::ConfigError;

/// A parsed Redis URL.
pub(crate) struct Address {
    pub(crate) info: ConnectionInfo,
    /// `host:port` (with `/db` when not 0): how messages name the server; never credentials.
    pub(crate) label: String,
    db: i64,
    /// Host (lowercase, without IPv6 brackets) and port; a socket path with port 0.
    host: String,
    port: u16,
}

impl Address {
    pub(crate) fn parse(url: &str) -> Result<Self, ConfigError> {
        let info = url.into_connection_info().map_err(malformed(url))?;
        let db = info.redis_settings().db();
        let label = match db {
            0 => info.addr().to_string(),
            db => format!("{}/{db}", info.addr()),
        };
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.trim_matches(['[', ']']).to_ascii_lowercase(), *port)
            }
            ConnectionAddr::Unix(path) => (path.display().to_string(), 0),
            _ => (label.clone(), 0),
        };
        Ok(Self {
            info,
            label,
            db,
            host,
            port,
        })
    }

    /// A `redis` client for this address, with the TLS settings when it is `rediss://`.
    pub(crate) fn client(
        &self,
        certificates: Option<&Certificates>,
    ) -> redis::RedisResult<redis::Client> {
        tls::client(self.info.clone(), certificates)
    }

    /// Whether `other` is the same server and database, given where each points (see
    /// [`resolve`](Self::resolve)).
    pub(crate) fn same_server(
        &self,
        points_to: &[String],
        other: &Self,
        other_points_to: &[String],
    ) -> bool {
        self.db == other.db
            && points_to
                .iter()
                .any(|address| other_points_to.contains(address))
    }

    /// Where the address points: `host:port` as written, and the socket addresses the host
    /// name resolves to within `timeout` (an unresolvable name is left to fail when
    /// connecting).
    pub(crate) async fn resolve(&self, timeout: std::time::Duration) -> Vec<String> {
        let mut points_to = vec![format!("{}:{}", self.host, self.port)];
        if self.port != 0 {
            let lookup = tokio::net::lookup_host((self.host.as_str(), self.port));
            if let Ok(Ok(resolved)) = tokio::time::timeout(timeout, lookup).await {
                points_to.extend(resolved.map(|addr| addr.to_string()));
            }
        }
        points_to
    }
}

/// Whether `url` asks for TLS (the schemes the `redis` crate reads as TLS).
pub(crate) fn is_tls_url(url: &str) -> bool {
    let url = url.trim_start();
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// The error for an unparsable `url`, shown without its password.
pub(crate) fn malformed(url: &str) -> impl Fn(redis::RedisError) -> ConfigError + '_ {
    move |e| ConfigError::MalformedUrl {
        url: redact_url(url),
        reason: e.detail().unwrap_or("not a valid Redis URL").to_owned(),
    }
}

/// The URL with any password (or lone user-info) replaced by `***`, safe to print.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let masked = match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{masked}{}", &url[..scheme_end + 3], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/2"),
            "redis://127.0.0.1:6379/2"
        );
        assert_eq!(redact_url("redis://:s3cret@host:1"), "redis://:***@host:1");
        assert_eq!(
            redact_url("rediss://alice:s3cret@host/0"),
            "rediss://alice:***@host/0"
        );
        assert_eq!(redact_url("redis://s3cret@host"), "redis://***@host");
        assert_eq!(redact_url("redis://a:p@ss@host"), "redis://a:***@host");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("redis://host/path@x"), "redis://host/path@x");
    }

    #[test]
    fn addresses_know_their_server() {
        let a = Address::parse("redis://LocalHost:6379").unwrap();
        let b = Address::parse("redis://localhost:6379/0").unwrap();
        let c = Address::parse("redis://localhost:6379/1").unwrap();
        assert_eq!(a.label, "LocalHost:6379");
        assert_eq!(c.label, "localhost:6379/1");
        let local = ["localhost:6379".to_owned()];
        assert!(a.same_server(&local, &b, &local));
        assert!(!a.same_server(&local, &c, &local));
        let d = Address::parse("redis://127.0.0.1:6379").unwrap();
        let resolved = ["localhost:6379".to_owned(), "127.0.0.1:6379".to_owned()];
        assert!(a.same_server(&resolved, &d, &["127.0.0.1:6379".to_owned()]));
        assert!(is_tls_url(" rediss://h") && is_tls_url("valkeys://h") && !is_tls_url("redis://h"));
        let err = Address::parse("redis://:pw-secret@[::1").err().unwrap();
        assert!(!err.to_string().contains("pw-secret"), "{err}");
    }
}
