//! Fault injection: the [`Fault`] enum and its JSON form used by `POST /v1/_test/faults`.

use std::time::Duration;

use serde_json::Value;

/// A fault applied to the next request (faults are queued FIFO; each
/// non-control request pops at most one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, body and extra headers instead of the real
    /// response. An empty body is replaced by an OpenAI-style error JSON.
    /// Examples: 503; 429 with `("retry-after","1")` or `("retry-after-ms","50")`;
    /// `("x-should-retry","false")`.
    Status {
        code: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// Answer normally, with these extra headers (e.g. OpenAI's
    /// `x-ratelimit-remaining-requests: 0`, `x-ratelimit-reset-requests: 1s`).
    Headers(Vec<(String, String)>),
    /// Sleep, then answer normally.
    DelayBeforeHeaders(Duration),
    /// Send the headers and half of the body, sleep, then send the rest.
    StallMidBody(Duration),
    /// Write part of the status line/headers, then reset the connection (SO_LINGER 0).
    ResetMidHeaders,
    /// Send headers (with Content-Length) and half of the body, then close.
    ResetMidBody,
    /// Read the request, then close without writing anything.
    CloseWithoutResponse,
    /// Answer `HTTP/1.1 abc nonsense\r\n\r\n`, then close.
    MalformedStatusLine,
    /// Answer with `Transfer-Encoding: chunked`, send one chunk, close without the 0-chunk.
    TruncatedChunked,
    /// 200 with `Content-Type: application/json` and the body `{not json`.
    InvalidJson,
    /// Answer normally with `Connection: close`, then close.
    CloseAfterResponse,
}

fn ms(v: &Value) -> Result<Duration, String> {
    v.get("ms")
        .and_then(Value::as_u64)
        .map(Duration::from_millis)
        .ok_or_else(|| "fault needs an integer \"ms\" field".to_string())
}

/// The optional `headers` of a fault: an object or an array of `[name, value]`
/// pairs; names lowercased.
fn headers_of(v: &Value) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    match v.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, val) in m {
                let val = match val {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.push((k.to_ascii_lowercase(), val));
            }
        }
        Some(Value::Array(a)) => {
            for pair in a {
                match pair.as_array().map(Vec::as_slice) {
                    Some([Value::String(k), Value::String(val)]) => {
                        headers.push((k.to_ascii_lowercase(), val.clone()))
                    }
                    _ => return Err("headers array must hold [name, value] pairs".into()),
                }
            }
        }
        Some(_) => return Err("\"headers\" must be an object or an array".into()),
    }
    Ok(headers)
}

/// Parse one fault object, e.g. `{"type":"status","code":429,"headers":{"retry-after":"1"}}`.
///
/// Type names: `status` (`code`, optional `body`, optional `headers` as an object
/// or an array of `[name, value]` pairs), `delay_before_headers` (`ms`),
/// `headers` (`headers`: answer normally with them), `stall_mid_body` (`ms`),
/// `reset_mid_headers`, `reset_mid_body`,
/// `close_without_response`, `malformed_status_line`, `truncated_chunked`,
/// `invalid_json`, `close_after_response`. A `times` field is ignored here
/// (see [`faults_from_json`]).
pub fn fault_from_json(v: &Value) -> Result<Fault, String> {
    let ty = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| "fault needs a string \"type\" field".to_string())?;
    Ok(match ty {
        "status" => {
            let code = v
                .get("code")
                .and_then(Value::as_u64)
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(|| "status fault needs a \"code\" between 100 and 999".to_string())?
                as u16;
            let body = match v.get("body") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            let headers = headers_of(v)?;
            Fault::Status {
                code,
                body,
                headers,
            }
        }
        "headers" => Fault::Headers(headers_of(v)?),
        "delay_before_headers" | "delay" => Fault::DelayBeforeHeaders(ms(v)?),
        "stall_mid_body" | "stall" => Fault::StallMidBody(ms(v)?),
        "reset_mid_headers" => Fault::ResetMidHeaders,
        "reset_mid_body" => Fault::ResetMidBody,
        "close_without_response" => Fault::CloseWithoutResponse,
        "malformed_status_line" => Fault::MalformedStatusLine,
        "truncated_chunked" => Fault::TruncatedChunked,
        "invalid_json" => Fault::InvalidJson,
        "close_after_response" => Fault::CloseAfterResponse,
        other => return Err(format!("unknown fault type {other:?}")),
    })
}

/// Parse a fault object or an array of them, expanding each object's optional
/// `times` field (default 1) into that many queued copies.
pub fn faults_from_json(v: &Value) -> Result<Vec<Fault>, String> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        _ => return Err("expected a fault object or an array of fault objects".into()),
    };
    let mut out = Vec::new();
    for item in items {
        let f = fault_from_json(item)?;
        let times = match item.get("times") {
            None | Some(Value::Null) => 1,
            Some(t) => t
                .as_u64()
                .ok_or_else(|| "\"times\" must be a non-negative integer".to_string())?,
        };
        for _ in 0..times {
            out.push(f.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_all_kinds() {
        let v = json!([
            {"type":"status","code":503,"times":2},
            {"type":"delay_before_headers","ms":200},
            {"type":"status","code":429,"headers":{"Retry-After":"1"}},
            {"type":"stall_mid_body","ms":5},
            {"type":"reset_mid_headers"},
            {"type":"reset_mid_body"},
            {"type":"close_without_response"},
            {"type":"malformed_status_line"},
            {"type":"truncated_chunked"},
            {"type":"invalid_json"},
            {"type":"close_after_response","times":0},
        ]);
        let f = faults_from_json(&v).unwrap();
        assert_eq!(f.len(), 11);
        assert_eq!(f[0], f[1]);
        assert_eq!(f[2], Fault::DelayBeforeHeaders(Duration::from_millis(200)));
        assert_eq!(
            f[3],
            Fault::Status {
                code: 429,
                body: String::new(),
                headers: vec![("retry-after".into(), "1".into())]
            }
        );
        assert_eq!(f[10], Fault::InvalidJson);
    }

    #[test]
    fn rejects_bad() {
        assert!(fault_from_json(&json!({"type":"nope"})).is_err());
        assert!(fault_from_json(&json!({"type":"status"})).is_err());
        assert!(fault_from_json(&json!({"type":"delay_before_headers"})).is_err());
        assert!(faults_from_json(&json!(3)).is_err());
        assert!(fault_from_json(&json!({"type":"headers","headers":5})).is_err());
    }

    #[test]
    fn headers_fault_keeps_its_headers() {
        let f = fault_from_json(
            &json!({"type":"headers","headers":{"X-RateLimit-Remaining-Requests":"0"}}),
        );
        assert_eq!(
            f.unwrap(),
            Fault::Headers(vec![("x-ratelimit-remaining-requests".into(), "0".into())])
        );
    }
}
