//! Rate limits shared through a real `redis-server` (started here on
//! 127.0.0.1, persistence off, stopped by PID): 4 processes sharing one
//! `rpm`, the gateway's "0 remaining" seen by another client, and Redis
//! going away (local fallback) and coming back.
#![cfg(feature = "redis")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llmpool::Code;
use llmpool_testserver::{Fault, TestServer};
use serde_json::json;

mod support;
use support::loopback::{client, options_for};
use support::redis::RedisServer;

const CHAT: &str = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Run only as a child of `four_processes_share_one_rpm`: calls the
/// gateway from 3 threads until the given time, printing `CALL <unix ms>`
/// for each call answered.
#[test]
#[ignore = "a child process of four_processes_share_one_rpm"]
fn child_calls_until_the_end_time() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let (base, redis, end): (String, String, u64) = (
        var("LLMPOOL_RL_BASE_URL"),
        var("LLMPOOL_RL_REDIS_URL"),
        var("LLMPOOL_RL_END_MS").parse().unwrap(),
    );
    let opts = options_for(
        &base,
        json!({"rate_limits": {"rpm": 600}, "redis": {"url": redis, "timeout_ms": 5000}, "queue_timeout_ms": 5000}),
    );
    let c = llmpool::Client::from_json(Some(&opts)).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                while unix_ms() < end {
                    let r = c.chat(CHAT);
                    assert_eq!(r.code, Code::Ok, "{}", r.error);
                    lines.push(format!("CALL {}", unix_ms()));
                }
                lines
            })
        })
        .collect();
    let mut out = String::new();
    for t in threads {
        for l in t.join().unwrap() {
            out.push_str(&l);
            out.push('\n');
        }
    }
    assert_eq!(c.metrics()["rate_limits"]["redis_fallbacks"], 0);
    print!("{out}");
}

#[test]
fn four_processes_share_one_rpm() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    let end = unix_ms() + 11_000;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = Command::new(&exe);
            support::without_gateway_settings(&mut cmd)
                .args([
                    "--exact",
                    "child_calls_until_the_end_time",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("LLMPOOL_RL_BASE_URL", s.base_url())
                .env("LLMPOOL_RL_REDIS_URL", redis.url())
                .env("LLMPOOL_RL_END_MS", end.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut calls: Vec<u64> = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        calls.extend(
            text.lines()
                // The first line may follow libtest's "test ... " on the same line.
                .filter_map(|l| l.split("CALL ").nth(1))
                .map(|n| n.trim().parse::<u64>().unwrap()),
        );
    }
    calls.sort_unstable();
    assert!(!calls.is_empty());
    // 10 s from the first call (processes start at slightly different times).
    let first = calls[0];
    let in_10s = calls.iter().filter(|&&t| t < first + 10_000).count();
    let busiest_second = calls
        .iter()
        .map(|&t0| calls.iter().filter(|&&t| t >= t0 && t < t0 + 1000).count())
        .max()
        .unwrap();
    let span = (calls[calls.len() - 1] - first) as f64 / 1000.0;
    println!(
        "4 processes, rpm 600 through Redis: {in_10s} calls in the first 10 s ({:.1}/s), at most {busiest_second} in any 1 s, {} in all over {span:.2} s ({:.2}/s)",
        in_10s as f64 / 10.0,
        calls.len(),
        (calls.len() - 1) as f64 / span
    );
    assert!(
        in_10s <= 110,
        "{in_10s} calls in 10 s: more than 10/s + 10%"
    );
    assert!(
        in_10s >= 90,
        "{in_10s} calls in 10 s: the limit was not reached"
    );
    assert!(busiest_second <= 11, "{busiest_second} calls in one second");
    assert_eq!(s.requests(), calls.len());
}

#[test]
fn the_gateways_zero_remaining_is_shared_through_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    let a = client(
        &s,
        json!({"redis": {"url": redis.url(), "timeout_ms": 5000}}),
    );
    let b = client(
        &s,
        json!({"redis": {"url": redis.url(), "timeout_ms": 5000}}),
    );
    let other_prefix = client(
        &s,
        json!({"redis": {"url": redis.url(), "prefix": "other:", "timeout_ms": 5000}}),
    );
    s.push_fault(Fault::Headers(vec![
        ("x-ratelimit-remaining-requests".into(), "0".into()),
        ("x-ratelimit-reset-requests".into(), "600ms".into()),
    ]));
    assert_eq!(a.chat(CHAT).code, Code::Ok);
    // The block is in Redis, under the prefix, until the reset.
    let keys = redis
        .command(&["KEYS", "llmpool:{rl}:block:*"])
        .unwrap_or_default();
    assert!(
        keys.starts_with("*1\r\n") && keys.contains("llmpool:{rl}:block:req:gpt-4.1"),
        "{keys:?}"
    );
    let t = Instant::now();
    assert_eq!(other_prefix.chat(CHAT).code, Code::Ok);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let r = b.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn redis_down_falls_back_to_local_limits_then_back_to_redis() {
    // Rate limits fall back to local under either on_error.
    for on_error in ["closed", "open"] {
        down_and_back(on_error);
    }
}

fn down_and_back(on_error: &str) {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    // 1200 rpm: 50 ms apart.
    let c = client(
        &s,
        json!({"rate_limits": {"rpm": 1200},
               "redis": {"url": redis.url(), "timeout_ms": 2000, "on_error": on_error}}),
    );
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    assert!(redis
        .command(&["GET", "llmpool:{rl}:rpm:*"])
        .is_some_and(|r| r.starts_with("$1")));
    redis.stop();
    let t = Instant::now();
    for _ in 0..6 {
        let r = c.chat(CHAT);
        assert_eq!(r.code, Code::Ok, "{}", r.error);
    }
    // Still limited (locally): 6 calls, 2 at once then 50 ms apart.
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
    assert!(
        c.metrics()["rate_limits"]["redis_fallbacks"]
            .as_u64()
            .unwrap()
            >= 6
    );
    redis.restart();
    std::thread::sleep(llmpool::store::redis::RETRY_AFTER_DOWN + Duration::from_millis(50));
    assert_eq!(c.chat(CHAT).code, Code::Ok);
    // Booked in the restarted (empty) Redis again.
    assert!(
        redis
            .command(&["GET", "llmpool:{rl}:rpm:*"])
            .is_some_and(|r| r.starts_with("$1")),
        "no bucket in Redis after it came back"
    );
}
