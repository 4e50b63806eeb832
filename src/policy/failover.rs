//! Endpoint failover with a per-endpoint circuit breaker.
//!
//! Endpoints are tried in list order (those with `weight: 0` are standbys,
//! tried after every weighted one). An endpoint whose breaker is open is
//! skipped until its cooldown passes, then gets one trial call (half-open);
//! when every endpoint is open, they are still tried in order rather than
//! failing without trying.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::secret::ApiKey;

/// One gateway endpoint for failover.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    pub weight: u32,
}

/// Breaker state, as reported in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    requests: u64,
    failures: u64,
}

/// One gateway endpoint and its health.
#[derive(Debug)]
pub struct EndpointState {
    pub base_url: String,
    /// Overrides the client's key for this endpoint when set.
    pub api_key: Option<ApiKey>,
    pub weight: u32,
    state: Mutex<BreakerState>,
}

/// The ordered endpoints of a client.
#[derive(Debug)]
pub struct Endpoints {
    list: Vec<EndpointState>,
    failures_to_open: u32,
    cooldown: Duration,
}

impl Endpoints {
    /// `endpoints` when given, else the single `base_url`; a breaker opens
    /// after `circuit_failures` failures in a row for `cooldown`.
    pub fn new(
        base_url: &str,
        endpoints: &[Endpoint],
        circuit_failures: u32,
        cooldown: Duration,
    ) -> Endpoints {
        let list = if endpoints.is_empty() {
            vec![EndpointState::new(base_url.to_string(), None, 1)]
        } else {
            endpoints
                .iter()
                .map(|e| EndpointState::new(e.base_url.clone(), e.api_key.clone(), e.weight))
                .collect()
        };
        Endpoints {
            list,
            failures_to_open: circuit_failures.max(1),
            cooldown,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, i: usize) -> &EndpointState {
        &self.list[i]
    }

    /// The order to try endpoints in now: available ones first (weighted
    /// before standbys, list order within each), open circuits last.
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.list.len()).collect();
        idx.sort_by_key(|&i| {
            let e = &self.list[i];
            let open = e.circuit(now) == Circuit::Open;
            (open, e.weight == 0, i)
        });
        idx
    }

    /// Records the outcome of a call on endpoint `i`; returns the breaker's
    /// new state when this outcome changed it (for the log).
    pub fn record(&self, i: usize, ok: bool, now: Instant) -> Option<Circuit> {
        let e = &self.list[i];
        let mut s = e.lock();
        let was_open = s.open_until.is_some();
        s.requests += 1;
        if ok {
            s.consecutive_failures = 0;
            s.open_until = None;
            was_open.then_some(Circuit::Closed)
        } else {
            s.failures += 1;
            s.consecutive_failures += 1;
            // A failed half-open trial re-opens at once; a closed circuit
            // opens after N consecutive failures.
            if s.consecutive_failures >= self.failures_to_open {
                s.open_until = Some(now + self.cooldown);
                return Some(Circuit::Open);
            }
            None
        }
    }

    /// Consecutive failures that open a circuit, and how long it stays open.
    pub fn breaker(&self) -> (u32, Duration) {
        (self.failures_to_open, self.cooldown)
    }

    /// Per-endpoint metrics.
    pub fn to_json(&self, now: Instant) -> Value {
        Value::Array(
            self.list
                .iter()
                .map(|e| {
                    let circuit = e.circuit(now);
                    let s = e.lock();
                    json!({
                        "base_url": e.base_url,
                        "requests": s.requests,
                        "failures": s.failures,
                        "consecutive_failures": s.consecutive_failures,
                        "circuit": match circuit {
                            Circuit::Closed => "closed",
                            Circuit::Open => "open",
                            Circuit::HalfOpen => "half_open",
                        },
                    })
                })
                .collect(),
        )
    }
}

impl EndpointState {
    fn new(base_url: String, api_key: Option<ApiKey>, weight: u32) -> EndpointState {
        EndpointState {
            base_url,
            api_key,
            weight,
            state: Mutex::new(BreakerState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        crate::sync::lock(&self.state)
    }

    /// The breaker's state at `now`.
    pub fn circuit(&self, now: Instant) -> Circuit {
        match self.lock().open_until {
            None => Circuit::Closed,
            Some(t) if now < t => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(weights: &[u32]) -> Endpoints {
        let list: Vec<Endpoint> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| Endpoint {
                base_url: format!("http://127.0.0.1:{}/v1", 9000 + i),
                api_key: None,
                weight: *w,
            })
            .collect();
        Endpoints::new("http://unused/v1", &list, 2, Duration::from_millis(100))
    }

    #[test]
    fn list_order_with_standbys_last() {
        let e = eps(&[0, 1, 1]);
        assert_eq!(e.order(Instant::now()), vec![1, 2, 0]);
    }

    #[test]
    fn breaker_opens_after_n_failures_then_half_opens_then_closes() {
        let e = eps(&[1, 1]);
        let t0 = Instant::now();
        assert_eq!(e.record(0, false, t0), None);
        assert_eq!(e.get(0).circuit(t0), Circuit::Closed);
        assert_eq!(e.record(0, false, t0), Some(Circuit::Open));
        assert_eq!(e.get(0).circuit(t0), Circuit::Open);
        assert_eq!(e.order(t0), vec![1, 0], "open circuits go last");
        let later = t0 + Duration::from_millis(150);
        assert_eq!(e.get(0).circuit(later), Circuit::HalfOpen);
        assert_eq!(e.order(later), vec![0, 1]);
        e.record(0, false, later);
        assert_eq!(
            e.get(0).circuit(later),
            Circuit::Open,
            "failed trial re-opens"
        );
        let later2 = later + Duration::from_millis(150);
        assert_eq!(e.record(0, true, later2), Some(Circuit::Closed));
        assert_eq!(e.record(0, true, later2), None);
        assert_eq!(e.get(0).circuit(later2), Circuit::Closed);
        let j = e.to_json(later2);
        assert_eq!(j[0]["failures"], 3);
        assert_eq!(j[0]["requests"], 5);
    }

    #[test]
    fn single_base_url_without_endpoints() {
        let e = Endpoints::new("https://gw.example/v1", &[], 5, Duration::from_secs(1));
        assert_eq!(e.len(), 1);
        assert_eq!(e.get(0).base_url, "https://gw.example/v1");
    }
}
