//! Per-client counters and latency percentiles, reported as JSON.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::Code;
use crate::net::transport::ConnStats;
use crate::prometheus::{self, CallRecord, Labelled, Totals};

/// Latency percentiles are exact over this many most recent calls: a bounded
/// window keeps memory flat in processes that run for weeks.
pub const LATENCY_WINDOW: usize = 10_000;

/// Counters for one client. All updates are lock-free except the status map
/// and the latency window, which take a short mutex.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    reused: AtomicU64,
    in_flight: AtomicU64,
    free_reconnects: AtomicU64,
    key_refreshes: AtomicU64,
    detail: Mutex<Detail>,
    labelled: Mutex<Labelled>,
}

/// How many distinct warnings the metrics keep.
pub const MAX_WARNINGS: usize = 32;

#[derive(Debug, Default)]
struct Detail {
    statuses: BTreeMap<u16, u64>,
    codes: BTreeMap<&'static str, u64>,
    latencies_us: Vec<u64>,
    next: usize,
    max_us: u64,
    warnings: Vec<String>,
}

/// Decrements `in_flight` when the call ends, even by panic.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Marks a call as started.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Counts an extra attempt.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt served by a pooled connection.
    pub fn reused(&self) {
        self.reused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a silent reconnect after a pooled connection turned out dead.
    pub fn free_reconnect(&self) {
        self.free_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a key fetched from the key provider after a 401.
    pub fn key_refreshed(&self) {
        self.key_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one HTTP answer's status (every attempt, retried or not).
    pub fn status(&self, endpoint: &str, status: u16) {
        {
            let mut d = crate::sync::lock(&self.detail);
            *d.statuses.entry(status).or_default() += 1;
        }
        self.labelled().answer(endpoint, status);
    }

    /// Records a finished call's labelled series (Prometheus): duration,
    /// tokens, cost and time to first token by model and endpoint.
    pub fn record_call(&self, r: CallRecord<'_>) {
        self.labelled().call(r);
    }

    fn labelled(&self) -> std::sync::MutexGuard<'_, Labelled> {
        crate::sync::lock(&self.labelled)
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn prometheus(&self, conn: &ConnStats) -> String {
        let t = Totals {
            retries: self.retries.load(Ordering::Relaxed),
            reconnects: self.free_reconnects.load(Ordering::Relaxed),
            key_refreshes: self.key_refreshes.load(Ordering::Relaxed),
            connections_opened: conn.opened.load(Ordering::Relaxed),
            connections_reused: self.reused.load(Ordering::Relaxed),
            connections_open: conn.open_now.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        };
        prometheus::render(&self.labelled(), &t)
    }

    /// Records a finished call.
    pub fn finish(&self, code: Code, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if code != Code::Ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        let mut d = crate::sync::lock(&self.detail);
        *d.codes.entry(code.name()).or_default() += 1;
        d.max_us = d.max_us.max(us);
        if d.latencies_us.len() < LATENCY_WINDOW {
            d.latencies_us.push(us);
        } else {
            let i = d.next;
            d.latencies_us[i] = us;
        }
        d.next = (d.next + 1) % LATENCY_WINDOW;
    }

    /// Adds a warning shown in the metrics (e.g. TLS verification is off,
    /// a ledger write failed). A repeated warning is kept once, and only the
    /// newest [`MAX_WARNINGS`] are kept, so a failing disk cannot grow them
    /// call by call.
    pub fn warn(&self, w: impl Into<String>) {
        let w = w.into();
        let mut d = crate::sync::lock(&self.detail);
        d.warnings.retain(|old| *old != w);
        d.warnings.push(w);
        if d.warnings.len() > MAX_WARNINGS {
            d.warnings.remove(0);
        }
    }

    /// Calls finished so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The metrics JSON object.
    pub fn to_json(&self, conn: &ConnStats) -> Value {
        let requests = self.requests.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        let d = crate::sync::lock(&self.detail);
        let mut sorted = d.latencies_us.clone();
        sorted.sort_unstable();
        let pct = |q: f64| -> Value {
            if sorted.is_empty() {
                return Value::Null;
            }
            let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            json!(sorted[idx] as f64 / 1000.0)
        };
        let statuses: serde_json::Map<String, Value> = d
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let codes: serde_json::Map<String, Value> = d
            .codes
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "requests": requests,
            "errors": errors,
            "error_rate": if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            "retries": self.retries.load(Ordering::Relaxed),
            "reconnects_after_idle_close": self.free_reconnects.load(Ordering::Relaxed),
            "key_refreshes": self.key_refreshes.load(Ordering::Relaxed),
            "connections_opened": conn.opened.load(Ordering::Relaxed),
            "connections_reused": self.reused.load(Ordering::Relaxed),
            "connections_open": conn.open_now.load(Ordering::Relaxed),
            "buffer_bytes_held": conn.buffer_bytes.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "status_counts": statuses,
            "code_counts": codes,
            "latency_ms": {
                "window": sorted.len(),
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "max": if sorted.is_empty() { Value::Null } else { json!(d.max_us as f64 / 1000.0) },
            },
            "warnings": d.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles_add_up() {
        let m = Metrics::default();
        for i in 1..=100u64 {
            let _g = m.start();
            m.status("e", if i % 10 == 0 { 503 } else { 200 });
            let code = if i % 10 == 0 {
                Code::HttpStatus
            } else {
                Code::Ok
            };
            m.finish(code, Duration::from_millis(i));
        }
        let j = m.to_json(&ConnStats::default());
        assert_eq!(j["requests"], 100);
        assert_eq!(j["errors"], 10);
        assert_eq!(j["error_rate"], 0.1);
        assert_eq!(j["in_flight"], 0);
        assert_eq!(j["status_counts"]["200"], 90);
        assert_eq!(j["status_counts"]["503"], 10);
        assert_eq!(j["latency_ms"]["p50"], 50.0);
        assert_eq!(j["latency_ms"]["p90"], 90.0);
        assert_eq!(j["latency_ms"]["p99"], 99.0);
        assert_eq!(j["latency_ms"]["max"], 100.0);
    }

    #[test]
    fn window_stays_bounded() {
        let m = Metrics::default();
        for i in 0..(LATENCY_WINDOW as u64 + 500) {
            m.finish(Code::Ok, Duration::from_micros(i));
        }
        let j = m.to_json(&ConnStats::default());
        assert_eq!(j["latency_ms"]["window"], LATENCY_WINDOW);
        assert_eq!(j["requests"], LATENCY_WINDOW as u64 + 500);
    }

    #[test]
    fn empty_metrics_have_null_percentiles() {
        let j = Metrics::default().to_json(&ConnStats::default());
        assert_eq!(j["requests"], 0);
        assert!(j["latency_ms"]["p50"].is_null());
    }
}
