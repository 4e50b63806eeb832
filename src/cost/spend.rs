//! Cost control around a call: routing, cache, budget before it; usage, cost
//! and cache fill after it. Built from the `prices`, `budget`, `cache` and
//! `routing` options; the pure logic lives in `crate::cost`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use crate::cost::cache::SharedCache;
use crate::cost::{
    take_cache_directive, Asked, Budget, CacheKey, CachedEntry, PriceTable, Reservation,
    ResponseCache, Router, Usage,
};
use crate::error::{Code, Error};
use crate::request::estimate::estimate_prompt_tokens;
use crate::request::RequestFacts;
use crate::response::{Cost, Info, Route};
use crate::store::redis::{Chain, RedisStore, Replies};

/// Output tokens assumed for the budget check when a request sets no
/// `max_tokens`: a worst case for most chat answers.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// The cost options (`prices`, `budget`, `cache`, `routing`) as given, and
/// how long a budget hold counts when its process may have died unseen
/// (`options.rs` works it out from the call's timeouts and retries).
#[derive(Debug, Clone, Default)]
pub struct SpendConfig {
    pub prices: Option<Value>,
    pub budget: Option<Value>,
    pub cache: Option<Value>,
    pub routing: Option<Value>,
    pub hold_ttl: Duration,
}

/// Cost-control state of one client.
#[derive(Debug)]
pub struct Spend {
    prices: PriceTable,
    budget: Option<Budget>,
    cache: Option<ResponseCache>,
    router: Option<Router>,
    /// `cache.shared`: the Redis side of the cache.
    shared_cache: Option<Box<dyn SharedCache>>,
    /// Sends, at the end of a call, the Redis writes deferred during it
    /// (rate-limit corrections, cache fills) that no commit carried.
    redis: Option<RedisStore>,
    per_model: Mutex<BTreeMap<String, ModelTotals>>,
}

#[derive(Debug, Default, Clone)]
struct ModelTotals {
    calls: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    cost_usd: f64,
    unpriced_calls: u64,
    cache_hits: u64,
}

/// What `before` decided for one call; hand it back to `after`.
#[derive(Debug)]
pub struct Prepared {
    /// The body to send (rewritten when routed or a directive was stripped).
    pub body: Vec<u8>,
    pub model: Option<String>,
    pub routed_from: Option<String>,
    pub route_rule: Option<String>,
    cache_key: Option<CacheKey>,
    reservation: Option<Reservation>,
}

impl Prepared {
    /// Which alias and rule chose the model, when routing did.
    pub fn route(&self) -> Option<Route> {
        Some(Route {
            from: self.routed_from.clone()?,
            rule: self.route_rule.clone().unwrap_or_default(),
        })
    }
}

/// What [`Spend::plan`] decided before asking any shared store.
pub enum Plan {
    /// Decided already (a hit in the process's own cache).
    Ready(Ready),
    /// Ask the shared stores first: [`Spend::steps`], [`Spend::answer`].
    Ask(Ask),
}

/// What the shared stores must be asked before a call.
pub struct Ask {
    prepared: Prepared,
    /// Whether the shared cache is asked (the process's own cache missed).
    lookup: bool,
    budget: Hold,
    /// Where the lookup and the hold are in the chain, when they are.
    cache_at: Option<usize>,
    budget_at: Option<usize>,
}

impl Ask {
    /// The body the call will send.
    pub fn body(&self) -> &[u8] {
        &self.prepared.body
    }
}

/// The budget's part of a call not yet sent.
enum Hold {
    /// No budget.
    None,
    /// A hold to place.
    Ask(Asked),
    /// The model has no price: the call is refused, unless the cache
    /// answers it.
    Unpriced(Error),
}

/// What `before` decided.
pub enum Ready {
    /// Send the request.
    Send(Prepared),
    /// A cache hit: answer with the stored entry, send nothing.
    Cached(Prepared, Hit),
}

/// A cache hit: the stored answer.
pub struct Hit {
    pub entry: CachedEntry,
}

