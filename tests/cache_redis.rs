//! `cache.shared`: answers kept in a real `redis-server` (started here on
//! 127.0.0.1, persistence off, stopped by PID) serve every client with the
//! same Redis and prefix; TTL and the per-entry cap hold; Redis going away
//! falls back to the local cache.
#![cfg(feature = "redis")]

use std::time::Duration;

use llmpool::{Client, Code};
use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::client;
use support::redis::RedisServer;

const CHAT: &str =
    r#"{"model":"gpt-4.1","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;

fn shared(s: &TestServer, redis: &RedisServer, cache: Value) -> Client {
    let mut c = json!({"shared": true});
    for (k, v) in cache.as_object().unwrap() {
        c[k] = v.clone();
    }
    client(
        s,
        json!({"cache": c, "redis": {"url": redis.url(), "timeout_ms": 2000}}),
    )
}

#[test]
fn one_clients_answer_serves_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    let a = shared(&s, &redis, json!({}));
    let b = shared(&s, &redis, json!({}));
    let r = a.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["cache_hit"], false);
    let hit = b.chat(CHAT);
    assert_eq!(hit.code, Code::Ok, "{}", hit.error);
    assert_eq!(hit.info_json()["cache_hit"], true);
    assert_eq!(hit.text, r.text);
    assert_eq!(hit.body, r.body);
    assert_eq!(s.requests(), 1, "the second client went to the gateway");
    assert_eq!(b.metrics()["cost"]["cache"]["shared"]["hits"], 1);
    // Stored under the prefix, with the TTL.
    let keys = redis.command(&["KEYS", "llmpool:cache:*"]).unwrap();
    assert!(keys.starts_with("*1\r\n"), "{keys:?}");
    let key = keys.lines().nth(2).unwrap().to_string();
    let ttl = redis.command(&["PTTL", &key]).unwrap();
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap();
    assert!(ttl > 290_000 && ttl <= 300_000, "{ttl}");
    // A different request is a miss.
    let other = CHAT.replace("hi", "hello");
    assert_eq!(b.chat(&other).info_json()["cache_hit"], false);
    assert_eq!(s.requests(), 2);
}

#[test]
fn ttl_and_the_entry_cap_hold() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    let a = shared(&s, &redis, json!({"ttl_ms": 300}));
    let b = shared(&s, &redis, json!({"ttl_ms": 300}));
    assert_eq!(a.chat(CHAT).code, Code::Ok);
    assert_eq!(b.chat(CHAT).info_json()["cache_hit"], true);
    std::thread::sleep(Duration::from_millis(400));
    let c = shared(&s, &redis, json!({"ttl_ms": 300}));
    assert_eq!(c.chat(CHAT).info_json()["cache_hit"], false);
    assert_eq!(s.requests(), 2);

    // An answer over max_entry_bytes is not stored in Redis.
    let small_a = shared(&s, &redis, json!({"max_entry_bytes": 64}));
    let small_b = shared(&s, &redis, json!({"max_entry_bytes": 64}));
    let req = CHAT.replace("hi", "too big to share");
    assert_eq!(small_a.chat(&req).code, Code::Ok);
    // ...but still locally.
    assert_eq!(small_a.chat(&req).info_json()["cache_hit"], true);
    assert_eq!(small_b.chat(&req).info_json()["cache_hit"], false);
    assert_eq!(small_a.metrics()["cost"]["cache"]["shared"]["too_big"], 1);
}

#[test]
fn redis_down_falls_back_to_the_local_cache() {
    // The cache falls back to local under either on_error.
    for on_error in ["closed", "open"] {
        down_and_back(on_error);
    }
}

fn down_and_back(on_error: &str) {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();
    let shared = |s: &TestServer, redis: &RedisServer, cache: Value| {
        let mut c = json!({"shared": true});
        for (k, v) in cache.as_object().unwrap() {
            c[k] = v.clone();
        }
        client(
            s,
            json!({"cache": c, "redis": {"url": redis.url(), "timeout_ms": 2000, "on_error": on_error}}),
        )
    };
    let a = shared(&s, &redis, json!({}));
    assert_eq!(a.chat(CHAT).code, Code::Ok);
    redis.stop();
    // A's own answer still comes from its local cache; no error.
    let r = a.chat(CHAT);
    assert_eq!(
        (r.code, &r.info_json()["cache_hit"]),
        (Code::Ok, &json!(true))
    );
    // A new client misses (Redis is down) but its call works.
    let b = shared(&s, &redis, json!({}));
    let r = b.chat(CHAT);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.info_json()["cache_hit"], false);
    assert!(
        b.metrics()["cost"]["cache"]["shared"]["errors"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(s.requests(), 2);
    // Back up (empty): B's next answer is stored and serves a third client.
    redis.restart();
    std::thread::sleep(llmpool::store::redis::RETRY_AFTER_DOWN + Duration::from_millis(50));
    let other = CHAT.replace("hi", "after restart");
    assert_eq!(b.chat(&other).code, Code::Ok);
    let c = shared(&s, &redis, json!({}));
    assert_eq!(c.chat(&other).info_json()["cache_hit"], true);
    assert_eq!(s.requests(), 3);
}

#[test]
fn shared_needs_the_redis_option() {
    let e = Client::from_json(Some(r#"{"cache": {"shared": true}}"#)).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.message.contains("cache.shared"), "{}", e.message);
    assert!(e.message.contains("redis"), "{}", e.message);
}
