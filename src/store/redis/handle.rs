//! The connection handle: a pool of connections to one Redis.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, FromRedisValue, RedisError, Script, ToRedisArgs};

use super::{scrub, OnError, RedisConfig, StoreError, MAX_IDLE, RETRY_AFTER_DOWN};
use crate::error::Error;

/// With the feature the option is taken as it is.
pub(super) fn supported(_key: &str) -> Result<(), Error> {
    Ok(())
}

/// Whether the redis crate can connect to `url`; the message names no password.
pub(super) fn parses(url: &str) -> Result<(), String> {
    use ::redis::IntoConnectionInfo;
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| scrub(&e.to_string(), url))
}

impl RedisConfig {
    /// The URL itself, only for connecting.
    fn expose_url(&self) -> &str {
        &self.url
    }
}

/// A shared, thread-safe handle to one Redis (see the module doc).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    client: Client,
    idle: Mutex<Vec<Connection>>,
    /// Set after a failure to reach Redis: skip it until then.
    down_until: Mutex<Option<(Instant, String)>>,
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
        let client = match &config.ca_file {
            None => Client::open(config.expose_url()),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::invalid(format!(
                        "option \"redis.ca_file\": cannot read \"{path}\": {e}"
                    ))
                })?;
                Client::build_with_tls(
                    config.expose_url(),
                    ::redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
        };
        let what = match config.ca_file {
            Some(_) => "redis.url\" with \"redis.ca_file",
            None => "redis.url",
        };
        let client = client.map_err(|e| {
            Error::invalid(format!(
                "option \"{what}\": {} (\"{}\")",
                scrub(&e.to_string(), config.expose_url()),
                config.redacted_url()
            ))
        })?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                config: config.clone(),
                client,
                idle: Mutex::new(Vec::new()),
                down_until: Mutex::new(None),
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

    /// The URL with the password hidden, for messages.
    pub fn redacted_url(&self) -> String {
        self.inner.config.redacted_url()
    }

    /// `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.inner.config.prefix, name)
    }

    /// Runs `script` with `keys` (each put under the prefix) and `args`.
    pub fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> Result<T, StoreError> {
        self.with_conn(|c| {
            let mut inv = script.prepare_invoke();
            for k in keys {
                inv.key(self.key(k));
            }
            inv.arg(&args);
            inv.invoke(c)
        })
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
        f: impl FnMut(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        let mut f = f;
        let (mut conn, reused) = self.checkout()?;
        let mut result = f(&mut conn);
        if let (true, Err(e)) = (reused, &result) {
            // An idle connection that died while pooled (Redis restarted
            // or closed it): the command never reached a live server, so
            // it is sent once more on a new connection, as HTTP pools
            // do. A timeout is not retried: Redis may be running it.
            if stale(e) {
                drop(conn);
                lock(&self.inner.idle).clear();
                conn = self.checkout()?.0;
                result = f(&mut conn);
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
                Err(self.error(&e, lost))
            }
        }
    }

    /// A pooled connection (`true`) or a new one.
    fn checkout(&self) -> Result<(Connection, bool), StoreError> {
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
        let t = self.inner.config.timeout;
        let connected = self
            .inner
            .client
            .get_connection_with_timeout(t)
            .and_then(|c| {
                c.set_read_timeout(Some(t))?;
                c.set_write_timeout(Some(t))?;
                Ok(c)
            });
        match connected {
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

    fn checkin(&self, conn: Connection) {
        let mut idle = lock(&self.inner.idle);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn mark_down(&self, e: &RedisError) {
        let why = scrub(&e.to_string(), self.inner.config.expose_url());
        *lock(&self.inner.down_until) = Some((Instant::now() + RETRY_AFTER_DOWN, why));
        // Pooled connections to a Redis that went away are dead too.
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
                scrub(&e.to_string(), self.inner.config.expose_url())
            ),
        }
    }
}

/// Whether `e` on a pooled connection means it had died while idle:
/// closed or reset, not slow.
fn stale(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_connection_dropped() || e.is_io_error())
}

/// Whether the connection is unusable after `e` (as opposed to Redis
/// answering with an error reply).
fn connection_lost(e: &RedisError) -> bool {
    e.is_io_error()
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
