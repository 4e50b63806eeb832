//! The result of one call, success or failure.

use std::time::Instant;

use serde_json::{json, Value};

use crate::body::Matrix;
use crate::error::{Code, Error};

/// Everything a caller may want to know about one call.
#[derive(Debug, Clone)]
pub struct Response {
    pub code: Code,
    /// HTTP status, 0 when no HTTP answer arrived.
    pub status: u16,
    /// The raw response body (may be empty).
    pub body: Vec<u8>,
    /// `choices[0].message.content` of a chat answer, else "".
    pub text: String,
    /// "" on success, else why the call failed.
    pub error: String,
    /// Call details: attempts, connection reuse, latency, request id, model, usage…
    pub info: Value,
    /// Response headers (lowercase names).
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// A response for a call that failed before any network activity.
    pub fn failed(e: Error, started: Instant) -> Response {
        Response::without_answer(e.code, e.message, started)
    }

    /// A call that got no HTTP answer (failed, or not an HTTP call at all,
    /// like a warm-up), with `code` and `error`.
    pub fn without_answer(code: Code, error: String, started: Instant) -> Response {
        Response {
            code,
            status: 0,
            body: Vec::new(),
            text: String::new(),
            error,
            info: json!({
                "attempts": 0,
                "retries": 0,
                "connection_reused": false,
                "connections_opened": 0,
                "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
                "status": 0,
                "request_id": null,
                "model": null,
                "usage": null,
            }),
            headers: Vec::new(),
        }
    }

    /// True when the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }

    /// The first response header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The vectors of an embeddings answer as one row-major float32 matrix
    /// in `index` order (see [`crate::body::embeddings::decode`]);
    /// `InvalidArgument` for a failed call or an answer that is not
    /// embeddings, `Protocol` for malformed vectors.
    pub fn embeddings(&self) -> Result<Matrix, Error> {
        if !self.is_ok() {
            return Err(Error::invalid(format!(
                "not an embeddings answer: the call failed ({})",
                self.error
            )));
        }
        crate::body::embeddings::decode(&self.body)
    }
}
