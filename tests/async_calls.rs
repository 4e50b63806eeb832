//! Async calls through the Rust API (`Client::*_async`) behave like
//! blocking ones: retries and Retry-After, failover, budgets, the
//! `max_concurrency` gate shared with blocking calls, metrics; and a
//! per-call cancel leaves sibling calls alone.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use llmpool::{Client, Code, Response};
use llmpool_testserver::{Fault, TestServer};
use serde_json::json;
use support::loopback::{client, closed_port, status};

const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

/// Submits a chat and returns the receiver of its response.
fn chat(c: &Client, req: &str) -> (llmpool::exec::CallHandle, mpsc::Receiver<Response>) {
    let (tx, rx) = mpsc::channel();
    let h = c
        .chat_async(
            req,
            Box::new(move |r| {
                tx.send(r).unwrap();
            }),
        )
        .expect("submit");
    (h, rx)
}

fn wait(rx: &mpsc::Receiver<Response>) -> Response {
    rx.recv_timeout(Duration::from_secs(20)).expect("done ran")
}

#[test]
fn retries_and_retry_after_as_for_blocking_calls() {
    let s = TestServer::plain();
    s.push_fault(status(503, &[]));
    s.push_fault(status(429, &[("retry-after-ms", "150")]));
    let c = client(&s, json!({"max_retries": 3}));
    let t0 = Instant::now();
    let (h, rx) = chat(&c, CHAT);
    let r = wait(&rx);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info["retries"], 2);
    assert_eq!(r.info["call_id"], h.id());
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "Retry-After honoured"
    );
    let m = c.metrics();
    assert_eq!(m["requests"], 1);
    assert_eq!(m["retries"], 2);
}

#[test]
fn failover_and_budget_apply_to_async_calls() {
    let good = TestServer::plain();
    let down = format!("http://127.0.0.1:{}/v1", closed_port());
    let c = Client::from_json(Some(
        &json!({"endpoints": [{"base_url": down}, {"base_url": good.base_url()}],
                "max_retries": 0, "backoff_factor": 0.01})
        .to_string(),
    ))
    .unwrap();
    let r = wait(&chat(&c, CHAT).1);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info["failovers"], 1);
    assert_eq!(r.info["endpoint"], good.base_url());

    // gpt-4.1 output is $8/MTok: max_tokens 100000 alone is $0.80.
    let b = client(
        &good,
        json!({"budget": {"limit_usd": 0.5, "period": "month"}}),
    );
    let before = good.requests();
    let big =
        r#"{"model":"gpt-4.1","max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = wait(&chat(&b, big).1);
    assert_eq!(r.code, Code::BudgetExceeded, "{}", r.error);
    assert_eq!(good.requests(), before, "refused without sending");
}

#[test]
fn the_max_concurrency_gate_is_shared_with_blocking_calls() {
    let s = TestServer::plain();
    for _ in 0..3 {
        s.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(300)));
    }
    let c = client(&s, json!({"max_concurrency": 1, "queue_timeout_ms": 10000}));
    let blocking = {
        let c = c.clone();
        std::thread::spawn(move || c.chat(CHAT))
    };
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    let rxs: Vec<_> = (0..2).map(|_| chat(&c, CHAT).1).collect();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.metrics()["async"]["waiting_for_slot"], 2);
    for rx in &rxs {
        assert_eq!(wait(rx).code, Code::Ok);
    }
    assert_eq!(blocking.join().unwrap().code, Code::Ok);
    // One at a time: the two async calls ran after the blocking one.
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert!(c.metrics()["async"]["peak_threads"].as_u64().unwrap() <= 2);
}

#[test]
fn cancel_ends_one_call_and_spares_its_sibling() {
    let s = TestServer::plain();
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_secs(3)));
    let c = client(&s, json!({"max_retries": 0}));
    let (slow, slow_rx) = chat(&c, CHAT);
    std::thread::sleep(Duration::from_millis(200));
    let (_fast, fast_rx) = chat(&c, CHAT);
    assert_eq!(wait(&fast_rx).code, Code::Ok);
    let t0 = Instant::now();
    slow.cancel();
    let r = wait(&slow_rx);
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    // A cancel during a backoff sleep ends it too.
    s.push_fault(status(503, &[]));
    let c2 = client(&s, json!({"max_retries": 3, "backoff_factor": 5.0}));
    let (h, rx) = chat(&c2, CHAT);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    h.cancel();
    let r = wait(&rx);
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.code, Code::Cancelled);
    assert_eq!(r.status, 503, "the last answer is kept");
}

#[test]
fn submits_refuse_bad_input_and_a_closed_client() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let never = || -> llmpool::client::DoneFn { Box::new(|_| panic!("done ran")) };
    assert_eq!(
        c.chat_async("{bad", never()).unwrap_err().code,
        Code::InvalidArgument
    );
    assert_eq!(
        c.request_async("FETCH", "/x", None, never())
            .unwrap_err()
            .code,
        Code::InvalidArgument
    );
    c.close_async();
    assert_eq!(
        c.chat_async(CHAT, never()).unwrap_err().code,
        Code::Cancelled
    );
    assert_eq!(s.requests(), 0);
}
