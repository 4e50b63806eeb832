//! Redis set-ups that survive a node failure, for the tests: a Redis
//! Cluster (3 primaries, 3 replicas) and a primary with a replica watched
//! by 3 sentinels. Every process binds 127.0.0.1 on free ports, keeps its
//! files in a fresh directory, and is stopped by PID (on drop too).
//! `None` (after a `SKIPPED:` line, a failure under `LLMPOOL_REQUIRE_ALL=1`)
//! when `redis-server` or `redis-cli` cannot be run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, fresh_dir, Skip};

const SKIP: Skip = Skip::new("the Redis Cluster and Sentinel tests", "");

fn tools() -> Option<(String, String)> {
    let server = SKIP.tool(
        "REDIS_SERVER",
        "redis-server",
        "redis-server (Debian package `redis-server`)",
    )?;
    let cli = SKIP.tool(
        "REDIS_CLI",
        "redis-cli",
        "redis-cli (Debian package `redis-tools`)",
    )?;
    Some((server, cli))
}

/// Polls `f` every 50 ms until it is true; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

/// One `redis-server` process (a data node or a sentinel).
pub struct Node {
    prog: String,
    cli: String,
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    fn new(prog: &str, cli: &str, what: &str, args: Vec<String>) -> Node {
        let port = free_port();
        let dir = fresh_dir(&format!("redis-{what}-{port}"));
        Node {
            prog: prog.to_string(),
            cli: cli.to_string(),
            port,
            dir,
            args,
            child: None,
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, on the same port and directory) and
    /// waits until it answers `PING`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.port);
        let mut cmd = Command::new(&self.prog);
        cmd.args(&self.args)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.prog)),
        );
        let port = self.port;
        wait_for(
            &format!("redis-server on port {port} answering PING"),
            Duration::from_secs(20),
            || self.cli(&["PING"]).is_some_and(|r| r == "PONG"),
        );
    }

    /// SIGKILL, by PID, and wait for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process, by PID.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running node").id();
        let sig = match signal {
            "STOP" => libc::SIGSTOP,
            "CONT" => libc::SIGCONT,
            other => panic!("no signal {other}"),
        };
        // SAFETY: kill(2) takes plain integers and touches no memory of
        // ours; the PID is our own child's, not yet waited for (so not
        // reused).
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill -{signal} {pid}");
    }

    /// Cuts this primary off from its replicas while the `replica` process
    /// is stopped (so it cannot reconnect): writes acknowledged from now on
    /// reach no replica, as when replication lags. `signal("CONT")` the
    /// replica once the primary is dead.
    pub fn cut_off(&self, replica: &Node) {
        replica.signal("STOP");
        let killed = self.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
        assert!(
            killed.as_deref().is_some_and(|n| n != "0"),
            "no replica link to cut: {killed:?}"
        );
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `redis-cli -p <port> args...`: its trimmed stdout, `None` when it
    /// fails (the node is down).
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.cli)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// A `key:value` line of `INFO <section>`.
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let text = self.cli(&["INFO", section])?;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_string())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of 3 primaries and 3 replicas, `cluster-node-timeout`
/// 1000 ms.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start() -> Option<Cluster> {
        let (prog, cli) = tools()?;
        let mut nodes: Vec<Node> = (0..6)
            .map(|_| {
                // The cluster bus port is given: the default (port + 10000)
                // may be past 65535 for an ephemeral port.
                let bus = free_port().to_string();
                let args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-port",
                    &bus,
                ];
                Node::new(
                    &prog,
                    &cli,
                    "cluster",
                    args.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        for n in &mut nodes {
            n.start();
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster { nodes };
        c.wait_healthy(Duration::from_secs(60));
        Some(c)
    }

    /// Waits until every running node says `cluster_state:ok`, sees 3
    /// primaries, and each primary has a replica in sync.
    pub fn wait_healthy(&self, limit: Duration) -> Duration {
        wait_for("a healthy cluster", limit, || {
            self.nodes.iter().filter(|n| n.running()).all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
                    && match n.info("replication", "role").as_deref() {
                        Some("master") => n
                            .info("replication", "connected_slaves")
                            .is_some_and(|s| s == "1"),
                        Some("slave") => n
                            .info("replication", "master_link_status")
                            .is_some_and(|s| s == "up"),
                        _ => false,
                    }
            }) && self.primaries().len() == 3
        })
    }

    /// The indexes of the nodes that are primaries now (as a running node
    /// sees them).
    pub fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].running()
                    && self.nodes[i].info("replication", "role").as_deref() == Some("master")
            })
            .collect()
    }

    /// The index of the running primary that serves `key`'s slot now.
    pub fn primary_for(&self, key: &str) -> Option<usize> {
        let any = self.nodes.iter().find(|n| n.running())?;
        let slot: u16 = any.cli(&["CLUSTER", "KEYSLOT", key])?.parse().ok()?;
        self.primaries().into_iter().find(|&i| {
            self.nodes[i]
                .cli(&["CLUSTER", "NODES"])
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.contains("myself"))
                        .map(|l| owns(l, slot))
                })
                .unwrap_or(false)
        })
    }

    /// Moves the slot of `key` to primary `to` by hand, as a resharding
    /// does (IMPORTING/MIGRATING, MIGRATE of its keys, then the new owner
    /// announced), pausing in each state so that calls meet ASK redirects
    /// and TRYAGAIN answers.
    pub fn move_slot(&self, key: &str, to: usize) {
        let from = self.primary_for(key).expect("the slot's primary");
        assert_ne!(from, to);
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        let slot = src.cli(&["CLUSTER", "KEYSLOT", key]).expect("KEYSLOT");
        let id = |n: &Node| n.cli(&["CLUSTER", "MYID"]).expect("MYID");
        let ok = |r: Option<String>, what: &str| {
            assert_eq!(r.as_deref(), Some("OK"), "{what}");
        };
        ok(
            dst.cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &id(src)]),
            "IMPORTING",
        );
        ok(
            src.cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &id(dst)]),
            "MIGRATING",
        );
        std::thread::sleep(Duration::from_millis(300));
        loop {
            let keys = src
                .cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
                .expect("GETKEYSINSLOT");
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = dst.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let r = src.cli(&args);
            assert!(
                matches!(r.as_deref(), Some("OK" | "NOKEY")),
                "MIGRATE: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let new_owner = id(dst);
        for n in self.nodes.iter().filter(|n| n.running()) {
            if n.info("replication", "role").as_deref() == Some("master") {
                ok(
                    n.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &new_owner]),
                    "SETSLOT NODE",
                );
            }
        }
    }

    /// The index of the replica of primary `p`.
    pub fn replica_of(&self, p: usize) -> Option<usize> {
        let port = self.nodes[p].port.to_string();
        (0..self.nodes.len()).find(|&i| {
            i != p
                && self.nodes[i].running()
                && self.nodes[i].info("replication", "master_port").as_deref() == Some(&port)
        })
    }
}

