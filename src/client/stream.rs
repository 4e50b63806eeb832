//! Streaming over Server-Sent Events: chat completions, the Responses API
//! and the Messages API.
//!
//! [`Client::chat_stream`] (and [`Client::stream`] for any of the three
//! APIs) sends the request with `"stream": true`, reads the
//! `text/event-stream` answer as it arrives (parsed by [`crate::sse`], each
//! event's JSON parsed once and handed to [`crate::assemble`]), and hands
//! every event and every typed delta to the caller. The call goes through
//! the same routing, budget, retries, failover, metrics and cost accounting
//! as [`Client::chat`].
//!
//! # Retries
//!
//! A stream is sent again (or failed over) like any call until its first
//! delta reaches the caller: a dropped connection, an error event, an idle
//! timeout or a late first delta (`first_token_timeout_ms`, checked while
//! the server sends keep-alives or events without text) before it delivered
//! nothing, so nothing is duplicated but the events without text that came
//! first (a role chunk). After the first delta a stream is never sent again.
//!
//! # Results
//!
//! The returned [`Response`] always holds what arrived, also on failure:
//!
//! * `text`: choice 0's content (Responses: the output text; Messages: the
//!   text blocks), joined;
//! * `completion`: the assembled answer in its API's non-streaming shape
//!   (see [`crate::assemble`]), also when the stream failed part-way;
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

use crate::assemble::{self, Api, Assembler, Delta};
use crate::client::{parse_object, BodyFailure, Client};
use crate::error::{Code, Error};
use crate::log::{in_scope, Level};
use crate::net::error::from_ureq;
use crate::response::{Completion, Response, StreamFacts};
use crate::sse::{self, SseEvent, SseParser};

/// Bytes read per `read` call. The buffer is held while the stream waits
/// for its next event (the wait is inside the read), for as long as the
/// stream lasts, so it is small: reading copies from the connection's
/// input buffer, which takes the socket's bytes in larger pieces, so a
/// burst costs more copies, not more system calls.
const READ_BUF: usize = 1024;

/// After the end event, at most this many further body bytes are read to
/// put the connection back in the pool; a server sending more loses the
/// connection.
const MAX_DRAIN: usize = 64 * 1024;

/// What a stream's caller sees, per event and per delta.
pub trait StreamSink: Send {
    /// Every event but keep-alives and the end: its text (chat: choice 0's
    /// `delta.content`; Responses: an `output_text` delta; Messages: a
    /// `text_delta`; else "") and its raw JSON. `false` aborts the stream.
    fn event(&mut self, _text: &str, _raw: &str) -> bool {
        true
    }

    /// Every typed delta, before its event. `false` aborts the stream.
    fn delta(&mut self, _d: &Delta) -> bool {
        true
    }
}

/// A sink of events only (the `llmpool_stream_cb` kind).
struct Events<'a>(&'a mut (dyn FnMut(&str, &str) -> bool + Send));

impl StreamSink for Events<'_> {
    fn event(&mut self, text: &str, raw: &str) -> bool {
        (self.0)(text, raw)
    }
}

/// A sink of typed deltas only.
struct Deltas<'a>(&'a mut (dyn FnMut(&Delta) -> bool + Send));

impl StreamSink for Deltas<'_> {
    fn delta(&mut self, d: &Delta) -> bool {
        (self.0)(d)
    }
}

/// What the body reader learned, for the response patch.
struct State {
    api: Api,
    assembler: Assembler,
    chunks: u64,
    ttft_ms: Option<f64>,
    /// The end event arrived.
    ended: bool,
    /// A delta reached the caller (typed, or an event with text): from
    /// then on the stream is never sent again.
    delivered: bool,
    /// `first_token_timeout_ms`.
    first_token: Option<Duration>,
    /// The raw data of a mid-stream error event.
    stream_error: Option<String>,
    /// The callback returned `false`.
    aborted_by_callback: bool,
    /// The error this module decided on (its message replaces the generic
    /// "answer cut short" wording of the transport layer).
    own_error: Option<Error>,
}

