//! A budget's book in Redis, shared by every process and machine that uses
//! the same Redis and key prefix.
//!
//! Keys (under the prefix; `{budget}` is a cluster hash tag, so every key of
//! one script lives in one slot):
//! - `{budget}:spend:<period>:<period key>`: a hash, `total` and `m:<model>`
//!   spent in USD (`HINCRBYFLOAT`); a new period is a new key, so periods
//!   roll over by the UTC calendar; old ones expire (40 days for a month,
//!   3 for a day, never for `total`).
//! - `{budget}:settled` (hash: book, i.e. one client's budget in one
//!   process, -> the number of its last spend batch applied) and
//!   `{budget}:settled_at` (sorted set: book by last use in s; books unseen
//!   for a day are dropped from both): what SETTLE already applied.
//! - `{budget}:holds` (sorted set: hold id by expiry in ms),
//!   `{budget}:hold_usd`, `{budget}:hold_model`, `{budget}:hold_owner`
//!   (hashes by hold id): the holds of calls in flight.
//!
//! A reservation is one Lua script (drop expired holds, sum holds, check the
//! limits, add the hold), a commit or release another, so the limit holds
//! across machines without a lock. A hold expires after the longest time a
//! call can take (streams, which have no whole-call timeout, can outlive
//! it: their spend still lands at commit). When a reservation is refused
//! while holds exist, holds of processes of this machine that are gone
//! (SIGKILL) are dropped at once and the reservation is tried again.
//!
//! Redis unreachable: spend of finished calls is never lost: it is kept and
//! added at the next operation that reaches Redis. Each batch of spend has
//! a number in its book (`{budget}:settled`), so a batch whose reply was
//! lost is sent again and applied once; only one left unanswered for over
//! a day may count twice (the safe direction for a budget). With
//! `wait_replicas`, a batch the replicas did not acknowledge in time is
//! unconfirmed the same way: sent again under its number, applied again
//! only if a failover lost it. New calls
//! are refused unsent with `on_error: "closed"`; with `"open"` they are
//! checked locally against the last figures seen plus this process's own
//! spend and holds since, and reconciled when Redis is back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::SystemTime;

use ::redis::{FromRedisValue, Script};

use super::book::{Book, Hold, Pending};
use super::limits::{check, Limits};
use super::owner::{fate, Fate, Owner};
use super::period::Period;
use super::{BookStore, BudgetError, Spent};
use crate::store::redis::{OnError, RedisStore, Reply, Step, StoreError};

const HOLDS: &str = "{budget}:holds";
const HOLD_USD: &str = "{budget}:hold_usd";
const HOLD_MODEL: &str = "{budget}:hold_model";
const HOLD_OWNER: &str = "{budget}:hold_owner";

/// KEYS: spend, holds, hold_usd, hold_model, hold_owner.
/// ARGV: now_ms, id, amount, model, expires_ms, total limit or "",
/// model limit or "", owner or "".
/// Returns {1|0, "" | "total" | "model", used, spent total, held total}.
static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE_LUA));

const RESERVE_LUA: &str = r"
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(expired) do
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) end
local amount = tonumber(ARGV[3])
local by_model = ARGV[7] ~= ''
local held, held_m = 0, 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local v = tonumber(all[i + 1])
  held = held + v
  if by_model and redis.call('HGET', KEYS[4], all[i]) == ARGV[4] then held_m = held_m + v end
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
if ARGV[6] ~= '' then
  local limit = tonumber(ARGV[6])
  local used = spent + held
  if limit - used <= 0 or used + amount > limit then
    return {0, 'total', tostring(used), tostring(spent), tostring(held)}
  end
end
if by_model then
  local limit = tonumber(ARGV[7])
  local used = tonumber(redis.call('HGET', KEYS[1], 'm:' .. ARGV[4]) or '0') + held_m
  if limit - used <= 0 or used + amount > limit then
    return {0, 'model', tostring(used), tostring(spent), tostring(held)}
  end
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[5], ARGV[2], ARGV[8]) end
return {1, '', '0', tostring(spent), tostring(held + amount)}
";

