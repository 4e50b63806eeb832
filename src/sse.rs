//! Incremental Server-Sent-Events parser and OpenAI chat-chunk interpreter.
//!
//! This module is pure: it performs no I/O. Feed it the response body of a
//! streaming `/chat/completions` request in whatever pieces the transport
//! hands out, and it yields [`SseEvent`]s; [`interpret`] turns each event into
//! a [`StreamItem`].
//!
//! # Parsing rules
//!
//! The parser follows the WHATWG HTML "EventSource" interpretation rules
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html>):
//!
//! * the stream is UTF-8; a leading BOM is skipped and invalid sequences are
//!   replaced with U+FFFD (per line, which is equivalent to decoding the whole
//!   stream because line terminators are ASCII);
//! * lines end with `\r\n`, `\n` or a lone `\r`; any of them may be split
//!   across calls to [`SseParser::feed`], as may a multi-byte character;
//! * lines starting with `:` are comments (keep-alives) and are ignored;
//! * `field:value` lines set a field; one space after the colon is stripped; a
//!   line without a colon is a field with an empty value;
//! * `data` lines are joined with `\n`; `event` sets the event type; `id`
//!   sets the last event ID (ignored if the value contains NUL) which, per the
//!   spec, *persists* for later events until another `id` line changes it;
//!   `retry` (ASCII digits only) sets the reconnection time, readable through
//!   [`SseParser::retry`]; unknown fields are ignored;
//! * a blank line dispatches the event; an event with no `data` line is not
//!   dispatched (its `event` type is discarded).
//!
//! One deliberate deviation: at end of stream, [`SseParser::finish`]
//! *dispatches* an event whose data was accumulated but never terminated by a
//! blank line (including a final unterminated `data:` line), because some
//! gateways close the connection right after `data: [DONE]` without the
//! trailing blank line. The spec would discard it.
//!
//! # Limits and errors
//!
//! A single line, and the accumulated data of a single event, may not exceed
//! the parser's limit ([`DEFAULT_LIMIT`], 16 MiB, unless set with
//! [`SseParser::with_limit`]). Exceeding it is an [`SseError`]. Errors are
//! reported so that the sequence of events delivered before the error does not
//! depend on how the input was split:
//!
//! * if a call to `feed` completes some events and then hits the limit, it
//!   returns `Ok` with those events and the error is returned by the next call
//!   to `feed` or `finish`;
//! * otherwise `feed` returns `Err` directly;
//! * after an error the parser is poisoned: every later `feed` or `finish`
//!   returns the same error, and its buffers are freed.

use serde_json::Value;
use std::fmt;

/// Default cap, in bytes, on one line and on one event's accumulated data.
pub const DEFAULT_LIMIT: usize = 16 * 1024 * 1024;

/// One dispatched Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` type; `None` when absent or empty (the default type,
    /// `message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n` (no trailing newline).
    pub data: String,
    /// The last event ID in effect when the event was dispatched; `None` when
    /// none was set or it was reset with an empty `id:` line.
    pub id: Option<String>,
}

/// Why the parser gave up on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line (without its terminator) was longer than `limit` bytes.
    LineTooLong { limit: usize },
    /// One event's accumulated `data` would exceed `limit` bytes.
    EventTooLarge { limit: usize },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::LineTooLong { limit } => {
                write!(f, "SSE line longer than the {limit}-byte limit")
            }
            SseError::EventTooLarge { limit } => {
                write!(f, "SSE event data larger than the {limit}-byte limit")
            }
        }
    }
}

impl std::error::Error for SseError {}

