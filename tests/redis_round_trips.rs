//! Round trips to Redis per call, counted by a TCP proxy between the client
//! and a real `redis-server` on loopback (every burst the client sends is one
//! round trip: the client waits for each reply before it sends again). Not
//! timed. The figures are printed (`-- --nocapture`) and asserted, so a
//! change that adds a round trip to every call shows here. Skipped
//! (printed) only when `redis-server` is missing.
#![cfg(feature = "redis")]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use llmpool::Code;
use llmpool_testserver::TestServer;
use serde_json::json;

mod support;
use support::loopback::client;
use support::redis::RedisServer;

/// Forwards 127.0.0.1:<port> to `to`, counting the client's sends.
struct CountingProxy {
    port: u16,
    sends: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(to: u16) -> CountingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sends = Arc::new(AtomicU64::new(0));
        let count = sends.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let Ok(s) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let _ = (c.set_nodelay(true), s.set_nodelay(true));
                let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
                let count = count.clone();
                std::thread::spawn(move || pump(c, s, Some(&count)));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        CountingProxy { port, sends }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn take(&self) -> u64 {
        self.sends.swap(0, Ordering::SeqCst)
    }
}

/// Copies `from` to `to`; with `count`, counts each read that carries data.
/// A request is written whole before its reply is awaited, and replies only
/// come after it arrives, so on loopback a read is a round trip (a request
/// over the 64 KiB buffer would count more: the test's are far smaller).
fn pump(mut from: TcpStream, mut to: TcpStream, count: Option<&AtomicU64>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(c) = count {
                    c.fetch_add(1, Ordering::SeqCst);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

fn chat(i: usize) -> String {
    json!({"model": "gpt-4.1", "temperature": 0, "max_tokens": 50,
           "messages": [{"role": "user", "content": format!("question {i}")}]})
    .to_string()
}

#[test]
fn round_trips_per_call_with_budget_rate_limits_and_the_cache_in_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = CountingProxy::start(redis.port);
    let s = TestServer::plain();
    let opts = json!({"budget": {"limit_usd": 100.0, "period": "day"},
                      "rate_limits": {"rpm": 100000, "tpm": 100000000},
                      "cache": {"shared": true},
                      "redis": {"url": proxy.url(), "timeout_ms": 5000}});
    let (a, b) = (client(&s, opts.clone()), client(&s, opts));
    // Connects and loads the scripts.
    for c in [&a, &b] {
        assert_eq!(c.chat(&chat(0)).code, Code::Ok);
    }
    proxy.take();
    let n = 10;
    let per_call = |c: &llmpool::Client, hit: bool| {
        for i in 1..=n {
            let r = c.chat(&chat(i));
            assert_eq!(r.code, Code::Ok, "{}", r.error);
            assert_eq!(r.info_json()["cache_hit"], hit);
        }
        proxy.take() as f64 / n as f64
    };
    redis
        .command(&["CONFIG", "RESETSTAT"])
        .expect("CONFIG RESETSTAT");
    let miss = per_call(&a, false);
    // The deferred writes ran, one each per call, without an error.
    assert_eq!(
        calls(&redis, "eval"),
        (n as u64, 0),
        "the rate-limit SHIFTs"
    );
    assert_eq!(
        calls(&redis, "evalsha"),
        (2 * n as u64, 0),
        "the chain (GET, RESERVE, BOOK), SETTLE"
    );
    let own_hit = per_call(&a, true);
    let shared_hit = per_call(&b, true);
    println!(
        "Redis round trips per call (budget + rpm/tpm + shared cache, one server): {miss} for a cache miss, {shared_hit} for a hit in Redis, {own_hit} for a hit in the process's own cache"
    );
    // Miss: before the call one chain: cache GET, budget RESERVE and
    // rate-limit BOOK as the steps of one script (each running only when
    // the one before says to go on); after, one: the rate-limit SHIFT (the
    // booking corrected from the usage) and the cache SET ride with the
    // budget SETTLE. (Each was a round trip of its own at first: 6; then
    // 3 before and 1 after: 4.)
    assert_eq!(miss, 2.0);
    // A hit in Redis: the chain stops at its GET; in the process's own
    // cache: none.
    assert_eq!(shared_hit, 1.0);
    assert_eq!(own_hit, 0.0);

    // Without a budget the deferred SHIFT and SET go together at the end of
    // the call; a call without cost control (`request`) sends its SHIFT at
    // its end.
    let c = client(
        &s,
        json!({"rate_limits": {"rpm": 100000, "tpm": 100000000},
               "cache": {"shared": true},
               "redis": {"url": proxy.url(), "prefix": "nobudget:", "timeout_ms": 5000}}),
    );
    assert_eq!(c.chat(&chat(0)).code, Code::Ok);
    // The raw call's BOOK runs alone, not in a chain: its script loads now.
    let r = c.request("POST", "/chat/completions", Some(&chat(100)));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    proxy.take();
    redis
        .command(&["CONFIG", "RESETSTAT"])
        .expect("CONFIG RESETSTAT");
    let no_budget = per_call(&c, false);
    let raw = {
        for i in 1..=n {
            let r = c.request("POST", "/chat/completions", Some(&chat(100 + i)));
            assert_eq!(r.code, Code::Ok, "{}", r.error);
        }
        proxy.take() as f64 / n as f64
    };
    println!(
        "Redis round trips per call without a budget: {no_budget} for a cache miss; {raw} for a call without cost control"
    );
    // The chain of GET and BOOK, then SHIFT with SET; BOOK, then SHIFT.
    assert_eq!(no_budget, 2.0);
    assert_eq!(raw, 2.0);
    assert_eq!(
        calls(&redis, "eval"),
        (2 * n as u64, 0),
        "the rate-limit SHIFTs"
    );
}

/// The chain's steps run only when the one before says to go on: a hit in
/// the shared cache places no hold and books no rate-limit slot, and a
/// refused budget books no slot. The rate-limit bucket (`rpm: 60`, one
/// slot a second) shows it: a booking moves its time on by a second.
#[test]
fn a_hit_or_a_refused_budget_books_no_slot() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    let opts = |budget: f64| {
        json!({"budget": {"limit_usd": budget, "period": "day"},
               "rate_limits": {"rpm": 60},
               "cache": {"shared": true},
               "redis": {"url": redis.url(), "prefix": "chain:", "timeout_ms": 5000}})
    };
    let bucket = || redis.command(&["GET", "chain:{rl}:rpm:*"]);
    let (a, b) = (client(&s, opts(100.0)), client(&s, opts(100.0)));
    let r = a.chat(&chat(1));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let booked = bucket();
    assert!(
        booked.as_deref().is_some_and(|t| !t.is_empty()),
        "{booked:?}"
    );
    // `b` finds `a`'s answer in Redis: no slot, no hold, no SETTLE.
    redis.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let r = b.chat(&chat(1));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["cache_hit"], true);
    assert_eq!(bucket(), booked, "a hit booked a rate-limit slot");
    assert_eq!(calls(&redis, "evalsha"), (1, 0), "the chain only");
    assert_eq!(
        redis.command(&["ZCARD", "chain:{budget}:holds"]).as_deref(),
        Some(":0\r\n")
    );
    // A budget that refuses every call: refused unsent, and no slot.
    let poor = client(&s, opts(0.000_000_01));
    let r = poor.chat(&chat(2));
    assert_eq!(r.code, Code::BudgetExceeded, "{}", r.error);
    assert_eq!(
        bucket(),
        booked,
        "a refused budget booked a rate-limit slot"
    );
    assert_eq!(s.requests(), 1, "only `a`'s call reached the server");
}

