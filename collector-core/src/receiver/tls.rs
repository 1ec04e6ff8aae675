//! Server-side TLS for network receivers, read from otelcol's
//! `configtls.ServerConfig` keys: a certificate and key (files or inline
//! PEM), client certificates required and verified against `client_ca_file`
//! (mutual TLS), TLS 1.2/1.3 bounds, and reloading the files every
//! `reload_interval` (or when the client CA file changes, with
//! `client_ca_file_reload`).
//!
//! Data path: accepted TCP stream -> `TlsSource::acceptor` (the current
//! rustls config, rebuilt when due) -> handshake -> hyper.

use crate::config::{ConfigError, duration};
use parking_lot::Mutex;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_rustls::TlsAcceptor;

/// `tls` of a server (`protocols.grpc.tls`, `protocols.http.tls`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTls {
    /// Server certificate chain (PEM file).
    pub cert_file: String,
    /// Server certificate chain, inline PEM.
    pub cert_pem: String,
    /// Server private key (PEM file).
    pub key_file: String,
    /// Server private key, inline PEM.
    pub key_pem: String,
    /// CA certificates (PEM file) that client certificates must chain to;
    /// when set, clients must present a valid certificate (mutual TLS).
    pub client_ca_file: String,
    /// Reload the client CA file when it changes.
    pub client_ca_file_reload: bool,
    /// Accepted for compatibility: a server does not verify servers.
    pub ca_file: String,
    /// Accepted for compatibility: a server does not verify servers.
    pub ca_pem: String,
    /// Accepted for compatibility.
    pub include_system_ca_certs_pool: bool,
    /// Lowest TLS version offered: `1.2` (default) or `1.3`.
    pub min_version: String,
    /// Highest TLS version offered: `1.2` or `1.3` (default).
    pub max_version: String,
    /// Accepted for compatibility: rustls offers its own safe cipher suites.
    pub cipher_suites: Vec<String>,
    /// Accepted for compatibility: rustls offers its own key exchange groups.
    pub curve_preferences: Vec<String>,
    /// Read the certificate, key and client CA again this often.
    #[serde(with = "duration::option")]
    pub reload_interval: Option<Duration>,
}

fn version_rank(text: &str, default: u8) -> Result<u8, String> {
    match text {
        "" => Ok(default),
        "1.2" => Ok(2),
        "1.3" => Ok(3),
        "1.0" | "1.1" => Err(format!(
            "TLS {text} is not offered by this collector (TLS 1.2 and 1.3 only)"
        )),
        other => Err(format!(
            "unknown TLS version {other:?} (expected 1.2 or 1.3)"
        )),
    }
}

impl ServerTls {
    /// Checks the settings; paths are relative to the `tls` section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let has_cert = !self.cert_file.is_empty() || !self.cert_pem.is_empty();
        let has_key = !self.key_file.is_empty() || !self.key_pem.is_empty();
        if !has_cert {
            return Err(ConfigError::new(
                "cert_file",
                "a server needs a certificate (cert_file or cert_pem) to serve TLS",
            ));
        }
        if !has_key {
            return Err(ConfigError::new(
                "key_file",
                "a server needs a private key (key_file or key_pem) to serve TLS",
            ));
        }
        if !self.cert_file.is_empty() && !self.cert_pem.is_empty() {
            return Err(ConfigError::new(
                "cert_pem",
                "set either cert_file or cert_pem, not both",
            ));
        }
        if !self.key_file.is_empty() && !self.key_pem.is_empty() {
            return Err(ConfigError::new(
                "key_pem",
                "set either key_file or key_pem, not both",
            ));
        }
        let min =
            version_rank(&self.min_version, 2).map_err(|m| ConfigError::new("min_version", m))?;
        let max =
            version_rank(&self.max_version, 3).map_err(|m| ConfigError::new("max_version", m))?;
        if min > max {
            return Err(ConfigError::new(
                "max_version",
                format!(
                    "{} is below min_version {}",
                    self.max_version, self.min_version
                ),
            ));
        }
        if self.reload_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("reload_interval", "must be > 0"));
        }
        Ok(())
    }

    fn versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let min = version_rank(&self.min_version, 2).unwrap_or(2);
        let max = version_rank(&self.max_version, 3).unwrap_or(3);
        let mut out = Vec::new();
        if min <= 3 && max >= 3 {
            out.push(&rustls::version::TLS13);
        }
        if min <= 2 && max >= 2 {
            out.push(&rustls::version::TLS12);
        }
        out
    }
}

fn read_pem(file: &str, inline: &str, what: &str) -> Result<Vec<u8>, String> {
    crate::pem::read(file, inline, what).map(Option::unwrap_or_default)
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.{what}: not valid PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("tls.{what}: no certificate in it"));
    }
    Ok(certs)
}

