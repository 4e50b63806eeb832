//! Spend limits with reservations, kept in memory, in a ledger file shared
//! by the processes of one machine, or (see `redis`) in Redis.
//!
//! A budget has to hold under concurrency: if eight threads (or processes)
//! each check "is there money left?" and then call, they can all pass the
//! check and overspend eightfold. So callers *reserve* a worst-case estimate
//! before the call and *commit* the real cost afterwards; reserved but
//! uncommitted money (a hold) counts as spent for every other caller's
//! check, in every process that shares the store.

mod book;
mod ledger;
mod limits;
mod memory;
mod owner;
mod period;
#[cfg(feature = "redis")]
mod redis;
#[cfg(not(feature = "redis"))]
mod redis {
    //! Never called: without the feature no `RedisStore` exists.
    use super::{BookStore, Period};
    use crate::store::redis::RedisStore;

    pub(super) fn book(store: &RedisStore, _: Period) -> Box<dyn BookStore> {
        match *store {}
    }
}

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use book::{Book, Hold};
use ledger::Ledger;
use limits::Limits;
use memory::MemoryBook;
pub use period::{civil_from_days, days_from_civil, Period};

use crate::store::redis::{RedisStore, Reply, Step};

/// How long a hold counts when its process cannot be seen to end: the
/// client sets it from its timeouts and retries (see
/// `Spend::new`).
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(600);

/// Why [`Budget::reserve`] refused a call.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetError {
    /// Human-readable reason naming the budget and what is left, e.g.
    /// `monthly budget exceeded: estimated $0.0123 but $0.0040 of $5.0000 remains`.
    pub message: String,
    /// Which budget refused: `"monthly budget"`, `"per-model budget for gpt-4.1"`,
    /// or `"budget ledger"` when the shared store could not be used.
    pub budget: String,
    /// USD still available in that budget (limit − spent − in flight), ≥ 0.
    pub remaining_usd: f64,
    /// That budget's limit in USD.
    pub limit_usd: f64,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BudgetError {}

/// A reservation asked for but not yet placed: [`Budget::ask`], then
/// [`Budget::place`] (with the reply of [`Budget::step`] when it ran in a
/// chain).
#[derive(Debug)]
pub struct Asked {
    id: String,
    model_key: String,
    hold: Hold,
    period_key: String,
    now_ms: u64,
}

/// Money set aside for one call that is in flight.
///
/// Deliberately not `Clone`: each reservation must be settled exactly once,
/// via [`Budget::commit`] or [`Budget::release`]. If it is dropped unsettled
/// (an early return, a panic) it releases itself, so a bug can make the
/// budget too generous for one call but never leaks reserved money forever.
#[derive(Debug)]
pub struct Reservation {
    budget: Weak<Inner>,
    id: String,
    model_key: String,
    amount: f64,
    settled: bool,
}

impl Reservation {
    /// The USD amount held by this reservation.
    pub fn amount_usd(&self) -> f64 {
        self.amount
    }

    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        if let Some(inner) = self.budget.upgrade() {
            inner.release(&self.id);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.settle();
    }
}

/// Where a budget's book is kept: this process's memory, a ledger file
/// shared by the processes of one machine, or Redis. Each store checks a
/// reservation against the book as it holds it, so holds of every process
/// sharing it count.
trait BookStore: Send + Sync + fmt::Debug {
    /// Places `hold` as `id` when `limits` allow it; refuses, naming the
    /// budget, when they do not or the store cannot be used.
    fn reserve(
        &self,
        period_key: &str,
        now_ms: u64,
        id: &str,
        hold: Hold,
        limits: &Limits<'_>,
    ) -> Result<(), BudgetError>;

    /// [`BookStore::reserve`] as a step of a chain (see
    /// `store::redis::chain`), when this store can be asked in one; the
    /// steps after it run only when the hold was placed.
    fn reserve_step(
        &self,
        _period_key: &str,
        _now_ms: u64,
        _id: &str,
        _hold: &Hold,
        _limits: &Limits<'_>,
    ) -> Option<Step> {
        None
    }