/// Spends and drops holds in one step (commit, release, and the spend kept
/// while Redis was down), at most once per batch: a batch whose reply was
/// lost, or whose `WAIT` fell short, is sent again under its number, and
/// Redis applies it only if it does not have it (after a failover that
/// lost it, it does not). A book sends its batches one at a time, in order,
/// each only once the one before is confirmed, so Redis needs only the last
/// number applied per book (`settled`), not every id. That number is
/// written either way, so a `WAIT` after a resend covers the first
/// application too.
/// KEYS: spend, holds, hold_usd, hold_model, hold_owner, settled (hash:
/// book -> last batch applied), settled_at (sorted set: book by last use,
/// s; books unseen for a day are forgotten).
/// ARGV: book ("": no check), batch number, expiry of the spend key in s
/// (0: none), n, then n (model, usd) pairs, then hold ids to drop.
/// Returns 1, or 0 when the batch was already applied.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[1] ~= '' then
  local now = tonumber(redis.call('TIME')[1])
  local gone = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now - 86400)
  for _, b in ipairs(gone) do redis.call('HDEL', KEYS[6], b) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - 86400) end
  redis.call('ZADD', KEYS[7], now, ARGV[1])
  local last = tonumber(redis.call('HGET', KEYS[6], ARGV[1]) or '0')
  if tonumber(ARGV[2]) <= last then
    redis.call('HSET', KEYS[6], ARGV[1], tostring(last))
    return 0
  end
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[2])
end
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  redis.call('HINCRBYFLOAT', KEYS[1], 'm:' .. ARGV[5 + 2 * i], ARGV[6 + 2 * i])
  redis.call('HINCRBYFLOAT', KEYS[1], 'total', ARGV[6 + 2 * i])
end
for i = 5 + 2 * n, #ARGV do
  redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('HDEL', KEYS[4], ARGV[i])
  redis.call('HDEL', KEYS[5], ARGV[i])
end
if n > 0 and tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
",
    )
});

const SETTLED: &str = "{budget}:settled";
const SETTLED_AT: &str = "{budget}:settled_at";

/// A name for one book, unique across processes and machines: this
/// process's id and start instant, then a counter.
fn book_name() -> String {
    static PROCESS: LazyLock<String> = LazyLock::new(|| {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{:x}-{nanos:x}", std::process::id())
    });
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", *PROCESS, N.fetch_add(1, Ordering::Relaxed))
}

/// RESERVE's reply: placed (1) or not, which limit refused, used, spent
/// total, held total.
type Reserved = (i64, String, String, String, String);

/// RESERVE's ARGV.
fn reserve_args(now_ms: u64, id: &str, hold: &Hold, limits: &Limits<'_>) -> Vec<String> {
    let num = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
    vec![
        now_ms.to_string(),
        id.to_string(),
        hold.usd.to_string(),
        limits.model_key.to_string(),
        hold.expires_ms.to_string(),
        num(limits.total),
        num(limits.model),
        hold.owner.as_ref().map_or(String::new(), owner_string),
    ]
}

/// What Redis answered to a reservation.
enum Answer {
    Placed,
    Refused(Refusal),
}

/// Which limit refused, and how much of it was used (spent and held).
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    Total(f64),
    Model(f64),
}

/// The error for a reservation Redis refused: the same words as a local
/// refusal.
fn refusal(limits: &Limits<'_>, why: Refusal, amount: f64) -> BudgetError {
    let (name, limit, used) = match why {
        Refusal::Total(used) => (
            limits.period.budget_name().to_string(),
            limits.total.unwrap_or(0.0),
            used,
        ),
        Refusal::Model(used) => (limits.model_name(), limits.model.unwrap_or(0.0), used),
    };
    // Redis compared in its own arithmetic; on a knife edge where ours
    // disagrees, the refusal still stands.
    check(&name, limit, used, amount)
        .err()
        .unwrap_or(BudgetError {
            message: format!("{name} exhausted: $0.0000 of ${limit:.4} remains"),
            budget: name,
            remaining_usd: 0.0,
            limit_usd: limit,
        })
}

