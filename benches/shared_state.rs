//! Calls per second of 8 processes that share a budget, a rate limit and
//! the response cache through one Redis, against the same 8 processes with
//! only local state, side by side in one run (issue 23).
//!
//!   cargo bench --bench shared_state [-- CALLS_PER_PROCESS]
//!
//! Starts the bundled test server (in this process) and a `redis-server` on
//! a free loopback port (stopped by PID at the end; without `redis-server`
//! it says so and measures nothing). Each child is this binary again, with
//! `LLMPOOL_SHARE_CHILD` set: it makes sequential chat calls with distinct
//! prompts (so every cache lookup misses and every call settles), with
//! `budget`, `rate_limits` (generous: they never wait) and `cache` set.
//! Rounds alternate Redis and local, three of each; medians are printed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const PROCS: usize = 8;
const ROUNDS: usize = 3;

fn child() {
    let url = std::env::var("LLMPOOL_SHARE_URL").unwrap();
    let redis = std::env::var("LLMPOOL_SHARE_REDIS").unwrap_or_default();
    let calls: usize = std::env::var("LLMPOOL_SHARE_CALLS")
        .unwrap()
        .parse()
        .unwrap();
    let me = std::process::id();
    let mut o = json!({
        "base_url": url,
        "prices": {"test-model": {"input": 0.01, "output": 0.01}},
        "budget": {"limit_usd": 1.0e6, "period": "day"},
        "rate_limits": {"rpm": 10_000_000},
        "cache": {"max_entries": 64, "default_on": true},
    });
    if !redis.is_empty() {
        o["redis"] = json!({"url": redis, "prefix": format!("bench{}", std::env::var("LLMPOOL_SHARE_ROUND").unwrap())});
        o["cache"]["shared"] = json!(true);
    }
    let c = llmpool::Client::from_json(Some(&o.to_string())).expect("client options");
    for i in 0..calls {
        let req = json!({"model": "test-model", "temperature": 0,
            "messages": [{"role": "user", "content": format!("p{me}-{i}")}]});
        let r = c.chat(&req.to_string());
        assert!(r.is_ok(), "{}", r.error);
    }
}

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Option<(Redis, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let r = Redis(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((r, format!("redis://127.0.0.1:{port}")))
}

/// Calls per second of one round of `PROCS` children.
fn round(url: &str, redis: Option<&str>, calls: usize, n: usize) -> f64 {
    let me = std::env::current_exe().unwrap();
    let t = Instant::now();
    let kids: Vec<Child> = (0..PROCS)
        .map(|_| {
            Command::new(&me)
                .env("LLMPOOL_SHARE_CHILD", "1")
                .env("LLMPOOL_SHARE_URL", url)
                .env("LLMPOOL_SHARE_REDIS", redis.unwrap_or(""))
                .env("LLMPOOL_SHARE_CALLS", calls.to_string())
                .env("LLMPOOL_SHARE_ROUND", n.to_string())
                .spawn()
                .expect("spawn a child")
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success(), "a child failed");
    }
    (PROCS * calls) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::var_os("LLMPOOL_SHARE_CHILD").is_some() {
        return child();
    }
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    let Some((_redis, redis_url)) = start_redis() else {
        println!("shared_state: redis-server cannot be started here: nothing measured");
        return;
    };
    let server = llmpool_testserver::TestServer::plain();
    let url = server.base_url();
    let (mut shared, mut local) = (Vec::new(), Vec::new());
    for n in 0..ROUNDS {
        shared.push(round(&url, Some(&redis_url), calls, n));
        local.push(round(&url, None, calls, n));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (s, l) = (median(&mut shared), median(&mut local));
    println!("shared_state: {PROCS} processes x {calls} calls, budget + rate_limits + cache, {ROUNDS} alternating rounds");
    println!("  local state only      {l:8.0} calls/s");
    println!("  shared through Redis  {s:8.0} calls/s");
    println!("  ratio redis/local     {:.3}", s / l);
}
