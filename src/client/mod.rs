//! The pooled client: one keep-alive `ureq::Agent`, retries, metrics.
//!
//! A `Client` is cheap to clone and safe to share between threads; every
//! clone uses the same pool and counters. This file holds the public API and
//! cost control around calls; `attempt` runs a call (failover, retries, the
//! HTTP exchange) and `agent` builds and warms the connection pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde_json::Value;

use crate::cost::spend::Spend;
use crate::error::Error;
use crate::exec::{block_on_call, CallToken, Executor};
use crate::log::Logger;
use crate::metrics::Metrics;
use crate::net::transport::ConnStats;
use crate::options::{process_env, valid_api_key, ApiKey, Options};
use crate::policy::failover::Endpoints;
use crate::policy::limiter::Limiter;
use crate::policy::ratelimit::RateLimiter;
use crate::policy::retry::RetryPolicy;
use crate::prometheus::CallRecord;
use crate::response::Response;
use crate::sync::{lock, read};

mod agent;
pub mod batch;
mod call;
mod exchange;
mod failover;
mod gate;
mod retry;
mod spend;
pub mod stream;
mod submit;

pub(crate) use agent::{build_agent, Pooled};
pub(crate) use call::{raw_call, request_call};
pub use call::{BodyFailure, BodyReader, Call};
pub use exchange::read_whole;
pub use submit::{DoneFn, EventFn};
// Where callers have always found it.
pub use crate::request::parse_object;

/// Gives a fresh API key when the gateway answers 401 (see
/// [`Client::set_key_provider`]); `None` means no new key is available.
pub type KeyProvider = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// A pooled, retrying client for one OpenAI-compatible gateway.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// The client's state, grouped by the layer of the call that owns it
/// (see docs/architecture.md).
struct Inner {
    opts: Options,
    log: Arc<Logger>,
    metrics: Metrics,
    /// The spend layer: prices, budget, cache, routing.
    spend: Spend,
    gate: Gate,
    /// The `"redis"` option's store, which the spend layer and the gate
    /// share: asked once before a call for both (see `spend::prepare`).
    redis: Option<crate::store::redis::RedisStore>,
    /// The failover layer: endpoints and their circuit breakers.
    endpoints: Endpoints,
    retry: Retry,
    wire: Wire,
    calls: Calls,
}

/// The rate gate's state.
struct Gate {
    ratelimit: RateLimiter,
    /// `max_concurrency`, when set.
    limiter: Option<Arc<Limiter>>,
}

/// The retry layer's state.
struct Retry {
    policy: RetryPolicy,
    /// Asked for a fresh key on a 401.
    key_provider: RwLock<Option<KeyProvider>>,
}

/// The exchange layer's state: the pooled agent and what it sends with.
struct Wire {
    agent: RwLock<Pooled>,
    conn: Arc<ConnStats>,
    key: RwLock<Option<ApiKey>>,
}

/// The calls in flight.
struct Calls {
    /// The tokens of the blocking calls in flight, for `cancel_all`.
    blocking: Mutex<HashMap<usize, Arc<CallToken>>>,
    /// Runs async calls (see `submit`).
    exec: Executor,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.opts.base_url)
            .field("has_api_key", &self.has_api_key())
            .finish()
    }
}

impl Client {
    /// Builds a client from an options JSON object (see `Options`); `None`
    /// means defaults plus the environment.
    pub fn from_json(options_json: Option<&str>) -> Result<Client, Error> {
        Client::new(Options::from_json(options_json, &process_env)?)
    }

    /// Builds a client from parsed options.
    pub fn new(opts: Options) -> Result<Client, Error> {
        let conn = Arc::new(ConnStats::default());
        let metrics = Metrics::default();
        let log = Arc::new(Logger::from_env(&process_env, opts.log_bodies));
        for key in opts
            .api_key
            .iter()
            .chain(opts.endpoints.iter().filter_map(|e| e.api_key.as_ref()))
        {
            log.add_secret(key.expose());
        }
        for secret in opts
            .redis
            .iter()
            .flat_map(|r| r.secrets())
            .chain(opts.proxies.secrets())
        {
            log.add_secret(&secret);
        }
        if opts.insecure_skip_tls_verify {
            metrics.warn("insecure_skip_tls_verify is on: TLS certificates are NOT verified");
        }
        let agent = build_agent(&opts, &conn)?;
        let policy = RetryPolicy {
            max_retries: opts.max_retries,
            backoff_factor: opts.backoff_factor,
            max_backoff: opts.max_backoff,
            max_retry_after: opts.max_retry_after,
            retry_statuses: opts.retry_statuses.clone(),
        };
        let limiter =
            (opts.max_concurrency > 0).then(|| Arc::new(Limiter::new(opts.max_concurrency)));
        let redis = opts
            .redis
            .as_ref()
            .map(crate::store::redis::RedisStore::new)
            .transpose()?;
        let spend = Spend::new(&opts.spend(), redis.as_ref())?;
        let ratelimit = RateLimiter::new(opts.rate_limits.clone(), redis.as_ref());
        let endpoints = Endpoints::new(
            &opts.base_url,
            &opts.endpoints,
            opts.circuit_failures,
            opts.cooldown,
        );
        let exec = submit::executor(&opts, limiter.as_ref());
        Ok(Client {
            inner: Arc::new(Inner {
                wire: Wire {
                    agent: RwLock::new(agent),
                    conn,
                    key: RwLock::new(opts.api_key.clone()),
                },
                opts,
                metrics,
                log,
                spend,
                gate: Gate { ratelimit, limiter },
                redis,
                endpoints,
                retry: Retry {
                    policy,
                    key_provider: RwLock::new(None),
                },
                calls: Calls {
                    blocking: Mutex::new(HashMap::new()),
                    exec,
                },
            }),
        })
    }

