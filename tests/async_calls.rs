//! Async calls through the Rust API (`Client::*_async`) behave like
//! blocking ones: retries and Retry-After, failover, budgets, the
//! `max_concurrency` gate shared with blocking calls, metrics; a per-call
//! cancel leaves sibling calls alone; and calls that wait (backoff,
//! Retry-After, a rate-limit slot) hold no thread while they wait.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use llmpool::{Client, Code, Response};
use llmpool_testserver::{Fault, TestServer};
use serde_json::json;
use support::loopback::{client, client_for, closed_port, status};

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
    assert_eq!(r.info_json()["retries"], 2);
    assert_eq!(r.info_json()["call_id"], h.id());
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
    assert_eq!(r.info_json()["failovers"], 1);
    assert_eq!(r.info_json()["endpoint"], good.base_url());

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

/// The most calls parked at once while `rxs` complete, and the responses.
fn collect_watching_parked(c: &Client, rxs: Vec<mpsc::Receiver<Response>>) -> (u64, Vec<Response>) {
    let mut peak = 0;
    let mut out = Vec::new();
    for rx in rxs {
        loop {
            peak = peak.max(c.metrics()["async"]["parked"].as_u64().unwrap());
            if let Ok(r) = rx.recv_timeout(Duration::from_millis(5)) {
                out.push(r);
                break;
            }
        }
    }
    (peak, out)
}

#[test]
fn calls_in_retry_after_hold_no_thread() {
    // 100 calls, each answered 429 "retry after 500 ms" once, on at most 4
    // library threads. Were a waiting call to keep its thread, the waits
    // would run 4 at a time: 100 x 0.5 s / 4 = 12.5 s.
    let s = TestServer::plain();
    for _ in 0..100 {
        s.push_fault(status(429, &[("retry-after-ms", "500")]));
    }
    let c = client(&s, json!({"max_retries": 2, "async_max_threads": 4}));
    let t0 = Instant::now();
    let (_handles, rxs): (Vec<_>, Vec<_>) = (0..100).map(|_| chat(&c, CHAT)).unzip();
    let (peak, rs) = collect_watching_parked(&c, rxs);
    let took = t0.elapsed();
    for r in &rs {
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        assert_eq!(r.info_json()["retries"], 1);
    }
    let m = c.metrics();
    println!(
        "100 calls with a 500 ms Retry-After on 4 threads: {took:?}, at most {peak} parked at once, peak threads {}",
        m["async"]["peak_threads"]
    );
    assert!(m["async"]["peak_threads"].as_u64().unwrap() <= 4);
    assert!(peak > 4, "waiting calls were parked: {peak}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert_eq!(m["async"]["parked"], 0);
}

#[test]
fn calls_waiting_for_a_rate_limit_slot_hold_no_thread() {
    // 1200 rpm lets one call through every 50 ms: 30 calls wait up to 1.5 s
    // for their slots, parked, on 2 threads.
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"rate_limits": {"rpm": 1200}, "async_max_threads": 2, "queue_timeout_ms": 10000}),
    );
    let (_handles, rxs): (Vec<_>, Vec<_>) = (0..30).map(|_| chat(&c, CHAT)).unzip();
    let (peak, rs) = collect_watching_parked(&c, rxs);
    assert!(rs.iter().all(|r| r.code == Code::Ok));
    println!("30 calls under rpm 1200 on 2 threads: at most {peak} parked at once");
    assert!(peak >= 10, "rate-limit waits were parked: {peak}");
    assert!(c.metrics()["async"]["peak_threads"].as_u64().unwrap() <= 2);
}

#[test]
fn cancel_ends_a_call_parked_in_backoff_at_once() {
    let s = TestServer::plain();
    s.push_fault(status(503, &[("retry-after", "30")]));
    let c = client(&s, json!({"max_retries": 2, "max_retry_after_ms": 60000}));
    let (h, rx) = chat(&c, CHAT);
    let until = Instant::now() + Duration::from_secs(10);
    while c.metrics()["async"]["parked"] != 1 {
        assert!(Instant::now() < until, "the call never parked");
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    h.cancel();
    let r = wait(&rx);
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn warm_async_opens_connections_on_library_threads() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let (tx, rx) = mpsc::channel();
    let caller = std::thread::current().id();
    let h = c
        .warm_async(
            4,
            Box::new(move |r| {
                tx.send((r, std::thread::current().id())).unwrap();
            }),
        )
        .expect("submit");
    let (r, on) = rx.recv_timeout(Duration::from_secs(10)).expect("done ran");
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["opened"], 4, "{}", r.info_json());
    assert_eq!(r.info_json()["call_id"], h.id());
    assert_ne!(on, caller);
    assert_eq!(s.connections_accepted(), 4);
    // The next calls use the warmed connections.
    assert_eq!(c.chat(CHAT).info_json()["connection_reused"], true);
}

#[test]
fn warm_async_against_a_dead_gateway_says_why() {
    let c = client_for(
        &format!("http://127.0.0.1:{}/v1", closed_port()),
        json!({"max_retries": 0}),
    );
    let (tx, rx) = mpsc::channel();
    c.warm_async(2, Box::new(move |r| tx.send(r).unwrap()))
        .expect("submit");
    let r = wait(&rx);
    assert_eq!(r.code, Code::Connect, "{}", r.error);
    assert_eq!(r.info_json()["opened"], 0);
    assert!(!r.error.is_empty());
}
