//! The pooled client: one keep-alive `ureq::Agent`, retries, metrics.
//!
//! A `Client` is cheap to clone and safe to share between threads; every
//! clone uses the same pool and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use ureq::http;
use ureq::unversioned::transport::{Connector, RustlsConnector};
use ureq::Agent;

use crate::error::{from_ureq, Code, Error};
use crate::failover::Endpoints;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::options::{process_env, ApiKey, Options};
use crate::resolver::CachingResolver;
use crate::response::{Response, Summary};
use crate::retry::{jitter, Decision, RetryPolicy};
use crate::spend::{Prepared, Spend};
use crate::transport::{self, ConnStats, PoolConnector};

/// How many times a call silently reconnects after finding a pooled
/// connection dead before any response byte arrived.
const MAX_FREE_RECONNECTS: u32 = 2;

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
    conn: Arc<ConnStats>,
    limiter: Option<Limiter>,
    spend: Spend,
    endpoints: Endpoints,
    key_provider: RwLock<Option<KeyProvider>>,
    /// Bumped by `cancel_all`; a call that sees it change was cancelled.
    cancel_epoch: AtomicU64,
    /// Wakes backoff sleeps when a cancel arrives.
    wake: (Mutex<()>, Condvar),
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
}

/// Reads a 2xx answer's body: the whole of it, or event by event for a
/// stream. On failure it returns what it read so far with the error.
pub type BodyReader<'a> = dyn FnMut(&mut ureq::Body) -> Result<Vec<u8>, (Vec<u8>, Error)> + 'a;

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
        let limiter = (opts.max_concurrency > 0).then(|| Limiter::new(opts.max_concurrency));
        let spend = Spend::from_options(&opts)?;
        let endpoints = Endpoints::from_options(&opts);
        Ok(Client {
            inner: Arc::new(Inner {
                key: RwLock::new(opts.api_key.clone()),
                opts,
                policy,
                agent: RwLock::new(agent),
                metrics,
                conn,
                limiter,
                spend,
                endpoints,
                key_provider: RwLock::new(None),
                cancel_epoch: AtomicU64::new(0),
                wake: (Mutex::new(()), Condvar::new()),
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
    /// pool is kept. `None` or `""` removes it.
    pub fn set_api_key(&self, key: Option<&str>) {
        let key = key.filter(|k| !k.is_empty()).map(ApiKey::new);
        *self.inner.key.write().unwrap_or_else(|p| p.into_inner()) = key;
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

    /// Opens up to `n` connections to the first available endpoint ahead of
    /// the first real call (TCP and TLS handshakes done), by sending `n`
    /// concurrent `GET /models` requests; their connections stay pooled (up
    /// to `pool_max_idle_per_host`). Returns how many connections were opened.
    pub fn warm(&self, n: usize) -> Result<usize, Error> {
        let inner = &*self.inner;
        let n = n.min(256);
        let before = inner.conn.opened.load(Ordering::Relaxed);
        let ep = inner
            .endpoints
            .get(inner.endpoints.order(Instant::now())[0]);
        let url = format!("{}/models", ep.base_url);
        let agent = read(&inner.agent).clone();
        // Every request holds its connection until all have answered (or a
        // timeout passes): otherwise a fast server lets them share one.
        let gate = (Mutex::new(0usize), Condvar::new());
        let errors: Vec<Error> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (agent, url, gate) = (agent.clone(), url.clone(), &gate);
                    scope.spawn(move || {
                        let mut b = http::Request::get(&url).header("accept", "application/json");
                        let key = ep.api_key.clone().or_else(|| read(&inner.key).clone());
                        if let Some(k) = key {
                            b = b.header("authorization", format!("Bearer {}", k.expose()));
                        }
                        let result = b
                            .body(())
                            .map_err(|e| Error::invalid(e.to_string()))
                            .and_then(|r| agent.run(r).map_err(|e| from_ureq(&e)));
                        {
                            let mut k = gate.0.lock().unwrap_or_else(|p| p.into_inner());
                            *k += 1;
                            gate.1.notify_all();
                            let deadline = Instant::now() + inner.opts.connect_timeout;
                            while *k < n && Instant::now() < deadline {
                                k = gate
                                    .1
                                    .wait_timeout(
                                        k,
                                        deadline.saturating_duration_since(Instant::now()),
                                    )
                                    .unwrap_or_else(|p| p.into_inner())
                                    .0;
                            }
                        }
                        match result {
                            Ok(mut resp) => {
                                read_whole(resp.body_mut(), inner.opts.max_response_bytes)
                                    .err()
                                    .map(|(_, e)| e)
                            }
                            Err(e) => Some(e),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        let opened = (inner.conn.opened.load(Ordering::Relaxed) - before) as usize;
        match errors.into_iter().next() {
            Some(e) if opened == 0 => Err(e),
            _ => Ok(opened),
        }
    }

    /// Drops every idle pooled connection now; calls in flight finish on
    /// their own connections, which are then closed rather than pooled.
    pub fn reset_pool(&self) -> Result<(), Error> {
        let fresh = build_agent(&self.inner.opts, &self.inner.conn)?;
        *self.inner.agent.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Cancels every call of this client that is in flight now: blocked
    /// socket I/O and backoff sleeps return at once with `Code::Cancelled`.
    /// Later calls are not affected (they use a fresh pool).
    pub fn cancel_all(&self) -> Result<(), Error> {
        let fresh = build_agent(&self.inner.opts, &self.inner.conn)?;
        self.inner.cancel_epoch.fetch_add(1, Ordering::SeqCst);
        let old = std::mem::replace(
            &mut *self.inner.agent.write().unwrap_or_else(|p| p.into_inner()),
            fresh,
        );
        old.shutdown();
        let _guard = self.inner.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.wake.1.notify_all();
        Ok(())
    }

    /// The metrics JSON object.
    pub fn metrics(&self) -> Value {
        let mut m = self.inner.metrics.to_json(&self.inner.conn);
        m["cost"] = self.inner.spend.to_json();
        m["endpoints"] = self.inner.endpoints.to_json(Instant::now());
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
        let started = Instant::now();
        let method = match parse_method(method) {
            Ok(m) => m,
            Err(e) => return Response::failed(e, started),
        };
        if !path.starts_with('/') {
            return Response::failed(
                Error::invalid(format!("path: must start with '/', got \"{path}\"")),
                started,
            );
        }
        let (body, model) = match body_json {
            None => (None, None),
            Some(text) => match parse_object(text, "body_json") {
                Ok(v) => (Some(text.as_bytes().to_vec()), model_of(&v)),
                Err(e) => return Response::failed(e, started),
            },
        };
        self.execute(Call {
            method,
            path: path.to_string(),
            body,
            model,
            stream: false,
        })
    }

    fn json_call(&self, path: &str, request_json: &str) -> Response {
        self.spent_call(
            path,
            request_json,
            false,
            &mut |b| read_whole(b, self.inner.opts.max_response_bytes),
            &mut |_| {},
        )
    }

    /// A JSON POST with cost control around it: routing, cache, budget.
    /// `stream` calls read their body with `on_body`; `patch` completes the
    /// response (e.g. a stream's text and usage) before its cost is settled.
    pub(crate) fn spent_call(
        &self,
        path: &str,
        request_json: &str,
        stream: bool,
        on_body: &mut BodyReader<'_>,
        patch: &mut dyn FnMut(&mut Response),
    ) -> Response {
        let started = Instant::now();
        let v = match parse_object(request_json, "request_json") {
            Ok(v) => v,
            Err(e) => return Response::failed(e, started),
        };
        let spend = &self.inner.spend;
        let prepared = match spend.before("POST", path, request_json, v) {
            Err(e) => {
                let r = Response::failed(e, started);
                self.inner.metrics.finish(r.code, started.elapsed());
                return r;
            }
            Ok(Err((p, hit))) => return self.cache_hit(p, hit, started),
            Ok(Ok(p)) => p,
        };
        let call = Call {
            method: http::Method::POST,
            path: path.to_string(),
            body: Some(prepared.body.clone()),
            model: prepared.model.clone(),
            stream,
        };
        let mut r = self.execute_with(call, on_body);
        patch(&mut r);
        self.settle(prepared, &mut r);
        r
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
        if let Some(e) = self.inner.spend.after(
            p,
            r.is_ok(),
            r.status,
            &r.headers,
            &r.body,
            usage_src.as_ref(),
            &mut r.info,
        ) {
            r.code = e.code;
            r.error = e.message;
        }
    }

    fn cache_hit(&self, p: Prepared, hit: crate::spend::Hit, started: Instant) -> Response {
        let parsed = serde_json::from_slice::<Value>(&hit.entry.body).ok();
        let sum = Summary::of(parsed.as_ref());
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
                "cache_hit": true,
                "cost_usd": 0.0,
                "routed_from": p.routed_from,
                "endpoint": self.inner.opts.base_url,
            }),
            headers: hit.entry.headers,
            body: hit.entry.body,
        };
        self.inner.metrics.finish(Code::Ok, started.elapsed());
        r
    }

    /// Runs one call with retries; always returns a response (success or not).
    pub fn execute(&self, call: Call) -> Response {
        let max = self.inner.opts.max_response_bytes;
        self.execute_with(call, &mut |b| read_whole(b, max))
    }

    /// Like [`Client::execute`], reading 2xx bodies with `on_body`.
    pub fn execute_with(&self, call: Call, on_body: &mut BodyReader<'_>) -> Response {
        let started = Instant::now();
        let inner = &*self.inner;
        let _in_flight = inner.metrics.start();
        let resp = match &inner.limiter {
            Some(l) => match l.acquire(inner.opts.queue_timeout) {
                Some(_permit) => self.attempts(&call, started, on_body),
                None => Response::failed(
                    Error::new(
                        Code::PoolExhausted,
                        format!(
                            "max_concurrency ({}) calls already in flight; waited queue_timeout_ms ({} ms)",
                            inner.opts.max_concurrency,
                            inner.opts.queue_timeout.as_millis()
                        ),
                    ),
                    started,
                ),
            },
            None => self.attempts(&call, started, on_body),
        };
        inner.metrics.finish(resp.code, started.elapsed());
        resp
    }

    /// Tries the endpoints in failover order until one gives an answer
    /// worth returning.
    fn attempts(&self, call: &Call, started: Instant, on_body: &mut BodyReader<'_>) -> Response {
        let inner = &*self.inner;
        let eps = &inner.endpoints;
        let order = eps.order(Instant::now());
        let mut failovers = 0u32;
        let mut t = Tally::default();
        for (n, &i) in order.iter().enumerate() {
            let done = self.attempts_on(i, call, on_body, &mut t);
            let worth_failover = done.worth_failover();
            eps.record(i, !worth_failover, Instant::now());
            if worth_failover
                && n + 1 < order.len()
                && done.err.as_ref().is_some_and(|e| e.code != Code::Cancelled)
            {
                failovers += 1;
                continue;
            }
            let mut r = self.finish(call, started, &t, done);
            r.info["endpoint"] = json!(eps.get(i).base_url);
            r.info["failovers"] = json!(failovers);
            return r;
        }
        unreachable!("an endpoint list is never empty")
    }

    /// One endpoint: retries, backoff, key refresh and silent reconnects.
    fn attempts_on(
        &self,
        ep: usize,
        call: &Call,
        on_body: &mut BodyReader<'_>,
        t: &mut Tally,
    ) -> Done {
        let inner = &*self.inner;
        let epoch = inner.cancel_epoch.load(Ordering::SeqCst);
        let endpoint = inner.endpoints.get(ep);
        let url = format!("{}{}", endpoint.base_url, call.path);
        let mut refreshed_key = false;
        let mut retries_here = 0u32;
        loop {
            t.attempts += 1;
            transport::begin_attempt();
            let agent = read(&inner.agent).clone();
            let outcome = self.attempt(&agent, call, &url, endpoint.api_key.as_ref(), on_body);
            let io = transport::attempt_io();
            t.opened += io.opened;
            t.reused = io.opened == 0 && io.pooled;
            if t.reused {
                inner.metrics.reused();
            }
            let cancelled = inner.cancel_epoch.load(Ordering::SeqCst) != epoch;
            match outcome {
                Attempt::Answer {
                    status,
                    headers,
                    body,
                    body_err,
                } => {
                    inner.metrics.status(status);
                    if let Some(e) = body_err {
                        let e = if cancelled { cancelled_error() } else { e };
                        return Done::answer(Some(e), status, headers, body);
                    }
                    if cancelled {
                        return Done::answer(Some(cancelled_error()), status, headers, body);
                    }
                    if status == 401 && !refreshed_key && endpoint.api_key.is_none() {
                        refreshed_key = true;
                        if self.refresh_key() {
                            // The seed's "refresh and retry once": at once, no backoff.
                            t.retries += 1;
                            inner.metrics.retried();
                            continue;
                        }
                    }
                    let h = |name: &str| header(&headers, name).map(str::to_string);
                    let decision = inner.policy.decide(
                        retries_here,
                        status,
                        &h,
                        &body,
                        SystemTime::now(),
                        jitter(),
                    );
                    match decision {
                        Decision::Retry(wait) => {
                            if !self.sleep_unless_cancelled(wait, epoch) {
                                return Done::answer(
                                    Some(cancelled_error()),
                                    status,
                                    headers,
                                    body,
                                );
                            }
                            retries_here += 1;
                            t.retries += 1;
                            inner.metrics.retried();
                        }
                        Decision::Stop(why) => {
                            let err = (!(200..300).contains(&status))
                                .then(|| http_error(status, &call.path, &body, &why));
                            return Done::answer(err, status, headers, body);
                        }
                    }
                }
                Attempt::Failed(mut e, raw) => {
                    if cancelled {
                        return Done::failed(cancelled_error());
                    }
                    if e.code == Code::Io && io.opened == 0 && !io.pooled {
                        // Failed before any connection existed: name resolution
                        // or the connect itself (ureq reports lookups as I/O).
                        e = Error::new(Code::Connect, format!("could not connect: {}", e.message));
                    }
                    let dead_pooled =
                        t.reused && io.bytes_in == 0 && matches!(e.code, Code::Io | Code::Protocol);
                    if dead_pooled && t.free_reconnects < MAX_FREE_RECONNECTS {
                        // The server closed this idle connection before we noticed.
                        // Nothing was answered, so repeating is safe and free.
                        t.free_reconnects += 1;
                        inner.metrics.free_reconnect();
                        continue;
                    }
                    // Nothing reached the server when the connection could not be
                    // made, so a connect failure is safe to retry for any method.
                    let retryable = matches!(e.code, Code::Connect)
                        || matches!(raw, Some(ureq::Error::Timeout(ureq::Timeout::Connect)));
                    if retryable && retries_here < inner.policy.max_retries {
                        let wait = inner.policy.backoff(retries_here, jitter());
                        if !self.sleep_unless_cancelled(wait, epoch) {
                            return Done::failed(cancelled_error());
                        }
                        retries_here += 1;
                        t.retries += 1;
                        inner.metrics.retried();
                        continue;
                    }
                    return Done::failed(e);
                }
            }
        }
    }

    /// Asks the key provider for a fresh key; true when it gave a new one.
    fn refresh_key(&self) -> bool {
        let provider = read(&self.inner.key_provider).clone();
        let Some(provider) = provider else {
            return false;
        };
        match provider() {
            Some(k) if !k.is_empty() => {
                self.set_api_key(Some(&k));
                self.inner.metrics.key_refreshed();
                true
            }
            _ => false,
        }
    }

    fn attempt(
        &self,
        agent: &Agent,
        call: &Call,
        url: &str,
        endpoint_key: Option<&ApiKey>,
        on_body: &mut BodyReader<'_>,
    ) -> Attempt {
        let inner = &*self.inner;
        let mut b = http::Request::builder()
            .method(call.method.clone())
            .uri(url)
            .header("accept", "application/json");
        if call.body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let client_key = read(&inner.key);
        if let Some(key) = endpoint_key.or(client_key.as_ref()) {
            b = b.header("authorization", format!("Bearer {}", key.expose()));
        }
        drop(client_key);
        for (k, v) in &inner.opts.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let run = |req: http::Request<_>| {
            if call.stream {
                // A stream may run for minutes: bound the wait for headers and
                // each gap between reads, not the whole call.
                let req = agent
                    .configure_request(req)
                    .timeout_global(None)
                    .timeout_recv_response(Some(inner.opts.timeout))
                    .timeout_per_read(Some(inner.opts.stream_idle_timeout))
                    .build();
                agent.run(req)
            } else {
                agent.run(req)
            }
        };
        let result = match &call.body {
            Some(body) => b.body(body.as_slice()).map(&run),
            None => b.body(()).map(|r| agent.run(r)),
        };
        let mut resp = match result {
            Err(e) => {
                return Attempt::Failed(
                    Error::invalid(format!("cannot build the request: {e}")),
                    None,
                )
            }
            Ok(Err(e)) => return Attempt::Failed(from_ureq(&e), Some(e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let read = if (200..300).contains(&status) {
            on_body(resp.body_mut())
        } else {
            read_whole(resp.body_mut(), inner.opts.max_response_bytes)
        };
        match read {
            Ok(body) => Attempt::Answer {
                status,
                headers,
                body,
                body_err: None,
            },
            Err((partial, mut err)) => {
                err.message = format!(
                    "HTTP {status} answer cut short while reading its body: {}",
                    err.message
                );
                Attempt::Answer {
                    status,
                    headers,
                    body: partial,
                    body_err: Some(err),
                }
            }
        }
    }

    /// Sleeps `wait` unless a cancel arrives first; false when cancelled.
    fn sleep_unless_cancelled(&self, wait: Duration, epoch: u64) -> bool {
        let inner = &*self.inner;
        let deadline = Instant::now() + wait;
        let mut guard = inner.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if inner.cancel_epoch.load(Ordering::SeqCst) != epoch {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            guard = inner
                .wake
                .1
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn finish(&self, call: &Call, started: Instant, t: &Tally, done: Done) -> Response {
        let Done {
            err,
            status,
            headers,
            body,
        } = done;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let mut err = err;
        // A 2xx JSON call whose body is not JSON is a broken answer, not a success.
        if err.is_none()
            && !call.stream
            && call.path_is_json_api()
            && !body.is_empty()
            && parsed.is_none()
        {
            err = Some(Error::new(
                Code::Protocol,
                format!(
                    "HTTP {status} from {} but the body is not valid JSON",
                    call.path
                ),
            ));
        }
        let sum = Summary::of(parsed.as_ref());
        let model = sum.model.or_else(|| call.model.clone());
        let info = json!({
            "attempts": t.attempts,
            "retries": t.retries,
            "reconnects_after_idle_close": t.free_reconnects,
            "connection_reused": t.reused,
            "connections_opened": t.opened,
            "latency_ms": started.elapsed().as_secs_f64() * 1000.0,
            "status": status,
            "request_id": header(&headers, "x-request-id"),
            "model": model,
            "usage": sum.usage,
        });
        let (code, error) = match err {
            None => (Code::Ok, String::new()),
            Some(e) => (e.code, e.message),
        };
        Response {
            code,
            status,
            body,
            text: sum.text,
            error,
            info,
            headers,
        }
    }
}

impl Call {
    fn path_is_json_api(&self) -> bool {
        matches!(self.path.as_str(), "/chat/completions" | "/embeddings")
    }
}

#[derive(Debug, Default)]
struct Tally {
    attempts: u32,
    retries: u32,
    free_reconnects: u32,
    opened: u32,
    reused: bool,
}

/// How one endpoint's attempts ended.
struct Done {
    err: Option<Error>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Done {
    fn answer(
        err: Option<Error>,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Done {
        Done {
            err,
            status,
            headers,
            body,
        }
    }

    fn failed(e: Error) -> Done {
        Done::answer(Some(e), 0, Vec::new(), Vec::new())
    }

    /// Failover happens when the endpoint itself looks down: no connection,
    /// TLS failure, no answer in time, or a 5xx after its retries. Never
    /// after a 2xx began (a stream may already have delivered text).
    fn worth_failover(&self) -> bool {
        match &self.err {
            None => false,
            Some(e) if self.status == 0 => {
                matches!(e.code, Code::Connect | Code::Tls | Code::Timeout)
            }
            Some(e) => e.code == Code::HttpStatus && self.status >= 500,
        }
    }
}

enum Attempt {
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        body_err: Option<Error>,
    },
    Failed(Error, Option<ureq::Error>),
}

/// Reads a whole body up to `limit` bytes.
pub fn read_whole(body: &mut ureq::Body, limit: u64) -> Result<Vec<u8>, (Vec<u8>, Error)> {
    body.with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| (Vec::new(), from_ureq(&e)))
}

pub(crate) fn cancelled_error() -> Error {
    Error::new(Code::Cancelled, "call cancelled by llmpool_client_cancel")
}

fn http_error(status: u16, path: &str, body: &[u8], why: &str) -> Error {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or(v["error"].as_str())
                .or(v["message"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            let s = String::from_utf8_lossy(body);
            s.chars().take(300).collect()
        });
    let mut msg = format!("HTTP {status} from {path}");
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&detail);
    }
    if !why.is_empty() {
        msg.push_str(" (");
        msg.push_str(why);
        msg.push(')');
    }
    Error::new(Code::HttpStatus, msg)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

/// Parses a request body that must be a JSON object.
pub fn parse_object(text: &str, what: &str) -> Result<Value, Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Error::invalid(format!("{what}: expected a JSON object"))),
        Err(e) => Err(Error::invalid(format!("{what}: invalid JSON: {e}"))),
    }
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

/// Builds an agent whose pool, timeouts and TLS follow the options.
pub(crate) fn build_agent(o: &Options, conn: &Arc<ConnStats>) -> Result<Agent, Error> {
    let tls = crate::tls::tls_config(o)?;
    let mut cfg = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .save_redirect_history(false)
        .user_agent(o.user_agent.as_str())
        .no_delay(true)
        .max_idle_connections(o.pool_max_idle)
        .max_idle_connections_per_host(o.pool_max_idle_per_host)
        .max_idle_age(o.pool_idle_timeout)
        .timeout_global(Some(o.timeout))
        .timeout_connect(Some(o.connect_timeout))
        .tls_config(tls);
    if let Some(t) = o.response_header_timeout {
        cfg = cfg.timeout_recv_response(Some(t));
    }
    if let Some(t) = o.body_timeout {
        cfg = cfg.timeout_recv_body(Some(t));
    }
    let connector = ()
        .chain(PoolConnector {
            stats: conn.clone(),
            tcp_keepalive: o.tcp_keepalive,
            max_age: o.pool_max_age,
        })
        .chain(RustlsConnector::default());
    Ok(Agent::with_parts(
        cfg.build(),
        connector,
        CachingResolver::new(o.dns_cache_ttl),
    ))
}
