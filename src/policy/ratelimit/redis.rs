//! Rate-limit buckets in Redis (see `crate::policy::ratelimit`): every key
//! is `<prefix>{rl}:<bucket>` (`{rl}` a cluster hash tag, so the keys of a
//! booking share a slot), the value a GCRA "theoretical arrival time" in
//! µs on Redis's clock (`TIME`, so machines need not agree on the time),
//! expiring once it is in the past. Gateway blocks are `<prefix>{rl}:block:
//! {req,tok}:<model>` keys whose TTL is the time left until the reset.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::{FromRedisValue, Script};

use super::{Booking, Buckets, Demand};
use crate::store::redis::{RedisStore, Reply, Step, StoreError};

/// KEYS: n buckets, then block keys. ARGV: max_wait_us, n, then
/// (interval_us, tolerance_us, cost) per bucket. Returns {booked, wait_us}.
static BOOK: LazyLock<Script> = LazyLock::new(|| Script::new(BOOK_LUA));

const BOOK_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local wait = 0
local tats = {}
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local w = tat - tonumber(ARGV[4 + (i - 1) * 3]) - now
  if w > wait then wait = w end
end
for i = n + 1, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  if left > 0 and left * 1000 > wait then wait = left * 1000 end
end
if wait > max_wait then return {0, math.floor(wait)} end
local at = now + wait
for i = 1, n do
  local tat = tats[i]
  if tat < at then tat = at end
  local new = tat + tonumber(ARGV[3 + (i - 1) * 3]) * tonumber(ARGV[5 + (i - 1) * 3])
  redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1000)
end
return {1, math.floor(wait)}
"#;

/// KEYS: buckets; ARGV: µs to add to each (negative gives back). Sent
/// deferred, as source (see `RedisStore::defer_eval`).
const SHIFT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v then
    local new = tonumber(v) + tonumber(ARGV[i])
    local ttl = math.ceil((new - now) / 1000) + 1000
    if ttl < 1000 then ttl = 1000 end
    redis.call('SET', KEYS[i], string.format('%.0f', new), 'PX', ttl)
  end
end
return 1
"#;

/// KEYS: block keys; ARGV: ms until each reset. Only ever lengthens.
static BLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 1, #KEYS do
  local ms = tonumber(ARGV[i])
  if redis.call('PTTL', KEYS[i]) < ms then redis.call('SET', KEYS[i], '1', 'PX', ms) end
end
return 1
"#,
    )
});

/// Every bucket and block key carries the `{rl}` hash tag: one booking
/// takes several of them in one script, which a cluster runs only when they
/// share a slot.
fn rl(key: &str) -> String {
    format!("{{rl}}:{key}")
}

/// BOOK's keys (the buckets, then the blocks) and ARGV.
fn book_keys_and_args(
    all: &[Demand],
    blocks: &[String],
    max_wait_us: f64,
) -> (Vec<String>, Vec<String>) {
    let keys = all
        .iter()
        .map(|d| rl(&d.key))
        .chain(blocks.iter().map(|b| rl(b)))
        .collect();
    let mut args = vec![format!("{max_wait_us:.0}"), all.len().to_string()];
    for d in all {
        args.push(format!("{}", d.interval_us));
        args.push(format!("{}", d.tolerance_us));
        args.push(format!("{}", d.cost));
    }
    (keys, args)
}

/// BOOK's reply: booked (1) or not, and the wait in µs.
fn booking((booked, wait): (i64, i64)) -> Booking {
    let wait = wait.max(0) as f64;
    if booked == 1 {
        Booking::Booked { wait_us: wait }
    } else {
        Booking::TooFar { needed_us: wait }
    }
}

/// The buckets in Redis, shared by every process with the same prefix.
#[derive(Debug)]
struct RedisBuckets {
    store: RedisStore,
}

pub(super) fn buckets(store: &RedisStore) -> Box<dyn Buckets<Error = StoreError>> {
    Box::new(RedisBuckets {
        store: store.clone(),
    })
}

impl Buckets for RedisBuckets {
    type Error = StoreError;

    fn book(
        &self,
        all: &[Demand],
        blocks: &[String],
        max_wait_us: f64,
    ) -> Result<Booking, StoreError> {
        let (keys, args) = book_keys_and_args(all, blocks, max_wait_us);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let answer: (i64, i64) = self.store.eval(&BOOK, &keys, args)?;
        Ok(booking(answer))
    }

    fn book_step(&self, all: &[Demand], blocks: &[String], max_wait_us: f64) -> Option<Step> {
        let (keys, args) = book_keys_and_args(all, blocks, max_wait_us);
        Some(Step {
            name: "ratelimit.book",
            source: BOOK_LUA,
            go_on: "r[1] == 1",
            keys,
            args,
        })
    }

    fn booking(&self, reply: &Reply) -> Option<Booking> {
        FromRedisValue::from_redis_value(reply).ok().map(booking)
    }

    fn shift(&self, deltas: &[(String, f64)]) -> Result<(), StoreError> {
        let keys: Vec<String> = deltas.iter().map(|(k, _)| rl(k)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<String> = deltas.iter().map(|(_, d)| format!("{d:.0}")).collect();
        // No reply is needed: it rides with the call's budget commit, or
        // goes at the end of the call (`flush`).
        self.store.defer_eval(SHIFT, &keys, args)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.store.flush_deferred()
    }

    fn block(&self, blocks: &[(String, Duration)]) -> Result<(), StoreError> {
        let keys: Vec<String> = blocks.iter().map(|(k, _)| rl(k)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<u128> = blocks.iter().map(|(_, d)| d.as_millis().max(1)).collect();
        self.store.eval::<i64>(&BLOCK, &keys, args).map(|_| ())
    }
}
