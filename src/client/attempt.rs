//! One call end to end: the endpoint loop (failover), the attempt loop
//! (retries, backoff, key refresh, silent reconnects) and the single HTTP
//! exchange, then the `Response` built from what happened.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use ureq::http;
use ureq::Agent;

use super::{header, BodyReader, Call, Client};
use crate::body;
use crate::cost::{estimate_prompt_tokens, requested_max_output_tokens};
use crate::error::{from_ureq, Code, Error};
use crate::exec::token;
use crate::log::{log, next_call_id, Level, Scoped};
use crate::net::transport::{self, AttemptIo};
use crate::options::ApiKey;
use crate::policy::failover::Circuit;
use crate::policy::ratelimit::Ticket;
use crate::policy::retry::{jitter, Decision};
use crate::response::Response;
use crate::sync::read;

/// How many times a call silently reconnects after finding a pooled
/// connection dead before any response byte arrived.
const MAX_FREE_RECONNECTS: u32 = 2;

impl Client {
    /// Runs one call with retries; always returns a response (success or not).
    pub fn execute(&self, call: Call) -> Response {
        self.block_on_call(self.execute_fut(call))
    }

    /// The future of [`Client::execute`] (what an async call runs).
    pub(crate) async fn execute_fut(&self, call: Call) -> Response {
        let started = Instant::now();
        let max = self.inner.opts.max_response_bytes;
        let model = call.model.clone();
        let r = self.run_call(call, &mut |b| read_whole(b, max)).await;
        self.record(model.as_deref(), &r, started);
        r
    }

    /// Runs `call`, reading 2xx bodies with `on_body`, in the logging
    /// context of the call of this client already running (a cost-managed
    /// call), else in a fresh one.
    pub(crate) async fn run_call(&self, call: Call, on_body: &mut BodyReader<'_>) -> Response {
        match self.current_call_id() {
            Some(id) => self.run_call_as(id, call, on_body).await,
            None => {
                let id = next_call_id();
                Scoped::new(&self.inner.log, id, self.run_call_as(id, call, on_body)).await
            }
        }
    }

