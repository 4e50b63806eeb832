//! The pooled client: one keep-alive `ureq::Agent`, retries, metrics.
//!
//! A `Client` is cheap to clone and safe to share between threads; every
//! clone uses the same pool and counters. This file holds the public API and
//! cost control around calls; `attempt` runs a call (failover, retries, the
//! HTTP exchange) and `agent` builds and warms the connection pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use serde_json::{json, Value};
use ureq::http;
use ureq::Agent;

use crate::cost::spend::{Prepared, Spend};
use crate::error::{Code, Error};
use crate::exec::{block_on_call, CallToken, Executor};
use crate::log::{log, next_call_id, Level, Logger, Scoped};
use crate::metrics::Metrics;
use crate::net::transport::ConnStats;
use crate::options::{process_env, valid_api_key, ApiKey, Options};
use crate::policy::failover::Endpoints;
use crate::policy::limiter::Limiter;
use crate::policy::ratelimit::RateLimiter;
use crate::policy::retry::RetryPolicy;
use crate::prometheus::CallRecord;
use crate::response::Response;

mod agent;
mod attempt;
mod submit;

pub(crate) use agent::build_agent;
pub use attempt::read_whole;
pub use submit::{DoneFn, EventFn};

/// Gives a fresh API key when the gateway answers 401 (see
/// [`Client::set_key_provider`]); `None` means no new key is available.
pub type KeyProvider = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// A pooled, retrying client for one OpenAI-compatible gateway.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    opts: Options,
    policy: RetryPolicy,
    agent: RwLock<Agent>,
    key: RwLock<Option<ApiKey>>,
    metrics: Metrics,
    log: Arc<Logger>,
    conn: Arc<ConnStats>,
    limiter: Option<Arc<Limiter>>,
    ratelimit: RateLimiter,
    spend: Spend,
    endpoints: Endpoints,
    key_provider: RwLock<Option<KeyProvider>>,
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

/// One HTTP call to make: method, path below `base_url`, and JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: http::Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
    /// The model the request asked for, reported in `info` when the answer has none.
    pub model: Option<String>,
    /// A streamed answer: no whole-call timeout, `stream_idle_timeout_ms`
    /// between reads instead.
    pub stream: bool,
    /// `None`: a JSON call (`application/json` when there is a body).
    /// `Some(ct)`: a raw call, sent with that `Content-Type` (none when
    /// empty) and `Accept: */*`.
    pub content_type: Option<String>,
}

