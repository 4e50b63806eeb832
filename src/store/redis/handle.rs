//! The connection handle: a pool of connections to one Redis, a Redis
//! Cluster, or the primary that Sentinel names.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use ::redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, ConnectionLike, ErrorKind, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisError, Script, ToRedisArgs, Value,
};

use super::chain::{Chain, Replies};
use super::{
    OnError, RedisConfig, SentinelConfig, StoreError, Target, MAX_DEFERRED, MAX_IDLE,
    RETRY_AFTER_DOWN,
};
use crate::error::Error;

/// With the feature the option is taken as it is.
pub(super) fn supported(_key: &str) -> Result<(), Error> {
    Ok(())
}

/// Whether the redis crate can connect to `url`; the message names no password.
pub(super) fn parses(url: &str) -> Result<(), String> {
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| super::scrub(&e.to_string(), url))
}

/// How the handle reaches Redis.
enum Backend {
    Single(Client),
    /// Follows MOVED/ASK and slot changes itself (the redis crate's
    /// cluster client); each pooled connection keeps its own slot map.
    Cluster(ClusterClient),
    /// Asks the sentinels for the primary on every new connection: new
    /// connections are made when the pool is empty, which is after a
    /// failure, exactly when the primary may have changed.
    Sentinel {
        sentinels: Vec<Client>,
        config: SentinelConfig,
        ca_pem: Option<Vec<u8>>,
    },
}

/// One pooled connection.
enum Conn {
    Single(::redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => c.as_mut(),
        }
    }
}

/// A shared, thread-safe handle to one Redis (see the module doc).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    backend: Backend,
    idle: Mutex<Vec<Conn>>,
    /// Set after a failure to reach Redis: skip it until then.
    down_until: Mutex<Option<(Instant, String)>>,
    /// Writes whose reply nobody waits for, riding with the next script
    /// sent (see [`RedisStore::defer`]).
    deferred: Mutex<Vec<Cmd>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.config.redacted_url())
            .field("prefix", &self.inner.config.prefix)
            .finish()
    }
}

impl fmt::Display for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.config.redacted_url())
    }
}

