//! The core client over loopback against the bundled test server.

use std::time::{Duration, Instant};

use llmpool::{Client, Code};
use llmpool_testserver::{Fault, Options as ServerOptions, TestServer};
use serde_json::json;

mod support;
use support::loopback::{client, client_for, closed_port, status};

const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn thousand_sequential_calls_use_one_connection() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    for i in 0..1000 {
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "call {i}: {}", r.error);
        assert_eq!(r.text, "Echo: hi");
        assert_eq!(r.info_json()["connection_reused"], json!(i > 0));
    }
    assert_eq!(s.connections_accepted(), 1);
    let m = c.metrics();
    assert_eq!(m["requests"], 1000);
    assert_eq!(m["connections_opened"], 1);
    assert_eq!(m["connections_reused"], 999);
    assert_eq!(m["errors"], 0);
    assert!(m["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
}

#[test]
fn info_reports_the_call() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok);
    assert_eq!(r.status, 200);
    let i = &r.info_json();
    assert_eq!(i["attempts"], 1);
    assert_eq!(i["connections_opened"], 1);
    assert_eq!(i["connection_reused"], false);
    assert!(i["request_id"].as_str().unwrap().starts_with("req-"));
    assert_eq!(i["model"], "gpt-4.1");
    assert!(i["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(i["latency_ms"].as_f64().unwrap() > 0.0);
    let e = c.embeddings(r#"{"model":"text-embedding-3-small","input":["a","b"]}"#);
    assert_eq!(e.code, Code::Ok, "{}", e.error);
    assert_eq!(e.json().unwrap()["data"].as_array().unwrap().len(), 2);
    let m = c.request("GET", "/models", None);
    assert_eq!(m.code, Code::Ok, "{}", m.error);
    assert_eq!(s.connections_accepted(), 1);
}

#[test]
fn post_is_retried_on_listed_statuses() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    s.push_fault(status(503, &[]));
    s.push_fault(status(502, &[]));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["attempts"], 3);
    assert_eq!(s.requests_to("/chat/completions"), 3);
    let m = c.metrics();
    assert_eq!(m["retries"], 2);
    assert_eq!(m["status_counts"]["503"], 1);
    assert_eq!(m["status_counts"]["200"], 1);
}

#[test]
fn retries_stop_at_max_retries_with_the_last_answer() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retries": 2}));
    for _ in 0..5 {
        s.push_fault(status(500, &[]));
    }
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::HttpStatus);
    assert_eq!(r.status, 500);
    assert_eq!(r.info_json()["attempts"], 3);
    assert!(r.error.contains("HTTP 500"), "{}", r.error);
    assert!(r.error.contains("2 retries"), "{}", r.error);
    assert!(!r.body.is_empty());
}

#[test]
fn other_4xx_are_not_retried_and_keep_the_body() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    s.push_fault(Fault::Status {
        code: 400,
        body: r#"{"error":{"message":"bad model name","type":"invalid_request_error"}}"#.into(),
        headers: vec![],
    });
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::HttpStatus);
    assert_eq!(r.status, 400);
    assert_eq!(r.info_json()["attempts"], 1);
    assert!(r.error.contains("bad model name"), "{}", r.error);
    assert!(String::from_utf8_lossy(&r.body).contains("bad model name"));
}

#[test]
fn insufficient_quota_429_is_not_retried() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    s.push_fault(Fault::Status {
        code: 429,
        body: r#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#.into(),
        headers: vec![],
    });
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::HttpStatus);
    assert_eq!(r.info_json()["attempts"], 1);
    assert!(r.error.contains("insufficient_quota"), "{}", r.error);
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retry_after_ms": 5000}));
    s.push_fault(Fault::Status {
        code: 429,
        body: String::new(),
        headers: vec![("retry-after-ms".into(), "300".into())],
    });
    let t = Instant::now();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(t.elapsed() >= Duration::from_millis(300));
    s.push_fault(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![("retry-after".into(), "120".into())],
    });
    let t = Instant::now();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::HttpStatus);
    assert!(r.error.contains("max_retry_after_ms"), "{}", r.error);
    assert!(t.elapsed() < Duration::from_secs(5));
    s.push_fault(Fault::Status {
        code: 503,
        body: String::new(),
        headers: vec![("x-should-retry".into(), "false".into())],
    });
    let r = c.chat(CHAT);
    assert_eq!(r.info_json()["attempts"], 1);
}

