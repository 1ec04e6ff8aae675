//! TLS for the gRPC channel: system roots or a CA file, client
//! certificates, a server-name override, and `insecure_skip_verify`.

use super::config::OtlpConfig;
use collector_core::component::ComponentError;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Adds TLS to `endpoint` as `config.tls` asks.
pub(super) fn configure(
    endpoint: Endpoint,
    config: &OtlpConfig,
) -> Result<Endpoint, ComponentError> {
    let tls = &config.tls;
    let mut out = ClientTlsConfig::new().assume_http2(true);
    let cert = read_pem(&tls.cert_file, &tls.cert_pem, "cert_file")?;
    let key = read_pem(&tls.key_file, &tls.key_pem, "key_file")?;
    if let (Some(cert), Some(key)) = (cert, key) {
        out = out.identity(Identity::from_pem(cert, key));
    }
    if !tls.server_name_override.is_empty() {
        out = out.domain_name(tls.server_name_override.clone());
    }
    let error = |e: tonic::transport::Error| ComponentError::new(format!("tls: {e}"));
    if tls.insecure_skip_verify {
        // Encrypted, but the server's certificate is not checked.
        return endpoint
            .tls_config_with_verifier(out, Arc::new(AcceptAnyCertificate::new()))
            .map_err(error);
    }
    match read_pem(&tls.ca_file, &tls.ca_pem, "ca_file")? {
        Some(ca) => {
            out = out.ca_certificate(Certificate::from_pem(ca));
            if tls.include_system_ca_certs_pool {
                out = out.with_native_roots();
            }
        }
        None => out = out.with_native_roots(),
    }
    endpoint.tls_config(out).map_err(error)
}

pub(crate) fn read_pem(
    file: &str,
    inline: &str,
    what: &str,
) -> Result<Option<Vec<u8>>, ComponentError> {
    collector_core::pem::read(file, inline, what).map_err(ComponentError::new)
}

/// `insecure_skip_verify`: any certificate is accepted, but handshake
/// signatures are still checked, so the connection is encrypted to whoever
/// holds the presented certificate's key.
#[derive(Debug)]
pub(crate) struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyCertificate {
    pub(crate) fn new() -> Self {
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(collector_core::crypto::provider);
        Self { provider }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
