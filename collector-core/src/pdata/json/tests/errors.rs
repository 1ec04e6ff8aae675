use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

use super::super::*;
use super::decode::one_span;
use super::fixtures::*;

// --- errors -----------------------------------------------------------------

#[test]
fn error_non_hex_trace_id() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{},{"spans":[{},{},{},{"traceId":"zz"}]}]}]}"#;
    let err = decode_traces(body.as_bytes()).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceSpans[0].scopeSpans[1].spans[3].traceId"
    );
    assert!(err.message().contains("hex"), "{err}");
    assert!(
        err.to_string()
            .contains("resourceSpans[0].scopeSpans[1].spans[3].traceId")
    );

    let err = one_span(r#"{"spanId":"abc"}"#).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0].spanId");
    let err = one_span(r#"{"parent_span_id":12}"#).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceSpans[0].scopeSpans[0].spans[0].parentSpanId"
    );
}

#[test]
fn error_wrong_type_for_spans() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":{"name":"x"}}]}]}"#;
    let err = decode_traces(body.as_bytes()).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans");
    assert!(err.message().contains("expected an array"), "{err}");

    let err =
        decode_traces(br#"{"resourceSpans":[{"scopeSpans":[{"spans":["x"]}]}]}"#).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0]");

    let err = one_span(r#"{"name":5}"#).unwrap_err();
    assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0].name");
}

#[test]
fn error_bad_base64() {
    let body = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[
        {"key":"ok","value":{"bytesValue":"AAAA"}},
        {"key":"bad","value":{"arrayValue":{"values":[{"bytesValue":"A*B="}]}}}]}]}]}]}"#;
    let err = decode_logs(body.as_bytes()).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceLogs[0].scopeLogs[0].logRecords[0].attributes[1].value.arrayValue.values[0].bytesValue"
    );
    assert!(err.message().contains("base64"), "{err}");
}

#[test]
fn error_top_level_and_syntax() {
    for body in [
        &b"[]"[..],
        b"null",
        b"42",
        b"\"x\"",
        b"",
        b"{",
        b"{} x",
        b"{\"resourceSpans\":[}",
    ] {
        assert!(
            decode_traces(body).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(decode_traces(b"[]").unwrap_err().path(), "");
    assert_eq!(
        decode_traces(b" {} \n").unwrap(),
        ExportTraceServiceRequest::default()
    );
}

#[test]
fn error_invalid_utf8() {
    // Inside a known string, and inside an unknown (skipped) field.
    let err = decode_traces(b"{\"resourceSpans\":[{\"schemaUrl\":\"\xff\xfe\"}]}").unwrap_err();
    assert!(err.message().contains("UTF-8"), "{err}");
    assert!(decode_logs(b"{\"ignored\":\"\xc3\x28\"}").is_err());
}

#[test]
fn error_out_of_range() {
    let err = one_span(r#"{"droppedAttributesCount":4294967296}"#).unwrap_err();
    assert_eq!(
        err.path(),
        "resourceSpans[0].scopeSpans[0].spans[0].droppedAttributesCount"
    );
    assert!(one_span(r#"{"startTimeUnixNano":-1}"#).is_err());
    assert!(one_span(r#"{"startTimeUnixNano":"-1"}"#).is_err());
}

/// Runs `f` on a thread with a small stack: a recursion proportional to
/// the input depth would overflow it (and abort the test process).
///
/// Unoptimised test builds use about 2 KiB of stack per JSON nesting level
/// (release builds under 0.5 KiB), so reaching serde_json's limit of 128
/// levels takes ~300 KiB here; recursing through the 10,000 levels of the
/// test inputs would need over 20 MiB.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn deep_nesting_is_rejected_without_deep_recursion() {
    const DEPTH: usize = 10_000;
    let kvlist = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}"x"{}}}]}}]}}]}}"#,
        r#"{"kvlistValue":{"values":[{"key":"k","value":"#.repeat(DEPTH),
        "}]}}".repeat(DEPTH)
    );
    let array = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}1{}}}]}}]}}]}}"#,
        r#"{"arrayValue":{"values":["#.repeat(DEPTH),
        "]}}".repeat(DEPTH)
    );
    let unknown = format!(r#"{{"x":{}{}}}"#, "[".repeat(DEPTH), "]".repeat(DEPTH));
    let results = on_small_stack(move || {
        [
            decode_logs(kvlist.as_bytes()).map(drop),
            decode_logs(array.as_bytes()).map(drop),
            decode_logs(unknown.as_bytes()).map(drop),
        ]
    });
    let [kvlist, array, unknown] = results;
    for r in [kvlist, array] {
        let err = r.unwrap_err();
        assert!(err.message().contains("recursion limit"), "{err}");
    }
    // serde_json skips unknown values iteratively, whatever their depth.
    unknown.unwrap();
}

#[test]
fn moderate_nesting_is_accepted() {
    // Depth well within serde_json's limit decodes fine and round-trips.
    let mut v = any(Value::StringValue("leaf".into()));
    for _ in 0..20 {
        v = any(Value::ArrayValue(ArrayValue { values: vec![v] }));
    }
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(v),
                    ..LogRecord::default()
                }],
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    let decoded = on_small_stack(move || decode_logs(&encode_logs(&req)).map(|d| d == req));
    assert!(decoded.unwrap());
}

// --- responses --------------------------------------------------------------

#[test]
fn partial_success_and_status_bodies() {
    assert_eq!(
        encode_partial_success(0, "", "rejectedSpans"),
        b"{}".to_vec()
    );
    assert_eq!(
        String::from_utf8(encode_partial_success(3, "bad \"ids\"", "rejectedSpans")).unwrap(),
        r#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad \"ids\""}}"#
    );
    assert_eq!(
        String::from_utf8(encode_partial_success(0, "warning", "rejectedLogRecords")).unwrap(),
        r#"{"partialSuccess":{"errorMessage":"warning"}}"#
    );
    assert_eq!(
        String::from_utf8(encode_partial_success(7, "", "rejectedDataPoints")).unwrap(),
        r#"{"partialSuccess":{"rejectedDataPoints":"7"}}"#
    );
    assert_eq!(
        String::from_utf8(encode_status(3, "invalid\njson")).unwrap(),
        r#"{"code":3,"message":"invalid\njson"}"#
    );
    assert_eq!(
        String::from_utf8(encode_status(0, "")).unwrap(),
        r#"{"code":0}"#
    );
}

#[test]
fn string_escaping() {
    let mut out = String::new();
    super::enc::write_str(&mut out, "a\"b\\c\u{0}\u{1f}\u{7f}é€😀\r\n\t\u{8}\u{c}");
    assert_eq!(
        out,
        "\"a\\\"b\\\\c\\u0000\\u001f\u{7f}é€😀\\r\\n\\t\\b\\f\""
    );
    let back: String = serde_json::from_str(&out).unwrap();
    assert_eq!(back, "a\"b\\c\u{0}\u{1f}\u{7f}é€😀\r\n\t\u{8}\u{c}");
}
