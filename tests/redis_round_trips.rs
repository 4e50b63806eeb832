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
        (3 * n as u64, 0),
        "RESERVE, BOOK, SETTLE"
    );
    let own_hit = per_call(&a, true);
    let shared_hit = per_call(&b, true);
    println!(
        "Redis round trips per call (budget + rpm/tpm + shared cache, one server): {miss} for a cache miss, {shared_hit} for a hit in Redis, {own_hit} for a hit in the process's own cache"
    );
    // Miss: cache GET, budget RESERVE, rate-limit BOOK before (each needs
    // the previous one's answer); after, one: the rate-limit SHIFT (the
    // booking corrected from the usage) and the cache SET ride with the
    // budget SETTLE. (Each was a round trip of its own before: 6.)
    assert_eq!(miss, 4.0);
    // A hit in Redis: its GET only; in the process's own cache: none.
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
    // GET and BOOK, then SHIFT with SET; BOOK, then SHIFT.
    assert_eq!(no_budget, 3.0);
    assert_eq!(raw, 2.0);
    assert_eq!(
        calls(&redis, "eval"),
        (2 * n as u64, 0),
        "the rate-limit SHIFTs"
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