    /// Whether the step's reply says the hold was placed (else
    /// [`BookStore::reserve`] runs as it does alone: it refuses again, or
    /// places the hold after all once it dropped the holds of dead
    /// processes).
    fn placed(&self, _period_key: &str, _reply: &Reply) -> bool {
        false
    }

    /// Spends and frees the hold in one step. The spend is never lost: a
    /// store that cannot be written keeps it for later, and the `Err` only
    /// reports that.
    fn commit(&self, period_key: &str, now_ms: u64, spent: &Spent<'_>) -> Result<(), String>;

    /// Frees hold `id` without spending (kept for later when the store
    /// cannot be written; the hold expires anyway).
    fn release(&self, id: &str, now: SystemTime);

    /// The book as the store holds it, and why it could not be read.
    fn snapshot(&self, period_key: &str, now_ms: u64) -> (Book, Option<String>);

    /// The metrics' `store`: `"memory"`, `"ledger_file"` or the Redis used.
    fn describe(&self) -> String;

    /// The metrics' `ledger_file`.
    fn ledger_file(&self) -> Option<String> {
        None
    }
}

/// The real cost of a finished call and the hold it frees.
struct Spent<'a> {
    id: &'a str,
    /// False for a reservation of another budget, already freed there.
    held_here: bool,
    model_key: &'a str,
    usd: f64,
}

impl Spent<'_> {
    /// Frees the hold and spends in one step: freeing first and spending
    /// later would let another caller reserve the freed money in between.
    fn apply(&self, book: &mut Book, period_key: &str) {
        if self.held_here {
            book.holds.remove(self.id);
        }
        book.roll(period_key);
        book.spend(self.model_key, self.usd);
    }
}

#[derive(Debug)]
struct Inner {
    limit_usd: Option<f64>,
    period: Period,
    per_model: BTreeMap<String, f64>,
    store: Box<dyn BookStore>,
    hold_ttl: Duration,
    next_hold: AtomicU64,
}

/// A spend limit, shared between threads (and, with a ledger file, between
/// processes).
#[derive(Debug)]
pub struct Budget {
    inner: Arc<Inner>,
}

impl Budget {
    /// [`Budget::new`] with [`DEFAULT_HOLD_TTL`].
    pub fn from_json(v: &Value) -> Result<Budget, String> {
        Budget::new(v, DEFAULT_HOLD_TTL)
    }

    /// Builds a budget from the `budget` client option:
    /// `{"limit_usd": 5.0, "period": "month"|"day"|"total",
    ///   "per_model": {"gpt-4.1": 5.0}, "ledger_file": "path", "ledger_create": bool}`.
    ///
    /// `period` defaults to `"month"`. At least one of `limit_usd` and
    /// `per_model` is required, since a budget without a limit is almost
    /// certainly a configuration mistake. Per-model names match like
    /// [`crate::cost::PriceTable::get`]: exact, else the part after the last `/`.
    ///
    /// With `ledger_file`, spend survives restarts and is shared by every
    /// process that names the file (see `ledger`). A corrupt file is an
    /// error naming it rather than a silent reset to zero (which would
    /// re-grant the whole budget). A missing file is an error too unless
    /// `"ledger_create": true` says to start a new one, which is then written
    /// at once; a missing parent directory is always an error.
    ///
    /// `hold_ttl` is how long a hold counts when its process may have died
    /// unseen (another machine or PID namespace): longer than any call.
    pub fn new(v: &Value, hold_ttl: Duration) -> Result<Budget, String> {
        Budget::shared(v, hold_ttl, None)
    }

