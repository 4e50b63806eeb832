//! Streaming chat completions (`Client::chat_stream`) over loopback against
//! the bundled test server, which streams one SSE event per word.

use std::time::{Duration, Instant};

use llmpool::{Client, Code, Response};
use llmpool_testserver::{Fault, TestServer};
use serde_json::{json, Value};

mod support;
use support::loopback::client;

const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

/// A chat request for `content` with extra top-level fields.
fn request(content: &str, extra: Value) -> String {
    let mut v = json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": content}]});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v.to_string()
}

/// Streams `req`, collecting every (delta, event JSON) pair.
fn stream(c: &Client, req: &str) -> (Response, Vec<(String, String)>) {
    let mut seen = Vec::new();
    let r = c.chat_stream(req, &mut |d, e| {
        seen.push((d.to_string(), e.to_string()));
        true
    });
    (r, seen)
}

fn deltas(seen: &[(String, String)]) -> String {
    seen.iter().map(|(d, _)| d.as_str()).collect()
}

#[test]
fn deltas_arrive_in_order_and_info_has_the_stream_details() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let (r, seen) = stream(&c, &request("one two three four", json!({})));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "Echo: one two three four");
    assert_eq!(deltas(&seen), r.text);
    // Role chunk, one chunk per word, finish chunk, usage chunk.
    let words: Vec<&str> = seen
        .iter()
        .map(|(d, _)| d.as_str())
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(words, ["Echo: ", "one ", "two ", "three ", "four"]);
    assert_eq!(seen.len(), 8);
    for (d, e) in &seen {
        let v: Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        if let Some(content) = v["choices"][0]["delta"]["content"].as_str() {
            assert_eq!(content, d);
        }
    }
    let i = &r.info_json();
    assert_eq!(i["chunks"], 8);
    assert_eq!(i["finish_reason"], "stop");
    assert!(i["ttft_ms"].as_f64().unwrap() > 0.0, "{i}");
    assert!(i["ttft_ms"].as_f64().unwrap() <= i["latency_ms"].as_f64().unwrap() + 1.0);
    assert!(i["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{i}");
    assert!(i["usage"]["total_tokens"].as_u64().unwrap() > 0, "{i}");
    assert!(i["cost_usd"].as_f64().unwrap() > 0.0, "{i}");
    assert_eq!(i["model"], "gpt-4.1");
    assert!(i["request_id"].as_str().unwrap().starts_with("req-"));
    // The SSE bytes are not kept by default (a long stream would hold all
    // of them)...
    assert!(r.body.is_empty(), "{}", String::from_utf8_lossy(&r.body));
    // ...unless asked for.
    let kept = client(&s, json!({"keep_stream_body": true}));
    let (rk, _) = stream(&kept, &request("one two three four", json!({})));
    assert_eq!(rk.text, r.text);
    assert!(String::from_utf8_lossy(&rk.body).contains("data: [DONE]"));
    // The request said stream and asked for usage.
    let sent = s.recorded().pop().unwrap();
    let body: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(c.metrics()["requests"], 1);
}

#[test]
fn callers_stream_options_are_kept() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let req = request(
        "no usage",
        json!({"stream": false, "stream_options": {"include_usage": false}}),
    );
    let (r, seen) = stream(&c, &req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "Echo: no usage");
    assert_eq!(seen.len(), 5, "no usage chunk");
    assert_eq!(r.info_json()["usage"], Value::Null);
    let body: Value = serde_json::from_str(&s.recorded().pop().unwrap().body).unwrap();
    assert_eq!(body["stream"], true, "stream is forced on");
    assert_eq!(body["stream_options"]["include_usage"], false);

    // Other stream_options members are kept and include_usage added.
    let req = request("x", json!({"stream_options": {"foo": 1}}));
    assert_eq!(stream(&c, &req).0.code, Code::Ok);
    let body: Value = serde_json::from_str(&s.recorded().pop().unwrap().body).unwrap();
    assert_eq!(
        body["stream_options"],
        json!({"foo": 1, "include_usage": true})
    );
}

#[test]
fn a_stream_returns_its_connection_to_the_pool() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    for i in 0..3 {
        let (r, _) = stream(&c, CHAT);
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        assert_eq!(r.info_json()["connection_reused"], json!(i > 0));
    }
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["connection_reused"], true);
    assert_eq!(s.connections_accepted(), 1);
    assert_eq!(c.metrics()["connections_opened"], 1);
}