#[derive(Debug, Default)]
struct Local {
    /// Spend and releases not yet in Redis.
    pending: Pending,
    /// A batch sent under this number that may or may not be in Redis (no
    /// reply, or too few replicas had it): sent again, first, under the
    /// same number.
    unconfirmed: Option<(u64, Pending)>,
    /// The number of the last batch made.
    batches: u64,
    /// Holds placed locally while Redis was down (`on_error: "open"`).
    local_holds: BTreeMap<String, Hold>,
    /// The figures last read from Redis, for `"open"` and the metrics.
    last_seen: Book,
    last_error: Option<String>,
}

#[derive(Debug)]
struct RedisBook {
    store: RedisStore,
    period: Period,
    /// This book's name in `{budget}:settled`.
    name: String,
    local: Mutex<Local>,
}

pub(super) fn book(store: &RedisStore, period: Period) -> Box<dyn BookStore> {
    Box::new(RedisBook {
        store: store.clone(),
        period,
        name: book_name(),
        local: Mutex::new(Local::default()),
    })
}

impl BookStore for RedisBook {
    /// Places hold `id`, or says which limit refused. Refuses as unusable
    /// when Redis cannot be used and `on_error` is `"closed"` (the message
    /// says so and names Redis without its password).
    fn reserve(
        &self,
        period_key: &str,
        now_ms: u64,
        id: &str,
        hold: Hold,
        limits: &Limits<'_>,
    ) -> Result<(), BudgetError> {
        let amount = hold.usd;
        let mut local = lock(&self.local);
        let remote = self
            .flush(period_key, &mut local)
            .and_then(|()| self.try_reserve(period_key, now_ms, id, &hold, limits, &mut local));
        let remote = match remote {
            Ok(Answer::Refused(_)) => {
                // Holds of this machine's dead processes must not refuse us.
                match self.drop_gone_holds(period_key) {
                    Ok(0) | Err(_) => remote,
                    Ok(_) => self.try_reserve(period_key, now_ms, id, &hold, limits, &mut local),
                }
            }
            other => other,
        };
        let why = match remote {
            Ok(answer) => {
                local.last_error = None;
                match answer {
                    Answer::Placed => return Ok(()),
                    Answer::Refused(why) => why,
                }
            }
            Err(e) => {
                local.last_error = Some(e.message.clone());
                if !e.unreachable() || self.store.on_error() == OnError::Closed {
                    return Err(limits.unusable(
                        format!(
                            "the budget store ({}) is unreachable: {e}; the call was not sent",
                            self.describe()
                        ),
                        "budget store",
                    ));
                }
                match Self::reserve_locally(&mut local, period_key, id, hold, limits) {
                    Ok(()) => return Ok(()),
                    Err(why) => why,
                }
            }
        };
        Err(refusal(limits, why, amount))
    }

    /// RESERVE as a step of a chain, unless spend of this process waits to
    /// be written first (it must count in the check): then `reserve`.
    fn reserve_step(
        &self,
        period_key: &str,
        now_ms: u64,
        id: &str,
        hold: &Hold,
        limits: &Limits<'_>,
    ) -> Option<Step> {
        let local = lock(&self.local);
        if !local.pending.is_empty() || local.unconfirmed.is_some() {
            return None;
        }
        Some(Step {
            name: "budget.reserve",
            source: RESERVE_LUA,
            go_on: "r[1] == 1",
            keys: self
                .keys(&self.spend_key(period_key))
                .map(str::to_string)
                .into(),
            args: reserve_args(now_ms, id, hold, limits),
        })
    }

    fn placed(&self, period_key: &str, reply: &Reply) -> bool {
        let Ok(answer) = FromRedisValue::from_redis_value(reply) else {
            return false;
        };
        let mut local = lock(&self.local);
        local.last_error = None;
        matches!(self.answer(period_key, answer, &mut local), Answer::Placed)
    }

