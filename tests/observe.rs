//! Observability: the log (callback, levels, redaction), `info.timings_ms`,
//! and (in `prometheus`) the Prometheus exposition checked by promtool.

use std::sync::{Arc, Mutex};

use llmpool::log::Level;
use llmpool::{Client, Code};
use llmpool_testserver::{Fault, TestServer};
use serde_json::{json, Value};

mod support;
use support::loopback::{client, status};

const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

type Lines = Arc<Mutex<Vec<(Level, String)>>>;

fn capture(c: &Client, min: Level) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    c.set_log_sink(
        min as i32,
        Some(Arc::new(move |l, s: &str| {
            sink.lock().unwrap().push((l, s.to_string()))
        })),
    );
    lines
}

fn text(lines: &Lines) -> String {
    lines
        .lock()
        .unwrap()
        .iter()
        .map(|(l, s)| format!("{} {s}\n", l.name()))
        .collect()
}

#[test]
fn a_retry_and_a_new_connection_are_logged_with_the_call_id() {
    let server = TestServer::plain();
    let c = client(&server, json!({}));
    let lines = capture(&c, Level::Debug);
    server.push_fault(status(503, &[]));
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let log = text(&lines);
    println!("{log}");
    let call = log
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("a first line")
        .to_string();
    assert!(call.starts_with("call="), "{log}");
    let has = |level: &str, what: &str| {
        log.lines()
            .any(|l| l.starts_with(level) && l.contains(&call) && l.contains(what))
    };
    assert!(has("INFO", "opened to 127.0.0.1 (127.0.0.1:"), "{log}");
    assert!(has("DEBUG", "sending POST http://127.0.0.1:"), "{log}");
    assert!(has("INFO", "answer HTTP 503"), "{log}");
    assert!(has("WARN", "retry 1/3: HTTP 503, waiting"), "{log}");
    assert!(has("INFO", "answer HTTP 200"), "{log}");
    assert!(log.contains("request_id="), "{log}");
    // The second attempt reused the connection the first one opened.
    assert!(has("DEBUG", "reused a pooled connection"), "{log}");

    // A second call gets its own id; INFO hides DEBUG lines.
    lines.lock().unwrap().clear();
    c.set_log_sink(
        Level::Info as i32,
        Some(Arc::new({
            let l = lines.clone();
            move |lv, s: &str| l.lock().unwrap().push((lv, s.to_string()))
        })),
    );
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let log2 = text(&lines);
    assert!(!log2.contains(&format!("{call} ")), "{log2}");
    assert!(log2.lines().all(|l| !l.starts_with("DEBUG")), "{log2}");
    assert!(log2.contains("answer HTTP 200"), "{log2}");

    // No sink: nothing is delivered, and a failure is still a failure.
    c.set_log_sink(5, None);
    lines.lock().unwrap().clear();
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    assert!(lines.lock().unwrap().is_empty());
}

#[test]
fn failures_connections_closing_and_streams_are_logged() {
    let server = TestServer::plain();
    let c = client(&server, json!({"max_retries": 0}));
    let lines = capture(&c, Level::Debug);
    server.push_fault(status(400, &[]));
    assert_eq!(c.chat(CHAT).code, Code::HttpStatus);
    // The server closes the pooled connection while it idles.
    server.close_idle_connections();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let mut n = 0;
    let r = c.chat_stream(CHAT, &mut |_, _| {
        n += 1;
        true
    });
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    drop(c);
    let log = text(&lines);
    println!("{log}");
    assert!(log.contains("WARN call="), "{log}");
    assert!(
        log.contains("call failed: LLMPOOL_HTTP_STATUS: HTTP 400"),
        "{log}"
    );
    assert!(
        log.contains("closed by the server while idle in the pool")
            || log.contains("reconnect: the pooled connection had been closed"),
        "{log}"
    );
    assert!(log.contains("stream started"), "{log}");
    assert!(log.contains("stream first token after"), "{log}");
    assert!(log.contains("stream ended: LLMPOOL_OK"), "{log}");
}

const MARKER: &str = "sk-MARKER-7f3c2a91d4e6b8";

