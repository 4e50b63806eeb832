//! Budgets shared through a real `redis-server`: many processes, one limit;
//! Redis down under `on_error` "closed" and "open"; a SIGKILLed process's
//! hold. Skipped (printed) only when `redis-server` is missing.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use llmpool::{Client, Code};
use llmpool_testserver::{Fault, TestServer};
use serde_json::{json, Value};

mod support;
use support::loopback::options;
use support::redis::RedisServer;
use support::spend_child::{self, chat};

/// One worker process (see `support::spend_child`).
#[test]
#[ignore = "the child process of the multi-process budget tests"]
fn spend_child() {
    spend_child::child_main();
}

const PASSWORD: &str = "s3cret-redis-pw";

/// Options for a budget in `r`; Redis may take 5 s (a loaded test machine)
/// before it counts as down.
fn opts(s: &TestServer, r: &RedisServer, limit: f64, on_error: &str, prefix: &str) -> String {
    opts_timeout(s, r, limit, on_error, prefix, 5000)
}

/// Options for the tests that take Redis away: it counts as down after
/// `timeout_ms`.
fn opts_timeout(
    s: &TestServer,
    r: &RedisServer,
    limit: f64,
    on_error: &str,
    prefix: &str,
    timeout_ms: u64,
) -> String {
    options(
        s,
        json!({
            "budget": {"limit_usd": limit, "period": "day"},
            "redis": {"url": r.url(), "prefix": prefix, "timeout_ms": timeout_ms, "on_error": on_error},
        }),
    )
}

fn budget(c: &Client) -> Value {
    c.metrics()["cost"]["budget"].clone()
}

fn no_password(what: &str) {
    assert!(
        !what.contains(PASSWORD),
        "the Redis password leaked: {what}"
    );
}

#[test]
fn eight_processes_share_one_budget_in_redis() {
    let Some(r) = RedisServer::start_with_password(Some(PASSWORD)) else {
        return;
    };
    let s = TestServer::plain();
    let all = spend_child::run(8, &opts(&s, &r, 100.0, "closed", "sum:"), 50, 50);
    assert_eq!((all.ok, all.refused, all.warnings), (400, 0, 0));
    let c = Client::from_json(Some(&opts(&s, &r, 100.0, "closed", "sum:"))).unwrap();
    let b = budget(&c);
    let spent = b["spent_usd"].as_f64().unwrap();
    eprintln!(
        "8 x 50 calls through Redis: Redis {spent:.6} USD, calls {:.6} USD",
        all.cost
    );
    assert!((spent - all.cost).abs() < 1e-9, "{spent} vs {}", all.cost);
    assert_eq!(b["in_flight_calls"], json!(0));
    assert!(b["store"].as_str().unwrap().starts_with("redis "), "{b}");
    no_password(&c.metrics().to_string());

    let limit = 0.01;
    let t = spend_child::run_until_reached(8, &opts(&s, &r, limit, "closed", "limit:"), 1000, 100);
    let c = Client::from_json(Some(&opts(&s, &r, limit, "closed", "limit:"))).unwrap();
    let b = budget(&c);
    eprintln!(
        "8 processes calling until {limit} USD through Redis: {} ok, {} refused, spent {:.6} USD",
        t.ok, t.refused, t.cost
    );
    assert!(t.ok > 0 && t.refused > 0, "{t:?}");
    assert!(t.cost <= limit + 1e-12, "spent {} of {limit}", t.cost);
    assert!((b["spent_usd"].as_f64().unwrap() - t.cost).abs() < 1e-9);
    let worst = 100.0 * 8.0 / 1e6 + 64.0 * 2.0 / 1e6;
    assert!(b["remaining_usd"].as_f64().unwrap() < worst, "{b}");
}

