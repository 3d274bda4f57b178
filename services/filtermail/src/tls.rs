//! The transport's TLS policy and client configurations (rustls with ring).
//!
//! Domain literals and `_`-prefixed domains (relays without a public certificate) accept any
//! certificate; `nauta.cu` gets no TLS at all; everything else is verified against the system's
//! trust store, read once at start through `rustls-native-certs` (which honours
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`).

use std::sync::Arc;

use anyhow::{Context as _, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

/// The one destination delivered without TLS, as upstream does.
const PLAIN_DESTINATION: &str = "nauta.cu";

/// How a destination's servers are talked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// TLS with a certificate valid for the host name in the system's trust store.
    Verified,
    /// TLS with any certificate.
    AnyCertificate,
    /// No TLS: SMTP without STARTTLS, no HTTPS attempt.
    Plain,
}

impl Policy {
    /// The policy for a destination: a lowercased domain or `[ip]` literal.
    pub fn of(destination: &str) -> Policy {
        if destination == PLAIN_DESTINATION {
            Policy::Plain
        } else if destination.starts_with('[') || destination.starts_with('_') {
            Policy::AnyCertificate
        } else {
            Policy::Verified
        }
    }
}

/// Which protocol runs inside the TLS connection (ALPN differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner {
    Https,
    Smtp,
}

/// The client configurations, built once.
#[derive(Clone)]
pub struct Connectors {
    verified_https: TlsConnector,
    verified_smtp: TlsConnector,
    any_https: TlsConnector,
    any_smtp: TlsConnector,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors").finish_non_exhaustive()
    }
}

impl Connectors {
    /// Reads the system's trust store and builds the configurations.
    pub fn load() -> Result<Connectors> {
        let verified = verified_config()?;
        let any = any_certificate_config()?;
        let with_alpn = |config: &ClientConfig, alpn: &[u8]| {
            let mut config = config.clone();
            config.alpn_protocols = vec![alpn.to_vec()];
            TlsConnector::from(Arc::new(config))
        };
        Ok(Connectors {
            verified_https: with_alpn(&verified, b"http/1.1"),
            verified_smtp: TlsConnector::from(Arc::new(verified)),
            any_https: with_alpn(&any, b"http/1.1"),
            any_smtp: TlsConnector::from(Arc::new(any)),
        })
    }

    /// The connector for `policy`, `None` for [`Policy::Plain`].
    pub fn get(&self, policy: Policy, inner: Inner) -> Option<&TlsConnector> {
        match (policy, inner) {
            (Policy::Plain, _) => None,
            (Policy::Verified, Inner::Https) => Some(&self.verified_https),
            (Policy::Verified, Inner::Smtp) => Some(&self.verified_smtp),
            (Policy::AnyCertificate, Inner::Https) => Some(&self.any_https),
            (Policy::AnyCertificate, Inner::Smtp) => Some(&self.any_smtp),
        }
    }
}

/// A client configuration that verifies certificates against the system's trust store (ring).
pub fn verified_config() -> Result<ClientConfig> {
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        log::warn!("trust store: {err}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        log::warn!("trust store: {ignored} certificates could not be used");
    }
    if added == 0 {
        log::warn!(
            "trust store: no certificates; only `_` domains and literals can be reached over TLS"
        );
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("cannot set up TLS")?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A client configuration that accepts any certificate, still checking that the server
/// holds its key (ring).
pub fn any_certificate_config() -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth())
}

/// The name a server's certificate is checked against: the host name, or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .with_context(|| format!("{host:?} is not a valid TLS server name"))
}

/// Accepts every certificate; still checks that the server holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_by_destination() {
        assert_eq!(Policy::of("example.org"), Policy::Verified);
        assert_eq!(Policy::of("_relay.example.org"), Policy::AnyCertificate);
        assert_eq!(Policy::of("[10.0.0.1]"), Policy::AnyCertificate);
        assert_eq!(Policy::of("nauta.cu"), Policy::Plain);
        assert_eq!(Policy::of("mail.nauta.cu"), Policy::Verified);
    }
}