    fn commit(&self, period_key: &str, _now_ms: u64, spent: &Spent<'_>) -> Result<(), String> {
        let id = if spent.held_here { spent.id } else { "" };
        self.settle(period_key, id, Some((spent.model_key, spent.usd)))
    }

    fn release(&self, id: &str, now: SystemTime) {
        // Kept for later when Redis is down; the hold expires anyway.
        let _ = self.settle(&self.period.key(now), id, None);
    }

    fn snapshot(&self, period_key: &str, now_ms: u64) -> (Book, Option<String>) {
        RedisBook::snapshot(self, period_key, now_ms)
    }

    fn describe(&self) -> String {
        format!(
            "redis {} (prefix {})",
            self.store.redacted_url(),
            self.store.prefix()
        )
    }
}

impl RedisBook {
    fn spend_key(&self, period_key: &str) -> String {
        format!("{{budget}}:spend:{}:{period_key}", self.period.as_str())
    }

    fn spend_ttl_s(&self) -> u64 {
        match self.period {
            Period::Month => 40 * 86_400,
            Period::Day => 3 * 86_400,
            Period::Total => 0,
        }
    }

    fn try_reserve(
        &self,
        period_key: &str,
        now_ms: u64,
        id: &str,
        hold: &Hold,
        limits: &Limits<'_>,
        local: &mut Local,
    ) -> Result<Answer, StoreError> {
        let answer: Reserved = self.store.eval(
            &RESERVE,
            &self.keys(&self.spend_key(period_key)),
            reserve_args(now_ms, id, hold, limits),
        )?;
        Ok(self.answer(period_key, answer, local))
    }

    /// RESERVE's reply, read: the figures it saw are kept as the last seen.
    fn answer(&self, period_key: &str, answer: Reserved, local: &mut Local) -> Answer {
        let (ok, which, used, spent, held) = answer;
        let f = |s: &str| s.parse::<f64>().unwrap_or(0.0);
        local.last_seen.roll(period_key);
        local.last_seen.spent = f(&spent);
        local.last_seen.holds.clear();
        local.last_seen.holds.insert(
            "(all)".into(),
            Hold {
                usd: f(&held),
                model: String::new(),
                expires_ms: u64::MAX,
                owner: None,
            },
        );
        match (ok, which.as_str()) {
            (1, _) => Answer::Placed,
            (_, "model") => Answer::Refused(Refusal::Model(f(&used))),
            _ => Answer::Refused(Refusal::Total(f(&used))),
        }
    }

    /// `"open"` while Redis is down: the last figures seen, plus what this
    /// process spent and holds since.
    fn reserve_locally(
        local: &mut Local,
        period_key: &str,
        id: &str,
        hold: Hold,
        limits: &Limits<'_>,
    ) -> Result<(), Refusal> {
        let mut book = local.last_seen.clone();
        book.roll(period_key);
        book.absorb_spend(&local.pending.spend);
        if let Some((_, batch)) = &local.unconfirmed {
            book.absorb_spend(&batch.spend);
        }
        for (k, h) in &local.local_holds {
            book.holds.insert(k.clone(), h.clone());
        }
        let used = book.spent + book.held();
        if let Some(limit) = limits.total {
            if limit - used <= 0.0 || used + hold.usd > limit {
                return Err(Refusal::Total(used));
            }
        }
        if let Some(limit) = limits.model {
            let used = book.spent_for(limits.model_key) + book.held_for(limits.model_key);
            if limit - used <= 0.0 || used + hold.usd > limit {
                return Err(Refusal::Model(used));
            }
        }
        local.local_holds.insert(id.to_string(), hold);
        Ok(())
    }

