//! The imitated OpenAI-compatible routes and the `/v1/_test/*` control routes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::faults::faults_from_json;
use crate::http::Request;
use crate::Shared;

/// Prefix of the control routes (never counted, never faulted, no auth).
pub(crate) const CONTROL_PREFIX: &str = "/v1/_test/";

/// A response before framing.
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

pub(crate) enum Body {
    /// Sent with Content-Length.
    Bytes(Vec<u8>),
    /// Sent chunked, one chunk per element, sleeping `delay` between elements.
    Sse {
        events: Vec<Vec<u8>>,
        delay: Duration,
    },
}

impl Response {
    pub fn json(status: u16, v: &Value) -> Response {
        Response::raw_json(status, v.to_string())
    }

    pub fn raw_json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Bytes(body.into_bytes()),
        }
    }

    pub fn error(status: u16, message: &str, ty: &str, code: Value) -> Response {
        Response::json(status, &error_json(message, ty, code))
    }
}

pub(crate) fn error_json(message: &str, ty: &str, code: Value) -> Value {
    json!({"error": {"message": message, "type": ty, "param": null, "code": code}})
}

pub(crate) fn bad_request(message: &str) -> Response {
    Response::error(400, message, "invalid_request_error", Value::Null)
}

fn tokens(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn parse_body(req: &Request) -> Result<Value, Response> {
    serde_json::from_slice::<Value>(&req.body).map_err(|e| {
        bad_request(&format!(
            "We could not parse the JSON body of your request: {e}"
        ))
    })
}

/// Text of a message `content`: a string, or the joined `text` parts of an array.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                other => other.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Split into words keeping the trailing whitespace, so the pieces concatenate back.
pub(crate) fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            out.push(std::mem::take(&mut cur));
            in_space = false;
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Handle an API (non-control) request. Authorization is checked here.
pub(crate) fn api(shared: &Shared, req: &Request) -> Response {
    if let Some(key) = shared.required_key.lock().unwrap().clone() {
        let expected = format!("Bearer {key}");
        // The Messages API's own header counts too.
        let x_api_key =
            req.path() == "/v1/messages" && req.header("x-api-key") == Some(key.as_str());
        if req.header("authorization") != Some(expected.as_str()) && !x_api_key {
            let msg = if req.header("authorization").is_none() {
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            } else {
                "Incorrect API key provided."
            };
            return Response::error(401, msg, "invalid_request_error", json!("invalid_api_key"));
        }
    }
    let path = req.path();
    let known = matches!(
        path,
        "/v1/chat/completions"
            | "/v1/responses"
            | "/v1/messages"
            | "/v1/embeddings"
            | "/v1/models"
            | "/v1/echo"
            | "/v1/audio/speech"
            | "/v1/audio/transcriptions"
    );
    match (req.method.as_str(), path) {
        ("POST", "/v1/chat/completions") => chat(shared, req).unwrap_or_else(|r| r),
        ("POST", "/v1/responses") => agent_api(shared, req, false).unwrap_or_else(|r| r),
        ("POST", "/v1/messages") => agent_api(shared, req, true).unwrap_or_else(|r| r),
        ("POST", "/v1/embeddings") => embeddings(req).unwrap_or_else(|r| r),
        ("POST" | "PUT", "/v1/echo") => crate::media::echo(req),
        ("POST", "/v1/audio/speech") => crate::media::speech(req).unwrap_or_else(|r| r),
        ("POST", "/v1/audio/transcriptions") => {
            crate::media::transcription(req).unwrap_or_else(|r| r)
        }
        ("GET", "/v1/models") => Response::json(
            200,
            &json!({"object": "list", "data": [
                {"id": "test-model", "object": "model", "created": 0, "owned_by": "llmpool-testserver"}
            ]}),
        ),
        _ if known => Response::error(
            405,
            &format!("Method {} not allowed for {path}", req.method),
            "invalid_request_error",
            Value::Null,
        ),
        _ => Response::error(
            404,
            &format!("Unknown request URL: {} {path}", req.method),
            "invalid_request_error",
            Value::Null,
        ),
    }
}

fn chat(shared: &Shared, req: &Request) -> Result<Response, Response> {
    let body = parse_body(req)?;
    if !body.is_object() {
        return Err(bad_request("The request body must be a JSON object."));
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) => m.as_slice(),
        None => &[],
        Some(_) => return Err(bad_request("'messages' must be an array.")),
    };
    let last = messages
        .last()
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    let prompt_bytes: usize = messages
        .iter()
        .filter_map(|m| m.get("content"))
        .map(|c| content_text(c).len())
        .sum();
    let content = format!("Echo: {last}");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("test-model")
        .to_string();
    let prompt_tokens = tokens(prompt_bytes);
    let completion_tokens = tokens(content.len());
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let id = format!("chatcmpl-test{}", shared.next_completion_id());
    let created = now();

    // `x_test_ignore_stream`: answer a stream request as if it were none
    // (some gateways do).
    let ignore = body.get("x_test_ignore_stream").and_then(Value::as_bool) == Some(true);
    if ignore || body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Ok(Response::json(
            200,
            &json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": usage,
                "system_fingerprint": "fp_llmpool_test",
            }),
        ));
    }

    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let sse_error = body.get("x_test_sse_error").and_then(Value::as_str);
    let comments = body.get("x_test_sse_comments").and_then(Value::as_bool) == Some(true);
    let delay = Duration::from_millis(
        body.get("x_test_stream_delay_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );

    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_llmpool_test",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
        .to_string()
    };
    if let Some(name) = body.get("x_test_fixture").and_then(Value::as_str) {
        let data = crate::fixtures::chat(name)
            .ok_or_else(|| bad_request(&format!("unknown x_test_fixture {name:?}")))?;
        let events = data.into_iter().map(|d| (None, d)).collect();
        return Ok(sse(events, &body, delay));
    }
    let mut data: Vec<String> = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let pieces = words(&content);
    if let Some(msg) = sse_error {
        for w in pieces.iter().take(2) {
            data.push(chunk(json!({"content": w}), Value::Null));
        }
        data.push(
            json!({"error": {"message": msg, "type": "server_error", "param": null, "code": null}})
                .to_string(),
        );
    } else {
        for w in &pieces {
            data.push(chunk(json!({"content": w}), Value::Null));
        }
        data.push(chunk(json!({}), json!("stop")));
        if include_usage {
            data.push(
                json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_llmpool_test",
                    "choices": [],
                    "usage": usage,
                })
                .to_string(),
            );
        }
        data.push("[DONE]".to_string());
    }

    let mut events = Vec::new();
    for (i, d) in data.iter().enumerate() {
        if comments {
            if i % 2 == 0 {
                events.push(b": keep-alive\r\n\r\n".to_vec());
            }
            events.push(
                format!(
                    "id: {i}\r\n: comment inside an event\r\nevent: message\r\ndata: {d}\r\n\r\n"
                )
                .into_bytes(),
            );
        } else {
            events.push(format!("data: {d}\n\n").into_bytes());
        }
    }
    Ok(Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: Body::Sse { events, delay },
    })
}