    /// Whether calls need their prompt-token estimate (a budget, routing
    /// or a rate limit reads it): a walk over every message is not free.
    fn needs_estimate(&self) -> bool {
        self.inner.spend.needs_estimate() || self.inner.gate.ratelimit.active()
    }

    /// The options this client was built with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Whether an API key is set (the key itself is never exposed).
    pub fn has_api_key(&self) -> bool {
        read(&self.inner.wire.key).is_some()
    }

    /// Replaces the API key for every later request on every thread; the
    /// pool is kept. `None` or `""` removes it. A key that cannot be sent in
    /// a header (not printable ASCII) is refused and the old one kept.
    pub fn set_api_key(&self, key: Option<&str>) -> Result<(), Error> {
        if key.is_some_and(|k| !valid_api_key(k)) {
            return Err(Error::invalid(
                "api_key: must be printable ASCII (a control or non-ASCII character was found)",
            ));
        }
        let key = key.filter(|k| !k.is_empty()).map(ApiKey::new);
        if let Some(k) = &key {
            self.inner.log.add_secret(k.expose());
        }
        *crate::sync::write(&self.inner.wire.key) = key;
        Ok(())
    }

    /// Sets (or with `None` removes) the key provider: on a 401 the client
    /// asks it once for a new key, stores it as with [`Client::set_api_key`],
    /// and retries the call once at once. A second 401 is returned.
    /// Endpoints with their own `api_key` are not refreshed.
    pub fn set_key_provider(&self, provider: Option<KeyProvider>) {
        *crate::sync::write(&self.inner.retry.key_provider) = provider;
    }

    /// Drops every idle pooled connection now; calls in flight finish on
    /// their own connections, which are then closed rather than pooled.
    pub fn reset_pool(&self) -> Result<(), Error> {
        let fresh = build_agent(&self.inner.opts, &self.inner.wire.conn)?;
        *crate::sync::write(&self.inner.wire.agent) = fresh;
        Ok(())
    }

    /// Cancels every call of this client that is in flight now, blocking
    /// or async: blocked socket I/O and backoff sleeps return at once with
    /// `Code::Cancelled`. Later calls are not affected (they use a fresh pool).
    pub fn cancel_all(&self) -> Result<(), Error> {
        // Every call in flight has a token: cancelling them first means a
        // call whose I/O fails under the agent's shutdown below already
        // sees itself cancelled. A token also ends a wait, a name lookup or
        // a connect, which the shutdown does not reach.
        self.inner.calls.exec.cancel_all();
        let blocking: Vec<_> = lock(&self.inner.calls.blocking).values().cloned().collect();
        for t in blocking {
            t.cancel();
        }
        let fresh = build_agent(&self.inner.opts, &self.inner.wire.conn)?;
        let old = std::mem::replace(&mut *crate::sync::write(&self.inner.wire.agent), fresh);
        old.shutdown();
        Ok(())
    }