    /// Drops hold `id` and records `spend` (model, usd); kept for later when
    /// Redis cannot be reached, so nothing spent is lost.
    fn settle(&self, period_key: &str, id: &str, spend: Option<(&str, f64)>) -> Result<(), String> {
        let mut local = lock(&self.local);
        let was_local = local.local_holds.remove(id).is_some();
        let release = (!was_local).then_some(id);
        match spend {
            Some((model, usd)) => local.pending.keep(model, usd, release),
            None => local.pending.released.extend(release.map(str::to_string)),
        }
        let result = self.flush(period_key, &mut local);
        local.last_error = result.as_ref().err().map(|e| e.message.clone());
        result.map_err(|e| {
            format!(
                "the budget store ({}) is unreachable: {e}; the spend is kept and added when it is back",
                self.describe()
            )
        })
    }

    /// Writes the kept spend and drops the kept holds: the unconfirmed
    /// batch first (pending spend waits behind it), then the pending one
    /// under a new id.
    fn flush(&self, period_key: &str, local: &mut Local) -> Result<(), StoreError> {
        if let Some((n, batch)) = &local.unconfirmed {
            let args = Self::settle_args(self.spend_ttl_s(), batch);
            self.run_settle(period_key, &self.name, *n, args)?;
            local.last_seen.absorb_spend(&batch.spend);
            local.unconfirmed = None;
        }
        if local.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut local.pending);
        local.batches += 1;
        let n = local.batches;
        let args = Self::settle_args(self.spend_ttl_s(), &batch);
        match self.run_settle(period_key, &self.name, n, args) {
            Ok(()) => {
                local.last_seen.absorb_spend(&batch.spend);
                Ok(())
            }
            Err(e) => {
                local.unconfirmed = Some((n, batch));
                Err(e)
            }
        }
    }

    /// SETTLE's arguments after the book and batch number, for `batch`.
    fn settle_args(ttl_s: u64, batch: &Pending) -> Vec<String> {
        let mut args: Vec<String> =
            vec![ttl_s.to_string(), batch.spend.per_model.len().to_string()];
        for (model, usd) in &batch.spend.per_model {
            args.push(model.clone());
            args.push(usd.to_string());
        }
        args.extend(batch.released.iter().cloned());
        args
    }

    /// Drops the holds whose process is gone (on this machine); how many.
    fn drop_gone_holds(&self, period_key: &str) -> Result<usize, StoreError> {
        let owners: BTreeMap<String, String> = self.store.with_conn(|c| {
            ::redis::cmd("HGETALL")
                .arg(self.store.key(HOLD_OWNER))
                .query(c)
        })?;
        let gone: Vec<String> = owners
            .into_iter()
            .filter(|(_, o)| parse_owner(o).is_some_and(|o| fate(&o) == Fate::Gone))
            .map(|(id, _)| id)
            .collect();
        if !gone.is_empty() {
            let mut args = vec!["0".to_string(), "0".to_string()];
            args.extend(gone.iter().cloned());
            // Dropping holds twice is harmless: no number to check.
            self.run_settle(period_key, "", 0, args)?;
        }
        Ok(gone.len())
    }

    /// Runs SETTLE as batch `n` of book `name` ("": unchecked); with
    /// `wait_replicas`, done only once the replicas have it.
    fn run_settle(
        &self,
        period_key: &str,
        name: &str,
        n: u64,
        args: Vec<String>,
    ) -> Result<(), StoreError> {
        let spend = self.spend_key(period_key);
        let [a, b, c, d, e] = self.keys(&spend);
        let _: i64 = self.store.eval_durable(
            &SETTLE,
            &[a, b, c, d, e, SETTLED, SETTLED_AT],
            (name, n, args),
        )?;
        Ok(())
    }

    /// The keys RESERVE takes, in their order (SETTLE takes one more).
    fn keys<'a>(&self, spend_key: &'a str) -> [&'a str; 5] {
        [spend_key, HOLDS, HOLD_USD, HOLD_MODEL, HOLD_OWNER]
    }

    /// The book as Redis holds it now (with what this process keeps), or
    /// the last one seen and why Redis could not be read.
    fn snapshot(&self, period_key: &str, now_ms: u64) -> (Book, Option<String>) {
        let mut local = lock(&self.local);
        let read = self.store.pipeline::<(
            BTreeMap<String, f64>,
            Vec<(String, u64)>,
            BTreeMap<String, f64>,
            BTreeMap<String, String>,
        )>(
            ::redis::pipe()
                .cmd("HGETALL")
                .arg(self.store.key(&self.spend_key(period_key)))
                .cmd("ZRANGE")
                .arg(self.store.key(HOLDS))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .cmd("HGETALL")
                .arg(self.store.key(HOLD_USD))
                .cmd("HGETALL")
                .arg(self.store.key(HOLD_MODEL)),
        );
        let mut book = match read {
            Ok((spend, holds, usd, model)) => {
                let mut b = Book {
                    period_key: period_key.to_string(),
                    ..Book::default()
                };
                b.spent = spend.get("total").copied().unwrap_or(0.0);
                for (k, v) in &spend {
                    if let Some(m) = k.strip_prefix("m:") {
                        b.per_model.insert(m.to_string(), *v);
                    }
                }
                for (id, expires_ms) in holds {
                    if expires_ms <= now_ms {
                        continue;
                    }
                    b.holds.insert(
                        id.clone(),
                        Hold {
                            usd: usd.get(&id).copied().unwrap_or(0.0),
                            model: model.get(&id).cloned().unwrap_or_default(),
                            expires_ms,
                            owner: None,
                        },
                    );
                }
                local.last_seen = b.clone();
                b
            }
            Err(e) => {
                local.last_error = Some(e.message);
                let mut b = local.last_seen.clone();
                b.roll(period_key);
                b
            }
        };
        local.pending.apply_to(&mut book);
        // Perhaps in Redis already: counted again, the safe side.
        if let Some((_, batch)) = &local.unconfirmed {
            batch.apply_to(&mut book);
        }
        for (id, h) in &local.local_holds {
            book.holds.insert(id.clone(), h.clone());
        }
        (book, local.last_error.clone())
    }
}