#[test]
fn redis_down_closed_refuses_unsent_and_keeps_the_spend_of_answered_calls() {
    let Some(mut r) = RedisServer::start_with_password(Some(PASSWORD)) else {
        return;
    };
    let s = TestServer::plain();
    let c = Client::from_json(Some(&opts_timeout(&s, &r, 1.0, "closed", "closed:", 1000))).unwrap();
    assert_eq!(c.chat(&chat(50)).code, Code::Ok);

    // Down: nothing is sent, and the message says why.
    r.stop();
    let before = s.requests();
    let resp = c.chat(&chat(50));
    assert_eq!(resp.code, Code::BudgetExceeded);
    assert!(resp.error.contains("unreachable"), "{}", resp.error);
    assert!(resp.error.contains("not sent"), "{}", resp.error);
    no_password(&resp.error);
    assert_eq!(s.requests(), before, "a refused call is never sent");
    r.restart();
    // Back: after the store's short fast-fail window it is used again.
    std::thread::sleep(Duration::from_millis(600));

    // Unreachable while a call is in flight (paused, so the data stays):
    // the answered call keeps its code, its spend lands once Redis answers.
    let first = budget(&c)["spent_usd"].as_f64().unwrap();
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_millis(1500)));
    let call = std::thread::scope(|scope| {
        let h = scope.spawn(|| c.chat(&chat(50)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.command(&["HLEN", "closed:{budget}:hold_usd"]).as_deref() != Some(":1\r\n") {
            assert!(Instant::now() < deadline, "the call never reserved");
            std::thread::sleep(Duration::from_millis(10));
        }
        r.command(&["CLIENT", "PAUSE", "3000", "ALL"])
            .expect("pause");
        h.join().unwrap()
    });
    assert_eq!(call.code, Code::Ok, "{}", call.error);
    let warning = call.info_json()["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(warning.contains("kept"), "{}", call.info_json());
    no_password(&warning);
    no_password(&call.info_json().to_string());
    std::thread::sleep(Duration::from_millis(3000));
    let cost = call.info_json()["cost_usd"].as_f64().unwrap();
    let after = c.chat(&chat(50));
    assert_eq!(after.code, Code::Ok, "{}", after.error);
    let total = first + cost + after.info_json()["cost_usd"].as_f64().unwrap();
    let fresh =
        Client::from_json(Some(&opts_timeout(&s, &r, 1.0, "closed", "closed:", 1000))).unwrap();
    let spent = budget(&fresh)["spent_usd"].as_f64().unwrap();
    assert!(
        (spent - total).abs() < 1e-12,
        "Redis holds {spent}, calls cost {total}"
    );
    assert_eq!(budget(&fresh)["in_flight_calls"], json!(0));
}

#[test]
fn redis_down_open_goes_on_locally_and_reconciles() {
    let Some(r) = RedisServer::start_with_password(Some(PASSWORD)) else {
        return;
    };
    let s = TestServer::plain();
    let c = Client::from_json(Some(&opts_timeout(&s, &r, 1.0, "open", "open:", 1000))).unwrap();
    let mut total = 0.0;
    let mut cost = |resp: &llmpool::Response| {
        assert_eq!(resp.code, Code::Ok, "{}", resp.error);
        total += resp.info_json()["cost_usd"].as_f64().unwrap();
    };
    cost(&c.chat(&chat(50)));
    r.command(&["CLIENT", "PAUSE", "4000", "ALL"])
        .expect("pause");
    let started = Instant::now();
    for _ in 0..3 {
        cost(&c.chat(&chat(50)));
    }
    let m = budget(&c);
    assert!(m["ledger_error"].is_string(), "{m}");
    std::thread::sleep(Duration::from_millis(4000).saturating_sub(started.elapsed()));
    std::thread::sleep(Duration::from_millis(700)); // past the fast-fail window
    cost(&c.chat(&chat(50)));
    let fresh = Client::from_json(Some(&opts_timeout(&s, &r, 1.0, "open", "open:", 1000))).unwrap();
    let spent = budget(&fresh)["spent_usd"].as_f64().unwrap();
    assert!(
        (spent - total).abs() < 1e-12,
        "Redis holds {spent}, calls cost {total}"
    );

    // Still a limit while down: the last figures plus local spend.
    let tight = options(
        &s,
        json!({"budget": {"limit_usd": spent + 0.0009, "period": "day"},
            "redis": {"url": r.url(), "prefix": "open:", "timeout_ms": 1000, "on_error": "open"}}),
    );
    let c = Client::from_json(Some(&tight)).unwrap();
    assert_eq!(c.chat(&chat(50)).code, Code::Ok);
    r.command(&["CLIENT", "PAUSE", "3000", "ALL"])
        .expect("pause");
    let refused = (0..5)
        .map(|_| c.chat(&chat(50)).code)
        .filter(|code| *code == Code::BudgetExceeded)
        .count();
    assert!(refused > 0, "the local check still holds the limit");
}

#[test]
fn a_killed_process_does_not_hold_a_redis_budget() {
    let Some(r) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    let o = opts(&s, &r, 1.0, "closed", "kill:");
    let c = Client::from_json(Some(&o)).unwrap();
    s.push_fault(Fault::DelayBeforeHeaders(Duration::from_secs(8)));
    let mut child = spend_child::spawn(&o, 1, 100_000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while budget(&c)["in_flight_calls"] != json!(1) {
        assert!(Instant::now() < deadline, "the child never reserved");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.chat(&chat(100_000)).code, Code::BudgetExceeded);
    child.kill().unwrap();
    child.wait().unwrap();
    let resp = c.chat(&chat(100_000));
    assert_eq!(resp.code, Code::Ok, "{}", resp.error);
    assert_eq!(budget(&c)["in_flight_calls"], json!(0));
}