/// Incremental Server-Sent-Events parser. See the module documentation.
#[derive(Debug, Clone)]
pub struct SseParser {
    limit: usize,
    /// Bytes of the current, not yet terminated line.
    line: Vec<u8>,
    /// The previous call ended with `\r`; a leading `\n` belongs to it.
    pending_cr: bool,
    /// No line has been processed yet (a BOM may still need stripping).
    first_line: bool,
    /// Data buffer: each `data` value followed by `\n`.
    data: String,
    /// Whether at least one `data` line was seen for the current event.
    has_data: bool,
    event_type: String,
    last_event_id: String,
    retry: Option<u64>,
    error: Option<SseError>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the [`DEFAULT_LIMIT`] of 16 MiB.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }

    /// A parser whose line length and per-event data size are capped at
    /// `limit` bytes (a `limit` of 0 is treated as 1).
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            limit: limit.max(1),
            line: Vec::new(),
            pending_cr: false,
            first_line: true,
            data: String::new(),
            has_data: false,
            event_type: String::new(),
            last_event_id: String::new(),
            retry: None,
            error: None,
        }
    }

    /// The most recent valid `retry:` value (reconnection time in
    /// milliseconds), if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Feeds the next piece of the stream and returns the events it
    /// completed, in order. See the module documentation for errors.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        let mut rest = bytes;
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    if self.line.len() + i > self.limit {
                        return self.fail(SseError::LineTooLong { limit: self.limit }, out);
                    }
                    self.line.extend_from_slice(&rest[..i]);
                    let term = rest[i];
                    rest = &rest[i + 1..];
                    if term == b'\r' {
                        match rest.first() {
                            Some(b'\n') => rest = &rest[1..],
                            Some(_) => {}
                            None => self.pending_cr = true,
                        }
                    }
                    let line = std::mem::take(&mut self.line);
                    let result = self.process_line(&line);
                    self.line = line;
                    self.line.clear();
                    match result {
                        Ok(Some(ev)) => out.push(ev),
                        Ok(None) => {}
                        Err(e) => return self.fail(e, out),
                    }
                }
                None => {
                    if self.line.len() + rest.len() > self.limit {
                        return self.fail(SseError::LineTooLong { limit: self.limit }, out);
                    }
                    self.line.extend_from_slice(rest);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Signals end of stream. An unterminated last line is processed, then a
    /// pending event that has data is dispatched (a deviation from WHATWG,
    /// which discards it; see the module documentation). Afterwards the
    /// parser is back in its initial state (same limit) unless it is poisoned
    /// by an error, which is returned here if one is pending.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut ev = None;
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            match self.process_line(&line) {
                Ok(Some(e)) => ev = Some(e),
                Ok(None) => {}
                Err(e) => return self.fail(e, Vec::new()).map(|_| None),
            }
        }
        if ev.is_none() {
            ev = self.dispatch();
        }
        *self = Self::with_limit(self.limit);
        Ok(ev)
    }

    /// Records `e`, frees the buffers, and reports it now or (if `out` has
    /// events) on the next call.
    fn fail(&mut self, e: SseError, out: Vec<SseEvent>) -> Result<Vec<SseEvent>, SseError> {
        self.error = Some(e.clone());
        self.line = Vec::new();
        self.data = String::new();
        self.event_type = String::new();
        self.last_event_id = String::new();
        self.has_data = false;
        self.pending_cr = false;
        if out.is_empty() {
            Err(e)
        } else {
            Ok(out)
        }
    }

    /// Processes one complete line (terminator removed).
    fn process_line(&mut self, mut bytes: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if self.first_line {
            self.first_line = false;
            if let Some(stripped) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
                bytes = stripped;
            }
        }
        if bytes.is_empty() {
            return Ok(self.dispatch());
        }
        if bytes[0] == b':' {
            return Ok(None);
        }
        // Valid UTF-8 (nearly always) is checked by the fast validator;
        // only a line that fails it pays for the lossy scan.
        let line = match std::str::from_utf8(bytes) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(SseError::EventTooLarge { limit: self.limit });
                }
                // One allocation for the usual one-line event (the buffer
                // goes away with the event).
                self.data.reserve(value.len() + 1);
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
            }
            "id" if !value.contains('\0') => {
                self.last_event_id.clear();
                self.last_event_id.push_str(value);
            }
            // Only ASCII digits; an empty or overflowing value is ignored.
            "retry" if value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry = value.parse::<u64>().ok().or(self.retry);
            }
            _ => {}
        }
        Ok(None)
    }

    /// Dispatches the pending event, if it has data, and resets the
    /// per-event buffers (the last event ID persists).
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event_type = std::mem::take(&mut self.event_type);
        if !self.has_data {
            self.data.clear();
            return None;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        Some(SseEvent {
            event: if event_type.is_empty() {
                None
            } else {
                Some(event_type)
            },
            data,
            id: if self.last_event_id.is_empty() {
                None
            } else {
                Some(self.last_event_id.clone())
            },
        })
    }
}

