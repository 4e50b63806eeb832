//! The `"redis"` option and the shared Redis handle.
//!
//! ```json
//! "redis": {"url": "redis://:pw@10.0.0.5:6379/0", "prefix": "llmpool:",
//!           "timeout_ms": 500, "on_error": "closed"}
//! ```
//!
//! `url` is required (`redis://` or `rediss://`, TLS through rustls with the
//! bundled Mozilla roots, or with `"ca_file"`: only the CA(s) in that PEM
//! file, e.g. a private CA of the Redis servers); `prefix` (default `"llmpool:"`) starts every key
//! this library writes, so several deployments can share one Redis;
//! `timeout_ms` (default 500, > 0) bounds connecting, each read and each
//! write; `on_error` (`"closed"`, the default, or `"open"`) is what budgets do
//! when Redis cannot be reached (rate limits and the cache always fall back
//! to local state).
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
//! - [`RedisStore::with_conn`]`(|c| ...)` for plain commands (keys through
//!   [`RedisStore::key`]).
//! - Errors are [`StoreError`]: `unreachable()` tells "Redis is down/slow"
//!   (fall back or refuse per [`RedisStore::on_error`]) from a server-side
//!   error (a bug in a script). Messages never contain the password.
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

mod redact;
pub use redact::{redact_url, scrub};

/// What budgets do when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Refuse paid calls that cannot be accounted (the default).
    Closed,
    /// Go on with local accounting; reconcile when Redis is back.
    Open,
}

/// The parsed `"redis"` option. `Debug` and [`RedisConfig::redacted_url`]
/// never show the password.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    url: String,
    pub prefix: String,
    pub timeout: Duration,
    pub on_error: OnError,
    /// `rediss://` only: trust these PEM CA certificates instead of the
    /// bundled roots.
    pub ca_file: Option<String>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("on_error", &self.on_error)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "llmpool:";
/// Default `timeout_ms`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

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
        let mut url = None;
        let mut cfg = RedisConfig {
            url: String::new(),
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            on_error: OnError::Closed,
            ca_file: None,
        };
        for (k, v) in obj {
            let path = format!("{key}.{k}");
            let want = |what: &str| Error::invalid(format!("option \"{path}\": expected {what}"));
            match k.as_str() {
                "url" => url = Some(v.as_str().ok_or_else(|| want("a string"))?.to_string()),
                "prefix" => {
                    cfg.prefix = v.as_str().ok_or_else(|| want("a string"))?.to_string();
                }
                "timeout_ms" => {
                    let ms = v
                        .as_u64()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| want("a positive number of milliseconds"))?;
                    cfg.timeout = Duration::from_millis(ms);
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
        let url = url.ok_or_else(|| Error::invalid(format!("option \"{key}.url\": missing")))?;
        cfg.url = url.trim().to_string();
        cfg.check_url(key)?;
        if cfg.ca_file.is_some() && !cfg.url.starts_with("rediss://") {
            return Err(Error::invalid(format!(
                "option \"{key}.ca_file\": only for a rediss:// (TLS) url"
            )));
        }
        Ok(cfg)
    }

    /// The password of the URL (raw and percent-decoded), for the log's
    /// redaction list.
    pub fn secrets(&self) -> Vec<String> {
        redact::secrets(&self.url)
    }

    /// The URL with its password (if any) replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    fn check_url(&self, key: &str) -> Result<(), Error> {
        let shown = self.redacted_url();
        let bad = |why: &str| {
            Error::invalid(format!(
                "option \"{key}.url\": {why} (got \"{shown}\"; expected redis://[:password@]host:port[/db] or rediss://...)"
            ))
        };
        let rest = self
            .url
            .strip_prefix("redis://")
            .or_else(|| self.url.strip_prefix("rediss://"))
            .ok_or_else(|| bad("unsupported scheme"))?;
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        if host.is_empty() || host.starts_with('/') {
            return Err(bad("no host"));
        }
        handle::parses(&self.url).map_err(|msg| bad(&format!("cannot be parsed: {msg}")))
    }
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