impl Spend {
    /// Validates the cost options; errors name the option.
    /// `redis`, when set, holds the budget (see [`Budget::shared`]).
    pub fn new(o: &SpendConfig, redis: Option<&RedisStore>) -> Result<Spend, Error> {
        let mut prices = PriceTable::with_defaults();
        if let Some(p) = &o.prices {
            prices
                .apply_json(p)
                .map_err(|e| Error::invalid(format!("option \"prices\": {e}")))?;
        }
        let budget = o
            .budget
            .as_ref()
            .map(|b| Budget::shared(b, o.hold_ttl, redis))
            .transpose()
            .map_err(|e| Error::invalid(format!("option \"budget\": {e}")))?;
        let cache = o
            .cache
            .as_ref()
            .map(ResponseCache::from_json)
            .transpose()
            .map_err(|e| Error::invalid(format!("option \"cache\": {e}")))?;
        let shared = cache.as_ref().filter(|c| c.shared());
        if shared.is_some() && redis.is_none() {
            return Err(Error::invalid(
                "option \"cache.shared\": needs the \"redis\" option (where the shared entries live)",
            ));
        }
        let shared_cache = shared.zip(redis).map(|(c, store)| c.shared_in(store));
        let router = o
            .routing
            .as_ref()
            .map(Router::from_json)
            .transpose()
            .map_err(|e| Error::invalid(format!("option \"routing\": {e}")))?;
        Ok(Spend {
            prices,
            budget,
            cache,
            router,
            shared_cache,
            redis: redis.cloned(),
            per_model: Mutex::new(BTreeMap::new()),
        })
    }

    /// The Redis side of the cache: a hit there, or `None` (miss, or Redis
    /// unreachable: the local cache already answered what it could).
    fn shared_get(&self, key: &CacheKey) -> Option<CachedEntry> {
        self.shared_cache.as_ref()?.lookup(key)
    }

    fn shared_put(&self, key: &CacheKey, entry: &CachedEntry) {
        if let Some(s) = &self.shared_cache {
            s.store(key, entry);
        }
    }

    /// Whether a call needs its prompt-token estimate here (a budget, or
    /// routing rules that may look at it).
    pub fn needs_estimate(&self) -> bool {
        self.budget.is_some() || self.router.is_some()
    }

    /// Routes, checks the cache and reserves budget for a JSON request
    /// whose `facts` were read from `v`; routing updates `facts.model`.
    /// [`Spend::plan`], then [`Spend::answer`] with every store asked on
    /// its own.
    pub fn before(
        &self,
        method: &str,
        path: &str,
        original: &str,
        v: Value,
        facts: &mut RequestFacts,
    ) -> Result<Ready, Error> {
        match self.plan(method, path, original, v, facts) {
            Plan::Ready(r) => Ok(r),
            Plan::Ask(ask) => self.answer(ask, &Replies::none()),
        }
    }