    /// Like [`Budget::new`], kept in `redis` when given (the `"redis"`
    /// option): spend, per-model spend and holds are then shared by every
    /// process and machine using that Redis and prefix (see `redis`), and
    /// `ledger_file` is refused as a second home for the same money.
    pub fn shared(
        v: &Value,
        hold_ttl: Duration,
        redis: Option<&RedisStore>,
    ) -> Result<Budget, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "budget: expected an object".to_string())?;
        let mut limit_usd = None;
        let mut period = Period::Month;
        let mut per_model = BTreeMap::new();
        let mut ledger = None;
        let mut create = false;
        for (k, val) in obj {
            match k.as_str() {
                "limit_usd" => limit_usd = Some(usd(val, "budget.limit_usd")?),
                "period" => {
                    period = val.as_str().and_then(Period::parse).ok_or_else(|| {
                        "budget.period: expected \"month\", \"day\" or \"total\"".to_string()
                    })?
                }
                "per_model" => {
                    let m = val.as_object().ok_or_else(|| {
                        "budget.per_model: expected an object of model names".to_string()
                    })?;
                    for (model, lim) in m {
                        if model.is_empty() {
                            return Err("budget.per_model: model name must not be empty".into());
                        }
                        per_model.insert(model.clone(), usd(lim, &format!("budget.per_model.{model}"))?);
                    }
                }
                "ledger_file" => match val.as_str() {
                    Some(s) if !s.is_empty() => ledger = Some(PathBuf::from(s)),
                    _ => return Err("budget.ledger_file: expected a file path string".into()),
                },
                "ledger_create" => {
                    create = val
                        .as_bool()
                        .ok_or_else(|| "budget.ledger_create: expected true or false".to_string())?
                }
                other => {
                    return Err(format!(
                        "budget.{other}: unknown key (expected \"limit_usd\", \"period\", \"per_model\", \"ledger_file\" or \"ledger_create\")"
                    ))
                }
            }
        }
        if limit_usd.is_none() && per_model.is_empty() {
            return Err("budget.limit_usd: required (or give budget.per_model limits)".into());
        }
        let store: Box<dyn BookStore> = match (ledger, redis) {
            (None, Some(r)) => redis::book(r, period),
            (Some(_), Some(_)) => {
                return Err(
                    "budget.ledger_file: not used with the \"redis\" option, which then holds the budget for every process and machine; remove one of them".into(),
                )
            }
            (Some(path), _) => Box::new(Ledger::open(path, period, create)?),
            (None, _) => Box::new(MemoryBook::default()),
        };
        Ok(Budget {
            inner: Arc::new(Inner {
                limit_usd,
                period,
                per_model,
                store,
                hold_ttl,
                next_hold: AtomicU64::new(1),
            }),
        })
    }

    /// The configured reset period.
    pub fn period(&self) -> Period {
        self.inner.period
    }

    /// Sets aside `estimated_max_cost_usd` for a call to `model`, or refuses.
    ///
    /// Refuses when spent + holds of calls in flight (in every process
    /// sharing the ledger) + this estimate would exceed the period limit or
    /// the model's per-model limit, and also when that budget is already
    /// used up, so a call whose cost is unknown (estimate 0, e.g. an
    /// unpriced model) cannot slip through an exhausted budget. Negative or
    /// NaN estimates count as 0. A ledger that cannot be read or written
    /// refuses too (the budget cannot be known to hold), with a message
    /// naming the file.
    pub fn reserve(
        &self,
        model: &str,
        estimated_max_cost_usd: f64,
        now: SystemTime,
    ) -> Result<Reservation, BudgetError> {
        self.place(self.ask(model, estimated_max_cost_usd, now), None)
    }

    /// The first half of [`Budget::reserve`]: the hold to place.
    pub fn ask(&self, model: &str, estimated_max_cost_usd: f64, now: SystemTime) -> Asked {
        let inner = &self.inner;
        let amount = sanitize(estimated_max_cost_usd);
        let model_key = inner.model_key(model);
        let now_ms = unix_ms(now);
        Asked {
            id: hold_id(inner.next_hold.fetch_add(1, Ordering::Relaxed)),
            hold: Hold {
                usd: amount,
                model: model_key.clone(),
                expires_ms: now_ms.saturating_add(inner.hold_ttl.as_millis() as u64),
                owner: owner::this_owner(),
            },
            model_key,
            period_key: inner.period.key(now),
            now_ms,
        }
    }

    /// The reservation as a step of a chain, when the store can be asked in
    /// one (Redis).
    pub fn step(&self, a: &Asked) -> Option<Step> {
        let limits = self.inner.limits(&a.model_key);
        self.inner
            .store
            .reserve_step(&a.period_key, a.now_ms, &a.id, &a.hold, &limits)
    }

    /// The second half of [`Budget::reserve`]: `reply`, the answer of
    /// [`Budget::step`] when it ran, placed the hold, or the store is asked
    /// now.
    pub fn place(&self, a: Asked, reply: Option<&Reply>) -> Result<Reservation, BudgetError> {
        let inner = &self.inner;
        let placed = reply.is_some_and(|r| inner.store.placed(&a.period_key, r));
        let amount = a.hold.usd;
        if !placed {
            let limits = inner.limits(&a.model_key);
            inner
                .store
                .reserve(&a.period_key, a.now_ms, &a.id, a.hold, &limits)?;
        }
        Ok(Reservation {
            budget: Arc::downgrade(inner),
            id: a.id,
            model_key: a.model_key,
            amount,
            settled: false,
        })
    }

    /// Records the real cost of a finished call and frees its reservation.
    ///
    /// Spend counts toward the period current at `now` (a call straddling
    /// midnight bills the new day). If the real cost is unknown, pass the
    /// reserved estimate ([`Reservation::amount_usd`]) rather than 0. A real
    /// cost above the estimate is recorded in full even if it pushes spend
    /// past the limit (the money is already gone); later reservations are
    /// then refused. The spend is never lost: when the ledger cannot be
    /// written it is kept and added at the next write that succeeds; the
    /// `Err` (naming the file) only reports that.
    pub fn commit(
        &self,
        r: Reservation,
        actual_cost_usd: f64,
        now: SystemTime,
    ) -> Result<(), String> {
        let mut r = r;
        let inner = &self.inner;
        let actual = sanitize(actual_cost_usd);
        if !Weak::ptr_eq(&r.budget, &Arc::downgrade(inner)) {
            // A reservation from another budget: free it there, but still
            // bill the spend here.
            r.settle();
        }
        let held_here = !r.settled;
        r.settled = true;
        let spent = Spent {
            id: &r.id,
            held_here,
            model_key: &r.model_key,
            usd: actual,
        };
        inner
            .store
            .commit(&inner.period.key(now), unix_ms(now), &spent)
    }

    /// Frees a reservation without spending (the call failed before the
    /// provider did any billable work).
    pub fn release(&self, r: Reservation) {
        drop(r);
    }

    /// Current state for the metrics JSON:
    /// `{"period", "period_key", "period_start", "limit_usd", "spent_usd",
    ///   "in_flight_usd", "in_flight_calls", "remaining_usd", "per_model":
    ///   {name: {"spent_usd", "limit_usd", "remaining_usd"}}, "ledger_file",
    ///   "ledger_error"}`. With a ledger these are the figures of every
    /// process sharing it. Unlimited values are `null`.
    pub fn snapshot(&self, now: SystemTime) -> Value {
        let inner = &self.inner;
        let key = inner.period.key(now);
        let (book, error) = inner.store.snapshot(&key, unix_ms(now));
        let store = inner.store.describe();
        let file = inner.store.ledger_file();
        let mut per_model = Map::new();
        let names: std::collections::BTreeSet<&String> = book
            .per_model
            .keys()
            .chain(inner.per_model.keys())
            .collect();
        for name in names {
            let spent = book.spent_for(name);
            let limit = inner.per_model.get(name).copied();
            let remaining = limit.map(|l| (l - spent - book.held_for(name)).max(0.0));
            per_model.insert(
                name.clone(),
                json!({"spent_usd": spent, "limit_usd": limit, "remaining_usd": remaining}),
            );
        }
        let held = book.held();
        json!({
            "period": inner.period.as_str(),
            "period_key": book.period_key,
            "period_start": inner.period.start(now),
            "limit_usd": inner.limit_usd,
            "spent_usd": book.spent,
            "in_flight_usd": held,
            "in_flight_calls": book.holds.len(),
            "remaining_usd": inner.limit_usd.map(|l| (l - book.spent - held).max(0.0)),
            "per_model": per_model,
            "store": store,
            "ledger_file": file,
            "ledger_error": error,
        })
    }
}