    /// Runs a blocking call's future on this thread, with a token that
    /// [`Client::cancel_all`] cancels while the call is in flight.
    pub(crate) fn block_on_call<F: std::future::Future>(&self, fut: F) -> F::Output {
        struct InFlight<'a>(&'a Mutex<HashMap<usize, Arc<CallToken>>>, usize);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                lock(self.0).remove(&self.1);
            }
        }
        let token = Arc::new(CallToken::blocking());
        // The token's address is unique while it is registered.
        let key = Arc::as_ptr(&token) as usize;
        lock(&self.inner.calls.blocking).insert(key, token.clone());
        let _in_flight = InFlight(&self.inner.calls.blocking, key);
        block_on_call(&token, fut)
    }

    /// Sends this client's log lines at `min_level` (1 = errors .. 5 =
    /// trace) and above to `sink`, which may be called on any thread that
    /// runs a call (and, for connection-closed lines, on whichever thread
    /// drops a pooled connection). `None` turns logging off, also the
    /// `LLMPOOL_LOG` stderr fallback.
    pub fn set_log_sink(&self, min_level: i32, sink: Option<crate::log::Sink>) {
        self.inner.log.set_sink(min_level, sink);
    }

    /// The id of the call of this client running on this thread (in its
    /// logging context), if any.
    fn current_call_id(&self) -> Option<u64> {
        crate::log::current()
            .filter(|(l, _)| Arc::ptr_eq(l, &self.inner.log))
            .map(|(_, id)| id)
    }

    /// The metrics JSON object.
    pub fn metrics(&self) -> Value {
        let mut m = self.inner.metrics.to_json(&self.inner.wire.conn);
        m["cost"] = self.inner.spend.to_json();
        m["rate_limits"] = self.inner.gate.ratelimit.to_json();
        m["endpoints"] = self.inner.endpoints.to_json(Instant::now());
        m["async"] = submit::stats_json(&self.inner.calls.exec);
        m
    }

    /// `POST {base_url}/chat/completions`.
    pub fn chat(&self, request_json: &str) -> Response {
        self.json_call("/chat/completions", request_json)
    }

    /// `POST {base_url}/embeddings`.
    pub fn embeddings(&self, request_json: &str) -> Response {
        self.json_call("/embeddings", request_json)
    }

    /// `POST {base_url}/responses` (OpenAI's Responses API).
    pub fn responses(&self, request_json: &str) -> Response {
        self.json_call("/responses", request_json)
    }

    /// `POST {base_url}/messages` (Anthropic's Messages API), with
    /// `anthropic-version` and the key as `anthropic_auth` says.
    pub fn messages(&self, request_json: &str) -> Response {
        self.json_call("/messages", request_json)
    }

    /// Any method and path below `base_url`, with an optional JSON body.
    pub fn request(&self, method: &str, path: &str, body_json: Option<&str>) -> Response {
        match request_call(method, path, body_json, self.needs_estimate()) {
            Ok(call) => self.block_on_call(self.execute_fut(call)),
            Err(e) => Response::failed(e, Instant::now()),
        }
    }

    /// Records a finished call in the labelled (Prometheus) metrics.
    #[inline(never)]
    pub(crate) fn record(&self, model: Option<&str>, r: &Response, started: Instant) {
        let endpoint = r
            .info
            .endpoint
            .as_ref()
            .map_or(self.inner.opts.base_url.as_str(), |e| e.url.as_str());
        self.inner.metrics.record_call(CallRecord {
            model,
            endpoint,
            code: r.code.name(),
            seconds: started.elapsed().as_secs_f64(),
            info: &r.info,
        });
    }

    /// The Prometheus text exposition (format 0.0.4) of this client's
    /// metrics; see [`crate::prometheus`]. Never contains a key or a URL
    /// password.
    pub fn metrics_prometheus(&self) -> String {
        let text = self.inner.metrics.prometheus(&self.inner.wire.conn);
        self.inner.log.redact(&text)
    }

    /// Any method and path below `base_url` with any bytes as the body
    /// (`None`: no body), sent with `content_type` (`None`: no
    /// `Content-Type`). The answer's body is kept as bytes, whatever its
    /// type; retries send the same bytes again.
    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Response {
        match raw_call(method, path, content_type, body) {
            Ok(call) => self.block_on_call(self.execute_fut(call)),
            Err(e) => Response::failed(e, Instant::now()),
        }
    }

    /// A call without cost control (`request`, `request_raw`): the rate
    /// gate and everything below it.
    pub(crate) async fn execute_fut(&self, call: Call) -> Response {
        let started = Instant::now();
        let max = self.inner.opts.max_response_bytes;
        let model = call.facts.model.clone();
        let r = self
            .run_call(call, &mut |b| read_whole(b, max).map_err(BodyFailure::last))
            .await;
        self.record(model.as_deref(), &r, started);
        r
    }

    fn json_call(&self, path: &str, request_json: &str) -> Response {
        match parse_object(request_json, "request_json") {
            Ok(v) => self.block_on_call(self.json_call_fut(path, request_json, v)),
            Err(e) => Response::failed(e, Instant::now()),
        }
    }

    /// A JSON POST whose body the caller has parsed already.
    async fn json_call_fut(&self, path: &str, request_json: &str, v: Value) -> Response {
        let max = self.inner.opts.max_response_bytes;
        self.spent_call(
            path,
            request_json,
            v,
            false,
            &mut |b| read_whole(b, max).map_err(BodyFailure::last),
            &mut |_| {},
        )
        .await
    }
}