/// An SSE answer of `events` (with `x_test_split_multibyte`, each one in
/// two writes split inside a character).
fn sse(events: Vec<crate::fixtures::Event>, body: &Value, delay: Duration) -> Response {
    let split = body.get("x_test_split_multibyte").and_then(Value::as_bool) == Some(true);
    let mut out = Vec::new();
    for (name, data) in events {
        let mut e = String::new();
        if let Some(n) = name {
            e.push_str(&format!("event: {n}\n"));
        }
        if data.starts_with(':') {
            e.push_str(&format!("{data}\n\n"));
        } else {
            e.push_str(&format!("data: {data}\n\n"));
        }
        if split {
            out.extend(crate::fixtures::split_multibyte(e.into_bytes()));
        } else {
            out.push(e.into_bytes());
        }
    }
    Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "text/event-stream".into()),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: Body::Sse { events: out, delay },
    }
}

/// `POST /v1/responses` (`messages` false) and `POST /v1/messages`: an
/// echo of the input (`input`, or the last message's content) in the
/// API's shape, streamed with `"stream": true`. `x_test_tool` adds a tool
/// call; `x_test_overloaded` (Messages) ends the stream with an
/// `overloaded_error` event.
fn agent_api(shared: &Shared, req: &Request, messages: bool) -> Result<Response, Response> {
    let body = parse_body(req)?;
    if !body.is_object() {
        return Err(bad_request("The request body must be a JSON object."));
    }
    let last = match body.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v
            .as_array()
            .and_then(|a| a.last())
            .and_then(|m| m.get("content"))
            .map(content_text)
            .unwrap_or_default(),
        None => body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("content"))
            .map(content_text)
            .unwrap_or_default(),
    };
    let text = format!("Echo: {last}");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("test-model")
        .to_string();
    let n = shared.next_completion_id();
    let flag = |k: &str| body.get(k).and_then(Value::as_bool) == Some(true);
    let delay = Duration::from_millis(
        body.get("x_test_stream_delay_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );
    if flag("x_test_ignore_stream") || body.get("stream").and_then(Value::as_bool) != Some(true) {
        let v = if messages {
            crate::fixtures::message_object(&format!("msg_test{n}"), &model, &text)
        } else {
            crate::fixtures::response_object(&format!("resp_test{n}"), &model, &text)
        };
        return Ok(Response::json(200, &v));
    }
    let pieces = words(&text);
    let events = if messages {
        crate::fixtures::message_events(
            &format!("msg_test{n}"),
            &model,
            &pieces,
            flag("x_test_tool"),
            flag("x_test_overloaded"),
        )
    } else {
        crate::fixtures::response_events(
            &format!("resp_test{n}"),
            &model,
            &pieces,
            flag("x_test_tool"),
        )
    };
    Ok(sse(events, &body, delay))
}

/// FNV-1a 64.
fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// 8 deterministic floats in [-1, 1) derived from the text.
pub(crate) fn embedding(text: &str) -> Vec<f64> {
    let mut state = hash(text);
    (0..8)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^= z >> 31;
            // 24 bits of precision so the value prints compactly and exactly.
            ((z >> 40) as f64 / (1u64 << 23) as f64) - 1.0
        })
        .collect()
}