#[test]
fn no_log_line_metric_or_info_contains_the_key() {
    let server = TestServer::plain();
    let c = client(
        &server,
        json!({"api_key": MARKER, "log_bodies": true, "max_retries": 1}),
    );
    let lines = capture(&c, Level::Trace);
    let mut infos: Vec<Value> = Vec::new();
    // A server that echoes the key back in an error body and a header.
    server.push_fault(Fault::Status {
        code: 400,
        body: format!(r#"{{"error":{{"message":"bad key {MARKER}"}}}}"#),
        headers: vec![("x-echo".into(), format!("Bearer {MARKER}"))],
    });
    infos.push(c.chat(CHAT).info_json());
    server.push_fault(status(503, &[]));
    infos.push(c.chat(CHAT).info_json());
    infos.push(c.chat(&CHAT.replace("hi", MARKER)).info_json());
    infos.push(c.chat_stream(CHAT, &mut |_, _| true).info_json());
    let refreshed = "sk-MARKER-second-91d4e6";
    c.set_api_key(Some(refreshed)).unwrap();
    infos.push(c.chat(&CHAT.replace("hi", refreshed)).info_json());
    let log = text(&lines);
    assert!(log.contains("request body:"), "TRACE bodies are on: {log}");
    assert!(log.lines().count() > 20, "{log}");
    assert!(!log.contains(MARKER), "{log}");
    assert!(!log.contains(refreshed), "{log}");
    assert!(log.contains("[REDACTED]"), "{log}");
    for i in &infos {
        assert!(i.get("timings_ms").is_some(), "{i}");
        assert!(!i.to_string().contains("MARKER"), "{i}");
    }
    let m = c.metrics().to_string();
    assert!(!m.contains("MARKER"), "{m}");
}

#[test]
fn bodies_need_trace_and_log_bodies() {
    let server = TestServer::plain();
    let c = client(&server, json!({}));
    let lines = capture(&c, Level::Trace);
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let log = text(&lines);
    assert!(!log.contains("body:"), "{log}");
    assert!(
        log.contains("TRACE") || log.contains("answer HTTP 200"),
        "{log}"
    );
}

fn timings(info: &Value) -> (f64, f64, f64, f64, f64) {
    let t = &info["timings_ms"];
    let f = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("{k} in {t}"));
    (f("dns"), f("connect"), f("tls"), f("ttfb"), f("total"))
}

#[test]
fn timings_add_up_and_pooled_calls_skip_the_handshakes() {
    for server in [TestServer::plain(), TestServer::tls()] {
        let tls = server.ca_pem().is_some();
        let c = client(&server, json!({}));
        let first = c.chat(CHAT);
        assert_eq!(first.code, Code::Ok, "{}", first.error);
        let (dns, connect, hs, ttfb, total) = timings(&first.info_json());
        println!("tls={tls} first: {}", first.info_json()["timings_ms"]);
        assert!(connect > 0.0 && ttfb > 0.0, "{}", first.info_json());
        assert_eq!(hs > 0.0, tls, "{}", first.info_json());
        assert!(dns + connect + hs + ttfb <= total, "{}", first.info_json());
        let second = c.chat(CHAT);
        let (dns, connect, hs, ttfb, total) = timings(&second.info_json());
        println!("tls={tls} pooled: {}", second.info_json()["timings_ms"]);
        assert_eq!(second.info_json()["connection_reused"], true);
        assert_eq!(
            (dns, connect, hs),
            (0.0, 0.0, 0.0),
            "{}",
            second.info_json()
        );
        assert!(ttfb > 0.0 && ttfb <= total, "{}", second.info_json());
    }
}

#[test]
fn tls_connections_log_their_version_and_handshake_time() {
    let server = TestServer::tls();
    let c = client(&server, json!({}));
    let lines = capture(&c, Level::Info);
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let log = text(&lines);
    println!("{log}");
    assert!(
        log.contains("TLSv1.3 handshake ") || log.contains("TLSv1.2 handshake "),
        "{log}"
    );
}

#[test]
fn failover_circuit_cache_budget_and_key_refresh_are_logged() {
    let server = TestServer::plain();
    let down = format!("http://127.0.0.1:{}/v1", support::loopback::closed_port());
    let c = client(
        &server,
        json!({
            "endpoints": [{"base_url": down}, {"base_url": server.base_url()}],
            "circuit_failures": 1,
            "max_retries": 0,
            "cache": {"max_entries": 10},
            "budget": {"limit_usd": 1000, "period": "total", "per_model": {"claude-sonnet-4.5": 0.0000001}},
        }),
    );
    let lines = capture(&c, Level::Info);
    let cached =
        r#"{"model":"gpt-4.1","temperature":0,"messages":[{"role":"user","content":"c"}]}"#;
    assert_eq!(c.chat(cached).code, Code::Ok);
    assert_eq!(c.chat(cached).info_json()["cache_hit"], true);
    let r = c.chat(r#"{"model":"claude-sonnet-4.5","messages":[{"role":"user","content":"x"}]}"#);
    assert_eq!(r.code, Code::BudgetExceeded, "{}", r.error);
    let log = text(&lines);
    println!("{log}");
    assert!(
        log.contains("circuit breaker opened for http://127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("failover: http://127.0.0.1:"), "{log}");
    assert!(
        log.contains("cache hit for POST /chat/completions (model gpt-4.1)"),
        "{log}"
    );
    assert!(log.contains("WARN call="), "{log}");
    assert!(
        log.contains("refused before sending POST /chat/completions: LLMPOOL_BUDGET_EXCEEDED"),
        "{log}"
    );

    // A 401 answered with a fresh key from the provider.
    let keyed = TestServer::plain();
    keyed.set_required_key(Some("sk-right-0001".into()));
    let k = client(&keyed, json!({"api_key": "sk-wrong-0001"}));
    k.set_key_provider(Some(Arc::new(|| Some("sk-right-0001".to_string()))));
    let lines = capture(&k, Level::Info);
    assert_eq!(k.chat(CHAT).code, Code::Ok);
    let log = text(&lines);
    assert!(
        log.contains("key refresh: HTTP 401, the key provider gave a new key"),
        "{log}"
    );
    assert!(
        log.contains("retry: HTTP 401 with a refreshed key"),
        "{log}"
    );
    assert!(
        !log.contains("sk-right-0001") && !log.contains("sk-wrong-0001"),
        "{log}"
    );
}
