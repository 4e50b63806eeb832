//! Streaming chat completions over Server-Sent Events.
//!
//! [`Client::chat_stream`] sends a chat request with `"stream": true`, reads
//! the `text/event-stream` answer as it arrives (parsed by [`crate::sse`]),
//! and hands every chunk to a callback on the calling thread. The call goes
//! through the same routing, budget, retries (up to the response headers),
//! metrics and cost accounting as [`Client::chat`].
//!
//! # Results
//!
//! The returned [`Response`] always holds what arrived, also on failure:
//!
//! * `text`: the concatenated `choices[0].delta.content` of every chunk;
//! * `body`: the raw SSE bytes read (a non-2xx answer keeps its JSON body);
//! * `info`: the usual call details plus `ttft_ms` (milliseconds from the
//!   start of the call to the first non-empty delta, `null` when none
//!   arrived), `chunks` (chunk events delivered to the callback),
//!   `finish_reason` (from the last chunk that had one, else `null`), `usage`
//!   (from the final usage chunk; `stream_options.include_usage` is set for
//!   that unless the caller set it) and `cost_usd` from the cost layer;
//!   after a mid-stream error event, `stream_error` holds its JSON (or text).
//!
//! Codes:
//!
//! * `Ok`: `data: [DONE]` arrived, or the body ended cleanly after a chunk
//!   with a `finish_reason`;
//! * `Cancelled`: the callback returned `false`, or [`Client::cancel_all`]
//!   ran while the stream was in flight;
//! * `Protocol`: the server sent an error object (or `event: error`)
//!   mid-stream (its message is in the error; HTTP status stays 200), or a
//!   chunk that is not a JSON object, or an oversized SSE line/event;
//! * `Io`: the connection dropped mid-stream, or the body ended before
//!   `[DONE]` without any `finish_reason`;
//! * `Timeout`: no byte arrived for `stream_idle_timeout_ms` (default 60 s);
//!   there is no whole-call timeout for streams;
//! * `HttpStatus`: a non-2xx answer (retried like any chat call), with the
//!   JSON error body kept and no callback made.
//!
//! # Connections
//!
//! After `[DONE]` the rest of the body (normally just the chunked
//! terminator) is read, so the connection goes back to the pool. A stream
//! that ends any other way (callback abort, error, cancel) drops its
//! connection instead of pooling it: the next call opens a fresh one.

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{parse_object, Client};
use crate::error::{Code, Error};
use crate::log::{in_scope, Level};
use crate::net::error::from_ureq;
use crate::response::{Response, StreamFacts};
use crate::sse::{interpret, SseEvent, SseParser, StreamItem};

/// Bytes read into one buffer per `read` call.
const READ_BUF: usize = 16 * 1024;

/// After `[DONE]`, at most this many further body bytes are read to put the
/// connection back in the pool; a server sending more loses the connection.
const MAX_DRAIN: usize = 64 * 1024;

/// What the body reader learned, for the response patch.
#[derive(Default)]
struct State {
    text: String,
    chunks: u64,
    ttft_ms: Option<f64>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    model: Option<String>,
    /// The raw data of a mid-stream error event.
    stream_error: Option<String>,
    /// The callback returned `false`.
    aborted_by_callback: bool,
    /// The error this module decided on (its message replaces the generic
    /// "answer cut short" wording of the transport layer).
    own_error: Option<Error>,
}

/// Why event handling stopped.
enum Stop {
    Done,
    Fail(Error),
}

impl Client {
    /// Streams a chat completion: `POST {base_url}/chat/completions` with
    /// `request_json` (a JSON object) plus `"stream": true` and, unless the
    /// request already has `stream_options.include_usage`,
    /// `"stream_options": {"include_usage": true}`.
    ///
    /// `on_delta(delta, event_json)` runs on the calling thread once per
    /// chunk event, in order, with `choices[0].delta.content` (may be empty,
    /// e.g. for the role chunk or the usage chunk) and the event's raw JSON.
    /// Returning `false` aborts the stream: the response then has
    /// `Code::Cancelled` and the text received so far. `[DONE]` and error
    /// events are not passed to `on_delta`.
    ///
    /// Always returns a response; see the [module documentation](self) for
    /// its fields and codes.
    /// `on_delta` is `Send` because the same code runs async calls, which
    /// may resume on another library thread after a wait; a blocking call
    /// runs it on the calling thread only.
    pub fn chat_stream(
        &self,
        request_json: &str,
        on_delta: &mut (dyn FnMut(&str, &str) -> bool + Send),
    ) -> Response {
        self.block_on_call(self.chat_stream_fut(request_json, on_delta))
    }

