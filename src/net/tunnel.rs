//! Getting a request through a forward proxy: an HTTPS target gets a
//! `CONNECT` tunnel (pooled by ureq like any connection, so 100 calls share
//! one tunnel), a plain HTTP target gets its requests in absolute form
//! (`GET http://host/path`).
//!
//! [`ProxyConnector`] sits first in the chain. For a proxied target it opens
//! the connection to the proxy by running the whole chain again for the
//! proxy's own address (so our counting TCP connector opens that socket and
//! sets keep-alive), then talks to the proxy. ureq's TLS connector, later in
//! the chain, wraps the tunnel for an HTTPS target.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ureq::http::Uri;
use ureq::unversioned::resolver::Resolver;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

use super::buffers::ConnBuffers;
use super::proxy::{Proxies, ProxyUrl};
use super::resolver::CachingResolver;

/// Largest CONNECT answer head we accept.
const MAX_HEAD: usize = 16 * 1024;

/// Routes new connections through the client's proxies.
#[derive(Debug)]
pub struct ProxyConnector {
    pub proxies: Arc<Proxies>,
    /// Resolves the proxy's own name (the agent's resolver answers nothing
    /// for proxied targets: the proxy resolves them).
    pub resolver: CachingResolver,
    /// `ConnStats::buffer_bytes`: counts the absolute-form layer's buffers.
    pub buffer_bytes: Arc<AtomicU64>,
}

fn target(uri: &Uri) -> Option<(&str, &str, u16)> {
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    let port = uri.port_u16().or(match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some((scheme, host, port))
}

impl Connector<()> for ProxyConnector {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some((scheme, host, port)) = target(details.uri) else {
            return Ok(None);
        };
        let Some(proxy) = self.proxies.for_target(scheme, host, port) else {
            return Ok(None);
        };
        let proxy_uri: Uri = proxy
            .uri()
            .parse()
            .map_err(|_| ureq::Error::ConnectionFailed)?;
        let addrs = self
            .resolver
            .resolve(&proxy_uri, details.config, details.timeout)
            .map_err(|e| named(proxy, e))?;
        let proxy_details = ConnectionDetails {
            uri: &proxy_uri,
            addrs,
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: details.register_shutdown.clone(),
        };
        let transport = (details.run_connector)(&proxy_details).map_err(|e| named(proxy, e))?;
        if scheme == "https" {
            let authority = match host.contains(':') && !host.starts_with('[') {
                true => format!("[{host}]:{port}"),
                false => format!("{host}:{port}"),
            };
            connect_tunnel(transport, proxy, &authority, details)
                .map(|t| Some(Box::new(t) as Box<dyn Transport>))
        } else {
            let prefix = match details.uri.port_u16() {
                Some(p) => format!("http://{host}:{p}"),
                None => format!("http://{host}"),
            };
            Ok(Some(Box::new(AbsoluteForm {
                inner: transport,
                buffers: ConnBuffers::new(self.buffer_bytes.clone()),
                prefix,
                auth: proxy.authorization().map(str::to_string),
                head_next: true,
            })))
        }
    }
}

/// A connect failure on the way to the proxy names the proxy (never its
/// credentials), keeping the error's kind so codes and retries stay the same.
fn named(proxy: &ProxyUrl, e: ureq::Error) -> ureq::Error {
    match e {
        ureq::Error::Io(io) => ureq::Error::Io(io::Error::new(
            io.kind(),
            format!("proxy {}: {io}", proxy.label()),
        )),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            ureq::Error::Io(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("proxy {}: {e}", proxy.label()),
            ))
        }
        other => other,
    }
}

