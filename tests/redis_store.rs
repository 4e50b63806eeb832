//! `RedisStore` against a real `redis-server` (started here on 127.0.0.1,
//! persistence off, stopped by PID): scripts under the prefix, pooled
//! connections from many threads, Redis going away and coming back, and the
//! password never showing.
#![cfg(feature = "redis")]

mod support;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use llmpool::store::redis::{RedisConfig, RedisStore, RETRY_AFTER_DOWN};
use serde_json::json;
use support::redis::RedisServer;

static INCR_BY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1]) + tonumber(ARGV[2])")
});

fn store(url: &str, extra: serde_json::Value) -> RedisStore {
    let mut v = json!({"url": url, "prefix": "t1:", "timeout_ms": 2000});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    RedisStore::new(&RedisConfig::parse("redis", &v).unwrap()).unwrap()
}

#[test]
fn scripts_run_under_the_prefix_from_many_threads() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = store(&server.url(), json!({}));
    assert_eq!(s.prefix(), "t1:");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let _: i64 = s.eval(&INCR_BY, &["count"], (2, 0)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let v: i64 = s.eval(&INCR_BY, &["count"], (0, 1)).unwrap();
    assert_eq!(v, 8 * 50 * 2 + 1);
    // The key really is under the prefix, as another client sees it.
    assert_eq!(
        server.command(&["GET", "t1:count"]).as_deref(),
        Some("$3\r\n800\r\n")
    );
    let e = s
        .with_conn(|c| redis::cmd("NOSUCHCOMMAND").query::<String>(c))
        .unwrap_err();
    assert!(!e.unreachable(), "{e}");
    // A server error leaves the connection usable.
    s.ping().unwrap();
}

#[test]
fn reconnects_after_redis_comes_back_and_never_shows_the_password() {
    let Some(mut server) = RedisServer::start_with_password(Some("pw-very-secret")) else {
        return;
    };
    let s = store(&server.url(), json!({}));
    s.ping().unwrap();
    server.stop();
    let t = Instant::now();
    let e = s.ping().unwrap_err();
    assert!(e.unreachable(), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!e.to_string().contains("pw-very-secret"), "{e}");
    assert!(e.to_string().contains(":***@127.0.0.1"), "{e}");
    server.restart();
    std::thread::sleep(RETRY_AFTER_DOWN + Duration::from_millis(50));
    s.ping().expect("reconnects once Redis is back");
    let _: i64 = s.eval(&INCR_BY, &["n"], (1, 0)).unwrap();

    // A wrong password is an error that does not quote either password.
    let wrong = server.url().replace("pw-very-secret", "pw-wrong-guess");
    let e = store(&wrong, json!({})).ping().unwrap_err();
    let shown = format!("{e} {e:?} {:?}", store(&wrong, json!({})));
    assert!(
        !shown.contains("pw-wrong-guess") && !shown.contains("pw-very-secret"),
        "{shown}"
    );
}

#[test]
fn a_redis_that_never_answers_times_out() {
    // Accepts connections but never replies: the timeout must bound the wait.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}/0", l.local_addr().unwrap().port());
    let s = store(&url, json!({"timeout_ms": 200}));
    let t = Instant::now();
    let e = s.ping().unwrap_err();
    assert!(e.unreachable(), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(l);
}

#[test]
fn rediss_works_with_a_private_ca_and_refuses_an_unknown_one() {
    let Some(tls) = support::redis::TlsRedisServer::start() else {
        return;
    };
    let ca = tls.ca_file.to_str().unwrap();
    let s = store(&tls.url(), json!({"ca_file": ca, "timeout_ms": 2000}));
    s.ping().expect("PING over rediss:// with the test CA");
    let v: i64 = s.eval(&INCR_BY, &["tls"], (5, 0)).unwrap();
    assert_eq!(v, 5);
    // The bundled roots do not know the test CA: the handshake fails.
    let e = store(&tls.url(), json!({"timeout_ms": 2000}))
        .ping()
        .unwrap_err();
    assert!(e.unreachable(), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // ca_file only makes sense with TLS, and must be readable.
    let bad = RedisConfig::parse(
        "redis",
        &json!({"url": "redis://127.0.0.1:1", "ca_file": ca}),
    );
    assert!(bad.unwrap_err().message.contains("redis.ca_file"));
    let cfg = RedisConfig::parse(
        "redis",
        &json!({"url": tls.url(), "ca_file": "/nonexistent.pem"}),
    );
    let e = RedisStore::new(&cfg.unwrap()).unwrap_err();
    assert!(
        e.message.contains("redis.ca_file") && e.message.contains("/nonexistent.pem"),
        "{}",
        e.message
    );
}
