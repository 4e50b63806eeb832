//! Rate limits: `"rate_limits": {"rpm", "tpm", "per_model": {model: {"rpm", "tpm"}}}`
//! and the gateway's own `x-ratelimit-*` headers.
//!
//! Each limit is a GCRA bucket (a leaky bucket kept as one "theoretical
//! arrival time"): a limit of N per minute lets one unit through every
//! 60/N s, with a tolerance of one tenth of a second's worth of units, so
//! calls are spread evenly instead of bursting a minute's allowance at once
//! (the way gateways enforce per-minute limits). A call costs 1 request and
//! its estimated tokens (prompt estimate + the `max_tokens` it asks for);
//! after the call the token bucket is corrected with the real usage.
//!
//! [`RateLimiter::reserve`] never sleeps: it books the earliest slot that
//! fits every bucket (global and the model's) and returns how long to wait
//! for it, or refuses when that is longer than the caller may wait. The
//! caller does the waiting (see `Client::wait_for_rate_limits`), so an async
//! executor can wait without a thread.
//!
//! With Redis the buckets (and the gateway's "remaining: 0 until reset"
//! blocks) live in Redis, shared by every process and machine with the same
//! prefix, and the clock is Redis's; when Redis cannot be reached each
//! process falls back to its own local buckets.

mod config;
mod gateway;
mod local;
#[cfg(feature = "redis")]
mod redis;
#[cfg(not(feature = "redis"))]
mod redis {
    //! Never called: without the feature no `RedisStore` exists.
    use super::Buckets;
    use crate::store::redis::{RedisStore, StoreError};

    pub(super) fn buckets(store: &RedisStore) -> Box<dyn Buckets<Error = StoreError>> {
        match *store {}
    }
}

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

pub use config::{Limits, RateLimitConfig};
use gateway::header;
pub use gateway::parse_reset;
use local::LocalBuckets;

use crate::store::redis::{RedisStore, Reply, Step, StoreError};

/// One bucket a call must fit: its key (below `rl:`), microseconds per
/// unit, tolerance in microseconds, and the units this call costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    pub key: String,
    pub interval_us: f64,
    pub tolerance_us: f64,
    pub cost: f64,
}

/// Tolerance: a tenth of a second's worth of units (at least one unit), so
/// an idle limiter lets a small burst through but never a minute's worth.
fn demand(key: String, per_minute: u64, cost: u64) -> Demand {
    let interval_us = 60_000_000.0 / per_minute as f64;
    let per_tenth = (per_minute as f64 / 600.0).max(1.0);
    Demand {
        key,
        interval_us,
        tolerance_us: (per_tenth - 1.0) * interval_us,
        cost: cost as f64,
    }
}

/// Where a booking was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Redis,
}

/// A booked slot: wait `wait`, then send. Hand it back to
/// [`RateLimiter::correct`] with the real token count.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub wait: Duration,
    pub backend: Backend,
    token_demands: Vec<Demand>,
}

/// A booking asked for but not yet made: [`RateLimiter::ask`], then
/// [`RateLimiter::booked`].
#[derive(Debug)]
pub struct Asking {
    model: String,
    all: Vec<Demand>,
    token_demands: Vec<Demand>,
    blocks: Vec<String>,
    max_wait_us: f64,
}

/// No slot within the allowed wait: the call must not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub needed: Duration,
    pub why: String,
}

/// What a bucket store answered to a booking.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Booking {
    /// Booked: send after waiting this many µs.
    Booked { wait_us: f64 },
    /// Not booked: the earliest slot is this many µs away, more than the
    /// caller may wait.
    TooFar { needed_us: f64 },
}

/// Where buckets and the gateway's blocks are kept: in this process
/// ([`LocalBuckets`], which cannot fail) or in Redis.
trait Buckets: Send + Sync + fmt::Debug {
    type Error;

    /// Books the earliest slot that fits every demand and block, unless it
    /// is more than `max_wait_us` away.
    fn book(
        &self,
        all: &[Demand],
        blocks: &[String],
        max_wait_us: f64,
    ) -> Result<Booking, Self::Error>;

    /// [`Buckets::book`] as a step of a chain (see `store::redis::chain`),
    /// when this store can be asked in one.
    fn book_step(&self, _all: &[Demand], _blocks: &[String], _max_wait_us: f64) -> Option<Step> {
        None
    }

