//! Async calls: the same calls as the blocking API, run on the client's
//! executor (`crate::exec`), completed through a callback.
//!
//! A submit only checks its arguments and queues the call: no network I/O,
//! no DNS and no wait for `max_concurrency` on the caller's thread. The
//! call then runs as a future on library threads: the same code as a
//! blocking call (so retries, failover, budgets, cache, routing, the key
//! provider and metrics behave exactly alike), with a cancel token of its
//! own, parked without a thread while it waits (backoff, Retry-After, a
//! rate-limit slot).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{parse_object, raw_call, request_call, Client};
use crate::assemble::{Api, Delta};
use crate::error::{panic_message, Code, Error};
use crate::exec::{
    boxed, fiber, pool, token, BoxFuture, CallHandle, CallToken, CatchPanic, Config, Executor,
    Gate, Start, Task,
};
use crate::options::Options;
use crate::policy::limiter::Limiter;
use crate::response::Response;

/// Receives an async call's response, exactly once, on a library thread.
pub type DoneFn = Box<dyn FnOnce(Response) + Send>;

/// A stream's per-chunk callback (`delta`, `event_json`); `false` aborts.
pub type EventFn = Box<dyn FnMut(&str, &str) -> bool + Send>;

/// A stream's typed-delta callback; `false` aborts.
pub type DeltaFn = Box<dyn FnMut(&Delta) -> bool + Send>;

/// What an async stream hands its caller.
enum Sink {
    Events(EventFn),
    Deltas(DeltaFn),
}

/// How long a library thread waits for more work before it exits.
const IDLE_THREAD: Duration = Duration::from_secs(10);

impl Gate for Limiter {
    fn try_acquire(&self) -> bool {
        Limiter::try_acquire(self)
    }
    fn release(&self) {
        Limiter::release(self)
    }
}

/// The executor of a new client; `max_concurrency` gates it.
pub(super) fn executor(o: &Options, limiter: Option<&Arc<Limiter>>) -> Executor {
    // About one thread per core runs whatever is ready; more start only
    // while callbacks block them all (see `pool::STALL`).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cfg = Config {
        threads: cores.clamp(2, 16).min(o.async_max_threads),
        max_threads: o.async_max_threads,
        stack_size: pool::STACK_SIZE,
        idle: IDLE_THREAD,
        queue_timeout: o.queue_timeout,
    };
    let gate = limiter.map(|l| l.clone() as Arc<dyn Gate>);
    let exec = Executor::new(cfg, gate);
    if let Some(l) = limiter {
        let weak = exec.weak();
        l.set_on_release(Box::new(move || weak.gate_opened()));
    }
    exec
}

pub(super) fn stats_json(exec: &Executor) -> Value {
    let s = exec.stats();
    json!({
        "threads": s.threads,
        "peak_threads": s.peak_threads,
        "in_flight": s.in_flight,
        "waiting_for_thread": s.waiting_for_thread,
        "waiting_for_slot": s.waiting_for_slot,
        "parked": s.parked,
    })
}

/// What an async call runs.
enum Work {
    Json {
        path: &'static str,
        text: String,
        v: Value,
    },
    Request(super::Call),
    Stream {
        api: Api,
        text: String,
        sink: Sink,
    },
    /// `warm(n)`: its network I/O on a library thread, not the caller's.
    Warm(usize),
}

impl Client {
    /// `chat` without blocking: `done` gets the response. Errors (invalid
    /// JSON, a closing client) mean nothing was queued and `done` never runs.
    pub fn chat_async(&self, request_json: &str, done: DoneFn) -> Result<CallHandle, Error> {
        self.json_async("/chat/completions", request_json, done)
    }

    /// `embeddings` without blocking; as [`Client::chat_async`].
    pub fn embeddings_async(&self, request_json: &str, done: DoneFn) -> Result<CallHandle, Error> {
        self.json_async("/embeddings", request_json, done)
    }

    /// `request` without blocking; as [`Client::chat_async`].
    pub fn request_async(
        &self,
        method: &str,
        path: &str,
        body_json: Option<&str>,
        done: DoneFn,
    ) -> Result<CallHandle, Error> {
        let call = request_call(method, path, body_json, self.needs_estimate())?;
        self.submit(Work::Request(call), done)
    }

    /// `request_raw` without blocking; as [`Client::chat_async`].
    pub fn request_raw_async(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        done: DoneFn,
    ) -> Result<CallHandle, Error> {
        let call = raw_call(method, path, content_type, body)?;
        self.submit(Work::Request(call), done)
    }

    /// `warm` without blocking: `done` gets a response whose `info.opened`
    /// says how many connections were opened (code and error as for a
    /// failed call when none could be).
    pub fn warm_async(&self, n: usize, done: DoneFn) -> Result<CallHandle, Error> {
        self.submit(Work::Warm(n), done)
    }

    /// `chat_stream` without blocking: `on_event` runs on a library thread
    /// per chunk, then `done` once with the response.
    pub fn chat_stream_async(
        &self,
        request_json: &str,
        on_event: EventFn,
        done: DoneFn,
    ) -> Result<CallHandle, Error> {
        self.stream_async(Api::Chat, request_json, on_event, done)
    }