impl RedisStore {
    /// A handle for `config`; does not connect yet.
    pub fn new(config: &RedisConfig) -> Result<RedisStore, Error> {
        let ca_pem = match &config.ca_file {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                Error::invalid(format!(
                    "option \"redis.ca_file\": cannot read \"{path}\": {e}"
                ))
            })?),
        };
        let certs = |pem: &Vec<u8>| ::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        let client = |url: &str| match &ca_pem {
            None => Client::open(url),
            Some(pem) => Client::build_with_tls(url, certs(pem)),
        };
        let (what, built) = match config.target() {
            Target::Url(url) => ("redis.url", client(url).map(Backend::Single)),
            Target::Cluster(urls) => {
                let t = config.timeout;
                let mut b = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .connection_timeout(t)
                    .response_timeout(t)
                    // The crate's default (16 retries from 1.28 s apart)
                    // would hold a call for minutes while a node is down;
                    // a few quick ones ride over a redirect or a slot
                    // refresh, and the handle's own down-time does the rest.
                    .retries(3)
                    .min_retry_wait(10)
                    .max_retry_wait(200);
                if let Some(pem) = &ca_pem {
                    b = b.certs(certs(pem));
                }
                ("redis.cluster", b.build().map(Backend::Cluster))
            }
            Target::Sentinel(s) => (
                "redis.sentinel.nodes",
                s.nodes
                    .iter()
                    .map(|u| client(u))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|sentinels| Backend::Sentinel {
                        sentinels,
                        config: s.clone(),
                        ca_pem: ca_pem.clone(),
                    }),
            ),
        };
        let backend = built.map_err(|e| {
            let with_ca = if config.ca_file.is_some() {
                "\" with \"redis.ca_file"
            } else {
                ""
            };
            Error::invalid(format!(
                "option \"{what}{with_ca}\": {} (\"{}\")",
                config.scrub(&e.to_string()),
                config.redacted_url()
            ))
        })?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                config: config.clone(),
                backend,
                idle: Mutex::new(Vec::new()),
                down_until: Mutex::new(None),
                deferred: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The key prefix (`"llmpool:"` by default).
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// What budgets do when Redis cannot be reached.
    pub fn on_error(&self) -> OnError {
        self.inner.config.on_error
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.config.timeout
    }

    /// Where Redis is, passwords hidden, for messages.
    pub fn redacted_url(&self) -> String {
        self.inner.config.redacted_url()
    }

    /// Whether this is a Redis Cluster (keys of different hash tags live on
    /// different nodes and cannot meet in one script or pipeline).
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster(_))
    }

    /// Whether several stores' scripts can go in one [`Chain`]: not in a
    /// cluster, where their keys live in different slots.
    pub fn can_chain(&self) -> bool {
        !self.is_cluster()
    }

    /// Runs `chain` as one script, in one round trip (deferred writes ride
    /// ahead of it, as with [`RedisStore::eval`]): the replies of the steps
    /// that ran.
    pub fn chain(&self, chain: &Chain) -> Result<Replies, StoreError> {
        let script = chain_script(chain);
        let values: Vec<Value> = self.eval(&script, &chain.keys(), chain.args())?;
        Ok(Replies::new(values))
    }

    /// `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.inner.config.prefix, name)
    }

    /// Runs `script` with `keys` (each put under the prefix) and `args`.
    /// Deferred writes ride in the same round trip, ahead of it.
    pub fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> Result<T, StoreError> {
        let riders = self.take_deferred();
        self.with_conn(|c| self.invoke(c, &riders, script, keys, &args))
    }

    /// [`RedisStore::eval`] for a write that must survive a failover: with
    /// `wait_replicas` set, done only once that many replicas acknowledged
    /// it (`WAIT` on the same connection, so on the node that ran it).
    /// Fewer within `wait_timeout_ms` is an `unreachable` error: the write
    /// is on the primary but may be lost with it.
    pub fn eval_durable<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> Result<T, StoreError> {
        let want = self.inner.config.wait_replicas;
        if want == 0 {
            return self.eval(script, keys, args);
        }
        let ms = self.inner.config.wait_timeout.as_millis().max(1) as u64;
        let first = self.key(keys.first().copied().unwrap_or_default());
        let riders = self.take_deferred();
        let (value, acked) = self.with_conn(|c| {
            let v = self.invoke(c, &riders, script, keys, &args)?;
            // A keyed first command routes the pair, WAIT included, to the
            // node that owns the key's slot (a cluster sends a lone WAIT
            // to every primary).
            let mut p = ::redis::pipe();
            p.cmd("EXISTS").arg(&first).cmd("WAIT").arg(want).arg(ms);
            let (_, acked): (i64, i64) = query_pipeline(c, &p)?;
            Ok((v, acked))
        })?;
        if acked < i64::from(want) {
            return Err(StoreError {
                unreachable: true,
                message: format!(
                    "Redis at {}: only {acked} of {want} replicas acknowledged the write within {ms} ms (redis.wait_replicas)",
                    self.redacted_url()
                ),
            });
        }
        Ok(value)
    }

    /// Queues `cmd`, a write whose reply nobody waits for (a rate-limit
    /// correction, a cache fill), to ride with the next script this handle
    /// sends (a budget commit, usually: one round trip after a call instead
    /// of three), or at the latest with [`RedisStore::flush_deferred`], which
    /// whoever defers must call by the end of the call. Its keys need not
    /// share a slot with anything, so a cluster sends it at once. A deferred
    /// write that fails is not retried: it is a correction or a cache entry,
    /// never money.
    pub fn defer(&self, cmd: Cmd) -> Result<(), StoreError> {
        if self.is_cluster() {
            return self.with_conn(|c| cmd.query::<Value>(c).map(drop));
        }
        let full = {
            let mut q = lock(&self.inner.deferred);
            q.push(cmd);
            q.len() >= MAX_DEFERRED
        };
        if full {
            return self.flush_deferred();
        }
        Ok(())
    }

    /// [`RedisStore::defer`] for a script, sent as `EVAL` of its `source`
    /// (a reply nobody reads cannot be a NOSCRIPT to recover from).
    pub fn defer_eval(
        &self,
        source: &str,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(source).arg(keys.len());
        for k in keys {
            cmd.arg(self.key(k));
        }
        cmd.arg(args);
        self.defer(cmd)
    }

    /// Sends the deferred writes now, in one round trip (none: nothing).
    pub fn flush_deferred(&self) -> Result<(), StoreError> {
        let riders = self.take_deferred();
        if riders.is_empty() {
            return Ok(());
        }
        self.with_conn(|c| {
            let mut p = ::redis::pipe();
            for r in &riders {
                p.add_command(r.clone());
            }
            // Each reply (an error too) is dropped: see `defer`.
            c.req_packed_commands(&p.get_packed_pipeline(), 0, p.len())
                .map(drop)
        })
    }

    fn take_deferred(&self) -> Vec<Cmd> {
        std::mem::take(&mut *lock(&self.inner.deferred))
    }

    /// Runs `script`, with `riders` (deferred writes) ahead of it in the
    /// same round trip.
    fn invoke<T: FromRedisValue>(
        &self,
        c: &mut dyn ConnectionLike,
        riders: &[Cmd],
        script: &Script,
        keys: &[&str],
        args: &impl ToRedisArgs,
    ) -> Result<T, RedisError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(self.key(k));
        }
        inv.arg(args);
        if riders.is_empty() {
            return inv.invoke(c);
        }
        let mut p = ::redis::pipe();
        for r in riders {
            p.add_command(r.clone());
        }
        let evalsha = p.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for k in keys {
            evalsha.arg(self.key(k));
        }
        evalsha.arg(args);
        // Read every reply: the riders' are dropped (an error too, see
        // `defer`), only the script's counts.
        let mut replies = c.req_packed_commands(&p.get_packed_pipeline(), 0, p.len())?;
        match replies.pop().unwrap_or(Value::Nil).extract_error() {
            // The riders ran; the script is loaded and run on its own.
            Err(e) if e.kind() == ErrorKind::NoScriptError => inv.invoke(c),
            Err(e) => Err(e),
            Ok(v) => T::from_owned_redis_value(v),
        }
    }

    /// Runs `pipe` in one round trip. In a cluster every key of it must be
    /// in one slot (it goes to the node of its first command's key).
    pub fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.with_conn(|c| query_pipeline(c, pipe))
    }

    /// `PING`: whether Redis answers now.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|c| ::redis::cmd("PING").query::<String>(c).map(|_| ()))
    }

    /// Runs `f` on a pooled connection (connecting when none is idle).
    /// A connection that failed with an I/O error or a timeout is
    /// dropped; one that got a server error goes back to the pool.
    pub fn with_conn<T>(
        &self,
        f: impl FnMut(&mut dyn ConnectionLike) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let mut f = f;
        let (mut conn, reused) = self.checkout()?;
        let mut result = f(conn.as_dyn());
        if let (true, Err(e)) = (reused, &result) {
            // An idle connection that died while pooled (Redis restarted
            // or closed it): the command never reached a live server, so
            // it is sent once more on a new connection, as HTTP pools
            // do. A timeout is not retried: Redis may be running it.
            if stale(e) {
                drop(conn);
                lock(&self.inner.idle).clear();
                conn = self.checkout()?.0;
                result = f(conn.as_dyn());
            }
        }
        match result {
            Ok(v) => {
                self.checkin(conn);
                Ok(v)
            }
            Err(e) => {
                let lost = connection_lost(&e);
                if lost {
                    self.mark_down(&e);
                } else {
                    self.checkin(conn);
                }
                Err(self.error(&e, lost || unavailable(&e)))
            }
        }
    }

    /// A pooled connection (`true`) or a new one.
    fn checkout(&self) -> Result<(Conn, bool), StoreError> {
        if let Some(c) = lock(&self.inner.idle).pop() {
            return Ok((c, true));
        }
        if let Some((until, why)) = lock(&self.inner.down_until).clone() {
            if Instant::now() < until {
                return Err(StoreError {
                    unreachable: true,
                    message: format!(
                        "Redis at {} is unreachable (retrying shortly): {why}",
                        self.redacted_url()
                    ),
                });
            }
        }
        match self.connect() {
            Ok(c) => {
                *lock(&self.inner.down_until) = None;
                Ok((c, false))
            }
            Err(e) => {
                self.mark_down(&e);
                Err(self.error(&e, true))
            }
        }
    }

    fn connect(&self) -> Result<Conn, RedisError> {
        let t = self.inner.config.timeout;
        let timed = |c: ::redis::Connection| -> Result<Conn, RedisError> {
            c.set_read_timeout(Some(t))?;
            c.set_write_timeout(Some(t))?;
            Ok(Conn::Single(c))
        };
        match &self.inner.backend {
            Backend::Single(client) => timed(client.get_connection_with_timeout(t)?),
            Backend::Cluster(client) => {
                let c = client.get_connection()?;
                c.set_read_timeout(Some(t))?;
                c.set_write_timeout(Some(t))?;
                Ok(Conn::Cluster(Box::new(c)))
            }
            Backend::Sentinel {
                sentinels,
                config,
                ca_pem,
            } => {
                // A sentinel that has not heard of a failover yet names the
                // old primary, which may be back as a replica and would
                // serve reads of stale data (the budget's figures): each
                // named node must say it is a primary, else the next
                // sentinel is asked.
                let mut last = None;
                for info in primaries_named(sentinels, config, t) {
                    let conn = info.and_then(|info| {
                        let client = match ca_pem {
                            None => Client::open(info)?,
                            Some(pem) => Client::build_with_tls(
                                info,
                                ::redis::TlsCertificates {
                                    client_tls: None,
                                    root_cert: Some(pem.clone()),
                                },
                            )?,
                        };
                        let mut c = client.get_connection_with_timeout(t)?;
                        c.set_read_timeout(Some(t))?;
                        c.set_write_timeout(Some(t))?;
                        check_primary(&mut c)?;
                        Ok(c)
                    });
                    match conn {
                        Ok(c) => return timed(c),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    RedisError::from((ErrorKind::EmptySentinelList, "no sentinels"))
                }))
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = lock(&self.inner.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn mark_down(&self, e: &RedisError) {
        let why = self.inner.config.scrub(&e.to_string());
        *lock(&self.inner.down_until) = Some((Instant::now() + RETRY_AFTER_DOWN, why));
        // Pooled connections to a Redis that went away are dead too (and
        // with Sentinel, they may point at a primary that is no more).
        lock(&self.inner.idle).clear();
    }

    fn error(&self, e: &RedisError, unreachable: bool) -> StoreError {
        let what = if unreachable {
            "is unreachable"
        } else {
            "answered with an error"
        };
        StoreError {
            unreachable,
            message: format!(
                "Redis at {} {what}: {}",
                self.redacted_url(),
                self.inner.config.scrub(&e.to_string())
            ),
        }
    }
}

/// The script of a chain of these steps, made once per combination (a
/// handful: which of cache, budget and rate limits a client has).
fn chain_script(chain: &Chain) -> Arc<Script> {
    type Scripts = Mutex<Vec<(Vec<&'static str>, Arc<Script>)>>;
    static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(Scripts::default);
    let names = chain.names();
    let mut scripts = lock(&SCRIPTS);
    if let Some((_, s)) = scripts.iter().find(|(n, _)| *n == names) {
        return s.clone();
    }
    let s = Arc::new(Script::new(&chain.source()));
    scripts.push((names, s.clone()));
    s
}

/// `pipe` in one round trip on `c`, whatever the connection: the cluster
/// connection refuses `Pipeline::query`, but sends packed commands to the
/// node of the first one's key.
fn query_pipeline<T: FromRedisValue>(
    c: &mut dyn ConnectionLike,
    pipe: &Pipeline,
) -> Result<T, RedisError> {
    let values = c.req_packed_commands(&pipe.get_packed_pipeline(), 0, pipe.len())?;
    T::from_owned_redis_value(Value::Array(values).extract_error()?)
}

/// The primary each sentinel names, asked in turn (lazily: the caller
/// stops at the first that works).
fn primaries_named<'a>(
    sentinels: &'a [Client],
    config: &'a SentinelConfig,
    t: Duration,
) -> impl Iterator<Item = Result<ConnectionInfo, RedisError>> + 'a {
    sentinels.iter().map(move |s| {
        let asked = s.get_connection_with_timeout(t).and_then(|mut c| {
            c.set_read_timeout(Some(t))?;
            c.set_write_timeout(Some(t))?;
            ::redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&config.master)
                .query::<Option<(String, u16)>>(&mut c)
        })?;
        let Some((host, port)) = asked else {
            return Err(RedisError::from((
                ErrorKind::MasterNameNotFoundBySentinel,
                "the sentinel does not know the master",
                config.master.clone(),
            )));
        };
        let via = s.get_connection_info();
        let addr = match &via.addr {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let mut redis = via.redis.clone();
        redis.db = config.db;
        redis.username.clone_from(&config.username);
        redis.password.clone_from(&config.password);
        Ok(ConnectionInfo { addr, redis })
    })
}

/// `ROLE` says "master", else a `ReadOnly` error (the connection reaches a
/// replica: see `connection_lost`).
fn check_primary(c: &mut ::redis::Connection) -> Result<(), RedisError> {
    let role: Vec<Value> = ::redis::cmd("ROLE").query(c)?;
    let first = role.first().map(String::from_redis_value);
    match first {
        Some(Ok(r)) if r == "master" => Ok(()),
        _ => Err(RedisError::from((
            ErrorKind::ReadOnly,
            "the node the sentinel named is not a primary (yet)",
        ))),
    }
}

/// Whether Redis answered but cannot serve now: a cluster failing over or
/// migrating a slot, a primary demoted to a replica. Like "unreachable",
/// it passes; unlike it, the connection stays usable.
fn unavailable(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ClusterDown
            | ErrorKind::MasterDown
            | ErrorKind::TryAgain
            | ErrorKind::Moved
            | ErrorKind::Ask
            | ErrorKind::BusyLoadingError
            | ErrorKind::ClusterConnectionNotFound
            | ErrorKind::MasterNameNotFoundBySentinel
    )
}

