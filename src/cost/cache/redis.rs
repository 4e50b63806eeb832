//! The response cache in Redis (`"cache": {"shared": true}`), so one
//! process's answer serves every process and machine with the same Redis
//! and prefix.
//!
//! Key: `<prefix>cache:<fnv1a-64 of the canonical request>-<its length>`;
//! value: a JSON document holding the full canonical request (compared on
//! every read, so a hash collision is a miss, never another request's
//! answer), the status, the headers and the body; expiry: the cache's
//! `ttl_ms` (Redis drops it). Entries over `max_entry_bytes`, and bodies
//! that are not UTF-8, are not stored in Redis (they stay in the local
//! cache). Errors are returned to the caller, which falls back to the local
//! cache.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{CacheKey, CachedEntry, SharedCache};
use crate::store::redis::{RedisStore, Reply, Step, StoreError};

/// The Redis side of a shared cache.
#[derive(Debug, Clone)]
struct RedisCache {
    store: RedisStore,
    ttl_ms: u64,
    max_entry_bytes: u64,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    too_big: AtomicU64,
}

/// The Redis key (below the prefix) for a canonical request.
fn redis_key(key: &CacheKey) -> String {
    let text = key.as_str();
    // FNV-1a: stable across processes, builds and Rust versions (unlike
    // `DefaultHasher`); collisions are caught by comparing the stored key.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("cache:{h:016x}-{}", text.len())
}

pub(super) fn shared(
    store: &RedisStore,
    ttl_ms: u64,
    max_entry_bytes: u64,
) -> Box<dyn SharedCache> {
    Box::new(RedisCache {
        store: store.clone(),
        ttl_ms,
        max_entry_bytes,
        counts: Arc::default(),
    })
}

impl SharedCache for RedisCache {
    /// [`RedisCache::get`], counted; an error is a miss (the caller has
    /// its local cache).
    fn lookup(&self, key: &CacheKey) -> Option<CachedEntry> {
        let c = &self.counts;
        match self.get(key) {
            Ok(Some(e)) => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                Some(e)
            }
            Ok(None) => {
                c.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn lookup_step(&self, key: &CacheKey) -> Step {
        Step {
            name: "cache.get",
            source: "return redis.call('GET', KEYS[1])",
            go_on: "r == false",
            keys: vec![redis_key(key)],
            args: Vec::new(),
        }
    }

    fn found(&self, key: &CacheKey, reply: &Reply) -> Option<CachedEntry> {
        let c = &self.counts;
        let raw = match reply {
            Reply::Nil => None,
            Reply::BulkString(raw) => Some(raw),
            _ => {
                c.errors.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        match raw.and_then(|raw| decode(raw, key)) {
            Some(e) => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                Some(e)
            }
            None => {
                c.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// [`RedisCache::put`], counted.
    fn store(&self, key: &CacheKey, entry: &CachedEntry) {
        match self.put(key, entry) {
            Ok(true) => {}
            Ok(false) => {
                self.counts.too_big.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counts.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn to_json(&self) -> Value {
        let c = &self.counts;
        json!({
            "hits": c.hits.load(Ordering::Relaxed),
            "misses": c.misses.load(Ordering::Relaxed),
            "errors": c.errors.load(Ordering::Relaxed),
            "too_big": c.too_big.load(Ordering::Relaxed),
        })
    }
}

impl RedisCache {
    /// The stored answer for `key`, if Redis has a fresh one.
    fn get(&self, key: &CacheKey) -> Result<Option<CachedEntry>, StoreError> {
        let k = self.store.key(&redis_key(key));
        let raw: Option<Vec<u8>> = self
            .store
            .with_conn(|c| ::redis::cmd("GET").arg(&k).query(c))?;
        Ok(raw.and_then(|raw| decode(&raw, key)))
    }

    /// Stores `entry` with the cache's TTL; `Ok(false)` when it is over
    /// `max_entry_bytes` or its body is not UTF-8 (not stored).
    fn put(&self, key: &CacheKey, entry: &CachedEntry) -> Result<bool, StoreError> {
        let Some(doc) = encode(key, entry) else {
            return Ok(false);
        };
        if doc.len() as u64 > self.max_entry_bytes {
            return Ok(false);
        }
        let mut set = ::redis::cmd("SET");
        set.arg(self.store.key(&redis_key(key)))
            .arg(doc.as_bytes())
            .arg("PX")
            .arg(self.ttl_ms);
        // Rides with the call's budget commit (one round trip for both), or
        // goes at the end of the call: see `Spend::after`.
        self.store.defer(set)?;
        Ok(true)
    }
}

fn encode(key: &CacheKey, e: &CachedEntry) -> Option<String> {
    let body = std::str::from_utf8(&e.body).ok()?;
    let headers: Vec<[&str; 2]> = e
        .headers
        .iter()
        .map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    Some(
        json!({"key": key.as_str(), "status": e.status, "headers": headers, "body": body})
            .to_string(),
    )
}

fn decode(raw: &[u8], key: &CacheKey) -> Option<CachedEntry> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    if v["key"].as_str() != Some(key.as_str()) {
        return None;
    }
    let headers = v["headers"]
        .as_array()?
        .iter()
        .map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
        .collect::<Option<Vec<_>>>()?;
    Some(CachedEntry {
        status: u16::try_from(v["status"].as_u64()?).ok()?,
        body: v["body"].as_str()?.as_bytes().to_vec(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::cache::ResponseCache;

    fn key(text: &str) -> CacheKey {
        ResponseCache::key("POST", "/chat/completions", Some(&json!({"q": text})))
    }

    #[test]
    fn round_trips_and_checks_the_full_key() {
        let e = CachedEntry {
            status: 200,
            body: br#"{"a":"\u00e9 ok"}"#.to_vec(),
            headers: vec![("content-type".into(), "application/json".into())],
        };
        let doc = encode(&key("x"), &e).unwrap();
        assert_eq!(decode(doc.as_bytes(), &key("x")), Some(e.clone()));
        // Same Redis key by accident: still a miss.
        assert_eq!(decode(doc.as_bytes(), &key("y")), None);
        assert_eq!(decode(b"garbage", &key("x")), None);
        let binary = CachedEntry {
            body: vec![0xff, 0xfe],
            ..e
        };
        assert_eq!(encode(&key("x"), &binary), None);
    }

    #[test]
    fn keys_are_stable_and_differ_per_request() {
        assert_eq!(redis_key(&key("x")), redis_key(&key("x")));
        assert_ne!(redis_key(&key("x")), redis_key(&key("y")));
        assert!(redis_key(&key("x")).starts_with("cache:"));
    }
}