impl State {
    fn new(api: Api) -> State {
        State {
            api,
            assembler: Assembler::new(api),
            chunks: 0,
            ttft_ms: None,
            ended: false,
            delivered: false,
            first_token: None,
            stream_error: None,
            aborted_by_callback: false,
            own_error: None,
        }
    }
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
    /// chunk event, in order, with choice 0's `delta.content` (may be empty,
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
        self.stream(Api::Chat, request_json, &mut Events(on_delta))
    }

    /// Streams any of the three APIs, handing events and typed deltas to
    /// `sink` (see [`Client::chat_stream`] for the chat request).
    pub fn stream(&self, api: Api, request_json: &str, sink: &mut dyn StreamSink) -> Response {
        self.block_on_call(self.stream_fut(api, request_json, sink))
    }

    /// [`Client::stream`] with a callback of events only (as
    /// [`Client::chat_stream`]'s, for any API).
    pub fn stream_events(
        &self,
        api: Api,
        request_json: &str,
        on_event: &mut (dyn FnMut(&str, &str) -> bool + Send),
    ) -> Response {
        self.stream(api, request_json, &mut Events(on_event))
    }

    /// [`Client::stream`] with a callback of typed deltas only.
    pub fn stream_deltas(
        &self,
        api: Api,
        request_json: &str,
        on_delta: &mut (dyn FnMut(&Delta) -> bool + Send),
    ) -> Response {
        self.stream(api, request_json, &mut Deltas(on_delta))
    }

    /// The future of an events-only stream (what an async stream runs).
    pub(crate) async fn stream_events_fut(
        &self,
        api: Api,
        request_json: &str,
        on_event: &mut (dyn FnMut(&str, &str) -> bool + Send),
    ) -> Response {
        self.stream_fut(api, request_json, &mut Events(on_event))
            .await
    }

    /// The future of [`Client::stream_deltas`].
    pub(crate) async fn stream_deltas_fut(
        &self,
        api: Api,
        request_json: &str,
        on_delta: &mut (dyn FnMut(&Delta) -> bool + Send),
    ) -> Response {
        self.stream_fut(api, request_json, &mut Deltas(on_delta))
            .await
    }

    /// The future of [`Client::stream`].
    pub(crate) async fn stream_fut(
        &self,
        api: Api,
        request_json: &str,
        sink: &mut dyn StreamSink,
    ) -> Response {
        let started = Instant::now();
        let mut v = match parse_object(request_json, "request_json") {
            Ok(v) => v,
            Err(e) => return Response::failed(e, started),
        };
        v["stream"] = Value::Bool(true);
        if api == Api::Chat {
            if let Err(e) = ask_for_usage(&mut v) {
                return Response::failed(e, started);
            }
        }
        let request = v.to_string();
        let limit = self.options().max_response_bytes;
        let idle = self.options().stream_idle_timeout;
        let keep = self.options().keep_stream_body;
        let first_token = self.options().first_token_timeout;
        let state = Mutex::new(State::new(api));

        let mut on_body = |body: &mut ureq::Body| {
            in_scope(Level::Debug, || {
                "stream started: reading events".to_string()
            });
            let mut st = crate::sync::lock(&state);
            // A stream sent again starts over: nothing of the last one
            // reached the caller.
            *st = State::new(api);
            st.first_token = first_token;
            read_stream(body, limit, idle, keep, started, &mut st, sink).map_err(|(partial, e)| {
                st.own_error = Some(e.clone());
                let resend = !st.delivered && !st.aborted_by_callback && e.code != Code::Cancelled;
                BodyFailure {
                    partial,
                    error: e,
                    resend,
                }
            })
        };
        let mut patch = |r: &mut Response| {
            let st = std::mem::replace(&mut *crate::sync::lock(&state), State::new(api));
            apply(r, st);
            if r.status / 100 == 2 {
                in_scope(Level::Info, || {
                    format!(
                        "stream ended: {}, {} chunks, finish_reason={}",
                        r.code.name(),
                        r.info.stream.as_ref().map_or(0, |s| s.chunks),
                        r.info.finish_reason.as_deref().unwrap_or("none")
                    )
                });
            }
        };
        self.spent_call(api.path(), &request, v, true, &mut on_body, &mut patch)
            .await
    }
}

/// Sets `stream_options.include_usage` unless the request says otherwise.
fn ask_for_usage(v: &mut Value) -> Result<(), Error> {
    match v.get_mut("stream_options") {
        None | Some(Value::Null) => {
            v["stream_options"] = json!({"include_usage": true});
        }
        Some(Value::Object(o)) => {
            o.entry("include_usage").or_insert(Value::Bool(true));
        }
        Some(_) => {
            return Err(Error::invalid(
                "request_json: \"stream_options\" must be an object",
            ))
        }
    }
    Ok(())
}

