//! Budgets, rate limits and the shared cache through a real Redis Cluster
//! (3 primaries, 3 replicas, `cluster-node-timeout` 1000, all on 127.0.0.1,
//! stopped by PID): the client pointed at one node that does not own the
//! budget's slot; a primary SIGKILLed mid-run; and cut off from its
//! replica first (replication lagging), without `wait_replicas` (spend
//! lost) and with it (none lost). One cluster serves every step, in order, to keep the
//! test's time and load modest. Skipped (printed) only when `redis-server`
//! or `redis-cli` is missing.
#![cfg(feature = "redis")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llmpool::{Client, Code};
use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::{options, options_for};
use support::redis_ha::{calls_across, wait_for, Cluster, Outcome};
use support::spend_child;

/// One worker process of the budget step (see `support::spend_child`).
#[test]
#[ignore = "the child process of the multi-process budget tests"]
fn spend_child() {
    spend_child::child_main();
}

/// The budget's slot: every budget key carries the `{budget}` hash tag.
const BUDGET_KEY: &str = "llmpool:{budget}:holds";

fn redis(nodes: &[String], prefix: &str, extra: Value) -> Value {
    let mut r = json!({"cluster": nodes, "prefix": prefix, "timeout_ms": 2000});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_cluster_shares_budgets_rate_limits_and_the_cache_and_survives_a_primary_dying() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let s = TestServer::plain();
    let owner = cluster
        .primary_for(BUDGET_KEY)
        .expect("the budget slot's primary");
    let elsewhere = cluster
        .primaries()
        .into_iter()
        .find(|&i| i != owner)
        .unwrap();
    let entry = vec![cluster.nodes[elsewhere].url()];

    // 1. Processes share one budget through a node that does not own its
    // slot: every call is counted, and the limit holds.
    let opts = |prefix: &str, limit: f64| {
        options(
            &s,
            json!({"budget": {"limit_usd": limit, "period": "day"},
                   "redis": redis(&entry, prefix, json!({}))}),
        )
    };
    let all = spend_child::run(8, &opts("sum:", 100.0), 25, 50);
    assert_eq!((all.ok, all.refused, all.warnings), (200, 0, 0), "{all:?}");
    let c = Client::from_json(Some(&opts("sum:", 100.0))).unwrap();
    let b = c.metrics()["cost"]["budget"].clone();
    let spent = b["spent_usd"].as_f64().unwrap();
    println!(
        "cluster, 8 x 25 calls through a non-owner node: Redis {spent:.6} USD, calls {:.6} USD",
        all.cost
    );
    assert!((spent - all.cost).abs() < 1e-9, "{spent} vs {}", all.cost);
    assert!(b["store"].as_str().unwrap().contains("cluster"), "{b}");
    let limit = 0.005;
    let t = spend_child::run_until_reached(8, &opts("limit:", limit), 500, 100);
    println!(
        "cluster, 8 processes calling until {limit} USD: {} ok, {} refused, spent {:.6} USD",
        t.ok, t.refused, t.cost
    );
    assert!(t.ok > 0 && t.refused > 0, "{t:?}");
    assert!(t.cost <= limit + 1e-12, "spent {} of {limit}", t.cost);

    // 2. The shared cache: entries spread over the slots, and one client's
    // answer serves another that entered through another node.
    let cache_client = |node: usize| {
        Client::from_json(Some(&options(
            &s,
            json!({"cache": {"shared": true},
                   "redis": redis(&[cluster.nodes[node].url()], "cache:", json!({}))}),
        )))
        .unwrap()
    };
    let (a, b) = (cache_client(elsewhere), cache_client(owner));
    let chat = |i: usize| {
        json!({"model": "gpt-4.1", "temperature": 0,
               "messages": [{"role": "user", "content": format!("question {i}")}]})
        .to_string()
    };
    for i in 0..12 {
        assert_eq!(a.chat(&chat(i)).code, Code::Ok);
    }
    let sent = s.requests();
    for i in 0..12 {
        let r = b.chat(&chat(i));
        assert_eq!(r.code, Code::Ok, "{}", r.error);
        assert_eq!(r.info_json()["cache_hit"], true);
    }
    assert_eq!(s.requests(), sent, "a cached answer went to the gateway");
    let holding = cluster
        .primaries()
        .into_iter()
        .filter(|&i| {
            cluster.nodes[i]
                .cli(&["--scan", "--pattern", "cache:cache:*"])
                .is_some_and(|k| !k.is_empty())
        })
        .count();
    assert!(holding >= 2, "12 cache entries on {holding} primary");

    // 3. Rate limits: 4 processes sharing rpm 600, each entering through
    // another node, keep to 10 calls a second.
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    four_processes_share_one_rpm(&s, &nodes);

    // 4. The budget's slot moved to another primary mid-run: ASK redirects
    // and TRYAGAIN answers on the way; calls go on, nothing is lost.
    let owner = cluster.primary_for(BUDGET_KEY).unwrap();
    let to = cluster
        .primaries()
        .into_iter()
        .find(|&i| i != owner)
        .unwrap();
    let entry = vec![cluster.nodes[to].url()];
    let migrating = options(
        &s,
        json!({"budget": {"limit_usd": 1000.0, "period": "day"}, "max_retries": 0,
               "redis": redis(&entry, "moved:", json!({}))}),
    );
    let out = calls_across(&migrating, |_| {
        cluster.move_slot(BUDGET_KEY, to);
        Instant::now()
    });
    report(
        "the budget's slot migrated to another primary (IMPORTING, MIGRATE, SETSLOT NODE)",
        &out,
    );
    assert_eq!(cluster.primary_for(BUDGET_KEY), Some(to));
    assert!(
        out.lost_usd().abs() < 1e-9,
        "spend lost or counted twice across a slot migration: {out:?}"
    );

    // 5. A primary SIGKILLed mid-run, without wait_replicas: calls go on
    // once its replica is promoted; measure what spend was lost (on
    // loopback, replication keeps up: usually none).
    let victim = cluster.primary_for(BUDGET_KEY).unwrap();
    let replica = cluster.replica_of(victim).expect("the victim's replica");
    let entry = vec![cluster.nodes[cluster
        .primaries()
        .into_iter()
        .find(|&i| i != victim)
        .unwrap()]
    .url()];
    let opts = |prefix: &str, extra: Value| {
        options(
            &s,
            json!({"budget": {"limit_usd": 1000.0, "period": "day"}, "max_retries": 0,
                   "redis": redis(&entry, prefix, extra)}),
        )
    };
    let out = calls_across(&opts("fo1:", json!({})), |_| {
        cluster.nodes[victim].kill();
        Instant::now()
    });
    report("primary SIGKILLed, no wait_replicas", &out);
    assert!(cluster.primaries().contains(&replica), "no promotion");
    // Back as a replica of the promoted node, for the next step.
    cluster.nodes[victim].start();
    cluster.wait_healthy(Duration::from_secs(60));

    // 6. The same with replication lagging: the primary cut off from its
    // replica while 20 more calls commit, then SIGKILLed. Without
    // wait_replicas that spend is lost.
    let (victim, replica) = shard(&cluster);
    let out = calls_across(&opts("fo2:", json!({})), |answered| {
        cluster.nodes[victim].cut_off(&cluster.nodes[replica]);
        let before = answered();
        wait_for(
            "20 calls committed on the cut-off primary",
            Duration::from_secs(30),
            || answered() >= before + 20,
        );
        cluster.nodes[victim].kill();
        let at = Instant::now();
        cluster.nodes[replica].signal("CONT");
        at
    });
    report("replica cut off, primary SIGKILLed, no wait_replicas", &out);
    assert!(out.lost_usd() > 1e-9, "nothing lost? {out:?}");
    cluster.nodes[victim].start();
    cluster.wait_healthy(Duration::from_secs(60));

    // 7. The same with wait_replicas 1: nothing committed is lost (the
    // commits the replica did not acknowledge are kept and sent again to
    // the promoted primary). It has no replica until the killed node is
    // back, and until then commits cannot be made durable: paid calls are
    // refused (on_error closed).
    let (victim, replica) = shard(&cluster);
    let durable = json!({"wait_replicas": 1, "wait_timeout_ms": 200});
    let out = calls_across(&opts("fo3:", durable), |_| {
        cluster.nodes[victim].cut_off(&cluster.nodes[replica]);
        std::thread::sleep(Duration::from_millis(300));
        cluster.nodes[victim].kill();
        let at = Instant::now();
        cluster.nodes[replica].signal("CONT");
        wait_for("a promotion", Duration::from_secs(60), || {
            cluster.primary_for(BUDGET_KEY) == Some(replica)
        });
        cluster.nodes[victim].start();
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

/// The budget's primary now, and its replica.
fn shard(cluster: &Cluster) -> (usize, usize) {
    let p = cluster
        .primary_for(BUDGET_KEY)
        .expect("the budget's primary");
    (p, cluster.replica_of(p).expect("its replica"))
}

fn report(what: &str, out: &Outcome) {
    println!(
        "cluster, {what}: calls resumed {:.2} s after it; {} answered, {} refused; spend lost {:.6} USD of {:.6} ({:.0} calls' worth; negative: counted twice)",
        out.resumed_after.as_secs_f64(),
        out.ok,
        out.refused,
        out.lost_usd(),
        out.client_usd,
        out.lost_usd() / (out.client_usd / out.ok as f64)
    );
}

/// Run only as a child of the rate-limit step: calls the gateway from 3
/// threads until the given time, printing `CALL <unix ms>` for each call
/// answered.
#[test]
#[ignore = "a child process of the cluster rate-limit step"]
fn child_calls_until_the_end_time() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let (base, node, end): (String, String, u64) = (
        var("LLMPOOL_RL_BASE_URL"),
        var("LLMPOOL_RL_NODE"),
        var("LLMPOOL_RL_END_MS").parse().unwrap(),
    );
    let opts = options_for(
        &base,
        json!({"rate_limits": {"rpm": 600}, "queue_timeout_ms": 5000,
               "redis": {"cluster": [node], "timeout_ms": 5000}}),
    );
    let c = Client::from_json(Some(&opts)).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                while unix_ms() < end {
                    let r = c
                        .chat(r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#);
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

fn four_processes_share_one_rpm(s: &TestServer, nodes: &[String]) {
    let before = s.requests();
    let end = unix_ms() + 11_000;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
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
                .env("LLMPOOL_RL_NODE", &nodes[i % nodes.len()])
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
                .filter_map(|l| l.split("CALL ").nth(1))
                .map(|n| n.trim().parse::<u64>().unwrap()),
        );
    }
    calls.sort_unstable();
    assert!(!calls.is_empty());
    let first = calls[0];
    let in_10s = calls.iter().filter(|&&t| t < first + 10_000).count();
    println!(
        "cluster, 4 processes sharing rpm 600 (10/s): {in_10s} calls in the first 10 s ({:.1}/s, {:+.1}% of the rate)",
        in_10s as f64 / 10.0,
        (in_10s as f64 - 100.0)
    );
    assert!(
        (90..=110).contains(&in_10s),
        "{in_10s} calls in 10 s: not within 10% of 100"
    );
    assert_eq!(s.requests() - before, calls.len());
}
