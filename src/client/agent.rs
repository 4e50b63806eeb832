//! Building the `ureq::Agent` behind a client, and warming its pool.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use ureq::http;
use ureq::unversioned::transport::{Connector, RustlsConnector};
use ureq::Agent;

use super::{read_whole, Client};
use crate::error::Error;
use crate::net::buffers::{MAX_RESPONSE_HEAD, OUTPUT_WINDOW, TLS_INPUT};
use crate::net::error::from_ureq;
use crate::net::live::LiveSockets;
use crate::net::resolver::CachingResolver;
use crate::net::transport::{ConnReady, ConnStats, CountedTls, PoolConnector};
use crate::net::tunnel::ProxyConnector;
use crate::options::Options;
use crate::sync::read;

impl Client {
    /// Opens up to `n` connections to the first available endpoint ahead of
    /// the first real call (TCP and TLS handshakes done), by sending `n`
    /// concurrent `GET /models` requests; their connections stay pooled (up
    /// to `pool_max_idle_per_host`). Returns how many connections were opened.
    pub fn warm(&self, n: usize) -> Result<usize, Error> {
        let inner = &*self.inner;
        let n = n.min(256);
        let before = inner.wire.conn.opened.load(Ordering::Relaxed);
        let ep = inner
            .endpoints
            .get(inner.endpoints.order(Instant::now())[0]);
        let url = format!("{}/models", ep.base_url);
        let agent = read(&inner.wire.agent).agent.clone();
        // Every request holds its connection until all have answered (or a
        // timeout passes): otherwise a fast server lets them share one.
        let gate = (Mutex::new(0usize), Condvar::new());
        let token = crate::exec::token::current();
        let errors: Vec<Error> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let (agent, url, gate) = (agent.clone(), url.clone(), &gate);
                    let tok = token.clone();
                    scope.spawn(move || {
                        // An async warm-up's cancel reaches these threads'
                        // connects and sockets.
                        let in_call = |f: &mut dyn FnMut() -> Option<Error>| match tok {
                            Some(t) => crate::exec::token::with_call(t, false, f),
                            None => f(),
                        };
                        in_call(&mut || {
                            // Its own attempt: registers its socket with the token.
                            crate::net::transport::begin_attempt();
                            let _log =
                                crate::log::Scope::enter(&inner.log, crate::log::next_call_id());
                            let mut b =
                                http::Request::get(&url).header("accept", "application/json");
                            let key = ep.api_key.clone().or_else(|| read(&inner.wire.key).clone());
                            if let Some(k) = key {
                                b = b.header("authorization", format!("Bearer {}", k.expose()));
                            }
                            let result = b
                                .body(())
                                .map_err(|e| Error::invalid(e.to_string()))
                                .and_then(|r| agent.run(r).map_err(|e| from_ureq(&e)));
                            {
                                let mut k = crate::sync::lock(&gate.0);
                                *k += 1;
                                gate.1.notify_all();
                                let deadline = Instant::now() + inner.opts.connect_timeout;
                                while *k < n && Instant::now() < deadline {
                                    k = crate::sync::wait_timeout(
                                        &gate.1,
                                        k,
                                        deadline.saturating_duration_since(Instant::now()),
                                    )
                                    .0;
                                }
                            }
                            match result {
                                Ok(mut resp) => {
                                    read_whole(resp.body_mut(), inner.opts.max_response_bytes)
                                        .err()
                                        .map(|(_, e)| e)
                                }
                                Err(e) => Some(e),
                            }
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        let opened = (inner.wire.conn.opened.load(Ordering::Relaxed) - before) as usize;
        match errors.into_iter().next() {
            Some(e) if opened == 0 => Err(e),
            _ => Ok(opened),
        }
    }
}

/// ureq's output buffer per transport layer (see `build_agent`), as curl's
/// default upload buffer.
const OUTPUT_BUFFER: usize = 16 * 1024;

/// A client's agent and the sockets its connections hold.
pub(crate) struct Pooled {
    pub agent: Agent,
    live: Arc<LiveSockets>,
}

impl Pooled {
    /// Closes every connection, idle or in use (blocked I/O on them returns
    /// at once), and refuses new ones.
    pub fn shutdown(self) {
        self.agent.shutdown();
        self.live.shutdown_all();
    }
}

/// Builds an agent whose pool, timeouts and TLS follow the options.
pub(crate) fn build_agent(o: &Options, conn: &Arc<ConnStats>) -> Result<Pooled, Error> {
    let tls = crate::net::tls::tls_config(&o.tls())?;
    let mut cfg = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .save_redirect_history(false)
        .user_agent(o.user_agent.as_str())
        .no_delay(true)
        .max_idle_connections(o.pool_max_idle)
        // ureq's default 128 KiB output buffer is zeroed when a connection
        // first writes, so every call in flight paid 128 KiB of RSS for a
        // request head of a few hundred bytes. Larger bodies go out in
        // 16 KiB pieces (coalesced again by the transport up to 64 KiB).
        .output_buffer_size(OUTPUT_BUFFER)
        .max_idle_connections_per_host(o.pool_max_idle_per_host)
        .max_idle_age(o.pool_idle_timeout)
        .timeout_global(Some(o.timeout))
        .timeout_connect(Some(o.connect_timeout))
        // ureq's own proxy handling (on by default, from the environment)
        // stays off: `ProxyConnector` follows curl's rules instead.
        .proxy(None)
        // ureq's TLS layer keeps an input and an output buffer of these
        // sizes for a TLS connection's life (128 KiB each by default). The
        // TCP layer's own buffers (`ConnBuffers`) grow while a large body
        // moves and are freed while the connection is idle.
        .input_buffer_size(TLS_INPUT)
        .output_buffer_size(OUTPUT_WINDOW)
        .max_response_header_size(MAX_RESPONSE_HEAD)
        .tls_config(tls);
    if !o.compression {
        // ureq's gzip feature asks for gzip on every request unless told not to.
        cfg = cfg.accept_encoding(ureq::config::AutoHeaderValue::None);
    }
    if let Some(t) = o.response_header_timeout {
        cfg = cfg.timeout_recv_response(Some(t));
    }
    if let Some(t) = o.body_timeout {
        cfg = cfg.timeout_recv_body(Some(t));
    }
    let live = Arc::new(LiveSockets::default());
    let connector = ()
        .chain(ProxyConnector {
            proxies: o.proxies.clone(),
            resolver: CachingResolver::new(o.dns_cache_ttl),
            buffer_bytes: conn.buffer_bytes.clone(),
        })
        .chain(PoolConnector {
            stats: conn.clone(),
            tcp_keepalive: o.tcp_keepalive,
            max_age: o.pool_max_age,
            live: live.clone(),
        })
        .chain(CountedTls {
            inner: RustlsConnector::default(),
            stats: conn.clone(),
        })
        .chain(ConnReady);
    let agent = Agent::with_parts(
        cfg.build(),
        connector,
        CachingResolver::with_proxies(o.dns_cache_ttl, o.proxies.clone()),
    );
    Ok(Pooled { agent, live })
}