/// One streamed chat-completion chunk, as found in `data:`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatChunk {
    /// `choices[0].delta.content`, or `""` when absent or null (role-only
    /// first chunk, tool-call chunks, usage-only final chunk).
    pub content: String,
    /// `choices[0].finish_reason` when it is a string.
    pub finish_reason: Option<String>,
    /// The top-level `usage` object when present and not null.
    pub usage: Option<Value>,
    /// The top-level `model` when it is a string.
    pub model: Option<String>,
    /// The event's data, i.e. the chunk's JSON text.
    pub raw: String,
}

/// What one event of an OpenAI-style chat stream means.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// `data: [DONE]`: the stream is complete.
    Done,
    /// An ordinary chunk.
    Chunk(ChatChunk),
    /// A mid-stream error: a JSON object with an `error` member, or an event
    /// of type `error`. `raw` is the event's data.
    Error { message: String, raw: String },
}

/// What an event of any of the streaming APIs is, before its API reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `data: [DONE]`.
    Done,
    /// `event: error`, or a JSON object with a non-null `error` member.
    Error { message: String },
    /// Any other JSON object (parsed once, here).
    Json(Value),
}

/// Parses one event's data, with the rules of [`interpret`] for `[DONE]`,
/// errors and data that is not a JSON object.
pub fn parse(ev: &SseEvent) -> Result<Event, String> {
    let data = ev.data.as_str();
    if data.trim() == "[DONE]" {
        return Ok(Event::Done);
    }
    let parsed = serde_json::from_str::<Value>(data);
    if ev.event.as_deref() == Some("error") {
        let message = parsed
            .ok()
            .and_then(|v| error_message(&v))
            .unwrap_or_else(|| {
                let t = data.trim();
                if t.is_empty() {
                    "stream error event without details".to_string()
                } else {
                    t.to_string()
                }
            });
        return Ok(Event::Error { message });
    }
    let v = parsed.map_err(|e| {
        format!(
            "invalid JSON in stream chunk: {e} (data: {:?})",
            snippet(data)
        )
    })?;
    let Some(obj) = v.as_object() else {
        return Err(format!(
            "stream chunk is not a JSON object (data: {:?})",
            snippet(data)
        ));
    };
    if obj.get("error").is_some_and(|e| !e.is_null()) {
        let message = error_message(&v).unwrap_or_else(|| "unknown stream error".to_string());
        return Ok(Event::Error { message });
    }
    Ok(Event::Json(v))
}

/// Interprets one event of an OpenAI-style streaming chat completion.
///
/// * data `[DONE]` (surrounding whitespace ignored) → [`StreamItem::Done`];
/// * `event: error` → [`StreamItem::Error`], with the message taken from the
///   data's `error.message`, `error` (if a string) or `message` when the data
///   is JSON, else the data text itself;
/// * a JSON object with a non-null `error` member → [`StreamItem::Error`];
/// * any other JSON object → [`StreamItem::Chunk`];
/// * data that is not JSON, or JSON that is not an object → `Err` with a
///   message naming the problem.
pub fn interpret(ev: &SseEvent) -> Result<StreamItem, String> {
    let v = match parse(ev)? {
        Event::Done => return Ok(StreamItem::Done),
        Event::Error { message } => {
            return Ok(StreamItem::Error {
                message,
                raw: ev.data.clone(),
            })
        }
        Event::Json(v) => v,
    };
    let obj = v.as_object().expect("parse gives objects only");
    let data = ev.data.as_str();
    let choice = obj
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let content = choice
        .and_then(|c| c.get("delta"))
        .and_then(|d| d.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let finish_reason = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let usage = obj.get("usage").filter(|u| !u.is_null()).cloned();
    let model = obj.get("model").and_then(Value::as_str).map(str::to_string);
    Ok(StreamItem::Chunk(ChatChunk {
        content,
        finish_reason,
        usage,
        model,
        raw: data.to_string(),
    }))
}

/// The human-readable message of an error payload, if one can be found.
pub fn error_message(v: &Value) -> Option<String> {
    match v.get("error") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(e @ Value::Object(o)) => Some(
            o.get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string()),
        ),
        Some(Value::Null) | None => v.get("message").and_then(Value::as_str).map(str::to_string),
        Some(other) => Some(other.to_string()),
    }
}

