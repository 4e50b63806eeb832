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

#[cfg(feature = "redis")]
mod redis;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::Error;
#[cfg(feature = "redis")]
use crate::store::redis::RedisStore;

/// Requests and tokens per minute; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// The parsed `"rate_limits"` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub global: Limits,
    pub per_model: BTreeMap<String, Limits>,
    /// Honour the gateway's `x-ratelimit-remaining-*`/`-reset-*` headers.
    pub adaptive: bool,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            global: Limits::default(),
            per_model: BTreeMap::new(),
            adaptive: true,
        }
    }
}

impl RateLimitConfig {
    /// Parses the option `key`; errors name the offending member.
    pub fn parse(key: &str, v: &Value) -> Result<RateLimitConfig, Error> {
        let obj = v.as_object().ok_or_else(|| {
            Error::invalid(format!(
                "option \"{key}\": expected an object like {{\"rpm\": 600, \"tpm\": 100000}}"
            ))
        })?;
        let mut cfg = RateLimitConfig::default();
        for (k, v) in obj {
            let path = format!("{key}.{k}");
            match k.as_str() {
                "rpm" => cfg.global.rpm = Some(per_minute(&path, v)?),
                "tpm" => cfg.global.tpm = Some(per_minute(&path, v)?),
                "adaptive" => {
                    cfg.adaptive = v.as_bool().ok_or_else(|| {
                        Error::invalid(format!("option \"{path}\": expected true or false"))
                    })?
                }
                "per_model" => {
                    let models = v.as_object().ok_or_else(|| {
                        Error::invalid(format!(
                            "option \"{path}\": expected an object of model names to {{\"rpm\", \"tpm\"}}"
                        ))
                    })?;
                    for (model, lv) in models {
                        let mpath = format!("{path}.{model}");
                        let lobj = lv.as_object().ok_or_else(|| {
                            Error::invalid(format!(
                                "option \"{mpath}\": expected an object like {{\"rpm\": 60}}"
                            ))
                        })?;
                        let mut l = Limits::default();
                        for (lk, x) in lobj {
                            let p = format!("{mpath}.{lk}");
                            match lk.as_str() {
                                "rpm" => l.rpm = Some(per_minute(&p, x)?),
                                "tpm" => l.tpm = Some(per_minute(&p, x)?),
                                _ => return Err(Error::invalid(format!("unknown option \"{p}\""))),
                            }
                        }
                        cfg.per_model.insert(model.clone(), l);
                    }
                }
                _ => return Err(Error::invalid(format!("unknown option \"{path}\""))),
            }
        }
        Ok(cfg)
    }
}

fn per_minute(path: &str, v: &Value) -> Result<u64, Error> {
    v.as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::invalid(format!("option \"{path}\": expected a positive integer")))
}

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

/// No slot within the allowed wait: the call must not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub needed: Duration,
    pub why: String,
}

/// The buckets and blocks of one process, on a monotonic clock.
#[derive(Debug, Default)]
struct Local {
    /// Theoretical arrival time per bucket, in µs since `epoch`.
    tat: HashMap<String, f64>,
    /// The gateway said "0 remaining" for this key until this time (µs).
    blocked_until: HashMap<String, f64>,
}