/// Builds a rustls server config from the files as they are now.
fn build(tls: &ServerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = certificates(
        &read_pem(&tls.cert_file, &tls.cert_pem, "cert_file")?,
        "cert_file",
    )?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&tls.key_file, &tls.key_pem, "key_file")?)
        .map_err(|e| format!("tls.key_file: no usable private key: {e}"))?;
    let provider = crate::crypto::provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&tls.versions())
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if tls.client_ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let pem = read_pem(&tls.client_ca_file, "", "client_ca_file")?;
        for cert in certificates(&pem, "client_ca_file")? {
            roots
                .add(cert)
                .map_err(|e| format!("tls.client_ca_file: {e}"))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("tls.client_ca_file: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls: the certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn modified(path: &str) -> Option<SystemTime> {
    if path.is_empty() {
        return None;
    }
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

struct Loaded {
    acceptor: TlsAcceptor,
    at: Instant,
    client_ca_modified: Option<SystemTime>,
}

/// The TLS config of one server, rebuilt from its files when due.
pub(crate) struct TlsSource {
    tls: ServerTls,
    owner: String,
    current: Mutex<Loaded>,
}

impl std::fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSource")
            .field("owner", &self.owner)
            .field("mutual", &!self.tls.client_ca_file.is_empty())
            .finish_non_exhaustive()
    }
}

impl TlsSource {
    /// Loads the files once; an error here stops the receiver's start.
    pub(crate) fn new(owner: &str, tls: &ServerTls) -> Result<Self, String> {
        let config = build(tls)?;
        Ok(Self {
            tls: tls.clone(),
            owner: owner.to_string(),
            current: Mutex::new(Loaded {
                acceptor: TlsAcceptor::from(config),
                at: Instant::now(),
                client_ca_modified: modified(&tls.client_ca_file),
            }),
        })
    }

    /// Whether clients must present a certificate.
    pub(crate) fn is_mutual(&self) -> bool {
        !self.tls.client_ca_file.is_empty()
    }

    /// The acceptor for a new connection, after reloading the files when
    /// `reload_interval` passed or the client CA file changed. A reload that
    /// fails keeps the previous config (and says so).
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let mut current = self.current.lock();
        let interval_due = self
            .tls
            .reload_interval
            .is_some_and(|interval| current.at.elapsed() >= interval);
        let ca_modified = if self.tls.client_ca_file_reload {
            modified(&self.tls.client_ca_file)
        } else {
            current.client_ca_modified
        };
        if interval_due || ca_modified != current.client_ca_modified {
            current.at = Instant::now();
            current.client_ca_modified = ca_modified;
            match build(&self.tls) {
                Ok(config) => {
                    current.acceptor = TlsAcceptor::from(config);
                    tracing::debug!(component = %self.owner, "TLS certificates reloaded");
                }
                Err(e) => tracing::warn!(
                    component = %self.owner,
                    error = %e,
                    "reloading TLS certificates failed; keeping the previous ones"
                ),
            }
        }
        current.acceptor.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> ServerTls {
        serde_yaml_ng::from_str(yaml).expect("parse")
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(
            parse("{}").validate().expect_err("invalid").path,
            "cert_file"
        );
        assert_eq!(
            parse("{cert_file: /c}")
                .validate()
                .expect_err("invalid")
                .path,
            "key_file"
        );
        parse("{cert_file: /c, key_file: /k, client_ca_file: /ca, min_version: '1.3', reload_interval: 1h}")
            .validate()
            .expect("valid");
        assert_eq!(
            parse("{cert_file: /c, key_file: /k, min_version: '1.1'}")
                .validate()
                .expect_err("invalid")
                .path,
            "min_version"
        );
        assert_eq!(
            parse("{cert_file: /c, key_file: /k, min_version: '1.3', max_version: '1.2'}")
                .validate()
                .expect_err("invalid")
                .path,
            "max_version"
        );
        assert!(serde_yaml_ng::from_str::<ServerTls>("{bogus: 1}").is_err());
    }

    #[test]
    fn versions_follow_the_bounds() {
        let both = parse("{}").versions();
        assert_eq!(both.len(), 2);
        let only13 = parse("{min_version: '1.3'}").versions();
        assert_eq!(only13.len(), 1);
        assert_eq!(only13[0].version, rustls::ProtocolVersion::TLSv1_3);
        let only12 = parse("{max_version: '1.2'}").versions();
        assert_eq!(only12[0].version, rustls::ProtocolVersion::TLSv1_2);
    }

    #[test]
    fn loads_and_reloads_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        let tls = ServerTls {
            cert_file: cert_path.display().to_string(),
            key_file: key_path.display().to_string(),
            reload_interval: Some(Duration::from_nanos(1)),
            ..Default::default()
        };
        let source = TlsSource::new("otlp/grpc", &tls).expect("load");
        assert!(!source.is_mutual());
        // A broken file at reload time keeps the working config.
        std::fs::write(&cert_path, "garbage").expect("write");
        let _ = source.acceptor();
        let garbage = TlsSource::new("otlp/grpc", &tls).expect_err("invalid");
        assert!(garbage.contains("tls.cert_file"), "{garbage}");
        std::fs::write(&cert_path, cert.pem()).expect("write");
        let bad = ServerTls {
            key_file: dir.path().join("missing.pem").display().to_string(),
            ..tls
        };
        assert!(
            TlsSource::new("otlp/grpc", &bad)
                .expect_err("invalid")
                .contains("cannot read")
        );
    }
}
