//! The `"redis"` option and the shared Redis handle.
//!
//! ```json
//! "redis": {"url": "redis://:pw@10.0.0.5:6379/0", "prefix": "llmpool:",
//!           "timeout_ms": 500, "on_error": "closed"}
//! "redis": {"cluster": ["redis://:pw@10.0.0.5:6379", "redis://:pw@10.0.0.6:6379"]}
//! "redis": {"sentinel": {"master": "mymaster", "nodes": ["redis://10.0.0.5:26379"],
//!                        "password": "pw", "db": 0}, "wait_replicas": 1}
//! ```
//!
//! Exactly one of `url` (one server), `cluster` (seed nodes of a Redis
//! Cluster; any one reachable is enough) or `sentinel` (the primary the
//! sentinels name; `username`/`password`/`db` are the primary's, the
//! sentinels' own go in their URLs). URLs are `redis://` or `rediss://`
//! (TLS through rustls with the bundled Mozilla roots, or with
//! `"ca_file"`: only the CA(s) in that PEM file, e.g. a private CA of the
//! Redis servers); `prefix` (default `"llmpool:"`) starts every key
//! this library writes, so several deployments can share one Redis;
//! `timeout_ms` (default 500, > 0) bounds connecting, each read and each
//! write; `on_error` (`"closed"`, the default, or `"open"`) is what budgets do
//! when Redis cannot be reached (rate limits and the cache always fall back
//! to local state); `wait_replicas` (default 0) and `wait_timeout_ms`
//! (default 1000): writes made with [`RedisStore::eval_durable`] (the
//! budget's spend) are done only once that many replicas acknowledged them.
//!
//! In a cluster, the keys of one script or pipeline must share a slot: the
//! stores give them one hash tag (`{budget}`, `{rl}`).
//!
//! # API for the stores built on it
//!
//! - [`RedisConfig::parse`]: the option, validated (`Options::redis`).
//! - [`RedisStore::new`]`(&config)`: a cheap, `Clone`, `Send + Sync` handle
//!   (an `Arc` inside); build one per client and clone it freely. It never
//!   connects eagerly: the first use does.
//! - [`RedisStore::key`]`("budget:day")` → `"llmpool:budget:day"`.
//! - [`RedisStore::eval`]`::<T>(&SCRIPT, &["k1", "k2"], (arg1, arg2))` runs a
//!   Lua [`::redis::Script`] (EVALSHA, loading it on NOSCRIPT) with every key
//!   put under the prefix; args are anything `ToRedisArgs` (tuples flatten).
//!   Keep scripts in `static`s (`LazyLock<Script>`) so the SHA is computed once.
//! - [`RedisStore::eval_durable`]: `eval`, then `WAIT` for `wait_replicas`.
//! - [`RedisStore::defer`] / [`RedisStore::defer_eval`]: a write whose reply
//!   nobody needs rides with the next script (same round trip);
//!   [`RedisStore::flush_deferred`] sends what is left, at the end of a call.
//! - [`RedisStore::with_conn`]`(|c| ...)` for plain commands (keys through
//!   [`RedisStore::key`]); `c` is a `&mut dyn ConnectionLike`, one server's
//!   or a cluster's (which routes each command by its key).
//! - [`RedisStore::chain`]: several stores' scripts as the steps of one
//!   script, one round trip (see `chain`); [`RedisStore::can_chain`] says
//!   whether their keys allow it (not in a cluster).
//! - [`RedisStore::pipeline`] for several commands in one round trip (one
//!   slot in a cluster: `Pipeline::query` refuses cluster connections).
//! - Errors are [`StoreError`]: `unreachable()` tells "Redis is down/slow"
//!   (fall back or refuse per [`RedisStore::on_error`]) from a server-side
//!   error (a bug in a script); a cluster failing over (`CLUSTERDOWN`,
//!   `TRYAGAIN`, ...) counts as unreachable. Messages never contain a
//!   password.
//! - After a failure to reach Redis the handle answers `unreachable` at once
//!   for [`RETRY_AFTER_DOWN`] instead of waiting `timeout_ms` on every call,
//!   then tries again: calls reconnect by themselves when Redis is back.
//!
//! Connections are pooled (idle ones kept, up to [`MAX_IDLE`]); one that
//! failed with an I/O error or a timeout is dropped, never reused (its reply
//! could still be on the way).

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::error::Error;

