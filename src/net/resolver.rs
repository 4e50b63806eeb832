//! Name resolution without a thread per call.
//!
//! ureq's default resolver enforces its timeout by resolving on a new thread,
//! and ureq resolves before every request, pooled connection or not: on a
//! keep-alive pool that thread costs more than the request itself (measured
//! ~100 µs per call on loopback). IP literals need no lookup at all, and
//! names are cached for `dns_cache_ttl_ms` (the seed's aiohttp
//! `ttl_dns_cache`); only a miss goes to ureq's resolver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use super::proxy::Proxies;

/// Resolves IP literals directly and caches looked-up names.
#[derive(Debug)]
pub struct CachingResolver {
    fallback: DefaultResolver,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    /// Targets reached through a proxy are not resolved here: the proxy
    /// resolves them (a corporate client often cannot).
    proxies: Arc<Proxies>,
}

impl CachingResolver {
    /// Names are reused for `ttl`; zero disables the cache (literals still skip lookup).
    pub fn new(ttl: Duration) -> CachingResolver {
        CachingResolver {
            fallback: DefaultResolver::default(),
            ttl,
            cache: Mutex::new(HashMap::new()),
            proxies: Arc::new(Proxies::none()),
        }
    }

    /// Like [`CachingResolver::new`], answering no address for targets
    /// that `proxies` sends through a proxy.
    pub fn with_proxies(ttl: Duration, proxies: Arc<Proxies>) -> CachingResolver {
        CachingResolver {
            proxies,
            ..CachingResolver::new(ttl)
        }
    }
}

/// Host and port of a URI, with the scheme's default port.
fn host_port(uri: &Uri) -> Option<(&str, u16)> {
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match uri.scheme_str()? {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some((authority.host(), port))
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let t0 = Instant::now();
        let r = self.lookup(uri, config, timeout);
        super::transport::note_dns(t0.elapsed());
        r
    }
}

impl CachingResolver {
    fn lookup(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some((host, port)) = host_port(uri) else {
            return self.fallback.resolve(uri, config, timeout);
        };
        if self.proxies.any()
            && uri
                .scheme_str()
                .is_some_and(|s| self.proxies.for_target(s, host, port).is_some())
        {
            return Ok(self.empty());
        }
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let mut addrs = self.empty();
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        if self.ttl.is_zero() {
            return self.fallback.resolve(uri, config, timeout);
        }
        let key = format!("{host}:{port}");
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, addrs)) = cache.get(&key) {
                if now.duration_since(*at) < self.ttl {
                    return Ok(addrs.clone());
                }
            }
        }
        let addrs = self.fallback.resolve(uri, config, timeout)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a client talks to a handful of gateways, but never let a
        // misuse grow this without limit.
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, (now, addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachingResolver, url: &str) -> Vec<SocketAddr> {
        let uri: Uri = url.parse().unwrap();
        let cfg = Config::default();
        r.resolve(&uri, &cfg, NextTimeout::default())
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn literals_resolve_without_lookup() {
        let r = CachingResolver::new(Duration::from_secs(60));
        assert_eq!(
            resolve(&r, "http://127.0.0.1:8080/v1"),
            vec!["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "https://[::1]/v1"),
            vec!["[::1]:443".parse().unwrap()]
        );
        assert_eq!(
            resolve(&r, "http://10.1.2.3/v1"),
            vec!["10.1.2.3:80".parse().unwrap()]
        );
        assert!(r.cache.lock().unwrap().is_empty());
    }

    #[test]
    fn names_are_cached() {
        let r = CachingResolver::new(Duration::from_secs(60));
        let first = resolve(&r, "http://localhost:9/x");
        assert!(!first.is_empty());
        assert_eq!(r.cache.lock().unwrap().len(), 1);
        assert_eq!(resolve(&r, "http://localhost:9/y"), first);
    }
}