/// Whether a `CLUSTER NODES` line lists `slot` among its ranges.
fn owns(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|r| {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(a), Ok(b)) => (a..=b).contains(&slot),
            _ => false,
        }
    })
}

/// A primary and its replica watched by 3 sentinels (quorum 2,
/// `down-after-milliseconds` 1000) under the name `mymaster`.
pub struct Sentinels {
    /// The data nodes: `[0]` the first primary, `[1]` its replica.
    pub data: Vec<Node>,
    pub sentinels: Vec<Node>,
}

pub const MASTER: &str = "mymaster";

impl Sentinels {
    pub fn start() -> Option<Sentinels> {
        let (prog, cli) = tools()?;
        let mut primary = Node::new(&prog, &cli, "primary", Vec::new());
        primary.start();
        let mut replica = Node::new(
            &prog,
            &cli,
            "replica",
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port.to_string(),
            ],
        );
        replica.start();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let mut s = Node::new(&prog, &cli, "sentinel", Vec::new());
            // A sentinel rewrites its configuration file: it must be its own.
            let conf = s.dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 2000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    primary.port
                ),
            )
            .expect("write sentinel.conf");
            s.args = vec![conf.to_string_lossy().into_owned(), "--sentinel".into()];
            s.start();
            sentinels.push(s);
        }
        let set = Sentinels {
            data: vec![primary, replica],
            sentinels,
        };
        wait_for(
            "the replica in sync and the sentinels seeing each other",
            Duration::from_secs(60),
            || {
                set.data[1]
                    .info("replication", "master_link_status")
                    .is_some_and(|s| s == "up")
                    && set.sentinels.iter().all(|s| {
                        s.cli(&["SENTINEL", "MASTER", MASTER]).is_some_and(|t| {
                            let lines: Vec<&str> = t.lines().collect();
                            let field = |k: &str| {
                                lines
                                    .iter()
                                    .position(|l| *l == k)
                                    .and_then(|i| lines.get(i + 1))
                                    .map(|v| v.to_string())
                            };
                            field("num-other-sentinels").as_deref() == Some("2")
                                && field("num-slaves").as_deref() == Some("1")
                        })
                    })
            },
        );
        Some(set)
    }

    /// The sentinels' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::url).collect()
    }

    /// The index (in `data`) of the node the sentinels name primary.
    pub fn primary(&self) -> Option<usize> {
        let reply = self
            .sentinels
            .iter()
            .find_map(|s| s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]))?;
        let port: u16 = reply.lines().nth(1)?.trim().parse().ok()?;
        self.data.iter().position(|n| n.port == port)
    }
}

