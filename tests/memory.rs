//! Pooled connections hold I/O buffers only while a call moves bytes
//! (issue 15): the `buffer_bytes_held` metric counts them.

use std::time::Duration;

use llmpool::{Client, Code};
use llmpool_testserver::{Fault, TestServer};
use serde_json::json;

mod support;
use support::loopback::client;
use support::tinyproxy::Tinyproxy;
use support::Skip;

const SKIP: Skip = Skip::new("the proxy memory test", "memory tests: ");
const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

/// What ureq's TLS layer keeps per TLS connection (input + output buffer).
const TLS_LAYER: u64 = 9 * 1024 + 8 * 1024;

fn held(c: &Client) -> u64 {
    c.metrics()["buffer_bytes_held"]
        .as_u64()
        .expect("buffer_bytes_held is a number")
}

/// A ~300 KB request and a >1 MB answer, so both buffers grow well past
/// their starting size.
fn large_call(c: &Client) {
    let inputs: Vec<String> = (0..16_000).map(|i| format!("text number {i}")).collect();
    let r = c.embeddings(&json!({"model": "m", "input": inputs}).to_string());
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(r.body.len() > 1_000_000, "answer of {} bytes", r.body.len());
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON answer");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(16_000));
}

/// While a call waits for a (delayed) answer, its connection holds an input
/// buffer; returns the most seen, and the call's result.
fn held_while_waiting(c: &Client, s: &TestServer) -> u64 {
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(400)));
    std::thread::scope(|scope| {
        let call = scope.spawn(|| c.chat(CHAT));
        let mut most = 0;
        while !call.is_finished() {
            most = most.max(held(c));
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = call.join().expect("call thread");
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        most
    })
}

#[test]
fn an_idle_pooled_http_connection_holds_no_buffers() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retries": 0}));
    assert_eq!(held(&c), 0);
    for _ in 0..3 {
        large_call(&c);
        assert_eq!(held(&c), 0, "after a large call");
        assert_eq!(c.chat(CHAT).code, Code::Ok);
        assert_eq!(held(&c), 0, "after a small call");
    }
    let waiting = held_while_waiting(&c, &s);
    assert!(waiting >= 4 * 1024, "held {waiting} bytes while waiting");
    assert_eq!(held(&c), 0, "after the delayed call");
    let m = c.metrics();
    assert_eq!(m["connections_open"], 1, "one connection, pooled");
    assert_eq!(m["connections_opened"], 1);
    assert_eq!(s.connections_accepted(), 1);
}

#[test]
fn an_idle_pooled_tls_connection_holds_only_the_tls_layers_buffers() {
    let s = TestServer::tls();
    let c = client(&s, json!({"max_retries": 0}));
    large_call(&c);
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    assert_eq!(held(&c), TLS_LAYER);
    let waiting = held_while_waiting(&c, &s);
    assert!(waiting > TLS_LAYER, "held {waiting} bytes while waiting");
    assert_eq!(held(&c), TLS_LAYER);
    assert_eq!(c.metrics()["connections_open"], 1);
    c.reset_pool().expect("reset_pool");
    assert_eq!(c.metrics()["connections_open"], 0);
    assert_eq!(held(&c), 0, "a closed connection's buffers are gone");
}

#[test]
fn response_heads_up_to_8_kib_are_read_and_larger_ones_refused_clearly() {
    for s in [TestServer::plain(), TestServer::tls()] {
        let c = client(&s, json!({"max_retries": 0}));
        let big = |n: usize| Fault::Status {
            code: 200,
            body: r#"{"choices":[{"message":{"content":"ok"}}]}"#.into(),
            headers: vec![("x-padding".into(), "p".repeat(n))],
        };
        s.push_fault(big(7 * 1024));
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        assert_eq!(r.text, "ok");
        s.push_fault(big(20 * 1024));
        let r = c.chat(CHAT);
        assert_ne!(r.code, Code::Ok);
        assert!(r.error.contains("header"), "{}", r.error);
        assert_eq!(c.chat(CHAT).code, Code::Ok);
    }
}

#[test]
fn request_header_lines_up_to_8_kib_are_sent_and_longer_ones_refused_clearly() {
    let s = TestServer::plain();
    let header = |n: usize| json!({"max_retries": 0, "headers": {"x-long": "v".repeat(n)}});
    let c = client(&s, header(8 * 1024 - 100));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let sent = s.recorded().pop().expect("recorded request");
    assert_eq!(sent.header("x-long").map(str::len), Some(8 * 1024 - 100));
    let c = client(&s, header(9 * 1024));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::InvalidArgument);
    assert_eq!(r.error, "a request header line is longer than 8192 bytes");
}

#[test]
fn connections_through_a_proxy_release_their_buffers_too() {
    let Some(p) = Tinyproxy::start(&SKIP, None) else {
        return;
    };
    // Plain HTTP in absolute form (tinyproxy closes those connections after
    // each answer), then HTTPS through a pooled CONNECT tunnel.
    for (s, idle) in [(TestServer::plain(), 0), (TestServer::tls(), TLS_LAYER)] {
        let c = client(&s, json!({"max_retries": 0, "proxy": p.url(None)}));
        large_call(&c);
        assert_eq!(c.chat(CHAT).code, Code::Ok);
        let open = c.metrics()["connections_open"].as_u64().unwrap();
        if idle > 0 {
            assert_eq!(open, 1, "{}", s.base_url());
        } else {
            // tinyproxy closes a plain connection after each answer; the
            // pool drops it when it sees the FIN, which on a loaded machine
            // may arrive after the answer was read. Either way it holds no
            // buffers (checked next).
            assert!(open <= 1, "{}: {open} open", s.base_url());
        }
        assert_eq!(held(&c), idle, "{}", s.base_url());
        let waiting = held_while_waiting(&c, &s);
        assert!(waiting > idle, "held {waiting} bytes while waiting");
        assert_eq!(held(&c), idle);
    }
}