mod chain;
mod redact;
pub use chain::{Chain, Replies, Reply, Step};
pub use redact::{redact_url, scrub};

/// What budgets do when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Refuse paid calls that cannot be accounted (the default).
    Closed,
    /// Go on with local accounting; reconcile when Redis is back.
    Open,
}

/// Where the Redis is: one server, a cluster, or a primary found through
/// Sentinel.
#[derive(Clone, PartialEq)]
pub enum Target {
    /// `"url"`: one server.
    Url(String),
    /// `"cluster"`: seed nodes; any one reachable is enough to start.
    Cluster(Vec<String>),
    /// `"sentinel"`: the primary named `master`, as the sentinels report it.
    Sentinel(SentinelConfig),
}

/// The `"sentinel"` member. `username`, `password` and `db` are the
/// primary's (the sentinels' own credentials go in their URLs).
#[derive(Clone, PartialEq)]
pub struct SentinelConfig {
    pub master: String,
    pub nodes: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

/// The parsed `"redis"` option. `Debug` and [`RedisConfig::redacted_url`]
/// never show a password.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    target: Target,
    pub prefix: String,
    pub timeout: Duration,
    pub on_error: OnError,
    /// `rediss://` only: trust these PEM CA certificates instead of the
    /// bundled roots.
    pub ca_file: Option<String>,
    /// A spend commit is done only once this many replicas have it (`WAIT`).
    pub wait_replicas: u32,
    /// How long a commit waits for `wait_replicas`.
    pub wait_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("target", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .field("ca_file", &self.ca_file)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .finish()
    }
}

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "llmpool:";
/// Default `timeout_ms`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default `wait_timeout_ms`.
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_millis(1000);