/// What [`calls_across`] saw.
#[derive(Debug)]
pub struct Outcome {
    /// Calls answered (and paid) in all.
    pub ok: u64,
    /// Calls refused unsent because the budget store could not be used.
    pub refused: u64,
    /// From the kill to the first call begun after it and answered.
    pub resumed_after: Duration,
    /// The cost of every answered call, as the client reported it.
    pub client_usd: f64,
    /// What the budget in Redis says was spent, read afresh at the end.
    pub redis_usd: f64,
}

impl Outcome {
    /// Spend that the calls made and Redis no longer has (negative: counted
    /// twice, the safe direction).
    pub fn lost_usd(&self) -> f64 {
        self.client_usd - self.redis_usd
    }
}

/// Paid calls from 4 threads of one client with `opts` (a budget in Redis,
/// `on_error` "closed"), while `fail` runs: it kills a node and returns
/// when (it may bring it back after; its argument says how many calls were
/// answered so far). The calls go on until one begun after the kill is
/// answered, then a second more. Every call must be answered or refused by
/// the budget store, never fail otherwise.
pub fn calls_across(opts: &str, fail: impl FnOnce(&dyn Fn() -> u64) -> Instant) -> Outcome {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use llmpool::{Client, Code};

    #[derive(Default)]
    struct Seen {
        ok: u64,
        refused: u64,
        usd: f64,
        failed_at: Option<Instant>,
        /// When the first call begun after the failure was answered.
        resumed: Option<Instant>,
    }
    let c = Client::from_json(Some(opts)).expect("options");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (c, seen, stop) = (c.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let r = c.chat(&super::spend_child::chat(50));
                    let mut s = seen.lock().unwrap();
                    match r.code {
                        Code::Ok => {
                            s.ok += 1;
                            s.usd += r.info_json()["cost_usd"].as_f64().expect("a cost");
                            // A call in flight at the failure proves nothing.
                            if s.resumed.is_none() && s.failed_at.is_some_and(|f| began > f) {
                                s.resumed = Some(Instant::now());
                            }
                        }
                        Code::BudgetExceeded => {
                            assert!(r.error.contains("unreachable"), "{}", r.error);
                            s.refused += 1;
                            drop(s);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("unexpected {other:?}: {}", r.error),
                    }
                }
            })
        })
        .collect();
    wait_for(
        "calls answered before the failure",
        Duration::from_secs(60),
        || seen.lock().unwrap().ok >= 40,
    );
    let failed_at = fail(&|| seen.lock().unwrap().ok);
    seen.lock().unwrap().failed_at = Some(failed_at);
    wait_for(
        "a call begun after the failure answered",
        Duration::from_secs(120),
        || seen.lock().unwrap().resumed.is_some(),
    );
    let resumed_after = seen.lock().unwrap().resumed.unwrap() - failed_at;
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("a calling thread panicked");
    }
    // One more answered call: its reservation first writes whatever spend
    // the client still kept from the outage.
    let s = seen.lock().unwrap();
    let (mut ok, mut usd) = (s.ok, s.usd);
    wait_for("a last call answered", Duration::from_secs(60), || {
        let r = c.chat(&super::spend_child::chat(50));
        if r.code == Code::Ok {
            ok += 1;
            usd += r.info_json()["cost_usd"].as_f64().unwrap();
        }
        r.code == Code::Ok
    });
    let fresh = Client::from_json(Some(opts)).expect("options");
    let redis_usd = fresh.metrics()["cost"]["budget"]["spent_usd"]
        .as_f64()
        .expect("spent_usd");
    Outcome {
        ok,
        refused: s.refused,
        resumed_after,
        client_usd: usd,
        redis_usd,
    }
}