#[test]
fn refused_connection_is_a_connect_error_after_retries() {
    let url = format!("http://127.0.0.1:{}/v1", closed_port());
    let c = client_for(&url, json!({"max_retries": 2}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Connect, "{}", r.error);
    assert_eq!(r.status, 0);
    assert_eq!(r.info_json()["attempts"], 3);
    assert!(r.error.contains("refused"), "{}", r.error);
}

#[test]
fn idle_connection_closed_by_server_is_replaced_silently() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retries": 0}));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    for _ in 0..20 {
        s.close_idle_connections();
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "{}", r.error);
    }
    assert_eq!(c.metrics()["errors"], 0);
    assert_eq!(s.connections_accepted(), 21);
}

#[test]
fn whole_call_timeout_names_the_phase() {
    let s = TestServer::plain();
    let c = client(&s, json!({"timeout_ms": 200, "max_retries": 0}));
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(1500)));
    let t = Instant::now();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Timeout, "{}", r.error);
    assert!(r.error.contains("timed out"), "{}", r.error);
    assert!(t.elapsed() < Duration::from_millis(1400));
    let c = client(
        &s,
        json!({"response_header_timeout_ms": 200, "max_retries": 0}),
    );
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(1500)));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Timeout);
    assert!(r.error.contains("response headers"), "{}", r.error);
}

#[test]
fn broken_answers_are_clear_errors() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retries": 0}));
    s.push_fault(Fault::InvalidJson);
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Protocol, "{}", r.error);
    assert_eq!(r.status, 200);
    s.push_fault(Fault::ResetMidBody);
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Io, "{}", r.error);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.info_json()["attempts"],
        1,
        "a POST whose answer began is not re-sent"
    );
    s.push_fault(Fault::MalformedStatusLine);
    let r = c.chat(CHAT);
    assert_ne!(r.code, Code::Ok);
    assert_eq!(r.status, 0);
}

#[test]
fn api_key_is_sent_only_when_set_and_never_leaks() {
    let s = TestServer::start(ServerOptions {
        required_key: Some("sk-right".into()),
        ..Default::default()
    })
    .unwrap();
    let c = client(&s, json!({"api_key": "sk-wrong-secret-123"}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::HttpStatus);
    assert_eq!(r.status, 401);
    assert!(!r.error.contains("sk-wrong-secret-123"));
    assert!(!r.info_json().to_string().contains("sk-wrong-secret-123"));
    assert!(!c.metrics().to_string().contains("sk-wrong-secret-123"));
    assert!(!format!("{c:?}").contains("sk-wrong-secret-123"));
    c.set_api_key(Some("sk-right")).unwrap();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(s.connections_accepted(), 1, "key rotation keeps the pool");
    c.set_api_key(None).unwrap();
    assert_eq!(
        c.set_api_key(Some("sk-\u{e9}")).unwrap_err().code,
        Code::InvalidArgument
    );
    let _ = c.chat(CHAT);
    let rec = s.recorded();
    assert_eq!(rec[1].header("authorization"), Some("Bearer sk-right"));
    assert_eq!(rec[2].header("authorization"), None);
}

#[test]
fn custom_headers_and_user_agent_are_sent() {
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"headers": {"X-Team": "search"}, "user_agent": "myapp/2"}),
    );
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let rec = s.recorded();
    assert_eq!(rec[0].header("x-team"), Some("search"));
    assert_eq!(rec[0].header("user-agent"), Some("myapp/2"));
    assert_eq!(rec[0].header("content-type"), Some("application/json"));
}

#[test]
fn tls_trusts_the_given_ca_and_refuses_unknown_ones() {
    let s = TestServer::tls();
    let c = client(&s, json!({}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(c.chat(CHAT).info_json()["connection_reused"], true);
    let unknown = Client::from_json(Some(
        &json!({"base_url": s.base_url(), "max_retries": 0}).to_string(),
    ))
    .unwrap();
    let r = unknown.chat(CHAT);
    assert_eq!(r.code, Code::Tls, "{}", r.error);
    let insecure = Client::from_json(Some(
        &json!({"base_url": s.base_url(), "insecure_skip_tls_verify": true}).to_string(),
    ))
    .unwrap();
    assert_eq!(insecure.chat(CHAT).code, Code::Ok);
    assert!(insecure.metrics()["warnings"][0]
        .as_str()
        .unwrap()
        .contains("NOT verified"));
}

#[test]
fn concurrent_callers_share_the_pool() {
    let s = TestServer::plain();
    let c = client(&s, json!({"pool_max_idle_per_host": 4}));
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let c = c.clone();
            scope.spawn(move || {
                for _ in 0..50 {
                    assert_eq!(c.chat(CHAT).code, Code::Ok);
                }
            });
        }
    });
    assert!(
        s.connections_accepted() <= 4,
        "{}",
        s.connections_accepted()
    );
    let m = c.metrics();
    assert_eq!(m["requests"], 200);
    assert_eq!(m["in_flight"], 0);
    assert_eq!(
        m["connections_opened"].as_u64().unwrap() + m["connections_reused"].as_u64().unwrap(),
        200
    );
}