impl RedisConfig {
    /// Parses the value of the option `key` (normally `"redis"`). Unknown
    /// members and wrong types are errors naming `key.member`. Built without
    /// the `redis` feature, any value is refused with an error saying so.
    pub fn parse(key: &str, v: &Value) -> Result<RedisConfig, Error> {
        handle::supported(key)?;
        let obj = v.as_object().ok_or_else(|| {
            Error::invalid(format!(
                "option \"{key}\": expected an object like {{\"url\": \"redis://127.0.0.1:6379/0\"}}"
            ))
        })?;
        let mut targets = Vec::new();
        let mut cfg = RedisConfig {
            target: Target::Url(String::new()),
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            on_error: OnError::Closed,
            ca_file: None,
            wait_replicas: 0,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
        };
        for (k, v) in obj {
            let path = format!("{key}.{k}");
            let want = |what: &str| Error::invalid(format!("option \"{path}\": expected {what}"));
            let ms = |v: &Value| {
                v.as_u64()
                    .filter(|n| *n > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| want("a positive number of milliseconds"))
            };
            match k.as_str() {
                "url" => {
                    let url = v.as_str().ok_or_else(|| want("a string"))?.trim();
                    targets.push((k.as_str(), Target::Url(url.to_string())));
                }
                "cluster" => {
                    let urls = string_list(v).ok_or_else(|| {
                        want("a non-empty list of node URLs like [\"redis://10.0.0.5:6379\"]")
                    })?;
                    targets.push((k.as_str(), Target::Cluster(urls)));
                }
                "sentinel" => {
                    targets.push((k.as_str(), Target::Sentinel(parse_sentinel(&path, v)?)));
                }
                "prefix" => {
                    cfg.prefix = v.as_str().ok_or_else(|| want("a string"))?.to_string();
                }
                "timeout_ms" => cfg.timeout = ms(v)?,
                "wait_timeout_ms" => cfg.wait_timeout = ms(v)?,
                "wait_replicas" => {
                    cfg.wait_replicas = v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| want("a number of replicas (0 or more)"))?;
                }
                "ca_file" => {
                    cfg.ca_file = Some(
                        v.as_str()
                            .ok_or_else(|| want("a string (a PEM file)"))?
                            .to_string(),
                    );
                }
                "on_error" => {
                    cfg.on_error = match v.as_str() {
                        Some("closed") => OnError::Closed,
                        Some("open") => OnError::Open,
                        _ => return Err(want("\"closed\" or \"open\"")),
                    }
                }
                _ => return Err(Error::invalid(format!("unknown option \"{path}\""))),
            }
        }
        match targets.len() {
            0 => {
                return Err(Error::invalid(format!(
                    "option \"{key}.url\": missing (or \"{key}.cluster\" or \"{key}.sentinel\")"
                )))
            }
            1 => {}
            _ => {
                let names: Vec<String> = targets
                    .iter()
                    .map(|(n, _)| format!("\"{key}.{n}\""))
                    .collect();
                return Err(Error::invalid(format!(
                    "option \"{key}\": {} exclude each other: give one",
                    names.join(" and ")
                )));
            }
        }
        let (name, target) = targets.remove(0);
        cfg.target = target;
        cfg.check_urls(&format!("{key}.{name}"))?;
        if cfg.ca_file.is_some() && !cfg.urls().iter().all(|u| u.starts_with("rediss://")) {
            return Err(Error::invalid(format!(
                "option \"{key}.ca_file\": only for rediss:// (TLS) urls"
            )));
        }
        Ok(cfg)
    }

    /// Where the Redis is.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Every URL of the option (the server, the seed nodes or the sentinels).
    fn urls(&self) -> Vec<&str> {
        match &self.target {
            Target::Url(u) => vec![u.as_str()],
            Target::Cluster(us) => us.iter().map(String::as_str).collect(),
            Target::Sentinel(s) => s.nodes.iter().map(String::as_str).collect(),
        }
    }

    /// Every password of the option (raw and percent-decoded), for the
    /// log's redaction list.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .urls()
            .iter()
            .flat_map(|u| redact::secrets(u))
            .collect();
        if let Target::Sentinel(SentinelConfig {
            password: Some(p), ..
        }) = &self.target
        {
            out.push(p.clone());
        }
        out.retain(|s| !s.is_empty());
        out.sort();
        out.dedup();
        out
    }

    /// `msg` with every password of the option replaced by `***`.
    pub fn scrub(&self, msg: &str) -> String {
        let mut secrets = self.secrets();
        // Longest first, so a password containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = msg.to_string();
        for s in secrets {
            out = out.replace(&s, "***");
        }
        out
    }

    /// Where the Redis is, with every password replaced by `***`: the URL,
    /// `cluster redis://a,redis://b` or `sentinel mymaster via redis://s1,...`.
    pub fn redacted_url(&self) -> String {
        let join = |us: &[String]| {
            us.iter()
                .map(|u| redact_url(u))
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.target {
            Target::Url(u) => redact_url(u),
            Target::Cluster(us) => format!("cluster {}", join(us)),
            Target::Sentinel(s) => format!("sentinel {} via {}", s.master, join(&s.nodes)),
        }
    }

    fn check_urls(&self, path: &str) -> Result<(), Error> {
        let path = match self.target {
            Target::Sentinel(_) => format!("{path}.nodes"),
            _ => path.to_string(),
        };
        for url in self.urls() {
            check_url(&path, url)?;
        }
        Ok(())
    }
}

/// The strings of a non-empty JSON list of strings.
fn string_list(v: &Value) -> Option<Vec<String>> {
    let list = v.as_array().filter(|a| !a.is_empty())?;
    list.iter()
        .map(|u| u.as_str().map(|s| s.trim().to_string()))
        .collect()
}

