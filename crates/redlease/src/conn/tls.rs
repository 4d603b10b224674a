//! TLS settings for `rediss://` connections: which certificate authorities to trust and which
//! certificate to present. Verification of the server's certificate is always on.
//!
//! Without the cargo feature `tls` the settings are still kept, so that connecting can refuse
//! them (and `rediss://` URLs) with an error naming the feature.

use std::fmt;

#[cfg(feature = "tls")]
use redis::ClientTlsConfig;
use redis::{ConnectionInfo, RedisResult};
#[cfg(feature = "tls")]
use rustls::pki_types::pem::PemObject;
#[cfg(feature = "tls")]
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ConfigError;

/// The TLS material of `rediss://` connections, in the `redis` crate's form.
#[cfg(feature = "tls")]
pub(crate) type Certificates = redis::TlsCertificates;

/// Without the `tls` feature there is no TLS material: no value of this type exists.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
pub(crate) enum Certificates {}

/// A `redis` client for `info`, presenting `certificates` when it is a TLS address.
pub(crate) fn client(
    info: ConnectionInfo,
    certificates: Option<&Certificates>,
) -> RedisResult<redis::Client> {
    match certificates {
        #[cfg(feature = "tls")]
        Some(certs) if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) => {
            redis::Client::build_with_tls(info, certs.clone())
        }
        #[cfg(not(feature = "tls"))]
        Some(none) => match *none {},
        _ => redis::Client::open(info),
    }
}

/// `builder` presenting `certificates`, when given, to the Cluster's nodes.
#[cfg(feature = "cluster")]
pub(crate) fn cluster_certificates(
    builder: redis::cluster::ClusterClientBuilder,
    certificates: Option<&Certificates>,
) -> redis::cluster::ClusterClientBuilder {
    match certificates {
        #[cfg(feature = "tls")]
        Some(certs) => builder.certs(certs.clone()),
        #[cfg(not(feature = "tls"))]
        Some(none) => match *none {},
        None => builder,
    }
}

/// A private key, never printed.
#[derive(Clone)]
#[cfg_attr(
    not(feature = "tls"),
    expect(
        dead_code,
        reason = "without `tls` it is only kept so that it can be refused"
    )
)]
struct SecretPem(Vec<u8>);

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What [`ClientBuilder::tls_root_ca`](crate::ClientBuilder::tls_root_ca) and
/// [`tls_client_cert`](crate::ClientBuilder::tls_client_cert) set.
#[derive(Clone, Default)]
pub(crate) struct TlsSettings {
    root_ca: Option<Vec<u8>>,
    client: Option<(Vec<u8>, SecretPem)>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |on: bool| if on { "set" } else { "system roots" };
        f.debug_struct("TlsSettings")
            .field("root_ca", &set(self.root_ca.is_some()))
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

impl TlsSettings {
    pub(crate) fn set_root_ca(&mut self, pem: Vec<u8>) {
        self.root_ca = Some(pem);
    }

    pub(crate) fn set_client_cert(&mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) {
        self.client = Some((cert_pem, SecretPem(key_pem)));
    }

    /// Whether anything was set (so at least one `rediss://` URL is expected).
    pub(crate) fn is_set(&self) -> bool {
        self.root_ca.is_some() || self.client.is_some()
    }