impl Inner {
    /// Maps a request's model to the name spend is tracked under: the
    /// per-model limit key when one matches, else the name as given.
    fn model_key(&self, model: &str) -> String {
        if self.per_model.contains_key(model) {
            return model.to_string();
        }
        match model.rsplit_once('/') {
            Some((_, base)) if self.per_model.contains_key(base) => base.to_string(),
            _ => model.to_string(),
        }
    }

    fn limits<'a>(&self, model_key: &'a str) -> Limits<'a> {
        Limits {
            period: self.period,
            total: self.limit_usd,
            model: self.per_model.get(model_key).copied(),
            model_key,
        }
    }

    fn release(&self, id: &str) {
        self.store.release(id, SystemTime::now());
    }
}

/// A hold id unique across processes and machines sharing a store: this
/// process's id and start instant, then a counter.
fn hold_id(n: u64) -> String {
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let p = PROCESS.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{:x}-{:x}", std::process::id(), nanos)
    });
    format!("{p}-{n}")
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn sanitize(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        0.0
    } else {
        x
    }
}

fn usd(v: &Value, at: &str) -> Result<f64, String> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{at}: expected a non-negative number of USD")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Duration;

    fn at(y: i64, m: u32, d: u32) -> SystemTime {
        let days = days_from_civil(y, m, d);
        UNIX_EPOCH + Duration::from_secs((days * 86_400 + 3_600) as u64)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "llmpool-budget-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn allow_then_refuse() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0})).unwrap();
        let now = at(2026, 1, 10);
        let r = b.reserve("gpt-4.1", 0.6, now).unwrap();
        b.commit(r, 0.5, now).unwrap();
        let err = b.reserve("gpt-4.1", 0.6, now).unwrap_err();
        assert_eq!(err.budget, "monthly budget");
        assert!((err.remaining_usd - 0.5).abs() < 1e-9);
        assert!(err.to_string().contains("monthly budget"), "{err}");
        assert!(err.to_string().contains("0.5000"), "{err}");
        let r = b.reserve("gpt-4.1", 0.5, now).unwrap();
        b.commit(r, 0.5, now).unwrap();
        // Exhausted: even a zero (unknown-cost) estimate is refused.
        let err = b.reserve("x", 0.0, now).unwrap_err();
        assert!(err.message.contains("exhausted"), "{err}");
    }

    #[test]
    fn in_flight_reservations_count_and_release_frees() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0, "period": "total"})).unwrap();
        let now = at(2026, 1, 1);
        let r1 = b.reserve("m", 0.7, now).unwrap();
        assert!(b.reserve("m", 0.4, now).is_err());
        b.release(r1);
        let r2 = b.reserve("m", 0.4, now).unwrap();
        {
            let _r3 = b.reserve("m", 0.6, now).unwrap();
            assert!(b.reserve("m", 0.01, now).is_err());
        } // dropped unsettled -> released
        let r4 = b.reserve("m", 0.6, now).unwrap();
        b.commit(r2, 0.1, now).unwrap();
        b.commit(r4, 0.1, now).unwrap();
        let s = b.snapshot(now);
        assert_eq!(s["in_flight_usd"], json!(0.0));
        assert!((s["spent_usd"].as_f64().unwrap() - 0.2).abs() < 1e-9);
        assert!(s["period_start"].is_null());
    }

    #[test]
    fn per_model_limit() {
        let b = Budget::from_json(&json!({
            "limit_usd": 10.0, "per_model": {"gpt-4.1": 1.0}
        }))
        .unwrap();
        let now = at(2026, 5, 5);
        let r = b.reserve("openai/gpt-4.1", 0.9, now).unwrap();
        b.commit(r, 0.9, now).unwrap();
        let err = b.reserve("gpt-4.1", 0.2, now).unwrap_err();
        assert_eq!(err.budget, "per-model budget for gpt-4.1");
        assert!(err.message.contains("per-model budget for gpt-4.1"));
        assert!((err.remaining_usd - 0.1).abs() < 1e-9);
        // Other models still use the global budget.
        assert!(b.reserve("deepseek-v3.2", 5.0, now).is_ok());
        let s = b.snapshot(now);
        assert!((s["per_model"]["gpt-4.1"]["spent_usd"].as_f64().unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(s["per_model"]["gpt-4.1"]["limit_usd"], json!(1.0));
        // Only per-model limits: fine, global fields are null.
        let b = Budget::from_json(&json!({"per_model": {"a": 1.0}})).unwrap();
        assert!(b.snapshot(now)["limit_usd"].is_null());
        assert!(b.reserve("b", 100.0, now).is_ok());
        assert!(b.reserve("a", 2.0, now).is_err());
    }

    #[test]
    fn concurrent_reservations_never_overspend() {
        let limit = 1.0;
        let b = Arc::new(Budget::from_json(&json!({"limit_usd": limit})).unwrap());
        let now = at(2026, 3, 3);
        let max_seen = Arc::new(Mutex::new(0.0f64));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let b = Arc::clone(&b);
                let max_seen = Arc::clone(&max_seen);
                std::thread::spawn(move || {
                    let mut granted = 0;
                    for j in 0..200 {
                        let est = 0.01 + 0.001 * ((i + j) % 5) as f64;
                        if let Ok(r) = b.reserve("m", est, now) {
                            granted += 1;
                            let s = b.snapshot(now);
                            let used = s["spent_usd"].as_f64().unwrap()
                                + s["in_flight_usd"].as_f64().unwrap();
                            let mut m = max_seen.lock().unwrap();
                            *m = m.max(used);
                            drop(m);
                            // Actual is at most the estimate.
                            b.commit(r, est * 0.5, now).unwrap();
                        }
                    }
                    granted
                })
            })
            .collect();
        let granted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(granted > 0);
        let s = b.snapshot(now);
        assert!(s["spent_usd"].as_f64().unwrap() <= limit + 1e-9);
        assert!(*max_seen.lock().unwrap() <= limit + 1e-9);
        assert_eq!(s["in_flight_usd"], json!(0.0));
    }

    #[test]
    fn month_rollover_including_december() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0, "period": "month"})).unwrap();
        let r = b.reserve("m", 1.0, at(2026, 12, 31)).unwrap();
        b.commit(r, 1.0, at(2026, 12, 31)).unwrap();
        assert!(b.reserve("m", 0.1, at(2026, 12, 31)).is_err());
        let s = b.snapshot(at(2027, 1, 1));
        assert_eq!(s["period_key"], "2027-01");
        assert_eq!(s["period_start"], "2027-01-01");
        assert_eq!(s["spent_usd"], json!(0.0));
        assert!(b.reserve("m", 0.9, at(2027, 1, 1)).is_ok());
    }

    #[test]
    fn day_rollover_including_leap_day() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0, "period": "day"})).unwrap();
        for (y, m, d) in [
            (2028, 2, 28),
            (2028, 2, 29),
            (2028, 3, 1),
            (2100, 2, 28),
            (2100, 3, 1),
        ] {
            let now = at(y, m, d);
            let r = b.reserve("m", 1.0, now).unwrap();
            b.commit(r, 1.0, now).unwrap();
            assert!(b.reserve("m", 0.5, now).is_err(), "{y}-{m}-{d}");
        }
        assert_eq!(b.snapshot(at(2028, 2, 29))["period_key"], "2028-02-29");
        // A total budget never resets.
        let t = Budget::from_json(&json!({"limit_usd": 1.0, "period": "total"})).unwrap();
        let r = t.reserve("m", 1.0, at(2020, 1, 1)).unwrap();
        t.commit(r, 1.0, at(2020, 1, 1)).unwrap();
        assert!(t.reserve("m", 0.1, at(2030, 1, 1)).is_err());
    }

    #[test]
    fn ledger_round_trip_and_no_tmp_left() {
        let dir = tmpdir("rt");
        let path = dir.join("ledger.json");
        let cfg = json!({"limit_usd": 2.0, "period": "month",
            "ledger_file": path.to_str().unwrap(), "ledger_create": true});
        let now = at(2026, 11, 20);
        {
            let b = Budget::from_json(&cfg).unwrap();
            let r = b.reserve("gpt-4.1", 1.0, now).unwrap();
            b.commit(r, 0.75, now).unwrap();
        }
        assert_eq!(leftover_tmp(&dir), 0);
        let doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["version"], 2);
        assert_eq!(doc["holds"], json!({}));
        assert_eq!(doc["period"], "month");
        assert_eq!(doc["period_key"], "2026-11");
        assert_eq!(doc["spent_usd"], json!(0.75));
        assert_eq!(doc["per_model"]["gpt-4.1"], json!(0.75));
        let b = Budget::from_json(&cfg).unwrap();
        assert_eq!(b.snapshot(now)["spent_usd"], json!(0.75));
        assert!(b.reserve("gpt-4.1", 1.3, now).is_err());
        // Next month the loaded spend no longer counts.
        assert_eq!(b.snapshot(at(2026, 12, 1))["spent_usd"], json!(0.0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_or_mismatched_ledger_is_an_error() {
        let dir = tmpdir("bad");
        let path = dir.join("ledger.json");
        let cfg = json!({"limit_usd": 2.0, "ledger_file": path.to_str().unwrap()});
        for bad in [
            "{not json",
            "{\"version\":3,\"period\":\"month\",\"period_key\":\"x\",\"spent_usd\":0}",
            "{\"version\":1,\"period\":\"month\",\"period_key\":\"x\",\"spent_usd\":-1}",
            "{\"version\":1,\"period\":\"month\",\"spent_usd\":1}",
        ] {
            fs::write(&path, bad).unwrap();
            let err = Budget::from_json(&cfg).unwrap_err();
            assert!(err.contains(path.to_str().unwrap()), "{err}");
            assert!(err.contains("corrupt"), "{err}");
        }
        fs::write(
            &path,
            "{\"version\":1,\"period\":\"day\",\"period_key\":\"2026-01-01\",\"spent_usd\":1}",
        )
        .unwrap();
        let err = Budget::from_json(&cfg).unwrap_err();
        assert!(err.contains("period"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_ledger_is_an_error_unless_creation_is_asked_for() {
        let dir = tmpdir("missing");
        let path = dir.join("new.json");
        let plain = json!({"limit_usd": 1.0, "ledger_file": path.to_str().unwrap()});
        let err = Budget::from_json(&plain).unwrap_err();
        assert!(
            err.contains("does not exist") && err.contains("ledger_create"),
            "{err}"
        );
        let ok =
            json!({"limit_usd": 1.0, "ledger_file": path.to_str().unwrap(), "ledger_create": true});
        let b = Budget::from_json(&ok).unwrap();
        assert_eq!(b.snapshot(at(2026, 1, 1))["spent_usd"], json!(0.0));
        assert!(path.is_file(), "a created ledger is written at once");
        Budget::from_json(&plain).expect("the ledger exists now");
        let bad = json!({"limit_usd": 1.0,
            "ledger_file": dir.join("nope").join("l.json").to_str().unwrap()});
        let err = Budget::from_json(&bad).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn leftover_tmp(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count()
    }

    fn ledger_cfg(path: &Path, limit: f64, create: bool) -> Value {
        json!({"limit_usd": limit, "period": "month",
            "ledger_file": path.to_str().unwrap(), "ledger_create": create})
    }

    #[test]
    fn ledger_write_failure_keeps_the_spend_and_writes_it_later() {
        let dir = tmpdir("wfail");
        let sub = dir.join("sub");
        let path = sub.join("l.json");
        fs::create_dir_all(&sub).unwrap();
        let b = Budget::from_json(&ledger_cfg(&path, 1.0, true)).unwrap();
        let now = at(2026, 1, 1);
        let r = b.reserve("m", 0.5, now).unwrap();
        let saved = fs::read(&path).unwrap();
        fs::remove_dir_all(&sub).unwrap();
        let err = b.commit(r, 0.5, now).unwrap_err();
        assert!(err.contains("l.json"), "{err}");
        let s = b.snapshot(now);
        assert_eq!(s["spent_usd"], json!(0.5), "the spend is kept in memory");
        assert_eq!(s["in_flight_calls"], json!(0));
        assert!(s["ledger_error"].is_string());
        let err = b.reserve("m", 0.1, now).unwrap_err();
        assert_eq!(err.budget, "budget ledger");
        assert!(err.message.contains("not sent"), "{err}");
        // The file comes back (still holding the committed call's hold):
        // the kept spend lands and the hold goes.
        fs::create_dir_all(&sub).unwrap();
        fs::write(&path, saved).unwrap();
        let r = b.reserve("m", 0.25, now).unwrap();
        let doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["spent_usd"], json!(0.5));
        assert_eq!(doc["holds"].as_object().unwrap().len(), 1);
        b.commit(r, 0.25, now).unwrap();
        assert_eq!(b.snapshot(now)["spent_usd"], json!(0.75));
        assert_eq!(b.snapshot(now)["ledger_error"], Value::Null);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn budgets_sharing_a_ledger_add_up_spend_and_see_each_others_holds() {
        let dir = tmpdir("shared");
        let path = dir.join("l.json");
        let a = Budget::from_json(&ledger_cfg(&path, 1.0, true)).unwrap();
        // A second "process": creation must not reset what exists.
        let b = Budget::from_json(&ledger_cfg(&path, 1.0, true)).unwrap();
        let now = at(2026, 4, 2);
        let ra = a.reserve("m", 0.6, now).unwrap();
        let err = b.reserve("m", 0.6, now).unwrap_err();
        assert!(err.message.contains("exceeded"), "{err}");
        assert_eq!(b.snapshot(now)["in_flight_usd"], json!(0.6));
        a.commit(ra, 0.25, now).unwrap();
        let rb = b.reserve("m", 0.7, now).unwrap();
        b.commit(rb, 0.5, now).unwrap();
        let ra = a.reserve("other", 0.2, now).unwrap();
        a.release(ra);
        for budget in [&a, &b] {
            let s = budget.snapshot(now);
            assert_eq!(s["spent_usd"], json!(0.75));
            assert_eq!(s["in_flight_usd"], json!(0.0));
        }
        assert!(a.reserve("m", 0.3, now).is_err());
        assert_eq!(leftover_tmp(&dir), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_holds_expire_and_holds_of_dead_processes_are_dropped() {
        let dir = tmpdir("expire");
        let path = dir.join("l.json");
        let a = Budget::from_json(&ledger_cfg(&path, 1.0, true)).unwrap();
        let now = at(2026, 6, 1);
        let now_ms = unix_ms(now);
        let me = owner::this_owner().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let mut doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let hold = |usd: f64, expires: u64, pid: u32, boot: &str, start: u64| {
            json!({"usd": usd, "model": "m", "expires_ms": expires,
                "pid": pid, "pidns": me.pidns, "boot": boot, "start": start})
        };
        // Another machine's hold: only its expiry can end it.
        doc["holds"]["far"] = hold(0.5, now_ms + 30_000, 7, "other-machine", 1);
        // A process of this machine that exited: gone at once.
        doc["holds"]["dead"] = hold(0.5, u64::MAX / 2, pid, &me.boot, 1);
        // This very process, long expired: it runs, so its hold stands.
        doc["holds"]["alive"] = hold(0.25, 1, me.pid, &me.boot, me.start);
        fs::write(&path, doc.to_string()).unwrap();
        assert_eq!(a.snapshot(now)["in_flight_usd"], json!(0.75));
        assert!(a.reserve("m", 0.5, now + Duration::from_secs(29)).is_err());
        let later = now + Duration::from_secs(31);
        let r = a.reserve("m", 0.5, later).unwrap();
        a.commit(r, 0.5, later).unwrap();
        let s = a.snapshot(later);
        assert_eq!(
            (s["in_flight_usd"].clone(), s["spent_usd"].clone()),
            (json!(0.25), json!(0.5))
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_options_name_the_key() {
        let cases = [
            (json!(1), "budget: expected an object"),
            (
                json!({"limit_usd": 1, "period": "week"}),
                "budget.period: expected \"month\", \"day\" or \"total\"",
            ),
            (
                json!({"limit_usd": -1}),
                "budget.limit_usd: expected a non-negative",
            ),
            (
                json!({"limit_usd": "5"}),
                "budget.limit_usd: expected a non-negative",
            ),
            (
                json!({"limit_usd": 1, "per_model": {"a": "x"}}),
                "budget.per_model.a: expected",
            ),
            (
                json!({"limit_usd": 1, "per_model": []}),
                "budget.per_model: expected an object",
            ),
            (
                json!({"limit_usd": 1, "ledger_file": 3}),
                "budget.ledger_file: expected",
            ),
            (
                json!({"limit_usd": 1, "limit": 2}),
                "budget.limit: unknown key",
            ),
            (json!({}), "budget.limit_usd: required"),
        ];
        for (v, want) in cases {
            let err = Budget::from_json(&v).unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }
}