fn owner_string(o: &Owner) -> String {
    format!("{} {} {} {}", o.pid, o.start, o.boot, o.pidns)
}

fn parse_owner(s: &str) -> Option<Owner> {
    let mut it = s.splitn(4, ' ');
    Some(Owner {
        pid: it.next()?.parse().ok()?,
        start: it.next()?.parse().ok()?,
        boot: it.next()?.to_string(),
        pidns: it.next()?.to_string(),
    })
}

fn lock(m: &Mutex<Local>) -> MutexGuard<'_, Local> {
    crate::sync::lock(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_round_trips_through_its_string() {
        let o = Owner {
            pid: 12,
            start: 34,
            boot: "b-1".into(),
            pidns: "pid:[4026531836]".into(),
        };
        assert_eq!(parse_owner(&owner_string(&o)), Some(o));
        assert_eq!(parse_owner("x"), None);
    }

    #[test]
    fn open_mode_checks_the_last_figures_plus_local_spend_and_holds() {
        let mut local = Local::default();
        local.last_seen.roll("k");
        local.last_seen.spend("m", 0.5);
        let limits = Limits {
            period: Period::Month,
            total: Some(1.0),
            model: None,
            model_key: "m",
        };
        let hold = |usd| Hold {
            usd,
            model: "m".into(),
            expires_ms: u64::MAX,
            owner: None,
        };
        assert_eq!(
            RedisBook::reserve_locally(&mut local, "k", "a", hold(0.25), &limits),
            Ok(())
        );
        local.pending.keep("m", 0.2, None);
        assert_eq!(
            RedisBook::reserve_locally(&mut local, "k", "b", hold(0.1), &limits),
            Err(Refusal::Total(0.95))
        );
        local.local_holds.clear();
        assert_eq!(
            RedisBook::reserve_locally(&mut local, "k", "b", hold(0.1), &limits),
            Ok(())
        );
    }
}