    /// The step's reply, read (`None`: not a booking's reply).
    fn booking(&self, _reply: &Reply) -> Option<Booking> {
        None
    }

    /// Adds each delta (µs) to its bucket: token corrections after a call.
    /// May be deferred until [`Buckets::flush`].
    fn shift(&self, deltas: &[(String, f64)]) -> Result<(), Self::Error>;

    /// Sends what `shift` deferred.
    fn flush(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Blocks each key for its duration (the gateway said 0 remaining).
    fn block(&self, blocks: &[(String, Duration)]) -> Result<(), Self::Error>;
}

/// Every rate limit of one client (see the module doc).
#[derive(Debug)]
pub struct RateLimiter {
    config: Option<RateLimitConfig>,
    adaptive: bool,
    /// Always kept: the fallback when the shared buckets cannot be reached.
    local: LocalBuckets,
    /// Redis, when the client has a `"redis"` option.
    shared: Option<Box<dyn Buckets<Error = StoreError>>>,
    /// Bookings that fell back to local buckets because Redis failed.
    pub fallbacks: AtomicU64,
    /// Calls that had to wait, and calls refused.
    pub waited: AtomicU64,
    pub refused: AtomicU64,
}

/// The block keys of `model`: requests, then tokens.
fn block_keys(model: &str) -> [String; 2] {
    [format!("block:req:{model}"), format!("block:tok:{model}")]
}

impl RateLimiter {
    /// `config` is the `rate_limits` option (none: only the gateway's
    /// headers are honoured, unless `adaptive` is off there); with `redis`
    /// the buckets are shared through it.
    pub fn new(config: Option<RateLimitConfig>, redis: Option<&RedisStore>) -> RateLimiter {
        RateLimiter {
            adaptive: config.as_ref().is_none_or(|c| c.adaptive),
            config,
            local: LocalBuckets::new(),
            shared: redis.map(redis::buckets),
            fallbacks: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
    /// Whether this limiter can ever make a call wait.
    pub fn active(&self) -> bool {
        self.adaptive || self.config.is_some()
    }

    /// Whether a call to `model` is limited by tokens (worth estimating them).
    pub fn counts_tokens(&self, model: &str) -> bool {
        self.config.as_ref().is_some_and(|c| {
            c.global.tpm.is_some() || c.per_model.get(model).is_some_and(|l| l.tpm.is_some())
        })
    }

    /// The buckets a call to `model` costing `tokens` must fit.
    pub fn demands(&self, model: &str, tokens: u64) -> (Vec<Demand>, Vec<Demand>) {
        let mut requests = Vec::new();
        let mut token_demands = Vec::new();
        let Some(cfg) = &self.config else {
            return (requests, token_demands);
        };
        let mut add = |scope: &str, l: &Limits| {
            if let Some(rpm) = l.rpm {
                requests.push(demand(format!("rpm:{scope}"), rpm, 1));
            }
            if let Some(tpm) = l.tpm {
                token_demands.push(demand(format!("tpm:{scope}"), tpm, tokens));
            }
        };
        add("*", &cfg.global);
        if let Some(l) = cfg.per_model.get(model) {
            add(&format!("m:{model}"), l);
        }
        (requests, token_demands)
    }

    /// Books the earliest slot for a call to `model` estimated at `tokens`
    /// that is at most `max_wait` away; never sleeps.
    pub fn reserve(&self, model: &str, tokens: u64, max_wait: Duration) -> Result<Ticket, Refusal> {
        self.booked(self.ask(model, tokens, max_wait), None)
    }

    /// The first half of [`RateLimiter::reserve`]: what to book.
    pub fn ask(&self, model: &str, tokens: u64, max_wait: Duration) -> Asking {
        let (mut all, token_demands) = self.demands(model, tokens);
        all.extend(token_demands.iter().cloned());
        let blocks: Vec<String> = if self.adaptive {
            block_keys(model).into()
        } else {
            Vec::new()
        };
        Asking {
            model: model.to_string(),
            all,
            token_demands,
            blocks,
            max_wait_us: max_wait.as_micros().min(u64::MAX as u128) as f64,
        }
    }

    /// The booking as a step of a chain, when there is one to make in a
    /// store that can be asked in one (Redis).
    pub fn step(&self, a: &Asking) -> Option<Step> {
        if a.all.is_empty() && a.blocks.is_empty() {
            return None;
        }
        self.shared
            .as_ref()?
            .book_step(&a.all, &a.blocks, a.max_wait_us)
    }

    /// The second half of [`RateLimiter::reserve`]: `reply`, the answer of
    /// [`RateLimiter::step`] when it ran, is the booking, or it is made now.
    pub fn booked(&self, a: Asking, reply: Option<&Reply>) -> Result<Ticket, Refusal> {
        let Asking {
            model,
            all,
            token_demands,
            blocks,
            max_wait_us,
        } = a;
        if all.is_empty() && blocks.is_empty() {
            return Ok(Ticket {
                wait: Duration::ZERO,
                backend: Backend::Local,
                token_demands,
            });
        }
        let answered = reply.and_then(|r| self.shared.as_ref()?.booking(r));
        let (booked, backend) = match answered {
            Some(b) => (b, Backend::Redis),
            None => self.book(&all, &blocks, max_wait_us),
        };
        match booked {
            Booking::Booked { wait_us } => {
                if wait_us > 0.0 {
                    self.waited.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ticket {
                    wait: Duration::from_micros(wait_us.max(0.0) as u64),
                    backend,
                    token_demands,
                })
            }
            Booking::TooFar { needed_us } => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let needed = Duration::from_micros(needed_us.max(0.0) as u64);
                Err(Refusal {
                    needed,
                    why: self.describe(&model, &all),
                })
            }
        }
    }

    fn describe(&self, model: &str, all: &[Demand]) -> String {
        let mut parts: Vec<String> = all
            .iter()
            .map(|d| {
                let (kind, scope) = d.key.split_once(':').unwrap_or((&d.key, ""));
                let per_min = (60_000_000.0 / d.interval_us).round();
                match scope {
                    "*" => format!("{kind} {per_min}"),
                    s => format!("{kind} {per_min} for {}", s.trim_start_matches("m:")),
                }
            })
            .collect();
        if self.adaptive {
            parts.push(format!("the gateway's x-ratelimit headers for \"{model}\""));
        }
        parts.join(", ")
    }

    /// Books in Redis when configured and reachable, else locally.
    fn book(&self, all: &[Demand], blocks: &[String], max_wait_us: f64) -> (Booking, Backend) {
        if let Some(shared) = &self.shared {
            match shared.book(all, blocks, max_wait_us) {
                Ok(b) => return (b, Backend::Redis),
                Err(_) => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let Ok(b) = self.local.book(all, blocks, max_wait_us);
        (b, Backend::Local)
    }

    /// Corrects the token buckets with the call's real token count.
    pub fn correct(&self, ticket: &Ticket, actual_tokens: u64) {
        let deltas: Vec<(String, f64)> = ticket
            .token_demands
            .iter()
            .map(|d| {
                (
                    d.key.clone(),
                    (actual_tokens as f64 - d.cost) * d.interval_us,
                )
            })
            .filter(|(_, delta)| *delta != 0.0)
            .collect();
        if deltas.is_empty() {
            return;
        }
        if let (Backend::Redis, Some(shared)) = (ticket.backend, &self.shared) {
            if shared.shift(&deltas).is_ok() {
                return;
            }
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(()) = self.local.shift(&deltas);
    }

    /// Sends the corrections [`RateLimiter::correct`] left to ride with the
    /// next Redis write; a call that has no other write after it (no cost
    /// control) calls this at its end.
    pub fn flush(&self) {
        if let Some(shared) = &self.shared {
            if shared.flush().is_err() {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reads the gateway's `x-ratelimit-*` headers from an answer for
    /// `model`: a remaining count of 0 blocks later calls to that model
    /// until the matching reset.
    pub fn observe(&self, model: &str, headers: &[(String, String)]) {
        if !self.adaptive {
            return;
        }
        let [req_key, tok_key] = block_keys(model);
        let mut blocks = Vec::new();
        for (remaining, reset, key) in [
            (
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
                req_key,
            ),
            (
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
                tok_key,
            ),
        ] {
            let exhausted = header(headers, remaining)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .is_some_and(|n| n <= 0.0);
            if !exhausted {
                continue;
            }
            if let Some(d) = header(headers, reset).and_then(parse_reset) {
                blocks.push((key, d));
            }
        }
        if blocks.is_empty() {
            return;
        }
        if let Some(shared) = &self.shared {
            if shared.block(&blocks).is_err() {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Also locally: a Redis that fails later still leaves this process
        // knowing what the gateway said.
        let Ok(()) = self.local.block(&blocks);
    }

    /// The `rate_limits` section of the metrics.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "waited": self.waited.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "redis_fallbacks": self.fallbacks.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limiter(v: Value) -> RateLimiter {
        RateLimiter::new(
            Some(RateLimitConfig::parse("rate_limits", &v).unwrap()),
            None,
        )
    }

    #[test]
    fn spaces_requests_evenly_and_refuses_beyond_the_wait() {
        let l = limiter(json!({"rpm": 600, "adaptive": false}));
        let mut waits = Vec::new();
        for _ in 0..5 {
            waits.push(l.reserve("m", 0, Duration::from_secs(10)).unwrap().wait);
        }
        // 600 rpm: one every 100 ms, tolerance of one unit (no burst).
        assert_eq!(waits[0], Duration::ZERO);
        for (i, w) in waits.iter().enumerate().skip(1) {
            let want = 100_000.0 * i as f64;
            let got = w.as_micros() as f64;
            assert!((got - want).abs() < 20_000.0, "call {i}: {w:?}");
        }
        let r = l.reserve("m", 0, Duration::from_millis(100)).unwrap_err();
        assert!(r.needed > Duration::from_millis(400), "{r:?}");
        assert!(r.why.contains("rpm 600"), "{}", r.why);
    }

    #[test]
    fn large_limits_allow_a_tenth_of_a_second_burst() {
        let l = limiter(json!({"rpm": 60000, "adaptive": false}));
        // 1000/s: 100 at once, then spaced by 1 ms.
        for _ in 0..100 {
            assert_eq!(
                l.reserve("m", 0, Duration::ZERO).unwrap().wait,
                Duration::ZERO
            );
        }
        assert!(l.reserve("m", 0, Duration::ZERO).is_err());
    }

    #[test]
    fn tokens_are_booked_then_corrected() {
        let l = limiter(json!({"tpm": 60000, "adaptive": false}));
        // 1000 tokens/s, tolerance 100 tokens.
        let t = l.reserve("m", 5000, Duration::from_secs(60)).unwrap();
        assert_eq!(t.wait, Duration::ZERO);
        // The next call waits for the 5000 booked tokens...
        let w = l.reserve("m", 10, Duration::ZERO).unwrap_err().needed;
        assert!(w > Duration::from_millis(4800), "{w:?}");
        // ...unless the call turned out to use only 100.
        l.correct(&t, 100);
        let w = l.reserve("m", 10, Duration::from_millis(50)).unwrap().wait;
        assert!(w <= Duration::from_millis(5), "{w:?}");
    }

    #[test]
    fn per_model_limits_apply_only_to_their_model() {
        let l = limiter(json!({"per_model": {"slow": {"rpm": 60}}, "adaptive": false}));
        assert!(l.reserve("slow", 0, Duration::ZERO).is_ok());
        let r = l.reserve("slow", 0, Duration::ZERO).unwrap_err();
        assert!(r.why.contains("rpm 60 for slow"), "{}", r.why);
        assert!(l.reserve("fast", 0, Duration::ZERO).is_ok());
        assert!(l.reserve("fast", 0, Duration::ZERO).is_ok());
    }

    #[test]
    fn the_gateways_zero_remaining_blocks_until_its_reset() {
        let l = RateLimiter::new(None, None);
        assert!(l.active());
        let h = |r: &str, reset: &str| {
            vec![
                ("X-RateLimit-Remaining-Requests".to_string(), r.to_string()),
                ("x-ratelimit-reset-requests".to_string(), reset.to_string()),
            ]
        };
        l.observe("m", &h("3", "6m0s"));
        assert_eq!(
            l.reserve("m", 0, Duration::ZERO).unwrap().wait,
            Duration::ZERO
        );
        l.observe("m", &h("0", "300ms"));
        let r = l.reserve("m", 0, Duration::ZERO).unwrap_err();
        assert!(r.needed > Duration::from_millis(200), "{r:?}");
        assert!(r.why.contains("x-ratelimit"), "{}", r.why);
        let t = l.reserve("m", 0, Duration::from_secs(1)).unwrap();
        assert!(t.wait > Duration::from_millis(200) && t.wait <= Duration::from_millis(300));
        // Other models are not blocked.
        assert!(l.reserve("other", 0, Duration::ZERO).is_ok());
        std::thread::sleep(Duration::from_millis(320));
        assert!(l.reserve("m", 0, Duration::ZERO).is_ok());
    }
}
