//! `llmpool_call_cancel` (here `CallHandle::cancel`) ends an async call that
//! is still connecting, directly or to its proxy, within a fraction of a
//! second, and leaves the sibling calls connecting to the same place alone:
//! they go on until their own `connect_timeout_ms`.
//!
//! `llmpool_client_cancel` (`Client::cancel_all`) ends a blocking call
//! that is still connecting the same way.
//!
//! A gateway that never answers the SYN is a loopback listener whose accept
//! queue is full: Linux drops further SYNs, so a connect to it hangs.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use llmpool::{Client, Code, Response};
use llmpool_testserver::{TestServer, Unanswered};
use serde_json::json;
use support::loopback::{client, client_for};

const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

fn chat(
    c: &Client,
) -> (
    llmpool::exec::CallHandle,
    mpsc::Receiver<(Response, Instant)>,
) {
    let (tx, rx) = mpsc::channel();
    let h = c
        .chat_async(
            CHAT,
            Box::new(move |r| {
                tx.send((r, Instant::now())).unwrap();
            }),
        )
        .expect("submit");
    (h, rx)
}

/// Cancels one of two calls stuck connecting through `c` and checks that
/// it alone ends, with LLMPOOL_CANCELLED, and soon.
fn cancel_one_of_two(c: &Client) {
    let (a, a_rx) = chat(c);
    let (_b, b_rx) = chat(c);
    std::thread::sleep(Duration::from_millis(300));
    assert!(a_rx.try_recv().is_err(), "still connecting");
    let t0 = Instant::now();
    a.cancel();
    let (r, done_at) = a_rx.recv_timeout(Duration::from_secs(5)).expect("done ran");
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    // 100 ms is the contract; the bound is generous for a busy 2-core machine.
    assert!(
        done_at - t0 < Duration::from_secs(1),
        "cancel took {:?}",
        done_at - t0
    );
    eprintln!("cancel during connect ended the call in {:?}", done_at - t0);
    // The sibling is still connecting and ends on its own timeout.
    assert!(b_rx.try_recv().is_err(), "the sibling was not cancelled");
    let (r, _) = b_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("done ran");
    assert_eq!(r.code, Code::Timeout, "{}", r.error);
}

#[test]
fn cancel_ends_a_call_stuck_in_connect_and_spares_its_sibling() {
    let hang = Unanswered::new();
    let addr = hang.addr;
    let opts = json!({"max_retries": 0, "connect_timeout_ms": 1500});
    let c = client_for(&format!("http://{addr}/v1"), opts.clone());
    let other = TestServer::plain();
    let ok = client(&other, json!({}));
    let (_h, ok_rx) = chat(&ok);
    cancel_one_of_two(&c);
    assert_eq!(ok_rx.recv().unwrap().0.code, Code::Ok);

    // Blocking calls connect as before: their connect timeout still applies.
    let t = Instant::now();
    let r = client_for(
        &format!("http://{addr}/v1"),
        json!({"max_retries": 0, "connect_timeout_ms": 300}),
    )
    .chat(CHAT);
    assert_eq!(r.code, Code::Timeout, "{}", r.error);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn cancel_ends_a_call_stuck_connecting_to_its_proxy() {
    let hang = Unanswered::new();
    let addr = hang.addr;
    let gateway = TestServer::plain();
    let c = client(
        &gateway,
        json!({"max_retries": 0, "connect_timeout_ms": 1500,
               "proxy": format!("http://{addr}")}),
    );
    cancel_one_of_two(&c);
    assert_eq!(gateway.requests(), 0, "nothing reached the gateway");
}

#[test]
fn client_cancel_ends_a_blocking_call_stuck_in_connect() {
    let hang = Unanswered::new();
    let addr = hang.addr;
    let c = client_for(
        &format!("http://{addr}/v1"),
        json!({"max_retries": 0, "connect_timeout_ms": 5000}),
    );
    let c2 = c.clone();
    let call = std::thread::spawn(move || {
        let r = c2.chat(CHAT);
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!call.is_finished(), "still connecting");
    let t0 = Instant::now();
    c.cancel_all().unwrap();
    let (r, done_at) = call.join().unwrap();
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(r.error.contains("llmpool_client_cancel"), "{}", r.error);
    assert!(
        done_at - t0 < Duration::from_secs(1),
        "cancel took {:?}",
        done_at - t0
    );
    eprintln!(
        "client cancel during a blocking connect ended it in {:?}",
        done_at - t0
    );
}

#[test]
fn cancel_ends_an_async_warm_up_stuck_in_connect() {
    let hang = Unanswered::new();
    let addr = hang.addr;
    let c = client_for(
        &format!("http://{addr}/v1"),
        json!({"max_retries": 0, "connect_timeout_ms": 5000}),
    );
    let (tx, rx) = mpsc::channel();
    let h = c
        .warm_async(2, Box::new(move |r| tx.send((r, Instant::now())).unwrap()))
        .expect("submit");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.try_recv().is_err(), "still connecting");
    let t0 = Instant::now();
    h.cancel();
    let (r, done_at) = rx.recv_timeout(Duration::from_secs(5)).expect("done ran");
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(done_at - t0 < Duration::from_secs(1), "{:?}", done_at - t0);
}

#[test]
fn cancel_ends_an_async_warm_up_waiting_for_its_answers() {
    // Connected, waiting for the answers to its GET /models: a cancel shuts
    // its sockets down and it ends CANCELLED, not OK.
    let s = TestServer::plain();
    for _ in 0..2 {
        s.push_fault(llmpool_testserver::Fault::DelayBeforeHeaders(
            Duration::from_secs(5),
        ));
    }
    let c = client(&s, json!({"max_retries": 0}));
    let (tx, rx) = mpsc::channel();
    let h = c
        .warm_async(2, Box::new(move |r| tx.send((r, Instant::now())).unwrap()))
        .expect("submit");
    let until = Instant::now() + Duration::from_secs(5);
    while s.requests() < 2 {
        assert!(Instant::now() < until, "the warm-up never sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    h.cancel();
    let (r, done_at) = rx.recv_timeout(Duration::from_secs(10)).expect("done ran");
    assert_eq!(r.code, Code::Cancelled, "{}", r.error);
    assert!(done_at - t0 < Duration::from_secs(1), "{:?}", done_at - t0);
    eprintln!(
        "cancel of a warm-up waiting for answers: {:?}",
        done_at - t0
    );
}