    /// Checks the settings against whether any URL asks for TLS (`any_tls`), and returns them
    /// in the `redis` crate's form when given (`None`: the system's trusted roots, no client
    /// certificate). With TLS in use, makes sure rustls has a cryptography provider.
    #[cfg(feature = "tls")]
    pub(crate) fn prepare(&self, any_tls: bool) -> Result<Option<Certificates>, ConfigError> {
        self.validate()?;
        if self.is_set() && !any_tls {
            return Err(ConfigError::TlsWithoutRediss);
        }
        if !any_tls {
            return Ok(None);
        }
        install_crypto_provider();
        Ok(self.is_set().then(|| Certificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, SecretPem(key))| ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_ca.clone(),
        }))
    }

    /// Without the `tls` feature: refuses TLS settings and `rediss://` URLs.
    #[cfg(not(feature = "tls"))]
    pub(crate) fn prepare(&self, any_tls: bool) -> Result<Option<Certificates>, ConfigError> {
        let needed_for = if any_tls {
            "a rediss:// URL"
        } else if self.is_set() {
            "a TLS setting (tls_root_ca, tls_client_cert)"
        } else {
            return Ok(None);
        };
        Err(ConfigError::FeatureDisabled {
            feature: "tls",
            needed_for,
        })
    }

    /// Checks that the PEM data can be used, without ever echoing it.
    #[cfg(feature = "tls")]
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(pem) = &self.root_ca {
            certificates("root CA", pem)?;
        }
        if let Some((cert, SecretPem(key))) = &self.client {
            certificates("client certificate", cert)?;
            PrivateKeyDer::from_pem_slice(key).map_err(|e| ConfigError::InvalidTls {
                what: "client key",
                reason: format!("no usable PEM private key ({})", pem_error_kind(&e)),
            })?;
        }
        Ok(())
    }
}

/// Parses every certificate in `pem`; at least one is required.
#[cfg(feature = "tls")]
fn certificates(what: &'static str, pem: &[u8]) -> Result<(), ConfigError> {
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        cert.map_err(|e| ConfigError::InvalidTls {
            what,
            reason: format!("unreadable PEM ({})", pem_error_kind(&e)),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(ConfigError::InvalidTls {
            what,
            reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) found".to_owned(),
        });
    }
    Ok(())
}

/// A description of a PEM error that cannot contain the data itself.
#[cfg(feature = "tls")]
fn pem_error_kind(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as Pem;
    match e {
        Pem::MissingSectionEnd { .. } => "a section has no END line",
        Pem::IllegalSectionStart { .. } => "malformed BEGIN line",
        Pem::Base64Decode(_) => "bad base64",
        Pem::NoItemsFound => "nothing found",
        _ => "malformed",
    }
}

/// rustls needs a process-wide cryptography provider; install *ring* unless the application
/// already installed one (then that one is used, and left in place).
#[cfg(feature = "tls")]
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only if another thread installed one meanwhile: fine either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "tls")]
    #[test]
    fn bad_pem_is_rejected_without_echoing_it() {
        let mut tls = TlsSettings::default();
        assert!(!tls.is_set());
        assert!(matches!(tls.prepare(false), Ok(None)));
        assert!(matches!(tls.prepare(true), Ok(None)));
        tls.set_root_ca(b"not a certificate".to_vec());
        assert!(matches!(
            tls.prepare(false),
            Err(ConfigError::InvalidTls { .. })
        ));
        let err = tls.prepare(true).err().unwrap();
        assert!(matches!(
            err,
            ConfigError::InvalidTls {
                what: "root CA",
                ..
            }
        ));
        assert!(!err.to_string().contains("not a certificate"));

        let mut tls = TlsSettings::default();
        tls.set_client_cert(Vec::new(), b"top secret key".to_vec());
        assert!(tls.prepare(true).is_err());
        let shown = format!("{tls:?}");
        assert!(!shown.contains("top secret"), "{shown}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_the_feature_tls_is_refused_by_name() {
        let mut tls = TlsSettings::default();
        assert!(matches!(tls.prepare(false), Ok(None)));
        let url = tls.prepare(true).err().unwrap();
        assert_eq!(
            url,
            ConfigError::FeatureDisabled {
                feature: "tls",
                needed_for: "a rediss:// URL"
            }
        );
        tls.set_root_ca(b"pem".to_vec());
        let setting = tls.prepare(false).err().unwrap();
        assert!(setting.to_string().contains("`tls`"), "{setting}");
    }
}