    /// The future of [`Client::chat_stream`] (what an async stream runs).
    pub(crate) async fn chat_stream_fut(
        &self,
        request_json: &str,
        on_delta: &mut (dyn FnMut(&str, &str) -> bool + Send),
    ) -> Response {
        let started = Instant::now();
        let mut v = match parse_object(request_json, "request_json") {
            Ok(v) => v,
            Err(e) => return Response::failed(e, started),
        };
        v["stream"] = Value::Bool(true);
        match v.get_mut("stream_options") {
            None | Some(Value::Null) => {
                v["stream_options"] = json!({"include_usage": true});
            }
            Some(Value::Object(o)) => {
                o.entry("include_usage").or_insert(Value::Bool(true));
            }
            Some(_) => {
                return Response::failed(
                    Error::invalid("request_json: \"stream_options\" must be an object"),
                    started,
                )
            }
        }
        let request = v.to_string();
        let limit = self.options().max_response_bytes;
        let idle = self.options().stream_idle_timeout;
        let state = Mutex::new(State::default());

        let mut on_body = |body: &mut ureq::Body| {
            in_scope(Level::Debug, || {
                "stream started: reading events".to_string()
            });
            let mut st = crate::sync::lock(&state);
            read_stream(body, limit, idle, started, &mut st, on_delta).map_err(|(bytes, e)| {
                st.own_error = Some(e.clone());
                (bytes, e)
            })
        };
        let mut patch = |r: &mut Response| {
            let st = std::mem::take(&mut *crate::sync::lock(&state));
            if r.status / 100 == 2 {
                in_scope(Level::Info, || {
                    format!(
                        "stream ended: {}, {} chunks, finish_reason={}",
                        r.code.name(),
                        st.chunks,
                        st.finish_reason.as_deref().unwrap_or("none")
                    )
                });
            }
            apply(r, st);
        };
        self.spent_call(
            "/chat/completions",
            &request,
            v,
            true,
            &mut on_body,
            &mut patch,
        )
        .await
    }
}

/// Reads and dispatches the whole event stream. Ok(all bytes) on success,
/// else the bytes read so far with the error.
fn read_stream(
    body: &mut ureq::Body,
    limit: u64,
    idle: Duration,
    started: Instant,
    st: &mut State,
    on_delta: &mut (dyn FnMut(&str, &str) -> bool + Send),
) -> Result<Vec<u8>, (Vec<u8>, Error)> {
    let mut reader = body.with_config().limit(limit).reader();
    let mut parser = SseParser::new();
    let mut all = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let mut err = read_error(e, idle);
                let what = match err.code {
                    Code::Timeout => "stalled",
                    _ => "broke off",
                };
                err.message = format!(
                    "the stream {what} after {} chunks: {}",
                    st.chunks, err.message
                );
                return Err((all, err));
            }
        };
        if n == 0 {
            // A clean end of the body (chunked terminator or Content-Length).
            let last = parser
                .finish()
                .map_err(|e| Error::new(Code::Protocol, e.to_string()));
            let stop = match last {
                Err(e) => Some(Stop::Fail(e)),
                Ok(ev) => ev.and_then(|ev| handle(&ev, started, st, on_delta)),
            };
            return match stop {
                Some(Stop::Fail(e)) => Err((all, e)),
                Some(Stop::Done) => Ok(all),
                None if st.finish_reason.is_some() => Ok(all),
                None => Err((
                    all,
                    Error::new(
                        Code::Io,
                        format!(
                            "the stream ended after {} chunks without [DONE] or a finish_reason",
                            st.chunks
                        ),
                    ),
                )),
            };
        }
        all.extend_from_slice(&buf[..n]);
        let events = match parser.feed(&buf[..n]) {
            Ok(evs) => evs,
            Err(e) => return Err((all, Error::new(Code::Protocol, e.to_string()))),
        };
        for ev in &events {
            match handle(ev, started, st, on_delta) {
                None => {}
                Some(Stop::Fail(e)) => return Err((all, e)),
                Some(Stop::Done) => {
                    drain(&mut reader, &mut buf);
                    return Ok(all);
                }
            }
        }
    }
}