fn parse_sentinel(path: &str, v: &Value) -> Result<SentinelConfig, Error> {
    let obj = v.as_object().ok_or_else(|| {
        Error::invalid(format!(
            "option \"{path}\": expected an object like {{\"master\": \"mymaster\", \"nodes\": [\"redis://10.0.0.5:26379\"]}}"
        ))
    })?;
    let mut s = SentinelConfig {
        master: String::new(),
        nodes: Vec::new(),
        username: None,
        password: None,
        db: 0,
    };
    for (k, v) in obj {
        let want = |what: &str| Error::invalid(format!("option \"{path}.{k}\": expected {what}"));
        let text = |v: &Value| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| want("a string"))
        };
        match k.as_str() {
            "master" => s.master = text(v)?,
            "nodes" => {
                s.nodes = string_list(v).ok_or_else(|| {
                    want("a non-empty list of sentinel URLs like [\"redis://10.0.0.5:26379\"]")
                })?;
            }
            "username" => s.username = Some(text(v)?),
            "password" => s.password = Some(text(v)?),
            "db" => {
                s.db = v
                    .as_i64()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| want("a database number"))?
            }
            _ => return Err(Error::invalid(format!("unknown option \"{path}.{k}\""))),
        }
    }
    if s.master.is_empty() {
        return Err(Error::invalid(format!(
            "option \"{path}.master\": missing (the name the sentinels monitor, e.g. \"mymaster\")"
        )));
    }
    if s.nodes.is_empty() {
        return Err(Error::invalid(format!("option \"{path}.nodes\": missing")));
    }
    Ok(s)
}

fn check_url(path: &str, url: &str) -> Result<(), Error> {
    let shown = redact_url(url);
    let bad = |why: &str| {
        Error::invalid(format!(
            "option \"{path}\": {why} (got \"{shown}\"; expected redis://[:password@]host:port[/db] or rediss://...)"
        ))
    };
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| bad("unsupported scheme"))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if host.is_empty() || host.starts_with('/') {
        return Err(bad("no host"));
    }
    handle::parses(url).map_err(|msg| bad(&format!("cannot be parsed: {msg}")))
}

/// A failure talking to Redis. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    unreachable: bool,
    pub message: String,
}

impl StoreError {
    /// Redis could not be reached or did not answer in time (as opposed to
    /// answering with an error).
    pub fn unreachable(&self) -> bool {
        self.unreachable
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// Idle connections kept for reuse.
pub const MAX_IDLE: usize = 16;
/// Deferred writes queued before they are sent without waiting for a ride.
pub const MAX_DEFERRED: usize = 64;
/// How long after failing to reach Redis calls skip it without trying.
pub const RETRY_AFTER_DOWN: Duration = Duration::from_millis(500);

pub use handle::RedisStore;

#[cfg(feature = "redis")]
mod handle;
/// Built without the `redis` feature no handle can exist (the option is
/// refused when parsed), so an `Option<RedisStore>` is always `None` and the
/// code that takes one needs no `cfg` of its own.
#[cfg(not(feature = "redis"))]
mod handle {
    use super::RedisConfig;
    use crate::error::Error;

    #[derive(Debug, Clone)]
    pub enum RedisStore {}

    impl RedisStore {
        pub fn new(_: &RedisConfig) -> Result<RedisStore, Error> {
            Err(unsupported("redis"))
        }

        pub fn flush_deferred(&self) -> Result<(), super::StoreError> {
            match *self {}
        }

        pub fn can_chain(&self) -> bool {
            match *self {}
        }

        pub fn chain(&self, _: &super::Chain) -> Result<super::Replies, super::StoreError> {
            match *self {}
        }
    }

    pub(super) fn supported(key: &str) -> Result<(), Error> {
        Err(unsupported(key))
    }

    fn unsupported(key: &str) -> Error {
        Error::invalid(format!(
            "option \"{key}\": this build of llmpool lacks Redis support (it was built without the `redis` cargo feature)"
        ))
    }

    pub(super) fn parses(_url: &str) -> Result<(), String> {
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::super::RedisConfig;
        use serde_json::json;

        #[test]
        fn without_the_feature_the_option_says_so() {
            let e = RedisConfig::parse("redis", &json!({"url": "redis://h"})).unwrap_err();
            assert!(e.message.contains("lacks Redis support"), "{}", e.message);
        }
    }
}
