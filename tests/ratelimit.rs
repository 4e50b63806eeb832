//! Rate limits over loopback: `rate_limits` spreading calls out, refusing
//! unsent with `LLMPOOL_RATE_LIMITED` past `queue_timeout_ms`, tokens booked
//! and corrected, and the gateway's `x-ratelimit-*` headers honoured.

use std::time::{Duration, Instant};

use llmpool::Code;
use llmpool_testserver::{Fault, TestServer};
use serde_json::json;

mod support;
use support::loopback::client;

const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

fn headers(pairs: &[(&str, &str)]) -> Fault {
    Fault::Headers(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn rpm_spreads_calls_from_many_threads() {
    let s = TestServer::plain();
    // 1200 rpm: one call every 50 ms after a burst of 2 (a tenth of a second's worth).
    let c = client(&s, json!({"rate_limits": {"rpm": 1200}}));
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let r = c.chat(CHAT);
                    assert_eq!(r.code, Code::Ok, "{}", r.error);
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    // 20 calls: the last one no earlier than 18 * 50 ms after the first.
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(880), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(s.requests(), 20);
    assert!(c.metrics()["rate_limits"]["waited"].as_u64().unwrap() >= 15);
}

#[test]
fn a_wait_past_queue_timeout_fails_unsent() {
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"rate_limits": {"per_model": {"gpt-4.1": {"rpm": 60}}}, "queue_timeout_ms": 200}),
    );
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let t = Instant::now();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::RateLimited, "{}", r.error);
    // Refused at once, not after sleeping in vain.
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert!(r.error.contains("rpm 60 for gpt-4.1"), "{}", r.error);
    assert!(r.error.contains("queue_timeout_ms (200 ms)"), "{}", r.error);
    assert_eq!(s.requests(), 1, "the refused call was sent");
    // Other models have no limit.
    let other = CHAT.replace("gpt-4.1", "gpt-4.1-mini");
    assert_eq!(c.chat(&other).code, Code::Ok);
}

#[test]
fn tokens_are_estimated_then_corrected_with_real_usage() {
    let s = TestServer::plain();
    // 6000 tpm = 100 tokens/s (tolerance 10). The call asks for up to 500
    // output tokens, so 500+ tokens are booked: the next call would wait ~5 s.
    let c = client(
        &s,
        json!({"rate_limits": {"tpm": 6000}, "queue_timeout_ms": 3000}),
    );
    let req = r#"{"model":"gpt-4.1","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = c.chat(req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let used = r.info_json()["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used < 100, "{used}");
    // Corrected to the real usage, the next call waits ~used/100 s, not 5 s.
    let t = Instant::now();
    let r = c.chat(req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn zero_remaining_waits_for_the_gateways_reset() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    s.push_fault(headers(&[
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "400ms"),
        ("x-ratelimit-remaining-tokens", "9000"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ]));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let t = Instant::now();
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(s.requests(), 2);
}

#[test]
fn a_reset_beyond_queue_timeout_fails_unsent_instead_of_a_429() {
    let s = TestServer::plain();
    let c = client(&s, json!({"queue_timeout_ms": 500}));
    s.push_fault(headers(&[
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "1m30s"),
    ]));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let r = c.chat(CHAT);
    assert_eq!(r.code, Code::RateLimited, "{}", r.error);
    assert!(r.error.contains("x-ratelimit"), "{}", r.error);
    assert_eq!(s.requests(), 1);
    // `adaptive: false` ignores the headers.
    let c = client(&s, json!({"rate_limits": {"adaptive": false}}));
    s.push_fault(headers(&[
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "1m"),
    ]));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    assert_eq!(c.chat(CHAT).code, Code::Ok);
}

#[test]
fn a_cancel_ends_a_rate_limit_wait() {
    let s = TestServer::plain();
    let c = client(&s, json!({"rate_limits": {"rpm": 6}}));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    let c2 = c.clone();
    let waiter = std::thread::spawn(move || c2.chat(CHAT));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    c.cancel_all().unwrap();
    let r = waiter.join().unwrap();
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(s.requests(), 1);
}

#[test]
fn bad_options_name_the_key() {
    let e = llmpool::Client::from_json(Some(r#"{"rate_limits": {"rpm": -1}}"#)).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.message.contains("rate_limits.rpm"), "{}", e.message);
}
