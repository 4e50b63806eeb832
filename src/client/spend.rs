//! The outermost layer of a JSON call: cost control around it (routing,
//! the response cache, the budget before; usage, cost and the cache fill
//! after), then the call itself through the rate gate.

use std::time::Instant;

use serde_json::Value;
use ureq::http;

use super::gate::tpm_tokens;
use super::{BodyReader, Call, Client};
use crate::assemble::Api;
use crate::cost::spend::{Hit, Plan, Prepared, Ready};
use crate::error::{Code, Error};
use crate::log::{log, next_call_id, Level, Scoped};
use crate::policy::ratelimit::{Refusal, Ticket};
use crate::request::RequestFacts;
use crate::response::{Completion, Cost, Endpoint, Info, Response, Timings};
use crate::store::redis::{Chain, Replies};

impl Client {
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
        let call = move || async move {
            let started = Instant::now();
            let mut facts = RequestFacts::read(&v, self.needs_estimate());
            facts.stream = stream;
            let asked = facts.model.clone();
            let (before, rate_slot) = self.prepare(path, request_json, v, &mut facts);
            let mut prepared = match before {
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
                Ok(Ready::Cached(p, hit)) => {
                    log!(
                        self.inner.log,
                        Level::Info,
                        Some(call_id),
                        "cache hit for POST {path} (model {}): answered without a request",
                        p.model.as_deref().unwrap_or("?")
                    );
                    return self.cache_hit(path, p, hit, started);
                }
                Ok(Ready::Send(p)) => p,
            };
            let call = Call {
                method: http::Method::POST,
                path: path.to_string(),
                // `settle` needs the rest of `prepared`, not the body.
                body: Some(std::mem::take(&mut prepared.body)),
                facts,
                content_type: None,
                rate_slot,
            };
            let mut r = self.run_call(call, on_body).await;
            patch(&mut r);
            let model = prepared.model.clone();
            // Settling never changes the outcome: bookkeeping errors are warnings.
            self.settle(prepared, &mut r);
            self.record(model.as_deref(), &r, started);
            r
        };
        Scoped::made(&self.inner.log, call_id, call).await
    }

    /// What must be asked before a call: the shared cache, the budget's
    /// hold, the rate-limit booking. With Redis they go as one chain, one
    /// round trip, each step only when the one before says to go on (a hit
    /// holds no money, a refused budget books no slot); what the chain
    /// could not ask (not in a cluster: their keys live in different
    /// slots) each store asks on its own, in the same order. Returns the
    /// cost side's decision and, when the chain made it, the booking.
    // Never inlined: its locals (the plan, the chain, the replies) would
    // otherwise sit in `spent_call`'s frame, which stays on an async call's
    // fiber stack for as long as the call waits.
    #[inline(never)]
    fn prepare(
        &self,
        path: &str,
        request_json: &str,
        v: Value,
        facts: &mut RequestFacts,
    ) -> (Result<Ready, Error>, Option<Result<Ticket, Refusal>>) {
        let inner = &*self.inner;
        let spend = &inner.spend;
        let mut ask = match spend.plan("POST", path, request_json, v, facts) {
            Plan::Ready(r) => return (Ok(r), None),
            Plan::Ask(a) => a,
        };
        let Some(redis) = inner.redis.as_ref().filter(|r| r.can_chain()) else {
            return (spend.answer(ask, &Replies::none()), None);
        };
        let mut chain = Chain::default();
        spend.steps(&mut ask, &mut chain);
        let rl = &inner.gate.ratelimit;
        let rate = rl.active().then(|| {
            let model = facts.model.as_deref().unwrap_or("");
            let tokens = if rl.counts_tokens(model) {
                tpm_tokens(facts, Some(ask.body()))
            } else {
                0
            };
            rl.ask(model, tokens, inner.opts.queue_timeout)
        });
        let rate_at = rate.as_ref().and_then(|a| chain.add(rl.step(a)));
        // A chain of one step is that store's own round trip: it asks alone.
        let replies = match chain.len() {
            0 | 1 => Replies::none(),
            // Unreachable or failing: each store asks on its own and
            // meets the failure as it would alone.
            _ => redis.chain(&chain).unwrap_or_else(|_| Replies::none()),
        };
        let ready = spend.answer(ask, &replies);
        let slot = match (rate, replies.get(rate_at)) {
            (Some(a), Some(reply)) => Some(rl.booked(a, Some(reply))),
            _ => None,
        };
        (ready, slot)
    }

    /// Applies cost accounting to a finished response.
    #[inline(never)]
    pub(crate) fn settle(&self, p: Prepared, r: &mut Response) {
        let ok = r.is_ok();
        let w = self
            .inner
            .spend
            .after(p, ok, r.status, &r.headers, &r.body, &mut r.info);
        if let Some(w) = w {
            crate::log::in_scope(Level::Warn, || w.clone());
            self.inner.metrics.warn(w.clone());
            r.info.warnings = vec![w];
        }
    }

    #[inline(never)]
    fn cache_hit(&self, path: &str, p: Prepared, hit: Hit, started: Instant) -> Response {
        let api = [Api::Chat, Api::Responses, Api::Messages]
            .into_iter()
            .find(|a| a.path() == path);
        let sum = match api {
            Some(a) => super::exchange::answer_fields(a, &hit.entry.body),
            None => crate::body::fields(&hit.entry.body),
        }
        .unwrap_or_default();
        let headers = crate::headers::Headers::from(hit.entry.headers);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let r = Response {
            code: Code::Ok,
            status: hit.entry.status,
            text: sum.text,
            error: String::new(),
            info: Box::new(Info {
                latency_ms: ms,
                request_id: headers.get("x-request-id").map(str::to_string),
                model: sum.model.or(p.model.clone()),
                usage: Some(sum.usage).filter(|u| !u.is_null()),
                finish_reason: sum.finish_reason,
                cache_hit: Some(true),
                cost: Some(Cost::Usd(0.0)),
                route: p.route(),
                endpoint: Some(Endpoint {
                    url: self.inner.opts.base_url.clone(),
                    failovers: 0,
                    proxy: None,
                }),
                timings: Timings {
                    total: ms,
                    ..Timings::default()
                },
                ..Info::default()
            }),
            headers,
            body: hit.entry.body,
            completion: match api {
                Some(_) => Completion::Body,
                None => Completion::None,
            },
        };
        self.inner.metrics.finish(Code::Ok, started.elapsed());
        self.record(r.info.model.as_deref(), &r, started);
        r
    }
}
