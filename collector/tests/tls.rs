//! TLS between collectors: an `agent-collector` whose `otlp` exporter sends
//! over TLS (and mutual TLS) to a `gateway-collector` serving TLS on its OTLP
//! gRPC receiver, with certificates from a test CA made by rcgen. A client
//! without a certificate under mutual TLS, and a client that trusts another
//! CA, deliver nothing and count their spans as `send_failed`.

mod support;

use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::HashSet;
use std::path::Path;
use support::{Collector, eventually, http_request, make_traces, read_file_exporter};

/// A test CA writing `<name>-ca.pem` and issuing certificates into a directory.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA");
        std::fs::write(dir.join(format!("{name}-ca.pem")), issuer.pem()).expect("write");
        Self { issuer }
    }

    /// `<name>.pem` and `<name>-key.pem`, valid for localhost and 127.0.0.1.
    fn issue(&self, dir: &Path, name: &str, usage: ExtendedKeyUsagePurpose) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).expect("write");
    }
}

/// A CA `main` with a server and a client certificate, and an unrelated CA `other`.
fn pki() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = TestCa::new(dir.path(), "main");
    main.issue(dir.path(), "server", ExtendedKeyUsagePurpose::ServerAuth);
    main.issue(dir.path(), "client", ExtendedKeyUsagePurpose::ClientAuth);
    TestCa::new(dir.path(), "other");
    dir
}

fn gateway(pki: &Path, mutual: bool) -> Collector {
    let p = pki.display();
    let client_ca = if mutual {
        format!("\n          client_ca_file: {p}/main-ca.pem")
    } else {
        String::new()
    };
    Collector::start(
        support::binary("gateway-collector"),
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
        tls:
          cert_file: {p}/server.pem
          key_file: {p}/server-key.pem
          min_version: "1.2"{client_ca}
exporters:
  file:
    path: {{dir}}/received.json
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#
        ),
    )
}

/// An agent sending to `gateway` with the given exporter `tls` settings;
/// it gives up on a request after 1s of retries.
fn agent(gateway: &str, tls: &str) -> Collector {
    Collector::start(
        support::binary("agent-collector"),
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
processors:
  batch:
    timeout: 10ms
exporters:
  otlp:
    endpoint: {gateway}
    tls: {tls}
    timeout: 2s
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 200ms
      max_elapsed_time: 1s
service:
  telemetry:
    metrics:
      address: 127.0.0.1:0
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp]
"#
        ),
    )
}

/// Sends `traces` traces of 5 spans to the agent; returns their span ids.
fn send(agent: &Collector, seed: u8, traces: usize) -> HashSet<Vec<u8>> {
    let addr = agent.address("otlp", "http");
    let request = make_traces(seed, traces, 5, "tls-test");
    let response = http_request(
        addr,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &request.encode_to_vec(),
    );
    assert_eq!(response.status, 200);
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.span_id.clone())
        .collect()
}

fn received(gateway: &Collector) -> HashSet<Vec<u8>> {
    read_file_exporter(&gateway.path("received.json"))
        .spans()
        .map(|s| s.span_id.clone())
        .collect()
}

fn assert_delivered(gateway: &Collector, agent: &Collector, sent: &HashSet<Vec<u8>>) {
    let missing = eventually(
        "every span at the gateway",
        || sent.difference(&received(gateway)).count(),
        |missing| *missing == 0,
    );
    assert_eq!(missing, 0, "agent logs:\n{}", agent.log_text());
    assert_eq!(
        agent.metric(
            "otelcol_exporter_send_failed_spans_total",
            &[("exporter", "otlp")]
        ),
        0.0
    );
}

fn assert_failed(agent: &Collector, spans: usize) {
    eventually(
        "the refused spans counted as send_failed",
        || {
            agent.metric(
                "otelcol_exporter_send_failed_spans_total",
                &[("exporter", "otlp")],
            )
        },
        |failed| *failed == spans as f64,
    );
}

#[test]
fn otlp_over_tls_with_a_test_ca() {
    let pki = pki();
    let p = pki.path().display();
    let gateway = gateway(pki.path(), false);
    let addr = gateway.address("otlp", "grpc").to_string();
    let line = gateway.wait_for_log("tls listener", |v| {
        v["message"] == "listening" && v["protocol"] == "grpc"
    });
    assert_eq!(line["tls"], "server");

    let trusted = agent(&addr, &format!("{{ca_file: {p}/main-ca.pem}}"));
    let sent = send(&trusted, 1, 20);
    assert_delivered(&gateway, &trusted, &sent);

    // The same endpoint, spelled as a name the certificate holds.
    let by_name = agent(
        &format!("localhost:{}", gateway.address("otlp", "grpc").port()),
        &format!("{{ca_file: {p}/main-ca.pem}}"),
    );
    let sent = send(&by_name, 2, 4);
    assert_delivered(&gateway, &by_name, &sent);

    // A client that trusts another CA refuses the gateway's certificate.
    let stranger = agent(&addr, &format!("{{ca_file: {p}/other-ca.pem}}"));
    let refused = send(&stranger, 3, 6);
    assert_failed(&stranger, refused.len());
    assert!(received(&gateway).is_disjoint(&refused));
    stranger.wait_for_log("the failure logged", |v| {
        v["message"] == "Exporting failed. Dropping data."
    });

    // Plaintext to a TLS port does not get through either.
    let plain = agent(&addr, "{insecure: true}");
    let refused = send(&plain, 4, 2);
    assert_failed(&plain, refused.len());
}

#[test]
fn otlp_over_mutual_tls() {
    let pki = pki();
    let p = pki.path().display();
    let gateway = gateway(pki.path(), true);
    let addr = gateway.address("otlp", "grpc").to_string();

    let with_cert = agent(
        &addr,
        &format!(
            "{{ca_file: {p}/main-ca.pem, cert_file: {p}/client.pem, key_file: {p}/client-key.pem}}"
        ),
    );
    let sent = send(&with_cert, 1, 20);
    assert_delivered(&gateway, &with_cert, &sent);

    // No client certificate: the gateway refuses the handshake.
    let anonymous = agent(&addr, &format!("{{ca_file: {p}/main-ca.pem}}"));
    let refused = send(&anonymous, 2, 3);
    assert_failed(&anonymous, refused.len());
    gateway.wait_for_log("the refused handshake", |v| {
        v["message"] == "TLS handshake failed"
    });
    assert!(received(&gateway).is_disjoint(&refused));

    // A client certificate from another CA is refused too.
    let other = tempfile::tempdir().expect("tempdir");
    TestCa::new(other.path(), "rogue").issue(
        other.path(),
        "client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let o = other.path().display();
    let rogue = agent(
        &addr,
        &format!(
            "{{ca_file: {p}/main-ca.pem, cert_file: {o}/client.pem, key_file: {o}/client-key.pem}}"
        ),
    );
    let refused = send(&rogue, 3, 3);
    assert_failed(&rogue, refused.len());
    assert!(received(&gateway).is_disjoint(&refused));
}