#[test]
fn callback_returning_false_cancels_and_keeps_the_partial_text() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let mut calls = 0;
    let r = c.chat_stream(&request("a b c d e f", json!({})), &mut |_, _| {
        calls += 1;
        calls < 3
    });
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(r.error.contains("callback"), "{}", r.error);
    assert_eq!(calls, 3, "no callback after the abort");
    // Role chunk, "Echo: ", "a ".
    assert_eq!(r.text, "Echo: a ");
    assert_eq!(r.info_json()["chunks"], 3);
    assert_eq!(r.status, 200);
    // The next call works (on a new connection: the aborted one is dropped).
    let (r, _) = stream(&c, CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    assert_eq!(c.metrics()["requests"], 3);
}

#[test]
fn error_object_mid_stream_is_a_protocol_error_with_the_partial_text() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let req = request(
        "one two three",
        json!({"x_test_sse_error": "upstream overloaded"}),
    );
    let (r, seen) = stream(&c, &req);
    assert_eq!(r.code, Code::Protocol, "{}", r.error);
    assert_eq!(r.status, 200);
    assert!(r.error.contains("upstream overloaded"), "{}", r.error);
    assert!(r.error.contains("mid-stream"), "{}", r.error);
    assert_eq!(r.text, "Echo: one ");
    assert_eq!(deltas(&seen), r.text);
    assert_eq!(r.info_json()["chunks"], 3);
    assert_eq!(
        r.info_json()["stream_error"]["error"]["message"],
        "upstream overloaded"
    );
    assert_eq!(r.info_json()["attempts"], 1, "not retried");
    assert_eq!(c.chat(CHAT).code, Code::Ok);
}

#[test]
fn dropped_connection_mid_stream_is_io_with_the_partial_text() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    s.push_fault(Fault::ResetMidBody);
    let (r, seen) = stream(&c, &request("a b c d e f g h", json!({})));
    assert_eq!(r.code, Code::Io, "{}", r.error);
    assert!(!r.text.is_empty());
    assert!("Echo: a b c d e f g h".starts_with(&r.text), "{}", r.text);
    assert!(r.text.len() < "Echo: a b c d e f g h".len());
    assert_eq!(deltas(&seen), r.text);
    assert_eq!(
        r.info_json()["attempts"],
        1,
        "a stream is not retried after its headers"
    );
    assert_eq!(stream(&c, CHAT).0.code, Code::Ok);
}

#[test]
fn truncated_chunked_stream_is_io() {
    let s = TestServer::plain();
    // Not sent again: only the role chunk came, no delta (see the next test).
    let c = client(&s, json!({"max_retries": 0}));
    s.push_fault(Fault::TruncatedChunked);
    let (r, _) = stream(&c, &request("a b c", json!({})));
    assert_eq!(r.code, Code::Io, "{}", r.error);
    assert_eq!(r.info_json()["chunks"], 1);
    assert_eq!(stream(&c, CHAT).0.code, Code::Ok);
}

#[test]
fn a_stream_that_broke_before_its_first_delta_is_sent_again() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retries": 2}));
    s.push_fault(Fault::TruncatedChunked);
    let (r, seen) = stream(&c, &request("a b c", json!({})));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "Echo: a b c");
    assert_eq!(r.info_json()["attempts"], 2);
    assert_eq!(r.info_json()["retries"], 1);
    // Only the empty role chunk of the broken attempt was seen twice.
    assert_eq!(deltas(&seen), "Echo: a b c");
    assert_eq!(s.requests_to("/chat/completions"), 2);
}

#[test]
fn a_stream_whose_first_delta_is_late_is_abandoned_and_sent_again() {
    let s = TestServer::plain();
    // Keep-alive comments every 60 ms, the first delta after ~540 ms.
    let req = request(
        "a",
        json!({"x_test_fixture": "slow_first_token", "x_test_stream_delay_ms": 60}),
    );
    let patient = client(&s, json!({}));
    let (r, _) = stream(&patient, &req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "late");
    let c = client(&s, json!({"first_token_timeout_ms": 150, "max_retries": 1}));
    let before = s.requests_to("/chat/completions");
    let t = Instant::now();
    let (r, seen) = stream(&c, &req);
    assert_eq!(r.code, Code::Timeout, "{}", r.error);
    assert!(r.error.contains("first_token_timeout_ms"), "{}", r.error);
    assert_eq!(r.info_json()["attempts"], 2);
    assert_eq!(s.requests_to("/chat/completions") - before, 2);
    // Each attempt gave up after ~150 ms, long before the late delta.
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(deltas(&seen), "");
}