#[test]
fn max_concurrency_queues_then_reports_exhaustion() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_concurrency": 1, "queue_timeout_ms": 100}));
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(600)));
    let slow = {
        let c = c.clone();
        std::thread::spawn(move || c.chat(CHAT))
    };
    std::thread::sleep(Duration::from_millis(150));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::PoolExhausted, "{}", r.error);
    assert!(r.error.contains("max_concurrency"), "{}", r.error);
    assert_eq!(slow.join().unwrap().code, Code::Ok);
}

#[test]
fn reset_pool_drops_idle_connections() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    c.reset_pool().unwrap();
    let r = c.chat(CHAT);
    assert_eq!(r.info_json()["connection_reused"], false);
    assert_eq!(s.connections_accepted(), 2);
}

#[test]
fn unpooled_client_opens_a_connection_per_call() {
    let s = TestServer::plain();
    let c = client(&s, json!({"pool_max_idle": 0}));
    for _ in 0..5 {
        assert_eq!(c.chat(CHAT).code, Code::Ok);
    }
    assert_eq!(s.connections_accepted(), 5);
    assert_eq!(c.metrics()["connections_opened"], 5);
}

#[test]
fn cancel_returns_blocked_calls_promptly() {
    let s = TestServer::plain();
    let c = client(&s, json!({"max_retries": 0}));
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_secs(5)));
    let t = Instant::now();
    let blocked = {
        let c = c.clone();
        std::thread::spawn(move || c.chat(CHAT))
    };
    std::thread::sleep(Duration::from_millis(200));
    c.cancel_all().unwrap();
    let r = blocked.join().unwrap();
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(c.chat(CHAT).code, Code::Ok, "later calls run normally");
}

#[test]
fn cancel_interrupts_backoff_sleep() {
    let s = TestServer::plain();
    let c = client(&s, json!({"backoff_factor": 10.0, "max_backoff_ms": 60000}));
    s.push_fault(status(503, &[]));
    let blocked = {
        let c = c.clone();
        std::thread::spawn(move || c.chat(CHAT))
    };
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    c.cancel_all().unwrap();
    let r = blocked.join().unwrap();
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn bad_input_is_invalid_argument_without_traffic() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let r = c.chat("{not json");
    assert_eq!(r.code, Code::InvalidArgument);
    assert!(r.error.contains("request_json"), "{}", r.error);
    assert_eq!(c.chat("[1,2]").code, Code::InvalidArgument);
    assert_eq!(c.request("BREW", "/x", None).code, Code::InvalidArgument);
    assert_eq!(c.request("GET", "models", None).code, Code::InvalidArgument);
    assert_eq!(s.requests(), 0);
    let e = Client::from_json(Some(r#"{"bogus": 1}"#)).unwrap_err();
    assert!(e.message.contains("bogus"));
}

#[test]
fn failures_before_any_connection_are_connect_errors_not_reuse() {
    let url = format!("http://127.0.0.1:{}/v1", closed_port());
    let c = client_for(&url, json!({"max_retries": 1}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Connect);
    assert_eq!(r.info_json()["connection_reused"], false);
    assert_eq!(r.info_json()["reconnects_after_idle_close"], 0);
    assert_eq!(c.metrics()["connections_reused"], 0);
    // A name that cannot resolve (the .invalid TLD is reserved, RFC 2606).
    let c = client_for("http://llmpool-test.invalid/v1", json!({"max_retries": 0}));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Connect, "{}", r.error);
    assert_eq!(r.info_json()["attempts"], 1);
    assert_eq!(r.info_json()["connection_reused"], false);
}