/// At most 200 characters of `s`, for error messages.
fn snippet(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(event: Option<&str>, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
            id: id.map(str::to_string),
        }
    }

    /// Feeds `chunks` then finishes; returns the events and the error, if any.
    fn run(mut p: SseParser, chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<SseError>) {
        let mut out = Vec::new();
        for c in chunks {
            match p.feed(c) {
                Ok(evs) => out.extend(evs),
                Err(e) => return (out, Some(e)),
            }
        }
        match p.finish() {
            Ok(ev) => out.extend(ev),
            Err(e) => return (out, Some(e)),
        }
        (out, None)
    }

    fn one_shot(s: &[u8]) -> Vec<SseEvent> {
        let (evs, err) = run(SseParser::new(), &[s]);
        assert_eq!(err, None);
        evs
    }

    fn bytewise(s: &[u8]) -> Vec<SseEvent> {
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        let (evs, err) = run(SseParser::new(), &chunks);
        assert_eq!(err, None);
        evs
    }

    /// All three ways of feeding agree and yield `expected`.
    fn check(s: &[u8], expected: &[SseEvent]) {
        assert_eq!(one_shot(s), expected, "one shot");
        assert_eq!(bytewise(s), expected, "byte by byte");
        for split in 0..=s.len() {
            let (a, b) = s.split_at(split);
            let (evs, err) = run(SseParser::new(), &[a, b]);
            assert_eq!(err, None);
            assert_eq!(evs, expected, "split at {split}");
        }
    }

    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo €\"},\"finish_reason\":null}]}\r\n\r\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\r",
        "data: {\"id\":\"c1\",\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn whole_stream_bytewise_equals_one_shot() {
        let a = one_shot(STREAM.as_bytes());
        assert_eq!(a.len(), 5);
        assert_eq!(bytewise(STREAM.as_bytes()), a);
        check(STREAM.as_bytes(), &a);
        let items: Vec<StreamItem> = a.iter().map(|e| interpret(e).unwrap()).collect();
        let texts: String = items
            .iter()
            .filter_map(|i| match i {
                StreamItem::Chunk(c) => Some(c.content.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, "Héllo €");
        assert_eq!(items[4], StreamItem::Done);
        match &items[2] {
            StreamItem::Chunk(c) => assert_eq!(c.finish_reason.as_deref(), Some("stop")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_line_split_across_reads() {
        let (evs, err) = run(
            SseParser::new(),
            &[b"da", b"ta: hel", b"lo\n", b"\n", b"data:x\n\n"],
        );
        assert_eq!(err, None);
        assert_eq!(evs, vec![ev(None, "hello", None), ev(None, "x", None)]);
    }

    #[test]
    fn feed_returns_events_as_soon_as_complete() {
        let mut p = SseParser::new();
        assert_eq!(p.feed(b"data: a\n").unwrap(), vec![]);
        assert_eq!(p.feed(b"\ndata: b").unwrap(), vec![ev(None, "a", None)]);
        assert_eq!(p.feed(b"\n\n").unwrap(), vec![ev(None, "b", None)]);
        assert_eq!(p.feed(b"").unwrap(), vec![]);
        assert_eq!(p.finish().unwrap(), None);
    }

    #[test]
    fn multi_line_data_joined_with_newline() {
        check(
            b"data: line1\ndata:line2\ndata\ndata:  two spaces\n\n",
            &[ev(None, "line1\nline2\n\n two spaces", None)],
        );
    }

    #[test]
    fn empty_data_line_is_dispatched_as_empty() {
        check(
            b"data\n\ndata:\n\n",
            &[ev(None, "", None), ev(None, "", None)],
        );
    }

    #[test]
    fn comments_are_ignored() {
        check(
            b": ping\n:\n\n: another\ndata: x\n: mid-event comment\ndata: y\n\n",
            &[ev(None, "x\ny", None)],
        );
    }

    #[test]
    fn event_id_and_retry_fields() {
        let s = b"retry: 1500\nevent: update\nid: 7\ndata: a\n\nevent\ndata: b\n\nid\ndata: c\n\n";
        check(
            s,
            &[
                ev(Some("update"), "a", Some("7")),
                // The last event ID persists; an empty `event` is the default.
                ev(None, "b", Some("7")),
                // An empty `id` resets it.
                ev(None, "c", None),
            ],
        );
        let mut p = SseParser::new();
        p.feed(s).unwrap();
        assert_eq!(p.retry(), Some(1500));
        p.feed(b"retry: 12a\nretry:\nretry: -1\n").unwrap();
        assert_eq!(p.retry(), Some(1500));
        p.feed(b"retry:0\n").unwrap();
        assert_eq!(p.retry(), Some(0));
    }

    #[test]
    fn id_with_nul_is_ignored_and_unknown_fields_too() {
        check(
            b"id: 1\nid: a\0b\nfoo: bar\nDATA: no\ndata: yes\n\n",
            &[ev(None, "yes", Some("1"))],
        );
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        check(
            b"event: ping\n\nid: 5\n\ndata: x\n\n",
            &[ev(None, "x", Some("5"))],
        );
    }

    #[test]
    fn all_line_endings() {
        let expected = [ev(Some("e"), "a\nb", None), ev(None, "c", None)];
        check(b"event: e\ndata: a\ndata: b\n\ndata: c\n\n", &expected);
        check(
            b"event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
            &expected,
        );
        check(b"event: e\rdata: a\rdata: b\r\rdata: c\r\r", &expected);
        check(
            b"event: e\r\ndata: a\rdata: b\n\r\ndata: c\r\r\n",
            &expected,
        );
    }

    #[test]
    fn crlf_split_across_feeds_is_one_line_end() {
        let (evs, err) = run(
            SseParser::new(),
            &[b"data: a\r", b"\n", b"data: b\r", b"\r\n"],
        );
        assert_eq!(err, None);
        assert_eq!(evs, vec![ev(None, "a\nb", None)]);
        // An empty feed between `\r` and `\n` changes nothing.
        let (evs, _) = run(SseParser::new(), &[b"data: a\r", b"", b"\n\r", b"", b"\n"]);
        assert_eq!(evs, vec![ev(None, "a", None)]);
    }

    #[test]
    fn utf8_split_across_feeds() {
        let s = "data: 日本語 🎉 ü\n\n".as_bytes();
        check(s, &[ev(None, "日本語 🎉 ü", None)]);
        // Invalid UTF-8 is replaced, not an error.
        check(
            b"data: a\xffb\xe2\x82\n\n",
            &[ev(None, "a\u{fffd}b\u{fffd}", None)],
        );
    }

    #[test]
    fn leading_bom_is_skipped() {
        check(b"\xEF\xBB\xBFdata: x\n\n", &[ev(None, "x", None)]);
        // Only at the very start.
        check(
            b"data: x\n\n\xEF\xBB\xBFdata: y\n\n",
            &[ev(None, "x", None)],
        );
    }

    #[test]
    fn finish_dispatches_unterminated_event() {
        check(b"data: [DONE]", &[ev(None, "[DONE]", None)]);
        check(b"data: a\ndata: b\n", &[ev(None, "a\nb", None)]);
        check(b"data: a\r", &[ev(None, "a", None)]);
        check(b"event: x\n", &[]);
        check(b": comment", &[]);
        // The parser is reusable after finish.
        let mut p = SseParser::new();
        p.feed(b"id: 1\ndata: a").unwrap();
        assert_eq!(p.finish().unwrap(), Some(ev(None, "a", Some("1"))));
        assert_eq!(p.feed(b"data: b\n\n").unwrap(), vec![ev(None, "b", None)]);
    }

    #[test]
    fn oversize_line_is_an_error() {
        let mut p = SseParser::with_limit(16);
        assert_eq!(p.feed(b"data: 0123456789").unwrap(), vec![]); // 16 bytes: ok
        assert_eq!(p.feed(b"X"), Err(SseError::LineTooLong { limit: 16 }));
        // Poisoned.
        assert_eq!(p.feed(b"\n\n"), Err(SseError::LineTooLong { limit: 16 }));
        assert_eq!(p.finish(), Err(SseError::LineTooLong { limit: 16 }));

        // A complete over-long line fails too, in one shot or byte by byte.
        let s = b"data: ok\n\ndata: 0123456789X\n\ndata: never\n\n";
        let expected = (
            vec![ev(None, "ok", None)],
            Some(SseError::LineTooLong { limit: 16 }),
        );
        assert_eq!(run(SseParser::with_limit(16), &[s]), expected);
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(run(SseParser::with_limit(16), &chunks), expected);

        // Events completed before the error in the same feed are returned,
        // and the error comes on the next call.
        let mut p = SseParser::with_limit(16);
        assert_eq!(p.feed(s).unwrap(), vec![ev(None, "ok", None)]);
        assert_eq!(p.feed(b""), Err(SseError::LineTooLong { limit: 16 }));

        // Comments count too: nothing grows without bound.
        let mut p = SseParser::with_limit(16);
        assert!(p.feed(&[b':'; 17]).is_err());
    }

    #[test]
    fn oversize_event_is_an_error() {
        let s = b"data: 0123456\ndata: 0123456\ndata: x\n\n";
        let expected = (vec![], Some(SseError::EventTooLarge { limit: 16 }));
        assert_eq!(run(SseParser::with_limit(16), &[s]), expected);
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(run(SseParser::with_limit(16), &chunks), expected);
        // Exactly at the limit is fine: "0123456\n0123456\n" is 16 bytes.
        let (evs, err) = run(
            SseParser::with_limit(16),
            &[b"data: 0123456\ndata: 0123456\n\n"],
        );
        assert_eq!(err, None);
        assert_eq!(evs, vec![ev(None, "0123456\n0123456", None)]);
        // An unterminated final line that overflows is reported by finish.
        let mut p = SseParser::with_limit(16);
        assert_eq!(p.feed(b"data: 0123456\ndata: 01234567").unwrap(), vec![]);
        assert_eq!(p.finish(), Err(SseError::EventTooLarge { limit: 16 }));
        assert!(SseError::EventTooLarge { limit: 16 }
            .to_string()
            .contains("16-byte"));
    }

    #[test]
    fn default_limit_is_16_mib() {
        let mut p = SseParser::default();
        let big = vec![b'a'; DEFAULT_LIMIT - 6];
        assert!(p.feed(b"data: ").unwrap().is_empty());
        assert!(p.feed(&big).unwrap().is_empty());
        let evs = p.feed(b"\n\n").unwrap();
        assert_eq!(evs[0].data.len(), DEFAULT_LIMIT - 6);
        assert!(p.feed(b"data: ").unwrap().is_empty());
        assert!(p.feed(&big).unwrap().is_empty());
        assert_eq!(
            p.feed(b"a"),
            Err(SseError::LineTooLong {
                limit: DEFAULT_LIMIT
            })
        );
    }

    fn chunk(data: &str) -> ChatChunk {
        match interpret(&ev(None, data, None)) {
            Ok(StreamItem::Chunk(c)) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interpret_done() {
        assert_eq!(interpret(&ev(None, "[DONE]", None)), Ok(StreamItem::Done));
        assert_eq!(interpret(&ev(None, " [DONE] ", None)), Ok(StreamItem::Done));
    }

    #[test]
    fn interpret_content_chunk() {
        let raw = r#"{"id":"x","model":"m-1","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(
            chunk(raw),
            ChatChunk {
                content: "Hi".into(),
                finish_reason: None,
                usage: None,
                model: Some("m-1".into()),
                raw: raw.into(),
            }
        );
    }

    #[test]
    fn interpret_empty_delta_content() {
        let c = chunk(r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#);
        assert_eq!(c.content, "");
        let c = chunk(r#"{"choices":[{"delta":{"content":null,"tool_calls":[]}}]}"#);
        assert_eq!(c.content, "");
        let c = chunk(r#"{"choices":[{"delta":{},"finish_reason":"length"}],"usage":null}"#);
        assert_eq!(c.content, "");
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
        assert_eq!(c.usage, None);
        assert_eq!(c.model, None);
    }

    #[test]
    fn interpret_usage_only_final_chunk() {
        let c = chunk(
            r#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
        );
        assert_eq!(c.content, "");
        assert_eq!(c.finish_reason, None);
        assert_eq!(
            c.usage,
            Some(json!({"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}))
        );
        assert_eq!(c.model.as_deref(), Some("m"));
    }

    #[test]
    fn interpret_error_object_mid_stream() {
        let s = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}\n\n",
        );
        let evs = one_shot(s.as_bytes());
        assert_eq!(evs, bytewise(s.as_bytes()));
        assert_eq!(chunk(&evs[0].data).content, "par");
        assert_eq!(
            interpret(&evs[1]),
            Ok(StreamItem::Error {
                message: "overloaded".into(),
                raw: r#"{"error":{"message":"overloaded","type":"server_error"}}"#.into(),
            })
        );
        // Variants: string error, error object without message.
        match interpret(&ev(None, r#"{"error":"boom"}"#, None)) {
            Ok(StreamItem::Error { message, .. }) => assert_eq!(message, "boom"),
            other => panic!("{other:?}"),
        }
        match interpret(&ev(None, r#"{"error":{"code":500}}"#, None)) {
            Ok(StreamItem::Error { message, .. }) => assert!(message.contains("500")),
            other => panic!("{other:?}"),
        }
        // A null error is not an error.
        assert_eq!(chunk(r#"{"error":null,"choices":[]}"#).content, "");
    }

    #[test]
    fn interpret_error_event_type() {
        let e = ev(
            Some("error"),
            r#"{"error":{"message":"rate limited"}}"#,
            None,
        );
        assert_eq!(
            interpret(&e),
            Ok(StreamItem::Error {
                message: "rate limited".into(),
                raw: e.data.clone(),
            })
        );
        let e = ev(Some("error"), r#"{"message":"bad"}"#, None);
        match interpret(&e) {
            Ok(StreamItem::Error { message, .. }) => assert_eq!(message, "bad"),
            other => panic!("{other:?}"),
        }
        let e = ev(Some("error"), "upstream went away", None);
        match interpret(&e) {
            Ok(StreamItem::Error { message, raw }) => {
                assert_eq!(message, "upstream went away");
                assert_eq!(raw, "upstream went away");
            }
            other => panic!("{other:?}"),
        }
        let e = ev(Some("error"), "", None);
        assert!(matches!(interpret(&e), Ok(StreamItem::Error { .. })));
    }

    #[test]
    fn interpret_invalid_json() {
        let err = interpret(&ev(None, "{not json", None)).unwrap_err();
        assert!(err.contains("invalid JSON"), "{err}");
        assert!(err.contains("{not json"), "{err}");
        let err = interpret(&ev(None, "[1,2]", None)).unwrap_err();
        assert!(err.contains("not a JSON object"), "{err}");
        let long = "x".repeat(10_000);
        let err = interpret(&ev(None, &long, None)).unwrap_err();
        assert!(err.len() < 500, "{}", err.len());
    }
}
