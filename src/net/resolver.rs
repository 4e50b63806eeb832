//! Name resolution without a thread per call.
//!
//! ureq's default resolver enforces its timeout by resolving on a new thread,
//! and ureq resolves before every request, pooled connection or not: on a
//! keep-alive pool that thread costs more than the request itself (measured
//! ~100 µs per call on loopback). IP literals need no lookup at all, and
//! names are cached for `dns_cache_ttl_ms` (as aiohttp's `ttl_dns_cache`
//! does); only a miss goes to ureq's resolver.
//!
//! `getaddrinfo` blocks and cannot be interrupted, so an async call (one
//! with a cancel token) looks a name up on a helper thread and waits for it
//! in short slices: a cancel ends the wait within one slice, and the helper
//! ends with the lookup. Blocking calls resolve as ureq does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use super::proxy::Proxies;
use crate::exec::token::{self, CallToken};

/// How long a wait for a lookup lasts before the call's token is looked at
/// again.
const SLICE: Duration = Duration::from_millis(20);

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
            return self.look_up(uri, config, timeout);
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
            return self.look_up(uri, config, timeout);
        }
        let key = format!("{host}:{port}");
        let now = Instant::now();
        {
            let cache = crate::sync::lock(&self.cache);
            if let Some((at, addrs)) = cache.get(&key) {
                if now.duration_since(*at) < self.ttl {
                    return Ok(addrs.clone());
                }
            }
        }
        let addrs = self.look_up(uri, config, timeout)?;
        let mut cache = crate::sync::lock(&self.cache);
        // Bounded: a client talks to a handful of gateways, but never let a
        // misuse grow this without limit.
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, (now, addrs.clone()));
        Ok(addrs)
    }
}

impl CachingResolver {
    /// A real lookup: inline for a blocking call, cancellable for an async one.
    fn look_up(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(tok) = token::current() else {
            return self.fallback.resolve(uri, config, timeout);
        };
        let (uri, config) = (uri.clone(), config.clone());
        // The helper enforces no timeout of its own (ureq's would start yet
        // another thread); the wait below does.
        let lookup =
            move || DefaultResolver::default().resolve(&uri, &config, NextTimeout::default());
        match wait_unless_cancelled(&tok, timeout.not_zero().map(|d| *d), lookup) {
            Waited::Done(r) => r,
            Waited::TimedOut => Err(ureq::Error::Timeout(timeout.reason)),
            Waited::Cancelled => Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "name resolution cancelled (llmpool_call_cancel)",
            ))),
            Waited::NoThread(e) => Err(ureq::Error::Io(e)),
        }
    }
}

/// How a wait for a helper thread ended.
#[derive(Debug)]
enum Waited<T> {
    Done(T),
    TimedOut,
    Cancelled,
    NoThread(std::io::Error),
}

/// Runs `work` on a helper thread and waits for its result until `limit`
/// passes or `tok` is cancelled, looking at the token every [`SLICE`]. A
/// helper that is given up on finishes its work and exits; its result is
/// dropped.
fn wait_unless_cancelled<T: Send + 'static>(
    tok: &CallToken,
    limit: Option<Duration>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Waited<T> {
    if tok.is_cancelled() {
        return Waited::Cancelled;
    }
    let deadline = limit.map(|l| Instant::now() + l);
    // One slot: the helper's send never blocks, waited for or not.
    let (tx, rx) = mpsc::sync_channel(1);
    // On a fiber the wait suspends it, and the helper wakes it when done.
    let fiber_waker = crate::exec::fiber::current();
    let on_fiber = fiber_waker.is_some();
    let spawned = std::thread::Builder::new()
        .name("llmpool-dns".into())
        .spawn(move || {
            let _ = tx.send(work());
            if let Some(w) = fiber_waker {
                w.wake();
            }
        });
    if let Err(e) = spawned {
        return Waited::NoThread(e);
    }
    loop {
        let slice = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Waited::TimedOut;
                }
                left.min(SLICE)
            }
            None => SLICE,
        };
        let got = if on_fiber {
            match rx.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {
                    crate::exec::fiber::wait(Some(Instant::now() + slice));
                    Err(mpsc::RecvTimeoutError::Timeout)
                }
                Err(mpsc::TryRecvError::Disconnected) => Err(mpsc::RecvTimeoutError::Disconnected),
                Ok(v) => Ok(v),
            }
        } else {
            rx.recv_timeout(slice)
        };
        match got {
            Ok(v) => return Waited::Done(v),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The helper panicked: report it as a failed lookup.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Waited::NoThread(std::io::Error::other("name lookup thread failed"));
            }
        }
        if tok.is_cancelled() {
            return Waited::Cancelled;
        }
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
    fn a_slow_lookup_ends_on_cancel_and_on_its_limit() {
        let tok = Arc::new(CallToken::new(1));
        let quick = wait_unless_cancelled(&tok, Some(Duration::from_secs(5)), || 42);
        assert!(matches!(quick, Waited::Done(42)), "{quick:?}");

        let slow = || std::thread::sleep(Duration::from_secs(3));
        let t = Instant::now();
        let r = wait_unless_cancelled(&tok, Some(Duration::from_millis(100)), slow);
        assert!(matches!(r, Waited::TimedOut), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(t.elapsed() < Duration::from_secs(2));

        let t2 = tok.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let at = Instant::now();
            t2.cancel();
            at
        });
        let r = wait_unless_cancelled(&tok, None, slow);
        let ended = Instant::now();
        let cancelled_at = canceller.join().unwrap();
        assert!(matches!(r, Waited::Cancelled), "{r:?}");
        assert!(
            ended - cancelled_at < Duration::from_millis(500),
            "{:?}",
            ended - cancelled_at
        );
        // Already cancelled: no thread is started.
        let r = wait_unless_cancelled(&tok, None, || panic!("ran"));
        assert!(matches!(r, Waited::Cancelled), "{r:?}");
    }

    #[test]
    fn an_async_call_resolves_names_on_a_helper() {
        let r = CachingResolver::new(Duration::ZERO);
        let tok = Arc::new(CallToken::new(2));
        let addrs = token::with_call(tok.clone(), true, || resolve(&r, "http://localhost:9/x"));
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.port() == 9 && a.ip().is_loopback()));
        tok.cancel();
        let uri: Uri = "http://localhost:9/x".parse().unwrap();
        let e = token::with_call(tok, true, || {
            r.resolve(&uri, &Config::default(), NextTimeout::default())
        })
        .unwrap_err();
        assert!(e.to_string().contains("cancelled"), "{e}");
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