    /// The first half of [`Spend::before`]: routes, asks the process's own
    /// cache and bounds the cost, leaving what the shared stores must be
    /// asked (the shared cache, the budget's hold) to [`Spend::steps`] and
    /// [`Spend::answer`].
    pub fn plan(
        &self,
        method: &str,
        path: &str,
        original: &str,
        mut v: Value,
        facts: &mut RequestFacts,
    ) -> Plan {
        let cacheable = self
            .cache
            .as_ref()
            .is_some_and(|c| ResponseCache::is_cacheable(&v, c.default_on()));
        let mut rewritten = take_cache_directive(&mut v).is_some();
        let mut routed_from = None;
        let mut route_rule = None;
        let routed = self
            .router
            .as_ref()
            .and_then(|r| r.route_estimated(&v, facts.prompt_tokens));
        if let Some(d) = routed {
            facts.model = Some(d.model.clone());
            v["model"] = Value::String(d.model.clone());
            routed_from = Some(d.from);
            route_rule = Some(d.rule);
            rewritten = true;
        }
        let model = facts.model.clone();
        let body = if rewritten {
            serde_json::to_vec(&v).unwrap_or_else(|_| original.as_bytes().to_vec())
        } else {
            original.as_bytes().to_vec()
        };
        let mut prepared = Prepared {
            body,
            model: model.clone(),
            routed_from,
            route_rule,
            cache_key: None,
            reservation: None,
        };
        let mut lookup = false;
        if let (true, Some(cache)) = (cacheable, &self.cache) {
            let key = ResponseCache::key(method, path, Some(&v));
            if let Some(entry) = cache.get(&key, Instant::now()) {
                self.count_hit(model.as_deref().unwrap_or("unknown"));
                return Plan::Ready(Ready::Cached(prepared, Hit { entry }));
            }
            lookup = self.shared_cache.is_some();
            prepared.cache_key = Some(key);
        }
        let budget = match &self.budget {
            None => Hold::None,
            Some(budget) => {
                let name = model.as_deref().unwrap_or("");
                let prompt = facts
                    .prompt_tokens
                    .unwrap_or_else(|| estimate_prompt_tokens(&v));
                let est =
                    self.prices
                        .max_cost(name, prompt, facts.max_output, DEFAULT_MAX_OUTPUT_TOKENS);
                match est {
                    Some(est) => Hold::Ask(budget.ask(name, est, SystemTime::now())),
                    None => Hold::Unpriced(Error::new(
                        Code::BudgetExceeded,
                        format!(
                            "a budget is set but model \"{name}\" has no price, so its cost cannot be bounded; add it to the \"prices\" option"
                        ),
                    )),
                }
            }
        };
        Plan::Ask(Ask {
            prepared,
            lookup,
            budget,
            cache_at: None,
            budget_at: None,
        })
    }

    /// Adds to `chain` what `ask` needs from Redis that can go in one: the
    /// shared cache's lookup, then the budget's hold. When the hold cannot
    /// go in the chain (or cannot be placed at all), the chain is sealed:
    /// nothing after it may run before the budget said yes.
    pub fn steps(&self, ask: &mut Ask, chain: &mut Chain) {
        if let (true, Some(shared), Some(key)) =
            (ask.lookup, &self.shared_cache, &ask.prepared.cache_key)
        {
            ask.cache_at = chain.add(Some(shared.lookup_step(key)));
        }
        match (&ask.budget, &self.budget) {
            (Hold::None, _) => {}
            (Hold::Ask(a), Some(budget)) => {
                ask.budget_at = chain.add(budget.step(a));
                if ask.budget_at.is_none() {
                    chain.seal();
                }
            }
            _ => chain.seal(),
        }
    }

    /// The second half of [`Spend::before`]: reads the replies of the
    /// steps that ran, and asks on its own whatever did not run.
    pub fn answer(&self, ask: Ask, replies: &Replies) -> Result<Ready, Error> {
        let mut prepared = ask.prepared;
        if let (true, Some(key)) = (ask.lookup, &prepared.cache_key) {
            let found = match (replies.get(ask.cache_at), &self.shared_cache) {
                (Some(reply), Some(shared)) => shared.found(key, reply),
                _ => self.shared_get(key),
            };
            if let Some(entry) = found {
                self.count_hit(prepared.model.as_deref().unwrap_or("unknown"));
                prepared.cache_key = None;
                return Ok(Ready::Cached(prepared, Hit { entry }));
            }
        }
        match (ask.budget, &self.budget) {
            (Hold::Unpriced(e), _) => return Err(e),
            (Hold::Ask(a), Some(budget)) => {
                let r = budget
                    .place(a, replies.get(ask.budget_at))
                    .map_err(|e| Error::new(Code::BudgetExceeded, e.to_string()))?;
                prepared.reservation = Some(r);
            }
            _ => {}
        }
        Ok(Ready::Send(prepared))
    }

