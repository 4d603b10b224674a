//! Throwaway TLS material for tests: a self-signed certificate authority, a server certificate
//! for `127.0.0.1` / `localhost`, and a client certificate, all made on the spot with `rcgen`
//! (nothing to install, nothing on disk until a server needs it). Generating them needs the
//! `tls` feature (on by default), which brings in `rcgen`.

#[cfg(feature = "tls")]
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[cfg(feature = "tls")]
use crate::Error;

/// A certificate authority and the server and client certificates it signed, in PEM.
///
/// ```
/// # #[cfg(feature = "tls")] {
/// let certs = redlease_testkit::TlsCerts::generate()?;
/// assert!(certs.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// # }
/// # Ok::<(), redlease_testkit::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsCerts {
    /// The CA's certificate: what a client must trust.
    pub ca_pem: String,
    /// The server's certificate, valid for `127.0.0.1`, `::1` and `localhost`.
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
    /// A client certificate (for servers that require one).
    pub client_cert_pem: String,
    /// The client certificate's private key.
    pub client_key_pem: String,
}

impl std::fmt::Debug for TlsCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCerts").finish_non_exhaustive()
    }
}

impl TlsCerts {
    /// Generates a fresh CA and certificates (ECDSA P-256).
    ///
    /// # Errors
    ///
    /// Returns an error if key generation or signing fails.
    #[cfg(feature = "tls")]
    pub fn generate() -> Result<Self, Error> {
        let failed = |e: rcgen::Error| Error::new(format!("cannot generate TLS certificates: {e}"));
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "redlease test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_key = KeyPair::generate().map_err(failed)?;
        let ca_pem = ca.self_signed(&ca_key).map_err(failed)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
            let mut params = CertificateParams::new(names).map_err(failed)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().map_err(failed)?;
            let cert = params.signed_by(&key, &issuer).map_err(failed)?;
            Ok::<_, Error>((cert.pem(), key.serialize_pem()))
        };
        let (server_cert_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".into(), "::1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "redlease test server",
        )?;
        let (client_cert_pem, client_key_pem) = leaf(
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            "redlease test client",
        )?;
        Ok(Self {
            ca_pem,
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        })
    }
}
