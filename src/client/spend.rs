//! The outermost layer of a JSON call: cost control around it (routing,
//! the response cache, the budget before; usage, cost and the cache fill
//! after), then the call itself through the rate gate.

use std::time::Instant;

use serde_json::Value;
use ureq::http;

use super::{BodyReader, Call, Client};
use crate::assemble::Api;
use crate::cost::spend::{Hit, Prepared, Ready};
use crate::error::Code;
use crate::log::{log, next_call_id, Level, Scoped};
use crate::request::RequestFacts;
use crate::response::{Completion, Cost, Endpoint, Info, Response, Timings};

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
        let call = async move {
            let started = Instant::now();
            let mut facts = RequestFacts::read(&v, self.needs_estimate());
            facts.stream = stream;
            let asked = facts.model.clone();
            let before = self
                .inner
                .spend
                .before("POST", path, request_json, v, &mut facts);
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
            info: Info {
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
            },
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