    async fn run_call_as(
        &self,
        call_id: u64,
        call: Call,
        on_body: &mut BodyReader<'_>,
    ) -> Response {
        let started = Instant::now();
        let inner = &*self.inner;
        let _in_flight = inner.metrics.start();
        let deadline = started + inner.opts.queue_timeout;
        let ticket = match self.wait_for_rate_limits(&call, deadline).await {
            Ok(t) => t,
            Err(e) => {
                let r = Response::failed(e, started);
                inner.metrics.finish(r.code, started.elapsed());
                self.log_outcome(call_id, &r);
                return r;
            }
        };
        // An async call's slot was taken by the executor before it started.
        let limiter = inner
            .limiter
            .as_ref()
            .filter(|_| !token::current_permitted());
        if let Some(l) = limiter {
            if inner.log.enabled(Level::Info) && l.is_full() {
                log!(
                    inner.log,
                    Level::Info,
                    Some(call_id),
                    "rate limit: max_concurrency ({}) calls in flight, waiting up to {} ms for a slot",
                    inner.opts.max_concurrency,
                    inner.opts.queue_timeout.as_millis()
                );
            }
        }
        let resp = match limiter {
            Some(l) => match l.acquire(deadline.saturating_duration_since(Instant::now())) {
                Some(_permit) => self.attempts(&call, started, on_body, call_id).await,
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
            None => self.attempts(&call, started, on_body, call_id).await,
        };
        if let Some(t) = ticket {
            // No answer at all: the gateway counted nothing.
            let used = total_tokens(&resp.info).or((resp.status == 0).then_some(0));
            if let Some(used) = used {
                inner.ratelimit.correct(&t, used);
            }
        }
        inner.metrics.finish(resp.code, started.elapsed());
        self.log_outcome(call_id, &resp);
        resp
    }

    /// The closing line of a failed call (a success was logged as its answer).
    pub(crate) fn log_outcome(&self, call_id: u64, r: &Response) {
        let level = match r.code {
            Code::Ok => return,
            Code::Cancelled => Level::Info,
            Code::HttpStatus | Code::BudgetExceeded | Code::RateLimited => Level::Warn,
            _ => Level::Error,
        };
        log!(
            self.inner.log,
            level,
            Some(call_id),
            "call failed: {}: {}",
            r.code.name(),
            r.error
        );
    }

    /// Waits until the rate limits let `call` go, at most until `deadline`
    /// (an async call parks meanwhile, holding no thread). Fails unsent with `Code::RateLimited` when the
    /// wait would pass the deadline, `Code::Cancelled` on a cancel.
    pub(crate) async fn wait_for_rate_limits(
        &self,
        call: &Call,
        deadline: Instant,
    ) -> Result<Option<Ticket>, Error> {
        let inner = &*self.inner;
        let rl = &inner.ratelimit;
        if !rl.active() {
            return Ok(None);
        }
        let model = call.model.as_deref().unwrap_or("");
        let tokens = if rl.counts_tokens(model) {
            call.body.as_deref().map_or(0, estimate_call_tokens)
        } else {
            0
        };
        let max_wait = deadline.saturating_duration_since(Instant::now());
        match rl.reserve(model, tokens, max_wait) {
            Ok(t) => {
                if !t.wait.is_zero() {
                    crate::log::in_scope(Level::Info, || {
                        format!(
                            "rate limit: waiting {} ms for a slot (rate_limits, model {model})",
                            t.wait.as_millis()
                        )
                    });
                }
                if !t.wait.is_zero() && !sleep_unless_cancelled(t.wait).await {
                    return Err(cancelled_error());
                }
                Ok(Some(t))
            }
            Err(r) => Err(Error::new(
                Code::RateLimited,
                format!(
                    "rate limited ({}): the next slot is {} ms away, longer than queue_timeout_ms ({} ms) allows; the call was not sent",
                    r.why,
                    r.needed.as_millis(),
                    inner.opts.queue_timeout.as_millis()
                ),
            )),
        }
    }

    /// Tries the endpoints in failover order until one gives an answer
    /// worth returning.
    async fn attempts(
        &self,
        call: &Call,
        started: Instant,
        on_body: &mut BodyReader<'_>,
        call_id: u64,
    ) -> Response {
        let inner = &*self.inner;
        let eps = &inner.endpoints;
        let order = eps.order(Instant::now());
        let mut failovers = 0u32;
        let mut t = Tally {
            call: call_id,
            ..Tally::default()
        };
        for (n, &i) in order.iter().enumerate() {
            let done = self.attempts_on(i, call, on_body, &mut t).await;
            let worth_failover = done.worth_failover();
            let url = &eps.get(i).base_url;
            match eps.record(i, !worth_failover, Instant::now()) {
                Some(Circuit::Open) => {
                    let (n, cooldown) = eps.breaker();
                    log!(
                        inner.log,
                        Level::Warn,
                        Some(call_id),
                        "circuit breaker opened for {url} after {n} consecutive failures: skipped for {} ms",
                        cooldown.as_millis()
                    );
                }
                Some(_) => log!(
                    inner.log,
                    Level::Info,
                    Some(call_id),
                    "circuit breaker closed for {url}: it answered again"
                ),
                None => {}
            }
            if worth_failover
                && n + 1 < order.len()
                && done.err.as_ref().is_some_and(|e| e.code != Code::Cancelled)
            {
                failovers += 1;
                log!(
                    inner.log,
                    Level::Warn,
                    Some(call_id),
                    "failover: {url} failed ({}); trying {}",
                    done.err.as_ref().map_or("", |e| e.message.as_str()),
                    eps.get(order[n + 1]).base_url
                );
                continue;
            }
            let mut r = self.finish(call, started, &t, done);
            r.info["endpoint"] = json!(eps.get(i).base_url);
            r.info["failovers"] = json!(failovers);
            let base = &eps.get(i).base_url;
            let proxy = inner.opts.proxies.for_url(base);
            r.info["proxy"] = json!(proxy.map(|p| p.label()));
            if let Some(p) = proxy.filter(|_| r.status != 0 && r.code != Code::Ok) {
                // A plain-http answer may come from the proxy itself.
                if r.status == 407 {
                    r.error = format!("proxy {} answered HTTP 407: {}", p.label(), r.error);
                } else if base.starts_with("http://") {
                    r.error = format!("{} (through proxy {})", r.error, p.label());
                }
            }
            return r;
        }
        unreachable!("an endpoint list is never empty")
    }

    /// One endpoint: retries, backoff, key refresh and silent reconnects.
    async fn attempts_on(
        &self,
        ep: usize,
        call: &Call,
        on_body: &mut BodyReader<'_>,
        t: &mut Tally,
    ) -> Done {
        let inner = &*self.inner;
        let tok = token::current();
        let endpoint = inner.endpoints.get(ep);
        let url = format!("{}{}", endpoint.base_url, call.path);
        let mut refreshed_key = false;
        let mut retries_here = 0u32;
        let log = &*inner.log;
        let id = Some(t.call);
        let max_retries = inner.policy.max_retries;
        loop {
            if tok.as_ref().is_some_and(|t| t.is_cancelled()) {
                return Done::failed(cancelled_error());
            }
            t.attempts += 1;
            transport::begin_attempt();
            let agent = read(&inner.agent).clone();
            log!(
                log,
                Level::Debug,
                id,
                "sending {} {url} (attempt {})",
                call.method,
                t.attempts
            );
            if log.log_bodies && log.enabled(Level::Trace) {
                if let Some(b) = &call.body {
                    log!(log, Level::Trace, id, "request body: {}", clip(b));
                }
            }
            let outcome = self.attempt(&agent, call, &url, endpoint.api_key.as_ref(), on_body);
            if let Some(tok) = &tok {
                tok.clear_sockets();
            }
            let io = transport::attempt_io();
            t.io = io;
            t.opened += io.opened;
            t.reused = io.opened == 0 && io.pooled;
            if t.reused {
                inner.metrics.reused();
                log!(log, Level::Debug, id, "reused a pooled connection");
            }
            let cancelled = tok.as_ref().is_some_and(|t| t.is_cancelled());
            match outcome {
                Attempt::Answer {
                    status,
                    headers,
                    body,
                    body_err,
                } => {
                    inner.metrics.status(&endpoint.base_url, status);
                    if log.enabled(Level::Info) {
                        let took = io
                            .started
                            .map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0);
                        let rid = header(&headers, "x-request-id")
                            .map(|r| format!(" request_id={r}"))
                            .unwrap_or_default();
                        log!(
                            log,
                            Level::Info,
                            id,
                            "answer HTTP {status} in {took:.1} ms (attempt {}){rid}",
                            t.attempts
                        );
                    }
                    if log.log_bodies && log.enabled(Level::Trace) {
                        log!(log, Level::Trace, id, "response body: {}", clip(&body));
                    }
                    inner
                        .ratelimit
                        .observe(call.model.as_deref().unwrap_or(""), &headers);
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
                            log!(
                                log,
                                Level::Warn,
                                id,
                                "retry: HTTP 401 with a refreshed key, at once (attempt {})",
                                t.attempts + 1
                            );
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
                            log!(
                                log,
                                Level::Warn,
                                id,
                                "retry {}/{max_retries}: HTTP {status}, waiting {} ms",
                                retries_here + 1,
                                wait.as_millis()
                            );
                            if !sleep_unless_cancelled(wait).await {
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
                        log!(
                            log,
                            Level::Info,
                            id,
                            "reconnect: the pooled connection had been closed by the server while idle ({}); sending again on a new one",
                            e.message
                        );
                        continue;
                    }
                    // Nothing reached the server when the connection could not be
                    // made, so a connect failure is safe to retry for any method.
                    // A proxy refusing CONNECT (bad credentials, forbidden
                    // port) will refuse again: not retried.
                    let retryable = (matches!(e.code, Code::Connect)
                        && !matches!(raw, Some(ureq::Error::ConnectProxyFailed(_))))
                        || matches!(raw, Some(ureq::Error::Timeout(ureq::Timeout::Connect)));
                    if retryable && retries_here < inner.policy.max_retries {
                        let wait = inner.policy.backoff(retries_here, jitter());
                        log!(
                            log,
                            Level::Warn,
                            id,
                            "retry {}/{max_retries}: {}, waiting {} ms",
                            retries_here + 1,
                            e.message,
                            wait.as_millis()
                        );
                        if !sleep_unless_cancelled(wait).await {
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
            // A key that cannot be sent counts as no new key.
            Some(k) if !k.is_empty() && self.set_api_key(Some(&k)).is_ok() => {
                self.inner.metrics.key_refreshed();
                crate::log::in_scope(Level::Info, || {
                    "key refresh: HTTP 401, the key provider gave a new key".to_string()
                });
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
            .uri(url);
        b = match call.content_type.as_deref() {
            None if call.body.is_some() => b
                .header("accept", "application/json")
                .header("content-type", "application/json"),
            None => b.header("accept", "application/json"),
            Some("") => b.header("accept", "*/*"),
            Some(ct) => b.header("accept", "*/*").header("content-type", ct),
        };
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

    fn finish(&self, call: &Call, started: Instant, t: &Tally, done: Done) -> Response {
        let Done {
            err,
            status,
            headers,
            body,
        } = done;
        // The few fields llmpool needs, without a tree of the whole body
        // (an embeddings answer is megabytes of floats).
        let read = body::fields(&body);
        let mut err = err;
        // A 2xx JSON call whose body is not JSON is a broken answer, not a success.
        if let (None, false, true, false, Err(e)) = (
            &err,
            call.stream,
            call.path_is_json_api(),
            body.is_empty(),
            &read,
        ) {
            err = Some(Error::new(
                Code::Protocol,
                format!(
                    "HTTP {status} from {} but the body is not valid JSON ({e})",
                    call.path
                ),
            ));
        }
        let sum = read.unwrap_or_default();
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
            "finish_reason": sum.finish_reason,
            "timings_ms": timings(&t.io, started.elapsed()),
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

/// `info.timings_ms`: the phases of the last attempt (dns, connect and tls
/// are 0 when it used a pooled connection), each a duration, so their sum
/// is at most `total`, the whole call (retries and backoff included).
pub(crate) fn timings(io: &AttemptIo, total: Duration) -> Value {
    // Microsecond precision: finer digits are noise.
    let ms = |d: Duration| d.as_micros() as f64 / 1000.0;
    let fresh = io.opened > 0;
    let pick = |d: Duration| if fresh { ms(d) } else { 0.0 };
    json!({
        "dns": pick(io.dns),
        "connect": pick(io.connect),
        "tls": pick(io.tls),
        "ttfb": io.ttfb().map_or(0.0, ms),
        "total": ms(total),
    })
}

/// A body for a TRACE line: lossy UTF-8, at most 16 KiB.
fn clip(b: &[u8]) -> String {
    const MAX: usize = 16 * 1024;
    let mut s = String::from_utf8_lossy(&b[..b.len().min(MAX)]).into_owned();
    if b.len() > MAX {
        s.push_str(&format!("... ({} bytes in all)", b.len()));
    }
    s
}

#[derive(Debug, Default)]
struct Tally {
    call: u64,
    /// The last attempt's I/O and phase timings.
    io: AttemptIo,
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

/// Tokens a call will count against a `tpm` limit: the prompt estimate
/// plus the output cap it asks for (what gateways count before answering).
fn estimate_call_tokens(body: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(body).map_or(0, |v| {
        estimate_prompt_tokens(&v) + requested_max_output_tokens(&v).unwrap_or(0)
    })
}

/// The tokens an answer reports having used, if it says.
fn total_tokens(info: &Value) -> Option<u64> {
    let u = &info["usage"];
    u["total_tokens"].as_u64().or_else(|| {
        let p = u["prompt_tokens"].as_u64()?;
        Some(p + u["completion_tokens"].as_u64().unwrap_or(0))
    })
}

/// Reads a whole body up to `limit` bytes.
///
/// The buffer is sized from `Content-Length` up front, with one spare byte
/// for the NUL the C API appends, so a large body is read straight into
/// its final place: no regrowth copies, no second allocation for the NUL,
/// and a peak memory of one body rather than two.
pub fn read_whole(body: &mut ureq::Body, limit: u64) -> Result<Vec<u8>, (Vec<u8>, Error)> {
    use std::io::Read;
    let size = match body.content_length() {
        Some(n) => usize::try_from(n.min(limit)).unwrap_or(0).saturating_add(1),
        None => 8192,
    };
    let mut buf = vec![0u8; size];
    let mut filled = 0;
    let mut reader = body.with_config().limit(limit).reader();
    loop {
        if filled == buf.len() {
            // Longer than announced (or no length): grow by doubling.
            buf.resize(buf.len() * 2, 0);
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((Vec::new(), from_ureq(&ureq::Error::from(e)))),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Waits `wait` unless the call's token is cancelled first (by
/// `llmpool_call_cancel` or `cancel_all`); false when cancelled. An
/// async call parks, holding no thread; a blocking call's thread
/// sleeps in `block_on_call`.
async fn sleep_unless_cancelled(wait: Duration) -> bool {
    // Every call runs with a token; a fresh one (never cancelled) keeps
    // a future polled some other way correct.
    let tok = token::current().unwrap_or_else(|| Arc::new(token::CallToken::blocking()));
    tok.sleep(wait).await
}

pub(crate) fn cancelled_error() -> Error {
    let by = match token::current() {
        Some(t) if t.is_async() => "llmpool_call_cancel or llmpool_client_cancel",
        _ => "llmpool_client_cancel",
    };
    Error::new(Code::Cancelled, format!("call cancelled by {by}"))
}

fn http_error(status: u16, path: &str, body: &[u8], why: &str) -> Error {
    let detail = body::error_fields(body)
        .and_then(|e| e.message)
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