/// Whether `e` on a pooled connection means it had died while idle:
/// closed or reset, not slow.
fn stale(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_connection_dropped() || e.is_io_error())
}

/// Whether the connection is unusable after `e` (as opposed to Redis
/// answering with an error reply).
fn connection_lost(e: &RedisError) -> bool {
    // READONLY: this connection reaches a replica, typically a primary
    // demoted by a failover; a new one asks the sentinels again.
    e.kind() == ErrorKind::ReadOnly
        || e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked.
    crate::sync::lock(m)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use serde_json::{json, Value};

    #[test]
    fn parses_with_defaults_and_hides_the_password() {
        let c =
            RedisConfig::parse("redis", &json!({"url": "redis://:hunter2@127.0.0.1:1/0"})).unwrap();
        assert_eq!(c.prefix, "llmpool:");
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.on_error, OnError::Closed);
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = RedisConfig::parse(
            "redis",
            &json!({"url": "rediss://h:6380", "prefix": "app1:", "timeout_ms": 50, "on_error": "open"}),
        )
        .unwrap();
        assert_eq!((c.prefix.as_str(), c.on_error), ("app1:", OnError::Open));
        let store = RedisStore::new(&c).unwrap();
        assert_eq!(store.key("rl:x"), "app1:rl:x");
    }

    #[test]
    fn bad_values_name_the_key_and_never_the_password() {
        let err = |v: Value| RedisConfig::parse("redis", &v).unwrap_err().message;
        assert!(err(json!("redis://h")).contains("\"redis\""));
        assert!(err(json!({})).contains("redis.url"));
        assert!(err(json!({"url": 5})).contains("redis.url"));
        assert!(err(json!({"url": "redis://h", "prefx": "a"})).contains("redis.prefx"));
        assert!(err(json!({"url": "redis://h", "timeout_ms": 0})).contains("redis.timeout_ms"));
        assert!(err(json!({"url": "redis://h", "on_error": "maybe"})).contains("redis.on_error"));
        let m = err(json!({"url": "http://:topsecret@h"}));
        assert!(m.contains("redis.url") && !m.contains("topsecret"), "{m}");
        let m = err(json!({"url": "redis://:topsecret@"}));
        assert!(m.contains("redis.url") && !m.contains("topsecret"), "{m}");
    }

    #[test]
    fn cluster_and_sentinel_options_parse_and_hide_their_passwords() {
        let c = RedisConfig::parse(
            "redis",
            &json!({"cluster": ["redis://:pw1@10.0.0.1:7000", "redis://:pw1@10.0.0.2:7000"],
                    "wait_replicas": 1, "wait_timeout_ms": 250}),
        )
        .unwrap();
        assert!(matches!(c.target(), Target::Cluster(u) if u.len() == 2));
        assert_eq!(
            (c.wait_replicas, c.wait_timeout),
            (1, Duration::from_millis(250))
        );
        assert_eq!(
            c.redacted_url(),
            "cluster redis://:***@10.0.0.1:7000,redis://:***@10.0.0.2:7000"
        );
        assert!(RedisStore::new(&c).unwrap().is_cluster());
        let c = RedisConfig::parse(
            "redis",
            &json!({"sentinel": {"master": "mymaster", "password": "primarypw",
                                 "nodes": ["redis://:sentpw@10.0.0.1:26379"]}}),
        )
        .unwrap();
        let shown = format!("{c:?} {}", c.redacted_url());
        assert!(
            !shown.contains("sentpw") && !shown.contains("primarypw"),
            "{shown}"
        );
        assert!(c.secrets().contains(&"primarypw".to_string()));
        assert_eq!(c.scrub("auth primarypw sentpw"), "auth *** ***");
        let store = RedisStore::new(&c).unwrap();
        assert!(!store.is_cluster());
        assert!(!format!("{store:?}").contains("sentpw"));
    }

    #[test]
    fn bad_cluster_and_sentinel_options_name_the_key() {
        let err = |v: Value| RedisConfig::parse("redis", &v).unwrap_err().message;
        assert!(err(json!({"cluster": []})).contains("redis.cluster"));
        assert!(err(json!({"cluster": ["redis://h:1", 3]})).contains("redis.cluster"));
        let m = err(json!({"cluster": ["http://:topsecret@h:1"]}));
        assert!(
            m.contains("redis.cluster") && !m.contains("topsecret"),
            "{m}"
        );
        let m = err(json!({"url": "redis://h", "cluster": ["redis://h:1"]}));
        assert!(m.contains("exclude each other"), "{m}");
        assert!(
            err(json!({"sentinel": {"nodes": ["redis://h:1"]}})).contains("redis.sentinel.master")
        );
        assert!(err(json!({"sentinel": {"master": "m"}})).contains("redis.sentinel.nodes"));
        assert!(
            err(json!({"sentinel": {"master": "m", "nodes": ["redis://h:1"], "x": 1}}))
                .contains("redis.sentinel.x")
        );
        assert!(
            err(json!({"sentinel": {"master": "m", "nodes": ["ftp://h"]}}))
                .contains("redis.sentinel.nodes")
        );
        assert!(
            err(json!({"url": "redis://h", "wait_replicas": -1})).contains("redis.wait_replicas")
        );
        assert!(err(json!({"url": "redis://h", "wait_timeout_ms": 0}))
            .contains("redis.wait_timeout_ms"));
    }

    #[test]
    fn an_unreachable_redis_fails_fast_and_names_no_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://:topsecret@127.0.0.1:{port}/0");
        let c = RedisConfig::parse("redis", &json!({"url": url, "timeout_ms": 200})).unwrap();
        let s = RedisStore::new(&c).unwrap();
        let e = s.ping().unwrap_err();
        assert!(e.unreachable());
        assert!(!e.message.contains("topsecret"), "{e}");
        assert!(e.message.contains(":***@127.0.0.1"), "{e}");
        // Within RETRY_AFTER_DOWN the handle answers without connecting.
        let e2 = s.ping().unwrap_err();
        assert!(e2.message.contains("retrying shortly"), "{e2}");
        assert!(!format!("{s:?} {s}").contains("topsecret"));
    }
}