/// Sends `CONNECT authority` and reads the proxy's answer; anything but a
/// 2xx is an error naming the proxy and the status.
fn connect_tunnel(
    mut t: Box<dyn Transport>,
    proxy: &ProxyUrl,
    authority: &str,
    details: &ConnectionDetails,
) -> Result<Tunnel, ureq::Error> {
    let mut head = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nProxy-Connection: Keep-Alive\r\n"
    );
    if let ureq::config::AutoHeaderValue::Provided(ua) = details.config.user_agent() {
        head.push_str(&format!("User-Agent: {ua}\r\n"));
    }
    if let Some(auth) = proxy.authorization() {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    write_all(&mut *t, head.as_bytes(), details.timeout)?;
    let label = proxy.label();
    let failed = |why: String| ureq::Error::ConnectProxyFailed(format!("proxy {label} {why}"));
    let (status, reason, used) = loop {
        let input = t.buffers().input();
        if let Some(end) = find(input, b"\r\n\r\n") {
            let line = input[..end].split(|&b| b == b'\n').next().unwrap_or(&[]);
            let line = String::from_utf8_lossy(line).trim().to_string();
            let mut parts = line.splitn(3, ' ');
            let version = parts.next().unwrap_or("");
            let status = parts.next().and_then(|s| s.parse::<u16>().ok());
            let reason = parts.next().unwrap_or("").to_string();
            match status {
                Some(s) if version.starts_with("HTTP/1.") => break (s, reason, end + 4),
                _ => {
                    return Err(failed(format!(
                        "sent a malformed answer to CONNECT {authority}"
                    )))
                }
            }
        }
        if input.len() > MAX_HEAD {
            return Err(failed(format!(
                "sent an oversized answer to CONNECT {authority}"
            )));
        }
        if !t.await_input(details.timeout)? {
            return Err(failed(format!(
                "closed the connection without answering CONNECT {authority}"
            )));
        }
    };
    if !(200..300).contains(&status) {
        let hint = match status {
            // 407 is the standard answer; tinyproxy answers CONNECT with 401.
            401 | 407 if proxy.authorization().is_some() => " (the proxy refused the credentials)",
            401 | 407 => " (the proxy wants credentials: http://user:pass@host:port)",
            _ => "",
        };
        return Err(failed(format!(
            "refused CONNECT {authority}: HTTP {status} {reason}{hint}"
        )));
    }
    t.buffers().input_consume(used);
    Ok(Tunnel(t))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes `data` through `t`'s output buffer.
fn write_all(
    t: &mut dyn Transport,
    mut data: &[u8],
    timeout: NextTimeout,
) -> Result<(), ureq::Error> {
    while !data.is_empty() {
        let out = t.buffers().output();
        let n = out.len().min(data.len());
        if n == 0 {
            return Err(ureq::Error::Io(io::ErrorKind::WriteZero.into()));
        }
        out[..n].copy_from_slice(&data[..n]);
        t.transmit_output(n, timeout)?;
        data = &data[n..];
    }
    Ok(())
}

/// An established CONNECT tunnel: bytes pass through untouched, and TLS to
/// the target is layered on top by the next connector.
#[derive(Debug)]
struct Tunnel(Box<dyn Transport>);

impl Transport for Tunnel {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.0.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.0.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        // The proxy may be reached over TLS one day, but the target is not
        // TLS until the next connector wraps the tunnel.
        false
    }
}

/// A plain-HTTP connection to the proxy: each request line is rewritten to
/// absolute form and gets the `Proxy-Authorization` header.
///
/// ureq writes a request head in one `transmit_output` and only reads once
/// the request is sent, so the first write after a read is a head. The
/// rewrite also checks the line looks like `METHOD /path HTTP/1.1` first.
#[derive(Debug)]
struct AbsoluteForm {
    inner: Box<dyn Transport>,
    /// Like the TCP layer's: nothing held while the connection is idle.
    buffers: ConnBuffers,
    prefix: String,
    auth: Option<String>,
    head_next: bool,
}

impl AbsoluteForm {
    fn rewrite(&self, head: &[u8]) -> Option<Vec<u8>> {
        let end = find(head, b"\r\n")?;
        let line = std::str::from_utf8(&head[..end]).ok()?;
        let (method, rest) = line.split_once(' ')?;
        let (path, version) = rest.rsplit_once(' ')?;
        let ok = !method.is_empty()
            && method.bytes().all(|b| b.is_ascii_uppercase())
            && path.starts_with('/')
            && version.starts_with("HTTP/1.");
        if !ok {
            return None;
        }
        let mut out = Vec::with_capacity(head.len() + self.prefix.len() + 64);
        out.extend_from_slice(format!("{method} {}{path} {version}\r\n", self.prefix).as_bytes());
        if let Some(auth) = &self.auth {
            out.extend_from_slice(format!("Proxy-Authorization: {auth}\r\n").as_bytes());
        }
        out.extend_from_slice(&head[end + 2..]);
        Some(out)
    }
}

impl Transport for AbsoluteForm {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if amount == 0 {
            return Ok(());
        }
        let mut data = self.buffers.output()[..amount].to_vec();
        if std::mem::take(&mut self.head_next) {
            if let Some(r) = self.rewrite(&data) {
                data = r;
            }
        }
        write_all(&mut *self.inner, &data, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.head_next = true;
        // The request was handed on in `transmit_output`.
        self.buffers.output_written(true);
        if self.inner.buffers().input().is_empty() && !self.inner.await_input(timeout)? {
            return Ok(false);
        }
        let src = self.inner.buffers().input();
        let dst = self.buffers.input_append_buf();
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        self.buffers.input_appended(n);
        self.inner.buffers().input_consume(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // Idle (see `CountedTcp::is_open`).
        self.buffers.release_idle();
        self.inner.is_open()
    }
}