fn embeddings(req: &Request) -> Result<Response, Response> {
    let body = parse_body(req)?;
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => {
            return Err(bad_request(
                "'input' must be a string or a non-empty array of strings.",
            ))
        }
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("test-model");
    let prompt_tokens: u64 = inputs.iter().map(|s| tokens(s.len())).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": embedding(s)}))
        .collect();
    Ok(Response::json(
        200,
        &json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }),
    ))
}

/// Handle a `/v1/_test/*` control request.
pub(crate) fn control(shared: &Shared, req: &Request) -> Response {
    match req.path().trim_start_matches(CONTROL_PREFIX) {
        "faults" => {
            let v = match parse_body(req) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match faults_from_json(&v) {
                Ok(faults) => {
                    let n = faults.len();
                    let mut q = shared.faults.lock().unwrap();
                    q.extend(faults);
                    Response::json(200, &json!({"queued": n, "pending": q.len()}))
                }
                Err(e) => bad_request(&e),
            }
        }
        "stats" => Response::json(200, &shared.stats_json()),
        "reset" => {
            shared.reset();
            Response::json(200, &json!({"ok": true}))
        }
        "close_idle" => {
            let n = shared.close_idle();
            Response::json(200, &json!({"closed": n}))
        }
        _ => Response::error(
            404,
            &format!("Unknown control URL: {}", req.path()),
            "invalid_request_error",
            Value::Null,
        ),
    }
}

/// Body used for a [`crate::Fault::Status`] with an empty body.
pub(crate) fn fault_status_body(code: u16) -> String {
    let (ty, msg) = match code {
        429 => ("rate_limit_error", "Rate limit reached (injected fault)."),
        400..=499 => (
            "invalid_request_error",
            "Request rejected (injected fault).",
        ),
        _ => ("server_error", "The server had an error (injected fault)."),
    };
    let mut m = Map::new();
    m.insert(
        "error".into(),
        json!({"message": msg, "type": ty, "param": null, "code": null}),
    );
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_concatenate() {
        for s in ["Echo: hello  world ", "Echo: ", "a", "", " x y"] {
            assert_eq!(words(s).concat(), s);
        }
        assert_eq!(words("Echo: hi there"), vec!["Echo: ", "hi ", "there"]);
    }

    #[test]
    fn embedding_is_deterministic() {
        assert_eq!(embedding("abc"), embedding("abc"));
        assert_ne!(embedding("abc"), embedding("abd"));
        assert!(embedding("x").iter().all(|f| (-1.0..1.0).contains(f)));
    }
}