    /// `responses` without blocking; as [`Client::chat_async`].
    pub fn responses_async(&self, request_json: &str, done: DoneFn) -> Result<CallHandle, Error> {
        self.json_async("/responses", request_json, done)
    }

    /// `messages` without blocking; as [`Client::chat_async`].
    pub fn messages_async(&self, request_json: &str, done: DoneFn) -> Result<CallHandle, Error> {
        self.json_async("/messages", request_json, done)
    }

    /// A stream of any of the three APIs without blocking: `on_event` per
    /// event on a library thread (as for [`Client::chat_stream_async`]).
    pub fn stream_async(
        &self,
        api: Api,
        request_json: &str,
        on_event: EventFn,
        done: DoneFn,
    ) -> Result<CallHandle, Error> {
        self.submit_stream(api, request_json, Sink::Events(on_event), done)
    }

    /// [`Client::stream_async`] with typed deltas.
    pub fn stream_deltas_async(
        &self,
        api: Api,
        request_json: &str,
        on_delta: DeltaFn,
        done: DoneFn,
    ) -> Result<CallHandle, Error> {
        self.submit_stream(api, request_json, Sink::Deltas(on_delta), done)
    }

    fn submit_stream(
        &self,
        api: Api,
        request_json: &str,
        sink: Sink,
        done: DoneFn,
    ) -> Result<CallHandle, Error> {
        parse_object(request_json, "request_json")?;
        let text = request_json.to_string();
        self.submit(Work::Stream { api, text, sink }, done)
    }

    /// Refuses new async calls, cancels those in flight and waits for their
    /// `done` callbacks (not when called from inside one: see
    /// [`Executor::close`]). Blocking calls are not affected.
    pub fn close_async(&self) {
        self.inner.calls.exec.close();
    }

    fn json_async(
        &self,
        path: &'static str,
        request_json: &str,
        done: DoneFn,
    ) -> Result<CallHandle, Error> {
        let v = parse_object(request_json, "request_json")?;
        let text = request_json.to_string();
        self.submit(Work::Json { path, text, v }, done)
    }

    fn submit(&self, work: Work, done: DoneFn) -> Result<CallHandle, Error> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let token = Arc::new(CallToken::new(id));
        let me = self.clone();
        let submitted = Instant::now();
        let task: Task = Box::new(move |start: Start| -> BoxFuture {
            Box::pin(async move {
                let ran = CatchPanic::new(boxed(|| me.run_work(start, work, submitted))).await;
                let mut r = ran.unwrap_or_else(|p| {
                    Response::failed(Error::new(Code::Panic, panic_message(&*p)), submitted)
                });
                r.info.call_id = Some(id);
                // The caller's code: on the thread's stack, not the fiber's.
                fiber::on_thread_stack(move || done(r));
            })
        });
        self.inner.calls.exec.submit(token, task).map_err(|_| {
            Error::new(
                Code::Cancelled,
                "client: being freed, no new async calls are accepted",
            )
        })
    }

    async fn run_work(&self, start: Start, work: Work, submitted: Instant) -> Response {
        let inner = &*self.inner;
        let refused = match start {
            Start::Run => None,
            Start::Cancelled => Some(Error::new(
                Code::Cancelled,
                "call cancelled before it started (llmpool_call_cancel or llmpool_client_cancel)",
            )),
            Start::Expired => Some(Error::new(
                Code::PoolExhausted,
                format!(
                    "max_concurrency ({}) calls already in flight; waited queue_timeout_ms ({} ms)",
                    inner.opts.max_concurrency,
                    inner.opts.queue_timeout.as_millis()
                ),
            )),
        };
        if let Some(e) = refused {
            let _in_flight = inner.metrics.start();
            inner.metrics.finish(e.code, submitted.elapsed());
            return Response::failed(e, submitted);
        }
        // Each call's future is made on the heap (see `exec::boxed`).
        match work {
            Work::Json { path, text, v } => boxed(|| self.json_call_fut(path, &text, v)).await,
            Work::Request(call) => boxed(|| self.execute_fut(call)).await,
            Work::Stream { api, text, sink } => match sink {
                Sink::Events(mut f) => {
                    let mut on_thread = |d: &str, e: &str| fiber::on_thread_stack(|| f(d, e));
                    boxed(|| self.stream_events_fut(api, &text, &mut on_thread)).await
                }
                Sink::Deltas(mut f) => {
                    let mut on_thread = |d: &Delta| fiber::on_thread_stack(|| f(d));
                    boxed(|| self.stream_deltas_fut(api, &text, &mut on_thread)).await
                }
            },
            Work::Warm(n) => {
                let started = Instant::now();
                let (mut r, opened) = match self.warm(n) {
                    Ok(k) => (
                        Response::without_answer(Code::Ok, String::new(), started),
                        k,
                    ),
                    Err(e) => (Response::failed(e, started), 0),
                };
                r.info.opened = Some(opened);
                // Cancelled: said so even when some connections opened first.
                if token::current().is_some_and(|t| t.is_cancelled()) {
                    r.code = Code::Cancelled;
                    r.error = "warm-up cancelled by llmpool_call_cancel or llmpool_client_cancel"
                        .to_string();
                }
                r
            }
        }
    }
}
