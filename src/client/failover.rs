//! Failover: the endpoints in order (circuit breakers first), each tried
//! with its retries, until one gives an answer worth returning.

use std::time::Instant;

use super::exchange::Tally;
use super::{BodyReader, Call, Client};
use crate::error::Code;
use crate::log::{log, Level};
use crate::policy::failover::Circuit;
use crate::response::{Endpoint, Response};

impl Client {
    pub(crate) async fn failover(
        &self,
        call: &Call,
        started: Instant,
        on_body: &mut BodyReader<'_>,
    ) -> Response {
        let inner = &*self.inner;
        let eps = &inner.endpoints;
        let order = eps.order(Instant::now());
        let mut failovers = 0u32;
        let mut t = Tally::default();
        for (n, &i) in order.iter().enumerate() {
            let done = self.attempts_on(i, call, on_body, &mut t).await;
            let worth_failover = done.worth_failover();
            let url = &eps.get(i).base_url;
            self.log_circuit(eps.record(i, !worth_failover, Instant::now()), url);
            if worth_failover
                && n + 1 < order.len()
                && done.err.as_ref().is_some_and(|e| e.code != Code::Cancelled)
            {
                failovers += 1;
                crate::log::in_scope(Level::Warn, || {
                    format!(
                        "failover: {url} failed ({}); trying {}",
                        done.err.as_ref().map_or("", |e| e.message.as_str()),
                        eps.get(order[n + 1]).base_url
                    )
                });
                continue;
            }
            let mut r = self.finish(call, started, &t, done);
            let proxy = inner.opts.proxies.for_url(url);
            r.info.endpoint = Some(Endpoint {
                url: url.clone(),
                failovers,
                proxy: proxy.map(|p| p.label()),
            });
            if let Some(p) = proxy.filter(|_| r.status != 0 && r.code != Code::Ok) {
                // A plain-http answer may come from the proxy itself.
                if r.status == 407 {
                    r.error = format!("proxy {} answered HTTP 407: {}", p.label(), r.error);
                } else if url.starts_with("http://") {
                    r.error = format!("{} (through proxy {})", r.error, p.label());
                }
            }
            return r;
        }
        unreachable!("an endpoint list is never empty")
    }

    fn log_circuit(&self, change: Option<Circuit>, url: &str) {
        let log = &self.inner.log;
        match change {
            Some(Circuit::Open) => {
                let (n, cooldown) = self.inner.endpoints.breaker();
                log!(
                    log,
                    Level::Warn,
                    self.current_call_id(),
                    "circuit breaker opened for {url} after {n} consecutive failures: skipped for {} ms",
                    cooldown.as_millis()
                );
            }
            Some(_) => log!(
                log,
                Level::Info,
                self.current_call_id(),
                "circuit breaker closed for {url}: it answered again"
            ),
            None => {}
        }
    }
}
