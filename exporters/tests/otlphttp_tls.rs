//! `otlphttp` over HTTPS to collector-core's `otlp` receiver serving TLS,
//! with certificates from a test CA made by rcgen: server TLS, mutual TLS,
//! and the failures (no client certificate, a server from another CA), which
//! are counted as `send_failed`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use collector_core::component::{
    ComponentId, CreateContext, Exporter, ExporterFactory, Factory, Host, Receiver,
    ReceiverConsumers, ReceiverFactory,
};
use collector_core::consumer::{ConsumeError, Consumer, ErrorKind};
use collector_core::pdata::{Batch, Payload, Signal, Telemetry};
use collector_core::receiver::otlp::OtlpReceiverFactory;
use exporters::otlphttp::{OtlpHttpConfig, OtlpHttpExporterFactory};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Capture(mpsc::UnboundedSender<Telemetry>);

#[async_trait]
impl Consumer for Capture {
    async fn consume(&self, telemetry: Telemetry) -> Result<(), ConsumeError> {
        let _ = self.0.send(telemetry);
        Ok(())
    }
}

/// A CA that writes `<name>-ca.pem` and issues certificates into `dir`.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), issuer.pem()).unwrap();
        Self { issuer }
    }

    /// Writes `<name>.pem` and `<name>-key.pem` for `localhost`/127.0.0.1.
    fn issue(&self, dir: &Path, name: &str, server: bool) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

struct Peer {
    url: String,
    got: mpsc::UnboundedReceiver<Telemetry>,
    receiver: Box<dyn Receiver>,
}

impl Peer {
    /// Items of the next batch the receiver takes (within 10 s).
    async fn next_batch_items(&mut self) -> usize {
        tokio::time::timeout(Duration::from_secs(10), self.got.recv())
            .await
            .expect("a batch within 10 s")
            .expect("the receiver runs")
            .payload
            .item_count()
    }
}

async fn tls_receiver(dir: &Path, mutual: bool) -> Peer {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("otlp", None),
        host: host.clone(),
    };
    let d = dir.display();
    let client_ca = if mutual {
        format!(", client_ca_file: {d}/main-ca.pem")
    } else {
        String::new()
    };
    let config: <OtlpReceiverFactory as Factory>::Config = serde_yaml_ng::from_str(&format!(
        "protocols: {{http: {{endpoint: '127.0.0.1:0', tls: {{cert_file: {d}/server.pem, key_file: {d}/server-key.pem{client_ca}}}}}}}"
    ))
    .unwrap();
    OtlpReceiverFactory.validate(&config).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut consumers = ReceiverConsumers::default();
    consumers.set(Signal::Traces, Arc::new(Capture(tx)));
    let receiver = OtlpReceiverFactory
        .create(&ctx, &config, consumers)
        .unwrap();
    receiver.start().await.unwrap();
    let addr = host
        .listeners
        .local_addr("otlp/http", "127.0.0.1:0")
        .unwrap();
    Peer {
        url: format!("https://localhost:{}", addr.port()),
        got: rx,
        receiver,
    }
}

fn https_exporter(url: &str, tls: &str) -> (Arc<dyn Exporter>, Arc<Host>) {
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("otlphttp", None),
        host: host.clone(),
    };
    let config: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
        "endpoint: {url}\ntls: {tls}\nsending_queue: {{enabled: false}}\n\
         retry_on_failure: {{initial_interval: 10ms, max_interval: 10ms, max_elapsed_time: 200ms}}"
    ))
    .unwrap();
    OtlpHttpExporterFactory.validate(&config).unwrap();
    (OtlpHttpExporterFactory.create(&ctx, &config).unwrap(), host)
}