/// Reads a 2xx answer's body: the whole of it, or event by event for a
/// stream. On failure it returns what it read so far with the error.
/// `Send`: an async call may resume on another library thread after a wait.
pub type BodyReader<'a> =
    dyn FnMut(&mut ureq::Body) -> Result<Vec<u8>, (Vec<u8>, Error)> + Send + 'a;

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
        let spend = Spend::from_options(&opts, redis.as_ref())?;
        let ratelimit = RateLimiter::new(opts.rate_limits.clone(), redis.as_ref());
        let endpoints = Endpoints::from_options(&opts);
        let exec = submit::executor(&opts, limiter.as_ref());
        Ok(Client {
            inner: Arc::new(Inner {
                key: RwLock::new(opts.api_key.clone()),
                opts,
                policy,
                agent: RwLock::new(agent),
                metrics,
                log,
                conn,
                limiter,
                ratelimit,
                spend,
                endpoints,
                key_provider: RwLock::new(None),
                blocking: Mutex::new(HashMap::new()),
                exec,
            }),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Whether an API key is set (the key itself is never exposed).
    pub fn has_api_key(&self) -> bool {
        read(&self.inner.key).is_some()
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
        *self.inner.key.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }

    /// Sets (or with `None` removes) the key provider: on a 401 the client
    /// asks it once for a new key, stores it as with [`Client::set_api_key`],
    /// and retries the call once at once. A second 401 is returned.
    /// Endpoints with their own `api_key` are not refreshed.
    pub fn set_key_provider(&self, provider: Option<KeyProvider>) {
        *self
            .inner
            .key_provider
            .write()
            .unwrap_or_else(|p| p.into_inner()) = provider;
    }

    /// Drops every idle pooled connection now; calls in flight finish on
    /// their own connections, which are then closed rather than pooled.
    pub fn reset_pool(&self) -> Result<(), Error> {
        let fresh = build_agent(&self.inner.opts, &self.inner.conn)?;
        *self.inner.agent.write().unwrap_or_else(|p| p.into_inner()) = fresh;
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
        self.inner.exec.cancel_all();
        let blocking: Vec<_> = lock(&self.inner.blocking).values().cloned().collect();
        for t in blocking {
            t.cancel();
        }
        let fresh = build_agent(&self.inner.opts, &self.inner.conn)?;
        let old = std::mem::replace(
            &mut *self.inner.agent.write().unwrap_or_else(|p| p.into_inner()),
            fresh,
        );
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
        lock(&self.inner.blocking).insert(key, token.clone());
        let _in_flight = InFlight(&self.inner.blocking, key);
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
        let mut m = self.inner.metrics.to_json(&self.inner.conn);
        m["cost"] = self.inner.spend.to_json();
        m["rate_limits"] = self.inner.ratelimit.to_json();
        m["endpoints"] = self.inner.endpoints.to_json(Instant::now());
        m["async"] = submit::stats_json(&self.inner.exec);
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

    /// Any method and path below `base_url`, with an optional JSON body.
    pub fn request(&self, method: &str, path: &str, body_json: Option<&str>) -> Response {
        match request_call(method, path, body_json) {
            Ok(call) => self.block_on_call(self.execute_fut(call)),
            Err(e) => Response::failed(e, Instant::now()),
        }
    }

    /// Records a finished call in the labelled (Prometheus) metrics.
    pub(crate) fn record(&self, model: Option<&str>, r: &Response, started: Instant) {
        let endpoint = r.info["endpoint"]
            .as_str()
            .unwrap_or(&self.inner.opts.base_url);
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
        let text = self.inner.metrics.prometheus(&self.inner.conn);
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
            &mut |b| read_whole(b, max),
            &mut |_| {},
        )
        .await
    }

    /// A JSON POST with cost control around it: routing, cache, budget.
    /// `request_json` is the body as text and `v` the same body parsed (the
    /// caller has parsed it already). `stream` calls read their body with
    /// `on_body`; `patch` completes the response (e.g. a stream's text and
    /// usage) before its cost is settled. Runs in a logging context of its
    /// own.
    pub(crate) async fn spent_call(
        &self,
        path: &str,
        request_json: &str,
        v: Value,
        stream: bool,
        on_body: &mut BodyReader<'_>,
        patch: &mut (dyn FnMut(&mut Response) + Send),
    ) -> Response {
        let call_id = next_call_id();
        let call = async move {
            let started = Instant::now();
            let spend = &self.inner.spend;
            let asked = model_of(&v);
            let mut prepared = match spend.before("POST", path, request_json, v) {
                Err(e) => {
                    let r = Response::failed(e, started);
                    self.inner.metrics.finish(r.code, started.elapsed());
                    self.record(asked.as_deref(), &r, started);
                    log!(
                        self.inner.log,
                        Level::Warn,
                        Some(call_id),
                        "refused before sending POST {path}: {}: {}",
                        r.code.name(),
                        r.error
                    );
                    return r;
                }
                Ok(Err((p, hit))) => {
                    log!(
                        self.inner.log,
                        Level::Info,
                        Some(call_id),
                        "cache hit for POST {path} (model {}): answered without a request",
                        p.model.as_deref().unwrap_or("?")
                    );
                    return self.cache_hit(p, hit, started);
                }
                Ok(Ok(p)) => p,
            };
            let call = Call {
                method: http::Method::POST,
                path: path.to_string(),
                // `settle` needs the rest of `prepared`, not the body.
                body: Some(std::mem::take(&mut prepared.body)),
                model: prepared.model.clone(),
                stream,
                content_type: None,
            };
            let mut r = self.run_call(call, on_body).await;
            patch(&mut r);
            let model = prepared.model.clone();
            // Settling never changes the outcome: bookkeeping errors are warnings.
            self.settle(prepared, &mut r);
            self.record(model.as_deref(), &r, started);
            r
        };
        Scoped::new(&self.inner.log, call_id, call).await
    }

    /// Applies cost accounting to a finished response.
    pub(crate) fn settle(&self, p: Prepared, r: &mut Response) {
        // `finish` (or a stream's patch) already put the usage into info:
        // no second parse of the body on the hot path.
        let usage_src = r
            .info
            .get("usage")
            .filter(|u| u.is_object())
            .map(|u| json!({ "usage": u }));
        if let Some(w) = self.inner.spend.after(
            p,
            r.is_ok(),
            r.status,
            &r.headers,
            &r.body,
            usage_src.as_ref(),
            &mut r.info,
        ) {
            crate::log::in_scope(Level::Warn, || w.clone());
            self.inner.metrics.warn(w.clone());
            r.info["warnings"] = json!([w]);
        }
    }

    fn cache_hit(&self, p: Prepared, hit: crate::cost::spend::Hit, started: Instant) -> Response {
        let sum = crate::body::fields(&hit.entry.body).unwrap_or_default();
        let r = Response {
            code: Code::Ok,
            status: hit.entry.status,
            text: sum.text,
            error: String::new(),
            info: json!({
                "attempts": 0,
                "retries": 0,
                "connection_reused": false,
                "connections_opened": 0,
                "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
                "status": hit.entry.status,
                "request_id": header(&hit.entry.headers, "x-request-id"),
                "model": sum.model.or(p.model.clone()),
                "usage": sum.usage,
                "finish_reason": sum.finish_reason,
                "cache_hit": true,
                "cost_usd": 0.0,
                "routed_from": p.routed_from,
                "endpoint": self.inner.opts.base_url,
                "timings_ms": {"dns": 0.0, "connect": 0.0, "tls": 0.0, "ttfb": 0.0,
                    "total": started.elapsed().as_secs_f64() * 1000.0},
            }),
            headers: hit.entry.headers,
            body: hit.entry.body,
        };
        self.inner.metrics.finish(Code::Ok, started.elapsed());
        self.record(r.info["model"].as_str(), &r, started);
        r
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parses a request body that must be a JSON object.
pub fn parse_object(text: &str, what: &str) -> Result<Value, Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Error::invalid(format!("{what}: expected a JSON object"))),
        Err(e) => Err(Error::invalid(format!("{what}: invalid JSON: {e}"))),
    }
}

