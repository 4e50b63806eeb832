//! Budgets through a primary that Redis Sentinel names (1 primary, 1
//! replica, 3 sentinels, all on 127.0.0.1, stopped by PID): the primary
//! SIGKILLed mid-run, calls going on after the failover, without and with
//! `wait_replicas`. Skipped (printed) only when `redis-server` or
//! `redis-cli` is missing.
#![cfg(feature = "redis")]

use std::time::Duration;

use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::options;
use support::redis_ha::{calls_across, wait_for, Sentinels, MASTER};

#[test]
fn sentinel_names_the_primary_and_calls_follow_a_failover() {
    let Some(mut set) = Sentinels::start() else {
        return;
    };
    let s = TestServer::plain();
    let urls = set.urls();
    let opts = |prefix: &str, extra: Value| {
        let mut redis = json!({"sentinel": {"master": MASTER, "nodes": urls},
                               "prefix": prefix, "timeout_ms": 2000});
        for (k, v) in extra.as_object().unwrap() {
            redis[k] = v.clone();
        }
        options(
            &s,
            json!({"budget": {"limit_usd": 1000.0, "period": "day"}, "max_retries": 0,
                   "redis": redis}),
        )
    };

    // 1. Without wait_replicas: the calls go on once the replica is
    // promoted; what spend was lost is measured.
    let first = set.primary().expect("a primary");
    let out = calls_across(&opts("s1:", json!({})), || set.data[first].kill());
    println!(
        "sentinel, primary SIGKILLed, no wait_replicas: calls resumed after {:.2} s; {} answered, {} refused; spend lost {:.6} USD of {:.6}",
        out.resumed_after.as_secs_f64(),
        out.ok,
        out.refused,
        out.lost_usd(),
        out.client_usd
    );
    let second = set.primary().expect("a primary");
    assert_ne!(second, first, "no failover");
    // Back: the sentinels make it a replica of the new primary.
    set.data[first].start();
    wait_for(
        "the old primary back as a replica in sync",
        Duration::from_secs(60),
        || {
            set.data[first]
                .info("replication", "master_link_status")
                .is_some_and(|s| s == "up")
        },
    );

    // 2. With wait_replicas 1: nothing committed is lost. The promoted
    // primary has no replica until the killed node is back, so commits
    // wait for that (refused meanwhile: on_error closed).
    let durable = json!({"wait_replicas": 1, "wait_timeout_ms": 500});
    let out = calls_across(&opts("s2:", durable), || {
        set.data[second].kill();
        wait_for("a second failover", Duration::from_secs(60), || {
            set.primary() == Some(first)
        });
        set.data[second].start();
    });
    println!(
        "sentinel, primary SIGKILLed, wait_replicas 1: calls resumed after {:.2} s (failover and the killed node back as a replica); {} answered, {} refused; spend lost {:.6} USD of {:.6} (negative: counted twice)",
        out.resumed_after.as_secs_f64(),
        out.ok,
        out.refused,
        out.lost_usd(),
        out.client_usd
    );
    assert!(
        out.lost_usd() < 1e-9,
        "committed spend lost with wait_replicas: {out:?}"
    );
}
