//! Which servers the phone trusts.
//!
//! The platform's verifier decides (rustls-platform-verifier: Android's
//! trust manager, Apple's Security framework, the system store elsewhere),
//! so user- and MDM-installed CAs work as they do in the phone's browser:
//! district servers often sit behind a private government CA. An app may
//! add roots of its own (a CA the platform store lacks) and pin the server's
//! public key (SHA-256 of its SubjectPublicKeyInfo, as HPKP and OkHttp's
//! `CertificatePinner` do); a pin is checked after, never instead of,
//! verification.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The message of a handshake refused by a pin; the transport reports it.
pub(crate) const PIN_MISMATCH: &str = "server key does not match the pinned key";

/// Trust settings beyond the platform store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// SHA-256 digests of acceptable server SubjectPublicKeyInfo: the
    /// server's own key, or the key of a CA certificate on a valid path
    /// from it (an intermediate the server sends).
    pub pinned_spki_sha256: Vec<[u8; 32]>,
    /// Extra trusted roots, DER.
    pub extra_roots_der: Vec<Vec<u8>>,
}

impl TlsConfig {
    /// A pin as written in configuration: base64 of the 32-byte digest,
    /// optionally prefixed `sha256/` (OkHttp's notation).
    pub fn parse_pin(text: &str) -> Result<[u8; 32]> {
        use base64::Engine;
        let text = text.trim();
        let text = text.strip_prefix("sha256/").unwrap_or(text);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| Error::InvalidServerUrl("a certificate pin is not base64".into()))?;
        bytes.try_into().map_err(|_| Error::InvalidServerUrl("a certificate pin must be a 32-byte SHA-256 digest".into()))
    }

    /// The rustls configuration for these settings.
    pub(crate) fn client_config(&self) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let platform = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|_| Error::InvalidServerUrl("the platform's certificate verifier is not available".into()))?;
        let extra = if self.extra_roots_der.is_empty() {
            None
        } else {
            let mut roots = RootCertStore::empty();
            for der in &self.extra_roots_der {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|_| Error::InvalidServerUrl("an extra root certificate is not valid DER".into()))?;
            }
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|_| Error::InvalidServerUrl("the extra root certificates cannot be used".into()))?;
            Some(verifier as Arc<dyn ServerCertVerifier>)
        };
        let verifier = Trust { platform: Arc::new(platform), extra, pins: self.pinned_spki_sha256.clone(), provider: provider.clone() };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| Error::InvalidServerUrl("no TLS version available".into()))?
            .dangerous() // a custom verifier, which still verifies: platform or extra roots, then pins
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(config)
    }
}

#[derive(Debug)]
struct Trust {
    platform: Arc<dyn ServerCertVerifier>,
    extra: Option<Arc<dyn ServerCertVerifier>>,
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl Trust {
    /// Whether a pinned key is on a valid path from the server's own
    /// certificate: the leaf itself (whose key the handshake proves), or a
    /// certificate the leaf chains up to through the certificates sent. A
    /// certificate merely sent along proves nothing: an interceptor could
    /// append the real server's public certificate to its own chain (the
    /// mistake behind OkHttp's CVE-2016-2402).
    fn pinned(&self, end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now: UnixTime) -> bool {
        if self.pins.is_empty() {
            return true;
        }
        let matches = |cert: &CertificateDer<'_>| {
            let Ok(parsed) = webpki::EndEntityCert::try_from(cert) else { return false };
            let digest: [u8; 32] = Sha256::digest(parsed.subject_public_key_info().as_ref()).into();
            self.pins.contains(&digest)
        };
        if matches(end_entity) {
            return true;
        }
        let Ok(leaf) = webpki::EndEntityCert::try_from(end_entity) else { return false };
        intermediates.iter().filter(|cert| matches(cert)).any(|pinned| {
            let Ok(anchor) = webpki::anchor_from_trusted_cert(pinned) else { return false };
            leaf.verify_for_usage(
                self.provider.signature_verification_algorithms.all,
                &[anchor],
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .is_ok()
        })
    }
}

impl ServerCertVerifier for Trust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let verified = match self.platform.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => verified,
            Err(platform_error) => match &self.extra {
                Some(extra) => extra
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    .map_err(|_| platform_error)?,
                None => return Err(platform_error),
            },
        };
        if !self.pinned(end_entity, intermediates, now) {
            log::warn!("tls: {PIN_MISMATCH}");
            return Err(rustls::Error::General(PIN_MISMATCH.into()));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