/// Every rate limit of one client (see the module doc).
#[derive(Debug)]
pub struct RateLimiter {
    config: Option<RateLimitConfig>,
    adaptive: bool,
    epoch: Instant,
    local: Mutex<Local>,
    #[cfg(feature = "redis")]
    redis: Option<RedisStore>,
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
    /// headers are honoured, unless `adaptive` is off there).
    pub fn new(
        config: Option<RateLimitConfig>,
        #[cfg(feature = "redis")] redis: Option<RedisStore>,
    ) -> RateLimiter {
        RateLimiter {
            adaptive: config.as_ref().is_none_or(|c| c.adaptive),
            config,
            epoch: Instant::now(),
            local: Mutex::new(Local::default()),
            #[cfg(feature = "redis")]
            redis,
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
        let (mut all, token_demands) = self.demands(model, tokens);
        all.extend(token_demands.iter().cloned());
        let blocks: Vec<String> = if self.adaptive {
            block_keys(model).into()
        } else {
            Vec::new()
        };
        if all.is_empty() && blocks.is_empty() {
            return Ok(Ticket {
                wait: Duration::ZERO,
                backend: Backend::Local,
                token_demands,
            });
        }
        let max_wait_us = max_wait.as_micros().min(u64::MAX as u128) as f64;
        let (booked, backend) = self.book(&all, &blocks, max_wait_us);
        match booked {
            Ok(wait_us) => {
                if wait_us > 0.0 {
                    self.waited.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ticket {
                    wait: Duration::from_micros(wait_us.max(0.0) as u64),
                    backend,
                    token_demands,
                })
            }
            Err(needed_us) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                let needed = Duration::from_micros(needed_us.max(0.0) as u64);
                Err(Refusal {
                    needed,
                    why: self.describe(model, &all),
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
    fn book(
        &self,
        all: &[Demand],
        blocks: &[String],
        max_wait_us: f64,
    ) -> (Result<f64, f64>, Backend) {
        #[cfg(feature = "redis")]
        if let Some(store) = &self.redis {
            match redis::book(store, all, blocks, max_wait_us) {
                Ok(r) => return (r, Backend::Redis),
                Err(_) => {
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        (self.book_local(all, blocks, max_wait_us), Backend::Local)
    }

    fn now_us(&self) -> f64 {
        self.epoch.elapsed().as_micros() as f64
    }

    fn book_local(&self, all: &[Demand], blocks: &[String], max_wait_us: f64) -> Result<f64, f64> {
        let now = self.now_us();
        let mut st = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait: f64 = 0.0;
        for b in blocks {
            if let Some(until) = st.blocked_until.get(b) {
                wait = wait.max(until - now);
            }
        }
        for d in all {
            let tat = st.tat.get(&d.key).copied().unwrap_or(now).max(now);
            wait = wait.max(tat - d.tolerance_us - now);
        }
        if wait > max_wait_us {
            return Err(wait);
        }
        let at = now + wait;
        for d in all {
            let tat = st.tat.get(&d.key).copied().unwrap_or(now).max(at);
            st.tat.insert(d.key.clone(), tat + d.cost * d.interval_us);
        }
        st.blocked_until.retain(|_, until| *until > now);
        Ok(wait)
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
        #[cfg(feature = "redis")]
        if let (Backend::Redis, Some(store)) = (ticket.backend, &self.redis) {
            if redis::shift(store, &deltas).is_ok() {
                return;
            }
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        let mut st = self.local.lock().unwrap_or_else(|p| p.into_inner());
        for (key, delta) in deltas {
            if let Some(tat) = st.tat.get_mut(&key) {
                *tat += delta;
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
        #[cfg(feature = "redis")]
        if let Some(store) = &self.redis {
            if redis::block(store, &blocks).is_err() {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Also locally: a Redis that fails later still leaves this process
        // knowing what the gateway said.
        let now = self.now_us();
        let mut st = self.local.lock().unwrap_or_else(|p| p.into_inner());
        for (key, d) in blocks {
            let until = now + d.as_micros() as f64;
            let e = st.blocked_until.entry(key).or_insert(until);
            *e = e.max(until);
        }
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

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Parses a reset duration as OpenAI sends it (`6m0s`, `1s`, `20ms`,
/// `1h2m3.5s`, `250us`) or a plain number of seconds (`"0.5"`). At most a
/// day: anything longer is not believed.
pub fn parse_reset(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let secs = if let Ok(n) = s.parse::<f64>() {
        n
    } else {
        let mut total = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_end == 0 {
                return None;
            }
            let n: f64 = rest[..num_end].parse().ok()?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_end] {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                _ => return None,
            };
            total += n * scale;
            rest = &rest[unit_end..];
        }
        total
    };
    (secs.is_finite() && (0.0..=86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limiter(v: Value) -> RateLimiter {
        RateLimiter::new(
            Some(RateLimitConfig::parse("rate_limits", &v).unwrap()),
            #[cfg(feature = "redis")]
            None,
        )
    }

    #[test]
    fn parses_and_names_bad_keys() {
        let c = RateLimitConfig::parse(
            "rate_limits",
            &json!({"rpm": 600, "per_model": {"gpt-4.1": {"tpm": 1000}}}),
        )
        .unwrap();
        assert_eq!(c.global.rpm, Some(600));
        assert_eq!(c.per_model["gpt-4.1"].tpm, Some(1000));
        let err = |v: Value| {
            RateLimitConfig::parse("rate_limits", &v)
                .unwrap_err()
                .message
        };
        assert!(err(json!({"rpn": 1})).contains("rate_limits.rpn"));
        assert!(err(json!({"rpm": 0})).contains("rate_limits.rpm"));
        assert!(err(json!({"tpm": "5"})).contains("rate_limits.tpm"));
        assert!(
            err(json!({"per_model": {"m": {"rpx": 1}}})).contains("rate_limits.per_model.m.rpx")
        );
        assert!(err(json!({"per_model": {"m": 3}})).contains("rate_limits.per_model.m"));
        assert!(err(json!([])).contains("\"rate_limits\""));
    }

    #[test]
    fn parses_openai_reset_durations() {
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_reset("7d"), None);
        assert_eq!(parse_reset("s"), None);
        assert_eq!(parse_reset("-1s"), None);
        assert_eq!(parse_reset("48h"), None);
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
        let l = RateLimiter::new(
            None,
            #[cfg(feature = "redis")]
            None,
        );
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