fn spans(n: usize) -> Payload {
    Payload::Traces(Batch::new(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: vec![9; 16],
                        span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                        name: "tls".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

fn failed(host: &Host) -> f64 {
    host.metrics
        .value(
            "otelcol_exporter_send_failed_spans",
            &[("exporter", "otlphttp")],
        )
        .unwrap_or(0.0)
}

fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let main = TestCa::new(dir.path(), "main");
    main.issue(dir.path(), "server", true);
    main.issue(dir.path(), "client", false);
    TestCa::new(dir.path(), "other");
    dir
}

#[tokio::test]
async fn https_with_a_test_ca() {
    let dir = pki();
    let d = dir.path().display();
    let mut peer = tls_receiver(dir.path(), false).await;
    let (exporter, host) = https_exporter(&peer.url, &format!("{{ca_file: {d}/main-ca.pem}}"));
    exporter.consume(Telemetry::new(spans(3))).await.unwrap();
    assert_eq!(peer.next_batch_items().await, 3);
    assert_eq!(failed(&host), 0.0);

    // A client that trusts another CA refuses the server.
    let (stranger, host) = https_exporter(&peer.url, &format!("{{ca_file: {d}/other-ca.pem}}"));
    let error = stranger
        .consume(Telemetry::new(spans(2)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(failed(&host), 2.0);
    peer.receiver
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let dir = pki();
    let d = dir.path().display();
    let mut peer = tls_receiver(dir.path(), true).await;
    let (exporter, host) = https_exporter(
        &peer.url,
        &format!(
            "{{ca_file: {d}/main-ca.pem, cert_file: {d}/client.pem, key_file: {d}/client-key.pem}}"
        ),
    );
    exporter.consume(Telemetry::new(spans(4))).await.unwrap();
    assert_eq!(peer.next_batch_items().await, 4);
    assert_eq!(failed(&host), 0.0);

    let (anonymous, host) = https_exporter(&peer.url, &format!("{{ca_file: {d}/main-ca.pem}}"));
    assert!(anonymous.consume(Telemetry::new(spans(1))).await.is_err());
    assert_eq!(failed(&host), 1.0);
    assert!(peer.got.try_recv().is_err(), "nothing got through");
    peer.receiver
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}

/// An HTTP/2 connection (negotiated by ALPN) that stops answering, as one
/// to a peer that vanished without a reset: the attempt times out, and the
/// next one dials a new connection (behind a Service address, another
/// peer) instead of waiting on the dead one until TCP gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_blackhole_the_next_attempt_dials_a_new_connection() {
    use testkit::fault_proxy::{FaultProxy, Mode};
    let dir = pki();
    let d = dir.path().display();
    let mut peer = tls_receiver(dir.path(), false).await;
    let port: u16 = peer.url.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let host = Host::new();
    let ctx = CreateContext {
        id: ComponentId::new("otlphttp", None),
        host: host.clone(),
    };
    let config: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
        "endpoint: https://localhost:{}\ntls: {{ca_file: {d}/main-ca.pem}}\n\
         timeout: 500ms\nsending_queue: {{enabled: false}}\n\
         retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 60s}}",
        proxy.address.port()
    ))
    .unwrap();
    let exporter = OtlpHttpExporterFactory.create(&ctx, &config).unwrap();
    exporter.consume(Telemetry::new(spans(3))).await.unwrap();
    assert_eq!(peer.next_batch_items().await, 3);
    assert_eq!(proxy.stats().connections, 1);

    proxy.set(Mode::Blackhole);
    let sending = tokio::spawn({
        let exporter = exporter.clone();
        async move { exporter.consume(Telemetry::new(spans(5))).await }
    });
    // The first attempt goes unanswered on the old connection; a retry
    // must not wait there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().connections < 2 {
        assert!(
            Instant::now() < deadline,
            "no new connection while the old one was silent: {:?}",
            proxy.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.set(Mode::PassThrough);
    tokio::time::timeout(Duration::from_secs(10), sending)
        .await
        .expect("delivered once the path was back")
        .unwrap()
        .unwrap();
    assert_eq!(peer.next_batch_items().await, 5);
    assert_eq!(failed(&host), 0.0);
    peer.receiver
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
}
