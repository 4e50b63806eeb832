//! One HTTP exchange on the pooled agent (headers, key, timeouts, body
//! reader, I/O accounting and its log lines), and the `Response` built
//! from what an endpoint's attempts ended with.

use std::time::{Duration, Instant};

use ureq::http;

use super::{BodyFailure, BodyReader, Call, Client};
use crate::assemble::Api;
use crate::body;
use crate::error::{Code, Error};
use crate::exec::token;
use crate::headers::Headers;
use crate::log::{in_scope, Level};
use crate::net::error::from_ureq;
use crate::net::transport::{self, AttemptIo};
use crate::options::{AnthropicAuth, ApiKey};
use crate::response::{Completion, Info, Response, Timings};
use crate::sync::read;

/// What a call's attempts have done so far, over every endpoint.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// The last attempt's I/O and phase timings.
    pub io: AttemptIo,
    pub attempts: u32,
    pub retries: u32,
    pub free_reconnects: u32,
    pub opened: u32,
    pub reused: bool,
}

/// How one endpoint's attempts ended.
pub(crate) struct Done {
    pub err: Option<Error>,
    /// A stream that failed before its first delta: safe to fail over.
    pub resend: bool,
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Done {
    pub fn answer(err: Option<Error>, status: u16, headers: Headers, body: Vec<u8>) -> Done {
        Done {
            err,
            resend: false,
            status,
            headers,
            body,
        }
    }

    pub fn failed(e: Error) -> Done {
        Done::answer(Some(e), 0, Headers::default(), Vec::new())
    }

    /// Failover happens when the endpoint itself looks down: no connection,
    /// TLS failure, no answer in time, a 5xx after its retries, or a stream
    /// that failed before its first delta. Never after a stream delivered
    /// anything.
    pub fn worth_failover(&self) -> bool {
        match &self.err {
            None => false,
            Some(e) if self.status == 0 => {
                matches!(e.code, Code::Connect | Code::Tls | Code::Timeout)
            }
            Some(_) if self.resend => true,
            Some(e) => e.code == Code::HttpStatus && self.status >= 500,
        }
    }
}

/// A 2xx answer's body read that failed.
pub(crate) struct BodyError {
    pub error: Error,
    /// Nothing reached the caller: the call may be sent again.
    pub resend: bool,
}

/// What one exchange gave.
pub(crate) enum Attempt {
    Answer {
        status: u16,
        headers: Headers,
        body: Vec<u8>,
        body_err: Option<BodyError>,
    },
    Failed(Error, Option<ureq::Error>),
}

impl Client {
    /// One attempt on endpoint `ep`, with its I/O counted into `t`.
    pub(crate) fn exchange(
        &self,
        ep: usize,
        call: &Call,
        on_body: &mut BodyReader<'_>,
        t: &mut Tally,
    ) -> Attempt {
        let inner = &*self.inner;
        let log = &*inner.log;
        let endpoint = inner.endpoints.get(ep);
        t.attempts += 1;
        transport::begin_attempt();
        let agent = read(&inner.wire.agent).agent.clone();
        let url = format!("{}{}", endpoint.base_url, call.path);
        in_scope(Level::Debug, || {
            format!("sending {} {url} (attempt {})", call.method, t.attempts)
        });
        if log.log_bodies {
            if let Some(b) = &call.body {
                in_scope(Level::Trace, || format!("request body: {}", clip(b)));
            }
        }
        let outcome = self.send(&agent, call, &url, endpoint.api_key.as_ref(), on_body);
        if let Some(tok) = token::current() {
            tok.clear_sockets();
        }
        let io = transport::attempt_io();
        t.io = io;
        t.opened += io.opened;
        t.reused = io.opened == 0 && io.pooled;
        if t.reused {
            inner.metrics.reused();
            in_scope(Level::Debug, || "reused a pooled connection".to_string());
        }
        if let Attempt::Answer {
            status,
            headers,
            body,
            ..
        } = &outcome
        {
            inner.metrics.status(&endpoint.base_url, *status);
            in_scope(Level::Info, || {
                let took = io
                    .started
                    .map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0);
                let rid = headers
                    .get("x-request-id")
                    .map(|r| format!(" request_id={r}"))
                    .unwrap_or_default();
                format!(
                    "answer HTTP {status} in {took:.1} ms (attempt {}){rid}",
                    t.attempts
                )
            });
            if log.log_bodies {
                in_scope(Level::Trace, || format!("response body: {}", clip(body)));
            }
            let model = call.facts.model.as_deref().unwrap_or("");
            inner.gate.ratelimit.observe(model, headers);
        }
        outcome
    }

