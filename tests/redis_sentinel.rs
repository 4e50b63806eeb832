//! Budgets through a primary that Redis Sentinel names (1 primary, 1
//! replica, 3 sentinels, all on 127.0.0.1, stopped by PID): the primary
//! SIGKILLed mid-run, calls going on after the failover; and cut off from
//! its replica first (replication lagging), without `wait_replicas` (spend
//! lost) and with it (none lost). Skipped (printed) only when `redis-server` or
//! `redis-cli` is missing.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::options;
use support::redis_ha::{calls_across, wait_for, Outcome, Sentinels, MASTER};

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
    // promoted; what spend was lost is measured (on loopback, replication
    // keeps up: usually none).
    let first = set.primary().expect("a primary");
    let out = calls_across(&opts("s1:", json!({})), |_| {
        set.data[first].kill();
        Instant::now()
    });
    report("primary SIGKILLed, no wait_replicas", &out);
    let second = set.primary().expect("a primary");
    assert_ne!(second, first, "no failover");
    back_as_replica(&mut set, first);

    // 2. Replication lagging: the primary cut off from its replica while 20
    // more calls commit, then SIGKILLed. Without wait_replicas that spend
    // is lost.
    let out = calls_across(&opts("s2:", json!({})), |answered| {
        set.data[second].cut_off(&set.data[first]);
        let before = answered();
        wait_for(
            "20 calls committed on the cut-off primary",
            Duration::from_secs(30),
            || answered() >= before + 20,
        );
        set.data[second].kill();
        let at = Instant::now();
        set.data[first].signal("CONT");
        at
    });
    report("replica cut off, primary SIGKILLed, no wait_replicas", &out);
    assert!(out.lost_usd() > 1e-9, "nothing lost? {out:?}");
    assert_eq!(set.primary(), Some(first), "no failover");
    back_as_replica(&mut set, second);

    // 3. The same with wait_replicas 1: nothing committed is lost (the
    // commits the replica did not acknowledge are kept and sent again to
    // the new primary). It has no replica until the killed node is back,
    // so until then paid calls are refused (on_error closed).
    let durable = json!({"wait_replicas": 1, "wait_timeout_ms": 200});
    let out = calls_across(&opts("s3:", durable), |_| {
        set.data[first].cut_off(&set.data[second]);
        std::thread::sleep(Duration::from_millis(300));
        set.data[first].kill();
        let at = Instant::now();
        set.data[second].signal("CONT");
        wait_for("a failover", Duration::from_secs(60), || {
            set.primary() == Some(second)
        });
        set.data[first].start();
        at
    });
    report(
        "replica cut off, primary SIGKILLed, wait_replicas 1 (resumed once the killed node is back as a replica)",
        &out,
    );
    assert!(
        out.lost_usd() < 1e-9,
        "committed spend lost with wait_replicas: {out:?}"
    );
}

/// Restarts data node `i`; the sentinels make it a replica of the primary.
fn back_as_replica(set: &mut Sentinels, i: usize) {
    set.data[i].start();
    wait_for(
        "the old primary back as a replica in sync",
        Duration::from_secs(60),
        || {
            set.data[i]
                .info("replication", "master_link_status")
                .is_some_and(|s| s == "up")
        },
    );
}

fn report(what: &str, out: &Outcome) {
    println!(
        "sentinel, {what}: calls resumed {:.2} s after it; {} answered, {} refused; spend lost {:.6} USD of {:.6} ({:.0} calls' worth; negative: counted twice)",
        out.resumed_after.as_secs_f64(),
        out.ok,
        out.refused,
        out.lost_usd(),
        out.client_usd,
        out.lost_usd() / (out.client_usd / out.ok as f64)
    );
}
