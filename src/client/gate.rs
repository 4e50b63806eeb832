//! The rate gate: a call waits here for its rate-limit slot and its
//! `max_concurrency` slot, runs through failover, then gives back what the
//! rate limits over-booked. Also the call's closing log line.

use std::time::Instant;

use super::retry::{cancelled_error, sleep_unless_cancelled};
use super::{BodyReader, Call, Client};
use crate::error::{Code, Error};
use crate::exec::token;
use crate::log::{log, next_call_id, Level, Scoped};
use crate::policy::ratelimit::{Refusal, Ticket};
use crate::request::RequestFacts;
use crate::response::Response;

impl Client {
    /// Runs `call`, reading 2xx bodies with `on_body`, in the logging
    /// context of the call of this client already running (a cost-managed
    /// call), else in a fresh one.
    pub(crate) async fn run_call(&self, call: Call, on_body: &mut BodyReader<'_>) -> Response {
        match self.current_call_id() {
            Some(id) => self.gated(id, call, on_body).await,
            None => {
                let id = next_call_id();
                let r = Scoped::made(&self.inner.log, id, || self.gated(id, call, on_body)).await;
                // No settlement follows to carry the deferred corrections.
                self.inner.gate.ratelimit.flush();
                r
            }
        }
    }

    async fn gated(&self, call_id: u64, call: Call, on_body: &mut BodyReader<'_>) -> Response {
        let started = Instant::now();
        let inner = &*self.inner;
        let _in_flight = inner.metrics.start();
        let deadline = started + inner.opts.queue_timeout;
        let mut call = call;
        let slot = call.rate_slot.take();
        let resp = match self.wait_for_rate_limits(&call, deadline, slot).await {
            Err(e) => Response::failed(e, started),
            Ok(ticket) => {
                let r = self.within_concurrency(&call, started, on_body).await;
                if let Some(t) = ticket {
                    // No answer at all: the gateway counted nothing.
                    let used = r.info.tokens().total.or((r.status == 0).then_some(0));
                    if let Some(used) = used {
                        inner.gate.ratelimit.correct(&t, used);
                    }
                }
                r
            }
        };
        inner.metrics.finish(resp.code, started.elapsed());
        self.log_outcome(call_id, &resp);
        resp
    }

    /// Holds a `max_concurrency` slot while the call runs (an async call's
    /// slot was taken by the executor before it started).
    async fn within_concurrency(
        &self,
        call: &Call,
        started: Instant,
        on_body: &mut BodyReader<'_>,
    ) -> Response {
        let inner = &*self.inner;
        let deadline = started + inner.opts.queue_timeout;
        let limiter = inner
            .gate
            .limiter
            .as_ref()
            .filter(|_| !token::current_permitted());
        let Some(l) = limiter else {
            return self.failover(call, started, on_body).await;
        };
        if inner.log.enabled(Level::Info) && l.is_full() {
            crate::log::in_scope(Level::Info, || {
                format!(
                    "rate limit: max_concurrency ({}) calls in flight, waiting up to {} ms for a slot",
                    inner.opts.max_concurrency,
                    inner.opts.queue_timeout.as_millis()
                )
            });
        }
        match l.acquire(deadline.saturating_duration_since(Instant::now())) {
            Some(_permit) => self.failover(call, started, on_body).await,
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
        }
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
    /// (an async call parks meanwhile, holding no thread), in the slot
    /// `booked` before when it was (see `Client::prepare`), else in one
    /// booked now. Fails unsent with `Code::RateLimited` when the wait
    /// would pass the deadline, `Code::Cancelled` on a cancel.
    pub(crate) async fn wait_for_rate_limits(
        &self,
        call: &Call,
        deadline: Instant,
        booked: Option<Result<Ticket, Refusal>>,
    ) -> Result<Option<Ticket>, Error> {
        let inner = &*self.inner;
        let rl = &inner.gate.ratelimit;
        if !rl.active() {
            return Ok(None);
        }
        let model = call.facts.model.as_deref().unwrap_or("");
        let booked = booked.unwrap_or_else(|| {
            let tokens = if rl.counts_tokens(model) {
                tpm_tokens(&call.facts, call.body.as_deref())
            } else {
                0
            };
            let max_wait = deadline.saturating_duration_since(Instant::now());
            rl.reserve(model, tokens, max_wait)
        });
        match booked {
            Ok(t) => {
                if !t.wait.is_zero() {
                    crate::log::in_scope(Level::Info, || {
                        format!(
                            "rate limit: waiting {} ms for a slot (rate_limits, model {model})",
                            t.wait.as_millis()
                        )
                    });
                    if !sleep_unless_cancelled(t.wait).await {
                        return Err(cancelled_error());
                    }
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
}

/// Tokens a call counts against a `tpm` limit: from its facts, or for a
/// call whose body was never read as JSON (a raw call), from its body.
pub(crate) fn tpm_tokens(facts: &RequestFacts, body: Option<&[u8]>) -> u64 {
    if facts.prompt_tokens.is_some() {
        return facts.tpm_tokens();
    }
    let parsed = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    parsed.map_or(0, |v| {
        crate::request::RequestFacts::read(&v, true).tpm_tokens()
    })
}