    fn send(
        &self,
        agent: &ureq::Agent,
        call: &Call,
        url: &str,
        endpoint_key: Option<&ApiKey>,
        on_body: &mut BodyReader<'_>,
    ) -> Attempt {
        let inner = &*self.inner;
        let result = self.run_request(agent, call, url, endpoint_key);
        let resp = match result {
            Err(e) => {
                return Attempt::Failed(
                    Error::invalid(format!("cannot build the request: {e}")),
                    None,
                )
            }
            Ok(Err(e)) => return Attempt::Failed(from_ureq(&e), Some(e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let headers = Headers::from_http(resp.headers());
        // ureq's copy of the head goes before the body is read: a stream
        // would hold it (about 2 KiB) for its whole life.
        let (_, mut body) = resp.into_parts();
        let read = if (200..300).contains(&status) {
            on_body(&mut body)
        } else {
            read_whole(&mut body, inner.opts.max_response_bytes).map_err(BodyFailure::last)
        };
        match read {
            Ok(body) => Attempt::Answer {
                status,
                headers,
                body,
                body_err: None,
            },
            Err(BodyFailure {
                partial,
                mut error,
                resend,
            }) => {
                error.message = format!(
                    "HTTP {status} answer cut short while reading its body: {}",
                    error.message
                );
                Attempt::Answer {
                    status,
                    headers,
                    body: partial,
                    body_err: Some(BodyError { error, resend }),
                }
            }
        }
    }

    /// Builds the request and runs it through ureq until its answer's head.
    /// Never inlined: the request builder's copies would otherwise sit in
    /// `send`'s frame, which stays on an async call's fiber stack while the
    /// body is read (a stream: for minutes).
    #[inline(never)]
    fn run_request(
        &self,
        agent: &ureq::Agent,
        call: &Call,
        url: &str,
        endpoint_key: Option<&ApiKey>,
    ) -> Result<Result<http::Response<ureq::Body>, ureq::Error>, http::Error> {
        let inner = &*self.inner;
        let mut b = http::Request::builder()
            .method(call.method.clone())
            .uri(url);
        b = match call.content_type.as_deref() {
            None if call.body.is_some() => b
                .header("accept", "application/json")
                .header("content-type", "application/json"),
            None => b.header("accept", "application/json"),
            Some("") => b.header("accept", "*/*"),
            Some(ct) => b.header("accept", "*/*").header("content-type", ct),
        };
        let messages = call.api() == Some(Api::Messages);
        if messages {
            b = b.header("anthropic-version", inner.opts.anthropic_version.as_str());
        }
        let client_key = read(&inner.wire.key);
        if let Some(key) = endpoint_key.or(client_key.as_ref()) {
            b = match inner.opts.anthropic_auth {
                AnthropicAuth::XApiKey if messages => b.header("x-api-key", key.expose()),
                _ => b.header("authorization", format!("Bearer {}", key.expose())),
            };
        }
        drop(client_key);
        for (k, v) in &inner.opts.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let run = |req: http::Request<_>| {
            if call.facts.stream {
                // A stream may run for minutes: bound the wait for headers and
                // each gap between reads, not the whole call.
                let req = agent
                    .configure_request(req)
                    .timeout_global(None)
                    .timeout_recv_response(Some(inner.opts.timeout))
                    .timeout_per_read(Some(inner.opts.stream_idle_timeout))
                    .build();
                agent.run(req)
            } else {
                agent.run(req)
            }
        };
        let result = match &call.body {
            Some(body) => b.body(body.as_slice()).map(&run),
            None => b.body(()).map(|r| agent.run(r)),
        };
        result
    }

    /// The response for what an endpoint's attempts ended with.
    pub(crate) fn finish(&self, call: &Call, started: Instant, t: &Tally, done: Done) -> Response {
        let Done {
            mut err,
            status,
            headers,
            body,
            ..
        } = done;
        let api = call.api();
        // The few fields llmpool needs, without a tree of the whole body
        // (an embeddings answer is megabytes of floats); the Responses and
        // Messages answers are small and read as a tree.
        let read = match api {
            Some(a) if !call.facts.stream => answer_fields(a, &body),
            _ => body::fields(&body),
        };
        // A 2xx JSON call whose body is not JSON is a broken answer, not a success.
        if let (None, false, true, false, Err(e)) = (
            &err,
            call.facts.stream,
            call.path_is_json_api(),
            body.is_empty(),
            &read,
        ) {
            err = Some(Error::new(
                Code::Protocol,
                format!(
                    "HTTP {status} from {} but the body is not valid JSON ({e})",
                    call.path
                ),
            ));
        }
        let sum = read.unwrap_or_default();
        let elapsed = started.elapsed();
        let info = Info {
            attempts: t.attempts,
            retries: t.retries,
            reconnects_after_idle_close: t.free_reconnects,
            connection_reused: t.reused,
            connections_opened: t.opened,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            request_id: headers.get("x-request-id").map(str::to_string),
            model: sum.model.or_else(|| call.facts.model.clone()),
            usage: Some(sum.usage).filter(|u| !u.is_null()),
            finish_reason: sum.finish_reason,
            timings: timings(&t.io, elapsed),
            ..Info::default()
        };
        let answered = err.is_none() && (200..300).contains(&status) && !body.is_empty();
        let completion = match api {
            Some(_) if answered && !call.facts.stream => Completion::Body,
            _ => Completion::None,
        };
        let (code, error) = match err {
            None => (Code::Ok, String::new()),
            Some(e) => (e.code, e.message),
        };
        Response {
            code,
            status,
            body,
            text: sum.text,
            error,
            info: Box::new(info),
            headers,
            completion,
        }
    }
}

/// The fields llmpool reads of an answer of `api`: chat answers without a
/// tree ([`body::fields`]), Responses and Messages answers (small) as one.
pub(crate) fn answer_fields(api: Api, body: &[u8]) -> Result<body::Fields, body::NotJson> {
    if api == Api::Chat {
        return body::fields(body);
    }
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // The scanner says where and why it is not JSON.
        Err(_) => return body::fields(body),
    };
    let a = crate::assemble::read_answer(api, &v);
    Ok(body::Fields {
        text: a.text,
        finish_reason: a.finish_reason,
        model: a.model,
        usage: a.usage.unwrap_or(serde_json::Value::Null),
    })
}

/// The phases of the last attempt (dns, connect and tls are 0 when it used
/// a pooled connection) and the whole call.
pub(crate) fn timings(io: &AttemptIo, total: Duration) -> Timings {
    // Microsecond precision: finer digits are noise.
    let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
    let fresh = io.opened > 0;
    let pick = |d: Duration| if fresh { ms(d) } else { 0.0 };
    Timings {
        dns: pick(io.dns),
        connect: pick(io.connect),
        tls: pick(io.tls),
        ttfb: io.ttfb().map_or(0.0, ms),
        total: ms(total),
    }
}

/// A body for a TRACE line: lossy UTF-8, at most 16 KiB.
fn clip(b: &[u8]) -> String {
    const MAX: usize = 16 * 1024;
    let mut s = String::from_utf8_lossy(&b[..b.len().min(MAX)]).into_owned();
    if b.len() > MAX {
        s.push_str(&format!("... ({} bytes in all)", b.len()));
    }
    s
}

/// Reads a whole body up to `limit` bytes.
///
/// The buffer is sized from `Content-Length` up front, with one spare byte
/// for the NUL the C API appends, so a large body is read straight into
/// its final place: no regrowth copies, no second allocation for the NUL,
/// and a peak memory of one body rather than two.
pub fn read_whole(body: &mut ureq::Body, limit: u64) -> Result<Vec<u8>, (Vec<u8>, Error)> {
    use std::io::Read;
    let size = match body.content_length() {
        Some(n) => usize::try_from(n.min(limit)).unwrap_or(0).saturating_add(1),
        None => 8192,
    };
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    let mut reader = body.with_config().limit(limit).reader();
    loop {
        if filled == buf.len() {
            // Longer than announced (or no length): grow by doubling.
            buf.resize(buf.len() * 2, 0);
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((Vec::new(), from_ureq(&ureq::Error::from(e)))),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

pub(crate) fn http_error(status: u16, path: &str, body: &[u8], why: &str) -> Error {
    let detail = body::error_fields(body)
        .and_then(|e| e.message)
        .unwrap_or_else(|| {
            let s = String::from_utf8_lossy(body);
            s.chars().take(300).collect()
        });
    let mut msg = format!("HTTP {status} from {path}");
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&detail);
    }
    if !why.is_empty() {
        msg.push_str(" (");
        msg.push_str(why);
        msg.push(')');
    }
    Error::new(Code::HttpStatus, msg)
}
