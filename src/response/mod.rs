//! The result of one call, success or failure.

use std::time::Instant;

use serde_json::Value;

use crate::body::Matrix;
use crate::error::{Code, Error};
use crate::headers::Headers;

mod info;

pub use info::{BadArguments, Cost, Endpoint, Info, Route, StreamFacts, Timings, Tokens};

/// The answer in its API's non-streaming shape (`llmpool_response_completion`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Completion {
    /// None: a failed call, or not a chat, Responses or Messages answer.
    #[default]
    None,
    /// The body is the answer (a non-streamed call).
    Body,
    /// Assembled from a stream's events.
    Assembled(Value),
}

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
    /// Call details: attempts, connection reuse, latency, request id,
    /// model, usage… (JSON only at the C boundary: [`Response::info_json`]).
    /// Boxed: a `Response` is returned by value through every layer of a
    /// call, and each layer's frame stays on an async call's fiber stack
    /// while it waits; a small `Response` keeps those frames small.
    pub info: Box<Info>,
    /// Response headers (lowercase names).
    pub headers: Headers,
    pub completion: Completion,
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
            info: Box::new(Info::elapsed(started.elapsed().as_secs_f64() * 1000.0)),
            headers: Headers::default(),
            completion: Completion::None,
        }
    }

    /// True when the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }

    /// The first response header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The call details as the JSON object `llmpool_response_info` gives.
    pub fn info_json(&self) -> Value {
        self.info.to_json(self.status)
    }

    /// The answer in its API's non-streaming shape, as JSON text; `None`
    /// when there is none.
    pub fn completion_json(&self) -> Option<String> {
        match &self.completion {
            Completion::None => None,
            Completion::Body => Some(String::from_utf8_lossy(&self.body).into_owned()),
            Completion::Assembled(v) => Some(v.to_string()),
        }
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
