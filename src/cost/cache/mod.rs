//! Response cache: this process's LRU ([`ResponseCache`]) and, with
//! `"shared": true`, a `SharedCache` in Redis asked after it (see `redis`).
//!
//! Identical deterministic requests (temperature 0) return identical
//! answers, and paying for them twice is pure waste. The cache is keyed on
//! the full canonical request, so a hit can never return another request's
//! answer.

#[cfg(feature = "redis")]
mod redis;
#[cfg(not(feature = "redis"))]
mod redis {
    //! Never called: without the feature no `RedisStore` exists.
    use super::SharedCache;
    use crate::store::redis::RedisStore;

    pub(super) fn shared(store: &RedisStore, _: u64, _: u64) -> Box<dyn SharedCache> {
        match *store {}
    }
}

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::store::redis::{RedisStore, Reply, Step};

/// Top-level request field with the per-call cache directive.
///
/// `"llmpool_cache": true` caches a request even when it is not
/// deterministic (temperature ≠ 0 or unset); `"llmpool_cache": false` never
/// caches it. The client strips the field (see [`take_cache_directive`])
/// because gateways may reject unknown fields.
pub const CACHE_DIRECTIVE_FIELD: &str = "llmpool_cache";

const DEFAULT_MAX_ENTRIES: u64 = 1_000;
const DEFAULT_TTL_MS: u64 = 5 * 60 * 1_000;
const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_ENTRY_BYTES: u64 = 1024 * 1024;

/// Removes the `llmpool_cache` directive from a request body and returns it.
///
/// `Some(true)` = opt in, `Some(false)` = opt out, `None` = no directive.
/// A non-boolean value is removed too (it must not reach the gateway) and
/// treated as absent. Call [`ResponseCache::is_cacheable`] *before* this,
/// since it reads the directive from the body.
pub fn take_cache_directive(body: &mut Value) -> Option<bool> {
    body.as_object_mut()?
        .remove(CACHE_DIRECTIVE_FIELD)
        .and_then(|v| v.as_bool())
}

/// Identity of a cacheable request: the full canonical text, not a hash,
/// so two different requests can never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// The canonical key text: `METHOD\npath\ncanonical-json-body`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    /// HTTP status code.
    pub status: u16,
    /// Raw response body.
    pub body: Vec<u8>,
    /// Response headers as name/value pairs.
    pub headers: Vec<(String, String)>,
}

impl CachedEntry {
    fn size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.body.len() + headers) as u64
    }
}

#[derive(Debug)]
struct Slot {
    entry: CachedEntry,
    inserted: Instant,
    tick: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<CacheKey, Slot>,
    /// Recency order: lowest tick = least recently used.
    lru: BTreeMap<u64, CacheKey>,
    next_tick: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
}

impl Inner {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.map.remove(key) {
            self.lru.remove(&slot.tick);
            self.bytes -= slot.bytes;
        }
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

/// The cache every process with the same store sees, asked after this
/// process's own [`ResponseCache`] and filled beside it. It never fails a
/// call: a store that cannot be reached is a miss.
pub(crate) trait SharedCache: Send + Sync + fmt::Debug {
    /// A stored answer for `key`, or `None` (a miss, or the store is down).
    fn lookup(&self, key: &CacheKey) -> Option<CachedEntry>;

    /// [`SharedCache::lookup`] as the first step of a chain (see
    /// `store::redis::chain`): the steps after it run only on a miss.
    fn lookup_step(&self, key: &CacheKey) -> Step;

    /// What the step found, counted as [`SharedCache::lookup`] counts.
    fn found(&self, key: &CacheKey, reply: &Reply) -> Option<CachedEntry>;

    /// Keeps `entry` for the cache's TTL when it fits.
    fn store(&self, key: &CacheKey, entry: &CachedEntry);

