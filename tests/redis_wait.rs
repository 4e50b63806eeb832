//! `wait_replicas` on a real `redis-server` (loopback, stopped by PID): a
//! commit no replica acknowledged follows `on_error`, and once a replica
//! attaches the kept batch lands exactly once although it was sent several
//! times (its batch number). Skipped (printed) only when `redis-server` is
//! missing.
#![cfg(feature = "redis")]

use std::time::Duration;

use llmpool::{Client, Code};
use llmpool_testserver::TestServer;
use serde_json::json;

mod support;
use support::loopback::options;
use support::redis::RedisServer;
use support::redis_ha::wait_for;
use support::spend_child::chat;

fn opts(s: &TestServer, r: &RedisServer, prefix: &str, on_error: &str) -> String {
    options(
        s,
        json!({"budget": {"limit_usd": 1.0, "period": "day"}, "max_retries": 0,
               "redis": {"url": r.url(), "prefix": prefix, "timeout_ms": 2000,
                         "on_error": on_error, "wait_replicas": 1, "wait_timeout_ms": 200}}),
    )
}

fn spent(s: &TestServer, r: &RedisServer, prefix: &str) -> f64 {
    // A reader needs no replicas: it only reads.
    let o = options(
        s,
        json!({"budget": {"limit_usd": 1.0, "period": "day"},
               "redis": {"url": r.url(), "prefix": prefix, "timeout_ms": 2000}}),
    );
    Client::from_json(Some(&o)).unwrap().metrics()["cost"]["budget"]["spent_usd"]
        .as_f64()
        .unwrap()
}

fn cost(r: &llmpool::Response) -> f64 {
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    r.info_json()["cost_usd"].as_f64().unwrap()
}

fn warning(r: &llmpool::Response) -> String {
    r.info_json()["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn without_the_replicas_a_commit_follows_on_error_and_lands_once_later() {
    let Some(primary) = RedisServer::start() else {
        return;
    };
    let Some(replica) = RedisServer::start() else {
        return;
    };
    let s = TestServer::plain();

    // "closed": the answered call keeps its code with a warning; the next
    // is refused unsent until a replica has the spend.
    let c = Client::from_json(Some(&opts(&s, &primary, "closed:", "closed"))).unwrap();
    let first = c.chat(&chat(50));
    let mut total = cost(&first);
    assert!(
        warning(&first).contains("replicas acknowledged"),
        "{}",
        first.info_json()
    );
    let sent = s.requests();
    let refused = c.chat(&chat(50));
    assert_eq!(refused.code, Code::BudgetExceeded, "{}", refused.error);
    assert!(refused.error.contains("not sent"), "{}", refused.error);
    assert_eq!(s.requests(), sent, "a refused call was sent");

    // "open": calls go on, checked locally.
    let open = Client::from_json(Some(&opts(&s, &primary, "open:", "open"))).unwrap();
    let mut open_total = 0.0;
    for _ in 0..3 {
        let r = open.chat(&chat(50));
        open_total += cost(&r);
        assert!(!warning(&r).is_empty(), "{}", r.info_json());
    }

    // A replica attaches: the kept batches land, each once, though sent
    // again by every call in between.
    replica
        .command(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()])
        .expect("REPLICAOF");
    wait_for("the replica in sync", Duration::from_secs(30), || {
        primary
            .command(&["INFO", "replication"])
            .is_some_and(|i| i.contains("connected_slaves:1"))
            && replica
                .command(&["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
    });
    let after = c.chat(&chat(50));
    total += cost(&after);
    assert_eq!(warning(&after), "", "{}", after.info_json());
    open_total += cost(&open.chat(&chat(50)));
    let in_redis = spent(&s, &primary, "closed:");
    println!("wait_replicas 1, no replica then one: calls cost {total:.6} USD, Redis holds {in_redis:.6}");
    assert!((in_redis - total).abs() < 1e-12, "{in_redis} vs {total}");
    let in_redis = spent(&s, &primary, "open:");
    assert!(
        (in_redis - open_total).abs() < 1e-12,
        "{in_redis} vs {open_total}"
    );
    // And the replica has it too.
    let settled = replica
        .command(&["HLEN", "closed:{budget}:settled"])
        .unwrap_or_default();
    assert_eq!(settled, ":1\r\n", "one book");
}