/// Reads and dispatches the whole event stream. Ok(all bytes) on success,
/// else the bytes read so far with the error. Without `keep`, the bytes
/// are kept only until the first event (a gateway that ignored `stream`
/// sends one JSON answer, read whole): a stream in flight then holds no
/// copy of what it already delivered, however long it runs.
fn read_stream(
    body: &mut ureq::Body,
    limit: u64,
    idle: Duration,
    keep: bool,
    started: Instant,
    st: &mut State,
    sink: &mut dyn StreamSink,
) -> Result<Vec<u8>, (Vec<u8>, Error)> {
    let mut reader = body.with_config().limit(limit).reader();
    let mut parser = SseParser::new();
    let mut all = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let body_started = Instant::now();
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
                Ok(ev) => ev.and_then(|ev| handle(&ev, started, st, sink)),
            };
            let stop = match stop {
                None if st.chunks == 0 && !st.ended => whole_answer(&all, st, sink),
                stop => stop,
            };
            return match stop {
                Some(Stop::Fail(e)) => Err((all, e)),
                Some(Stop::Done) => Ok(all),
                None if ended_well(st) => Ok(all),
                None => Err((
                    all,
                    Error::new(
                        Code::Io,
                        format!(
                            "the stream ended after {} chunks without {}",
                            st.chunks,
                            match st.api {
                                Api::Chat => "[DONE] or a finish_reason",
                                Api::Responses => "response.completed",
                                Api::Messages => "message_stop or a stop_reason",
                            }
                        ),
                    ),
                )),
            };
        }
        if keep || (st.chunks == 0 && !st.ended) {
            all.extend_from_slice(&buf[..n]);
        }
        let events = match parser.feed(&buf[..n]) {
            Ok(evs) => evs,
            Err(e) => return Err((all, Error::new(Code::Protocol, e.to_string()))),
        };
        for ev in &events {
            let stop = handle(ev, started, st, sink);
            if !keep && st.chunks > 0 && all.capacity() > 0 {
                all = Vec::new();
            }
            match stop {
                None => {}
                Some(Stop::Fail(e)) => return Err((all, e)),
                Some(Stop::Done) => {
                    drain(&mut reader, &mut buf);
                    return Ok(all);
                }
            }
        }
        if let Some(t) = st
            .first_token
            .filter(|t| !st.delivered && body_started.elapsed() > *t)
        {
            return Err((
                all,
                Error::new(
                    Code::Timeout,
                    format!(
                        "timed out: no delta within first_token_timeout_ms ({} ms) of the stream's start",
                        t.as_millis()
                    ),
                ),
            ));
        }
    }
}

fn aborted(st: &mut State) -> Stop {
    st.aborted_by_callback = true;
    Stop::Fail(Error::new(
        Code::Cancelled,
        format!("stream aborted by the callback after {} chunks", st.chunks),
    ))
}

/// A body without a single event that is one JSON object: a gateway that
/// ignored `stream` and answered as without it (LiteLLM's `/v1/messages`
/// does). It is taken as the whole answer; `None` when it is no such body.
fn whole_answer(body: &[u8], st: &mut State, sink: &mut dyn StreamSink) -> Option<Stop> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if !text.starts_with('{') {
        return None;
    }
    let v: Value = serde_json::from_str(text).ok()?;
    in_scope(Level::Info, || {
        "stream: the server answered with one JSON object, not events; taken as the whole answer"
            .to_string()
    });
    let mut stopped = false;
    let step = st.assembler.feed_whole(&v, &mut |d| {
        stopped |= !sink.delta(&d);
    });
    if let assemble::Step::Failed { message } = step {
        return Some(fail_mid_stream(st, text, &message));
    }
    st.delivered = true;
    st.ended = true;
    if stopped {
        return Some(aborted(st));
    }
    st.chunks += 1;
    let whole = st.assembler.finish().text;
    if !sink.event(&whole, text) {
        return Some(aborted(st));
    }
    Some(Stop::Done)
}