    /// The `cache.shared` section of the metrics.
    fn to_json(&self) -> Value;
}

/// Thread-safe LRU cache with TTL and entry/byte limits.
#[derive(Debug)]
pub struct ResponseCache {
    max_entries: u64,
    max_bytes: u64,
    ttl: Duration,
    default_on: bool,
    shared: bool,
    max_entry_bytes: u64,
    inner: Mutex<Inner>,
}

impl ResponseCache {
    /// Builds a cache from the `cache` client option:
    /// `{"max_entries": n, "ttl_ms": t, "max_bytes": b, "default_on": bool,
    /// "shared": bool, "max_entry_bytes": n}`.
    ///
    /// Defaults: 1000 entries, 5 minutes, 64 MiB, `default_on` true. All
    /// limits must be positive integers (leave the option out to disable the
    /// cache). `default_on` says whether temperature-0 requests are cached
    /// without an explicit `"llmpool_cache": true`. `shared` (default false)
    /// also keeps entries in Redis (the client's `redis` option) for every
    /// process; `max_entry_bytes` (default 1 MiB) caps one entry there.
    pub fn from_json(v: &Value) -> Result<ResponseCache, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "cache: expected an object".to_string())?;
        let mut max_entries = DEFAULT_MAX_ENTRIES;
        let mut ttl_ms = DEFAULT_TTL_MS;
        let mut max_bytes = DEFAULT_MAX_BYTES;
        let mut default_on = true;
        let mut shared = false;
        let mut max_entry_bytes = DEFAULT_MAX_ENTRY_BYTES;
        for (k, val) in obj {
            let positive = || {
                val.as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("cache.{k}: expected a positive integer"))
            };
            match k.as_str() {
                "max_entries" => max_entries = positive()?,
                "ttl_ms" => ttl_ms = positive()?,
                "max_bytes" => max_bytes = positive()?,
                "max_entry_bytes" => max_entry_bytes = positive()?,
                "shared" => {
                    shared = val
                        .as_bool()
                        .ok_or_else(|| "cache.shared: expected true or false".to_string())?
                }
                "default_on" => {
                    default_on = val
                        .as_bool()
                        .ok_or_else(|| "cache.default_on: expected true or false".to_string())?
                }
                other => {
                    return Err(format!(
                        "cache.{other}: unknown key (expected \"max_entries\", \"ttl_ms\", \"max_bytes\", \"default_on\", \"shared\" or \"max_entry_bytes\")"
                    ))
                }
            }
        }
        Ok(ResponseCache {
            max_entries,
            max_bytes,
            ttl: Duration::from_millis(ttl_ms),
            default_on,
            shared,
            max_entry_bytes,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Whether deterministic requests are cached without an opt-in; pass
    /// this as `default_on` to [`ResponseCache::is_cacheable`].
    pub fn default_on(&self) -> bool {
        self.default_on
    }

    /// Whether entries are also kept in Redis (`shared`).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// The largest entry kept in Redis, in bytes.
    pub fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    /// How long an entry lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The shared side of this cache (`shared`), kept in `store`.
    pub(crate) fn shared_in(&self, store: &RedisStore) -> Box<dyn SharedCache> {
        redis::shared(store, self.ttl.as_millis() as u64, self.max_entry_bytes)
    }

    /// Builds the key for a request.
    ///
    /// serde_json (without `preserve_order`) keeps object keys sorted and
    /// serializes without whitespace, so re-serializing a parsed body is a
    /// canonical form: key order and formatting of the caller's JSON do not
    /// matter. The method is upper-cased for the same reason. The
    /// `llmpool_cache` directive is ignored, so opting in does not split the
    /// cache. Numbers keep their spelling (`0` and `0.0` differ).
    pub fn key(method: &str, path: &str, body: Option<&Value>) -> CacheKey {
        let body_text = match body {
            None => String::new(),
            Some(b) => match b.as_object() {
                Some(o) if o.contains_key(CACHE_DIRECTIVE_FIELD) => {
                    let mut o = o.clone();
                    o.remove(CACHE_DIRECTIVE_FIELD);
                    Value::Object(o).to_string()
                }
                _ => b.to_string(),
            },
        };
        CacheKey(format!(
            "{}\n{}\n{}",
            method.to_ascii_uppercase(),
            path,
            body_text
        ))
    }

    /// Whether a request body may be served from / stored in the cache.
    ///
    /// Never for streaming requests (`"stream": true`: we cache whole
    /// responses only) or when opted out with `"llmpool_cache": false`.
    /// Otherwise yes when opted in with `"llmpool_cache": true`, or when
    /// `default_on` and the request is deterministic (`temperature` present
    /// and 0; an absent temperature means the provider default, usually 1).
    pub fn is_cacheable(body: &Value, default_on: bool) -> bool {
        if body.get("stream").and_then(Value::as_bool) == Some(true) {
            return false;
        }
        match body.get(CACHE_DIRECTIVE_FIELD).and_then(Value::as_bool) {
            Some(directive) => directive,
            None => default_on && body.get("temperature").and_then(Value::as_f64) == Some(0.0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The cache holds no invariant worth failing every later call over.
        crate::sync::lock(&self.inner)
    }

    /// Returns a fresh entry and marks it most recently used; an expired
    /// entry is dropped and counts as a miss.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<CachedEntry> {
        let mut inner = self.lock();
        let expired = match inner.map.get(key) {
            None => {
                inner.misses += 1;
                return None;
            }
            Some(slot) => now.saturating_duration_since(slot.inserted) >= self.ttl,
        };
        if expired {
            inner.remove(key);
            inner.misses += 1;
            return None;
        }
        let tick = inner.tick();
        inner.hits += 1;
        let slot = inner.map.get_mut(key).expect("checked above");
        let old = std::mem::replace(&mut slot.tick, tick);
        let entry = slot.entry.clone();
        inner.lru.remove(&old);
        inner.lru.insert(tick, key.clone());
        Some(entry)
    }

    /// Stores a response, evicting least-recently-used entries until both
    /// limits hold. The caller decides what is worth caching (normally only
    /// 2xx responses to cacheable requests). An entry larger than
    /// `max_bytes` on its own is not stored, rather than flushing the whole
    /// cache for nothing.
    pub fn put(&self, key: CacheKey, entry: CachedEntry, now: Instant) {
        let bytes = entry.size() + key.0.len() as u64;
        let mut inner = self.lock();
        inner.remove(&key);
        if bytes > self.max_bytes {
            return;
        }
        let tick = inner.tick();
        inner.lru.insert(tick, key.clone());
        inner.bytes += bytes;
        inner.map.insert(
            key,
            Slot {
                entry,
                inserted: now,
                tick,
                bytes,
            },
        );
        while inner.map.len() as u64 > self.max_entries || inner.bytes > self.max_bytes {
            let Some((_, oldest)) = inner.lru.pop_first() else {
                break;
            };
            if let Some(slot) = inner.map.remove(&oldest) {
                inner.bytes -= slot.bytes;
            }
        }
    }

    /// `(hits, misses, entries, bytes)` for the metrics JSON. Bytes count
    /// bodies, headers and keys.
    pub fn stats(&self) -> (u64, u64, u64, u64) {
        let inner = self.lock();
        (
            inner.hits,
            inner.misses,
            inner.map.len() as u64,
            inner.bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(body: &str) -> CachedEntry {
        CachedEntry {
            status: 200,
            body: body.as_bytes().to_vec(),
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }

    fn cache(v: Value) -> ResponseCache {
        ResponseCache::from_json(&v).unwrap()
    }

    #[test]
    fn shared_and_entry_cap_options() {
        let c = cache(json!({}));
        assert!(!c.shared());
        assert_eq!(c.max_entry_bytes(), 1024 * 1024);
        let c = cache(json!({"shared": true, "max_entry_bytes": 10}));
        assert!(c.shared());
        assert_eq!(c.max_entry_bytes(), 10);
        let e = ResponseCache::from_json(&json!({"shared": 1})).unwrap_err();
        assert!(e.contains("cache.shared"), "{e}");
        let e = ResponseCache::from_json(&json!({"max_entry_bytes": 0})).unwrap_err();
        assert!(e.contains("cache.max_entry_bytes"), "{e}");
    }

    #[test]
    fn key_ignores_key_order_whitespace_and_directive() {
        let a: Value = serde_json::from_str(
            r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            "{ \"messages\" : [ {\"content\":\"hi\", \"role\":\"user\"} ],\n \"temperature\":0, \"model\":\"m\" }",
        )
        .unwrap();
        let k = ResponseCache::key("post", "/v1/chat/completions", Some(&a));
        assert_eq!(
            k,
            ResponseCache::key("POST", "/v1/chat/completions", Some(&b))
        );
        let mut c = b.clone();
        c["llmpool_cache"] = json!(true);
        assert_eq!(
            k,
            ResponseCache::key("POST", "/v1/chat/completions", Some(&c))
        );
        assert_ne!(k, ResponseCache::key("POST", "/v1/embeddings", Some(&a)));
        assert_ne!(k, ResponseCache::key("POST", "/v1/chat/completions", None));
        let mut d = a.clone();
        d["model"] = json!("other");
        assert_ne!(
            k,
            ResponseCache::key("POST", "/v1/chat/completions", Some(&d))
        );
        assert!(k.as_str().starts_with("POST\n/v1/chat/completions\n{"));
    }

    #[test]
    fn hit_miss_and_stats() {
        let c = cache(json!({}));
        let now = Instant::now();
        let k = ResponseCache::key("GET", "/v1/models", None);
        assert_eq!(c.get(&k, now), None);
        c.put(k.clone(), entry("abc"), now);
        assert_eq!(c.get(&k, now), Some(entry("abc")));
        let (hits, misses, entries, bytes) = c.stats();
        assert_eq!((hits, misses, entries), (1, 1, 1));
        assert_eq!(bytes, 3 + 12 + 16 + k.as_str().len() as u64);
        // Replacing keeps byte accounting exact.
        c.put(k.clone(), entry("abcdef"), now);
        assert_eq!(c.stats().3, 6 + 12 + 16 + k.as_str().len() as u64);
    }

    #[test]
    fn ttl_expiry() {
        let c = cache(json!({"ttl_ms": 1000}));
        let t0 = Instant::now();
        let k = ResponseCache::key("GET", "/a", None);
        c.put(k.clone(), entry("x"), t0);
        assert!(c.get(&k, t0 + Duration::from_millis(999)).is_some());
        assert!(c.get(&k, t0 + Duration::from_millis(1000)).is_none());
        assert_eq!(c.stats().2, 0);
        assert_eq!(c.stats().3, 0);
    }

    #[test]
    fn lru_eviction_by_entries() {
        let c = cache(json!({"max_entries": 2}));
        let now = Instant::now();
        let [a, b, d] = ["/a", "/b", "/d"].map(|p| ResponseCache::key("GET", p, None));
        c.put(a.clone(), entry("1"), now);
        c.put(b.clone(), entry("2"), now);
        assert!(c.get(&a, now).is_some()); // a is now most recent
        c.put(d.clone(), entry("3"), now);
        assert!(c.get(&b, now).is_none(), "b was least recently used");
        assert!(c.get(&a, now).is_some());
        assert!(c.get(&d, now).is_some());
        assert_eq!(c.stats().2, 2);
    }

    #[test]
    fn lru_eviction_by_bytes() {
        let key_len = ResponseCache::key("GET", "/a", None).as_str().len() as u64;
        let per = 100 + 12 + 16 + key_len;
        let c = cache(json!({"max_bytes": per * 2 + 10}));
        let now = Instant::now();
        let [a, b, d] = ["/a", "/b", "/d"].map(|p| ResponseCache::key("GET", p, None));
        let big = "x".repeat(100);
        c.put(a.clone(), entry(&big), now);
        c.put(b.clone(), entry(&big), now);
        assert_eq!(c.stats().2, 2);
        c.put(d.clone(), entry(&big), now);
        assert!(c.get(&a, now).is_none());
        assert!(c.get(&b, now).is_some() && c.get(&d, now).is_some());
        assert!(c.stats().3 <= per * 2 + 10);
        // Too large on its own: not stored, nothing else flushed.
        c.put(a.clone(), entry(&"y".repeat(1000)), now);
        assert!(c.get(&a, now).is_none());
        assert_eq!(c.stats().2, 2);
    }

    #[test]
    fn cacheability_and_opt_in_out() {
        assert!(ResponseCache::is_cacheable(
            &json!({"temperature": 0}),
            true
        ));
        assert!(ResponseCache::is_cacheable(
            &json!({"temperature": 0.0}),
            true
        ));
        assert!(!ResponseCache::is_cacheable(
            &json!({"temperature": 0}),
            false
        ));
        assert!(!ResponseCache::is_cacheable(&json!({}), true));
        assert!(!ResponseCache::is_cacheable(
            &json!({"temperature": 0.7}),
            true
        ));
        assert!(ResponseCache::is_cacheable(
            &json!({"temperature": 0.7, "llmpool_cache": true}),
            false
        ));
        assert!(!ResponseCache::is_cacheable(
            &json!({"temperature": 0, "llmpool_cache": false}),
            true
        ));
        assert!(!ResponseCache::is_cacheable(
            &json!({"temperature": 0, "stream": true, "llmpool_cache": true}),
            true
        ));
        assert!(ResponseCache::is_cacheable(
            &json!({"temperature": 0, "stream": false}),
            true
        ));
    }

    #[test]
    fn directive_is_stripped() {
        let mut b = json!({"model": "m", "llmpool_cache": false});
        assert_eq!(take_cache_directive(&mut b), Some(false));
        assert_eq!(b, json!({"model": "m"}));
        assert_eq!(take_cache_directive(&mut b), None);
        let mut b = json!({"llmpool_cache": "yes"});
        assert_eq!(take_cache_directive(&mut b), None);
        assert_eq!(b, json!({}));
        assert_eq!(take_cache_directive(&mut json!([1])), None);
    }

    #[test]
    fn options() {
        assert!(cache(json!({})).default_on());
        assert!(!cache(json!({"default_on": false})).default_on());
        for (v, want) in [
            (json!([]), "cache: expected an object"),
            (
                json!({"max_entries": 0}),
                "cache.max_entries: expected a positive integer",
            ),
            (
                json!({"ttl_ms": -5}),
                "cache.ttl_ms: expected a positive integer",
            ),
            (
                json!({"max_bytes": "1"}),
                "cache.max_bytes: expected a positive integer",
            ),
            (
                json!({"default_on": 1}),
                "cache.default_on: expected true or false",
            ),
            (json!({"ttl": 1}), "cache.ttl: unknown key"),
        ] {
            let err = ResponseCache::from_json(&v).unwrap_err();
            assert!(err.starts_with(want), "{err:?} vs {want:?}");
        }
    }

    #[test]
    fn concurrent_use() {
        let c = std::sync::Arc::new(cache(json!({"max_entries": 16})));
        let now = Instant::now();
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let k = ResponseCache::key("GET", &format!("/{}", (i * t) % 40), None);
                        if c.get(&k, now).is_none() {
                            c.put(k, entry("v"), now);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let (h, m, e, _) = c.stats();
        assert_eq!(h + m, 800);
        assert!(e <= 16);
    }
}