/// Checks a `request` call's arguments and builds it.
fn request_call(method: &str, path: &str, body_json: Option<&str>) -> Result<Call, Error> {
    let method = parse_method(method)?;
    if !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "path: must start with '/', got \"{path}\""
        )));
    }
    let (body, model) = match body_json {
        None => (None, None),
        Some(text) => {
            let v = parse_object(text, "body_json")?;
            (Some(text.as_bytes().to_vec()), model_of(&v))
        }
    };
    Ok(Call {
        method,
        path: path.to_string(),
        body,
        model,
        stream: false,
        content_type: None,
    })
}

/// The call [`Client::request_raw`] makes, or why its arguments are refused.
fn raw_call(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> Result<Call, Error> {
    let method = parse_method(method)?;
    if !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "path: must start with '/', got \"{path}\""
        )));
    }
    let ct = content_type.unwrap_or("");
    if ct.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(Error::invalid(
            "content_type: must be printable ASCII without line breaks",
        ));
    }
    Ok(Call {
        method,
        path: path.to_string(),
        body: body.map(<[u8]>::to_vec),
        model: None,
        stream: false,
        content_type: Some(ct.to_string()),
    })
}

fn model_of(v: &Value) -> Option<String> {
    v["model"].as_str().map(str::to_string)
}

fn parse_method(m: &str) -> Result<http::Method, Error> {
    match m.to_ascii_uppercase().as_str() {
        "GET" => Ok(http::Method::GET),
        "POST" => Ok(http::Method::POST),
        "PUT" => Ok(http::Method::PUT),
        "PATCH" => Ok(http::Method::PATCH),
        "DELETE" => Ok(http::Method::DELETE),
        "HEAD" => Ok(http::Method::HEAD),
        "OPTIONS" => Ok(http::Method::OPTIONS),
        _ => Err(Error::invalid(format!(
            "method: expected GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS, got \"{m}\""
        ))),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