/// A body that ended without its end event is still complete when the
/// answer says why it stopped (some gateways close right after it).
fn ended_well(st: &State) -> bool {
    match st.api {
        Api::Chat | Api::Messages => st.assembler.finish().finish_reason.is_some(),
        Api::Responses => st.ended,
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
    sink: &mut dyn StreamSink,
) -> Option<Stop> {
    let data = ev.data.as_str();
    let name = ev.event.as_deref();
    if name == Some("ping") {
        return None;
    }
    // The usual chat chunk is read without a Value tree; anything else
    // (and every other API) takes the general path.
    let typed = match (&st.assembler, name) {
        (Assembler::Chat(_), None) => assemble::chunk::parse(data),
        _ => None,
    };
    let read = match typed {
        Some(c) => Data::Typed(c),
        None => match sse::parse(ev) {
            Err(msg) => return Some(Stop::Fail(Error::new(Code::Protocol, msg))),
            Ok(sse::Event::Done) => {
                st.ended = true;
                return Some(Stop::Done);
            }
            Ok(sse::Event::Error { message }) => return Some(fail_mid_stream(st, data, &message)),
            Ok(sse::Event::Json(v)) => Data::Json(v),
        },
    };
    let mut stopped = false;
    let mut first = None;
    let mut any_delta = false;
    let mut emit = |d: Delta| {
        any_delta = true;
        if first.is_none() && !d.text.is_empty() {
            first = Some(d.kind);
        }
        if !stopped && !sink.delta(&d) {
            stopped = true;
        }
    };
    let step = match (&mut st.assembler, &read) {
        (Assembler::Chat(a), Data::Typed(c)) => a.feed_chunk(c, &mut emit),
        (a, Data::Json(v)) => a.feed(name, v, &mut emit),
        (_, Data::Typed(_)) => unreachable!("typed chunks are read for chat only"),
    };
    if first.is_some() && st.ttft_ms.is_none() {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        st.ttft_ms = Some(ms);
        in_scope(Level::Debug, || {
            format!("stream first token after {ms:.1} ms")
        });
    }
    if stopped {
        st.delivered = true;
        return Some(aborted(st));
    }
    match step {
        assemble::Step::Failed { message } => return Some(fail_mid_stream(st, data, &message)),
        assemble::Step::Done => {
            st.ended = true;
            return Some(Stop::Done);
        }
        assemble::Step::More => {}
    }
    st.chunks += 1;
    let text = match &read {
        Data::Typed(c) => c.content(),
        Data::Json(v) => event_text(st.api, v),
    };
    st.delivered |= any_delta || !text.is_empty();
    if !sink.event(text, data) {
        st.delivered = true;
        return Some(aborted(st));
    }
    None
}

/// An event's data, read.
enum Data<'a> {
    /// A chat chunk of the usual shape ([`assemble::chunk`]).
    Typed(assemble::chunk::Chunk<'a>),
    Json(Value),
}

fn fail_mid_stream(st: &mut State, raw: &str, message: &str) -> Stop {
    st.stream_error = Some(raw.to_string());
    Stop::Fail(Error::new(
        Code::Protocol,
        format!(
            "the server sent an error mid-stream after {} chunks: {message}",
            st.chunks
        ),
    ))
}

/// The text an event carries for an events callback.
fn event_text(api: Api, v: &Value) -> &str {
    match api {
        Api::Chat => assemble::chat::chunk_content(v),
        Api::Responses if v["type"] == "response.output_text.delta" => {
            v["delta"].as_str().unwrap_or("")
        }
        Api::Messages if v["delta"]["type"] == "text_delta" => {
            v["delta"]["text"].as_str().unwrap_or("")
        }
        _ => "",
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
    let info = &mut r.info;
    info.stream = Some(StreamFacts {
        ttft_ms: st.ttft_ms,
        chunks: st.chunks,
        error: st.stream_error,
    });
    if r.status / 100 != 2 {
        // An error answer: its body is the error, nothing was assembled.
        return;
    }
    let a = st.assembler.finish();
    info.finish_reason = a.finish_reason;
    if a.usage.is_some() {
        info.usage = a.usage;
    }
    if a.model.is_some() {
        info.model = a.model;
    }
    info.bad_arguments = a.bad_arguments;
    r.text = a.text;
    r.completion = Completion::Assembled(a.completion);
}