    /// Records usage and cost, settles the budget, fills the cache, and adds
    /// `cost_usd` (a number, or "unknown") and routing facts to `info`.
    ///
    /// Returns a warning when the budget ledger could not be written: the
    /// call itself stands (the gateway answered and bills it; the spend is
    /// kept and written later), so bookkeeping never turns it into a failure
    /// that a caller might retry and pay twice.
    pub fn after(
        &self,
        p: Prepared,
        ok: bool,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        info: &mut Info,
    ) -> Option<String> {
        let model = info
            .model
            .clone()
            .or(p.model.clone())
            .unwrap_or_else(|| "unknown".to_string());
        let usage = info.usage.as_ref().and_then(Usage::from_usage);
        let cost = usage.and_then(|u| self.prices.cost(&model, &u));
        info.cost = Some(match (usage, cost) {
            (Some(_), Some(c)) => Cost::Usd(c),
            (None, _) if !ok => Cost::Usd(0.0),
            _ => Cost::Unknown,
        });
        info.cache_hit = Some(false);
        if let Some(route) = p.route() {
            info.route = Some(route);
        }
        if ok || usage.is_some() {
            self.count(&model, usage, cost);
        }
        // The cache fill first: deferred, it rides with the budget commit.
        if let (true, Some(cache), Some(key)) = (ok, &self.cache, p.cache_key) {
            let entry = CachedEntry {
                status,
                body: body.to_vec(),
                headers: headers.to_vec(),
            };
            self.shared_put(&key, &entry);
            cache.put(key, entry, Instant::now());
        }
        let mut ledger_error = None;
        if let (Some(budget), Some(r)) = (&self.budget, p.reservation) {
            if ok {
                // No usage reported: keep the reserved worst case rather than 0.
                let actual = cost.unwrap_or(r.amount_usd());
                if let Err(e) = budget.commit(r, actual, SystemTime::now()) {
                    ledger_error = Some(format!(
                        "the call succeeded but its spend could not be written yet (kept, written at the next chance): {e}"
                    ));
                }
            } else {
                budget.release(r);
            }
        }
        if let Some(redis) = &self.redis {
            // Failures are the deferred writes' own (see `RedisStore::defer`).
            let _ = redis.flush_deferred();
        }
        ledger_error
    }

    fn count(&self, model: &str, usage: Option<Usage>, cost: Option<f64>) {
        let mut m = crate::sync::lock(&self.per_model);
        let t = m.entry(model.to_string()).or_default();
        t.calls += 1;
        if let Some(u) = usage {
            t.prompt_tokens += u.prompt_tokens;
            t.completion_tokens += u.completion_tokens;
            t.cached_tokens += u.cached_tokens;
        }
        match cost {
            Some(c) => t.cost_usd += c,
            None => t.unpriced_calls += 1,
        }
    }

    fn count_hit(&self, model: &str) {
        let mut m = crate::sync::lock(&self.per_model);
        m.entry(model.to_string()).or_default().cache_hits += 1;
    }

    /// The `cost` section of the metrics JSON.
    pub fn to_json(&self) -> Value {
        let m = crate::sync::lock(&self.per_model);
        let mut total = 0.0;
        let per_model: serde_json::Map<String, Value> = m
            .iter()
            .map(|(k, t)| {
                total += t.cost_usd;
                (
                    k.clone(),
                    json!({
                        "calls": t.calls,
                        "prompt_tokens": t.prompt_tokens,
                        "completion_tokens": t.completion_tokens,
                        "cached_tokens": t.cached_tokens,
                        "cost_usd": t.cost_usd,
                        "unpriced_calls": t.unpriced_calls,
                        "cache_hits": t.cache_hits,
                    }),
                )
            })
            .collect();
        let cache = self.cache.as_ref().map(|c| {
            let (hits, misses, entries, bytes) = c.stats();
            let mut j = json!({"hits": hits, "misses": misses, "entries": entries, "bytes": bytes});
            if let Some(s) = &self.shared_cache {
                j["shared"] = s.to_json();
            }
            j
        });
        json!({
            "total_cost_usd": total,
            "per_model": per_model,
            "cache": cache,
            "budget": self.budget.as_ref().map(|b| b.snapshot(SystemTime::now())),
        })
    }
}