#[test]
fn stall_longer_than_stream_idle_timeout_is_timeout_with_the_partial_text() {
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"stream_idle_timeout_ms": 300, "timeout_ms": 1000}),
    );
    s.push_fault(Fault::StallMidBody(Duration::from_secs(3)));
    let t = Instant::now();
    let (r, seen) = stream(&c, &request("a b c d e f g h", json!({})));
    assert_eq!(r.code, Code::Timeout, "{}", r.error);
    assert!(r.error.contains("stream_idle_timeout_ms"), "{}", r.error);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(r.text.starts_with("Echo: a "), "{}", r.text);
    assert_eq!(deltas(&seen), r.text);
}

#[test]
fn slow_stream_longer_than_timeout_ms_is_fine_while_data_flows() {
    // timeout_ms bounds the wait for headers, not the whole stream.
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"timeout_ms": 300, "stream_idle_timeout_ms": 1000}),
    );
    let req = request("a b c d e f", json!({"x_test_stream_delay_ms": 60}));
    let t = Instant::now();
    let (r, _) = stream(&c, &req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(t.elapsed() > Duration::from_millis(300));
    assert_eq!(r.text, "Echo: a b c d e f");
}

#[test]
fn cancel_from_another_thread_returns_a_blocked_stream_promptly() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let req = request("a b c", json!({"x_test_stream_delay_ms": 10_000}));
    let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
    let canceller = {
        let c = c.clone();
        std::thread::spawn(move || {
            // Cancel once the stream is surely blocked in the 10 s gap.
            first_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let t = Instant::now();
            c.cancel_all().unwrap();
            t
        })
    };
    let mut seen = 0;
    let r = c.chat_stream(&req, &mut |_, _| {
        seen += 1;
        let _ = first_tx.send(());
        true
    });
    let cancelled_at = canceller.join().unwrap();
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    // Only the first (role) chunk came before the 10 s gap.
    assert_eq!(seen, 1);
    assert_eq!(r.text, "");
    assert_eq!(r.info_json()["chunks"], 1);
    let (r, _) = stream(&c, CHAT);
    assert_eq!(r.code, Code::Ok, "later streams run normally: {}", r.error);
}

#[test]
fn comments_event_and_id_fields_and_crlf_parse_fine() {
    let s = TestServer::plain();
    let c = client(&s, json!({"keep_stream_body": true}));
    let req = request("with comments", json!({"x_test_sse_comments": true}));
    let (r, seen) = stream(&c, &req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "Echo: with comments");
    assert_eq!(deltas(&seen), r.text);
    assert_eq!(r.info_json()["finish_reason"], "stop");
    assert!(r.info_json()["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains(": keep-alive\r\n"), "{body}");
    // The connection still goes back to the pool.
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    assert_eq!(s.connections_accepted(), 1);
}

#[test]
fn non_2xx_answer_is_http_status_with_the_json_error_body() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    s.push_fault(Fault::Status {
        code: 400,
        body: r#"{"error":{"message":"bad model name","type":"invalid_request_error"}}"#.into(),
        headers: vec![],
    });
    let (r, seen) = stream(&c, CHAT);
    assert_eq!(r.code, Code::HttpStatus, "{}", r.error);
    assert_eq!(r.status, 400);
    assert!(r.error.contains("bad model name"), "{}", r.error);
    assert!(seen.is_empty());
    assert_eq!(r.json().unwrap()["error"]["message"], "bad model name");
    assert_eq!(r.text, "");
    assert_eq!(r.info_json()["chunks"], 0);

    // 503 is retried before the stream starts, like any chat call.
    s.push_fault(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![],
    });
    let (r, seen) = stream(&c, CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["attempts"], 2);
    assert_eq!(deltas(&seen), "Echo: hi");
}

#[test]
fn bad_requests_are_invalid_argument_without_traffic() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let mut called = false;
    for bad in ["{not json", "[1]", r#"{"stream_options": 5}"#] {
        let r = c.chat_stream(bad, &mut |_, _| {
            called = true;
            true
        });
        assert_eq!(r.code, Code::InvalidArgument, "{bad}");
        assert!(r.error.contains("request_json"), "{}", r.error);
    }
    assert!(!called);
    assert_eq!(s.requests(), 0);
}

#[test]
fn streams_work_over_tls_and_concurrently() {
    let s = TestServer::tls();
    let c = client(&s, json!({}));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..5 {
                    let msg = format!("t{t} call {i}");
                    let (r, seen) = stream(&c, &request(&msg, json!({})));
                    assert_eq!(r.code, Code::Ok, "{}", r.error);
                    assert_eq!(r.text, format!("Echo: {msg}"));
                    assert_eq!(deltas(&seen), r.text);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(s.connections_accepted() <= 4);
    assert_eq!(c.metrics()["requests"], 20);
}
