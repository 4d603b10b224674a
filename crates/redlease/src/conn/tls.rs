//! TLS settings for `rediss://` connections: which certificate authorities to trust and which
//! certificate to present. Verification of the server's certificate is always on.

use std::fmt;

use redis::{ClientTlsConfig, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ConfigError;

/// A private key, never printed.
#[derive(Clone)]
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

    /// Checks that the PEM data can be used, without ever echoing it.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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

    /// The `redis` crate's form, for `rediss://` connections; `None` when nothing was set
    /// (the system's trusted roots are used and no client certificate is presented).
    pub(crate) fn certificates(&self) -> Option<TlsCertificates> {
        if !self.is_set() {
            return None;
        }
        install_crypto_provider();
        Some(TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, SecretPem(key))| ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.root_ca.clone(),
        })
    }
}

/// Parses every certificate in `pem`; at least one is required.
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
/// already installed one (then that one is used).
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only if another thread installed one meanwhile: fine either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_rejected_without_echoing_it() {
        let mut tls = TlsSettings::default();
        assert!(!tls.is_set());
        assert!(tls.certificates().is_none());
        tls.set_root_ca(b"not a certificate".to_vec());
        let err = tls.validate().unwrap_err();
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
        assert!(tls.validate().is_err());
        let shown = format!("{tls:?}");
        assert!(!shown.contains("top secret"), "{shown}");
    }
}