/// A step that raises an error (here the rate-limit bucket is a key of
/// the wrong type) ends the chain with the replies before it, whose
/// writes stand: the budget's hold was placed once, in the chain, and is
/// settled once; the gate books alone, fails the same way and falls back
/// to local buckets; the call goes through.
#[test]
fn a_failing_step_keeps_what_ran_before_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    redis
        .command(&["HSET", "broken:{rl}:rpm:*", "not", "a bucket"])
        .unwrap();
    let c = client(
        &s,
        json!({"budget": {"limit_usd": 100.0, "period": "day"},
               "rate_limits": {"rpm": 100000},
               "redis": {"url": redis.url(), "prefix": "broken:", "timeout_ms": 5000}}),
    );
    // The first call loads the scripts.
    assert_eq!(c.chat(&chat(0)).code, Code::Ok);
    redis.command(&["CONFIG", "RESETSTAT"]).unwrap();
    for i in 1..=3 {
        let r = c.chat(&chat(i));
        assert_eq!(r.code, Code::Ok, "{}", r.error);
    }
    // Per call: the chain (it succeeds), the gate's own BOOK (it fails),
    // SETTLE. A chain failing whole would fail too.
    assert_eq!(calls(&redis, "evalsha"), (9, 3));
    let m = c.metrics();
    assert_eq!(m["rate_limits"]["redis_fallbacks"], 4, "{m}");
    assert_eq!(m["cost"]["budget"]["in_flight_calls"], 0, "{m}");
    let spent = m["cost"]["budget"]["spent_usd"].as_f64().unwrap();
    let per_call = m["cost"]["total_cost_usd"].as_f64().unwrap();
    assert!(spent > 0.0 && (spent - per_call).abs() < 1e-9, "{m}");
    assert_eq!(
        redis
            .command(&["ZCARD", "broken:{budget}:holds"])
            .as_deref(),
        Some(":0\r\n")
    );
}

/// `cmdstat_<name>`'s (calls, failed_calls) from `INFO commandstats`.
fn calls(redis: &RedisServer, name: &str) -> (u64, u64) {
    let info = redis
        .command(&["INFO", "commandstats"])
        .expect("INFO commandstats");
    let Some(line) = info
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:")))
    else {
        return (0, 0);
    };
    let field = |k: &str| {
        line.split(',')
            .find_map(|f| f.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("calls"), field("failed_calls"))
}