/// Reads what follows `[DONE]` (normally only the chunked terminator) so
/// the connection can go back to the pool. Errors are ignored: the answer is
/// complete, the connection is then simply not reused.
fn drain(reader: &mut impl Read, buf: &mut [u8]) {
    let mut left = MAX_DRAIN;
    while left > 0 {
        match reader.read(buf) {
            Ok(0) => return,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Handles one event; `Some` ends the stream.
fn handle(
    ev: &SseEvent,
    started: Instant,
    st: &mut State,
    on_delta: &mut dyn FnMut(&str, &str) -> bool,
) -> Option<Stop> {
    match interpret(ev) {
        Err(msg) => Some(Stop::Fail(Error::new(Code::Protocol, msg))),
        Ok(StreamItem::Done) => Some(Stop::Done),
        Ok(StreamItem::Error { message, raw }) => {
            st.stream_error = Some(raw);
            Some(Stop::Fail(Error::new(
                Code::Protocol,
                format!(
                    "the server sent an error mid-stream after {} chunks: {message}",
                    st.chunks
                ),
            )))
        }
        Ok(StreamItem::Chunk(c)) => {
            st.chunks += 1;
            if st.ttft_ms.is_none() && !c.content.is_empty() {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                st.ttft_ms = Some(ms);
                in_scope(Level::Debug, || {
                    format!("stream first token after {ms:.1} ms")
                });
            }
            st.text.push_str(&c.content);
            if let Some(f) = c.finish_reason {
                st.finish_reason = Some(f);
            }
            if let Some(u) = c.usage.filter(Value::is_object) {
                st.usage = Some(u);
            }
            if let Some(m) = c.model {
                st.model = Some(m);
            }
            if on_delta(&c.content, &c.raw) {
                None
            } else {
                st.aborted_by_callback = true;
                Some(Stop::Fail(Error::new(
                    Code::Cancelled,
                    format!("stream aborted by the callback after {} chunks", st.chunks),
                )))
            }
        }
    }
}

/// Maps a body read error: the reader wraps ureq errors in `io::Error`.
fn read_error(e: std::io::Error, idle: Duration) -> Error {
    use std::io::ErrorKind;
    let idle_timeout = || {
        Error::new(
            Code::Timeout,
            format!(
                "timed out: no data for stream_idle_timeout_ms ({} ms)",
                idle.as_millis()
            ),
        )
    };
    if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
        return idle_timeout();
    }
    if e.get_ref().is_some_and(|i| i.is::<ureq::Error>()) {
        return match e.into_inner().map(|i| i.downcast::<ureq::Error>()) {
            Some(Ok(u)) if matches!(*u, ureq::Error::Timeout(ureq::Timeout::PerRead)) => {
                idle_timeout()
            }
            Some(Ok(u)) => from_ureq(&u),
            _ => Error::new(Code::Io, "i/o error while reading the stream"),
        };
    }
    from_ureq(&ureq::Error::Io(e))
}

/// Writes the stream's results into the response, before cost is settled.
fn apply(r: &mut Response, st: State) {
    if let Some(e) = &st.own_error {
        // Our message is more precise than the transport's generic "answer
        // cut short" one; but a cancel by `cancel_all` keeps its own wording.
        if r.code == e.code && (r.code != Code::Cancelled || st.aborted_by_callback) {
            r.error = e.message.clone();
        }
    }
    r.text = st.text;
    let info = &mut r.info;
    info.stream = Some(StreamFacts {
        ttft_ms: st.ttft_ms,
        chunks: st.chunks,
        error: st.stream_error,
    });
    info.finish_reason = st.finish_reason;
    if st.usage.is_some() {
        info.usage = st.usage;
    }
    if st.model.is_some() {
        info.model = st.model;
    }
}
