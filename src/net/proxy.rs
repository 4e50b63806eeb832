//! Which forward proxy carries a request: the `proxy` option or, as curl
//! does, the environment (`https_proxy`, `http_proxy`, `all_proxy`,
//! `no_proxy`, lower case first, then upper case).
//!
//! ureq reads the environment itself, but with rules that differ from curl's
//! (`ALL_PROXY` wins over `HTTPS_PROXY`, one proxy for every scheme, no IP
//! ranges or ports in `NO_PROXY`, `example.com` not covering its
//! subdomains), and its CONNECT connector cannot sit on our counting TCP
//! connector. So ureq's proxy setting stays off and the rules live here.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::env::EnvLookup;
use crate::error::Error;

/// One HTTP forward proxy. Its `Debug` and [`ProxyUrl::label`] never show
/// the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    host: String,
    port: u16,
    /// `Basic <base64(user:pass)>`, sent as `Proxy-Authorization`.
    auth: Option<String>,
}

impl ProxyUrl {
    /// Parses `http://[user:pass@]host[:port]`; a URL without a scheme is
    /// `http://`, and without a port uses 1080 (curl's default). `what`
    /// names the source in errors, which never quote the URL (it may hold a
    /// password).
    pub fn parse(url: &str, what: &str) -> Result<ProxyUrl, Error> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            None => url,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                let scheme = scheme.to_ascii_lowercase();
                let hint = if scheme.starts_with("socks") {
                    " (SOCKS proxies are not supported yet)"
                } else {
                    ""
                };
                return Err(Error::invalid(format!(
                    "{what}: unsupported proxy scheme \"{scheme}://\"{hint}; expected http://[user:pass@]host:port"
                )));
            }
        };
        let rest = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let bad = || {
            Error::invalid(format!(
                "{what}: not a proxy URL (expected http://[user:pass@]host:port)"
            ))
        };
        let (host, port) = split_host_port(hostport).ok_or_else(bad)?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err(bad());
        }
        let auth = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let user = percent_decode(user).ok_or_else(bad)?;
                let pass = percent_decode(pass).ok_or_else(bad)?;
                let mut raw = user;
                raw.push(b':');
                raw.extend_from_slice(&pass);
                Some(format!("Basic {}", base64(&raw)))
            }
        };
        Ok(ProxyUrl {
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(1080),
            auth,
        })
    }

    /// `host:port`, for errors and `info.proxy`; never the credentials.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URI ureq's resolver and connectors use to reach the proxy.
    pub fn uri(&self) -> String {
        format!("http://{}", self.label())
    }

    /// The `Proxy-Authorization` header value, if the URL had a user.
    pub fn authorization(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    fn is(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host.eq_ignore_ascii_case(host)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({}", self.label())?;
        if self.auth.is_some() {
            f.write_str(", credentials: <redacted>")?;
        }
        f.write_str(")")
    }
}

/// The proxies of one client, decided once when it is built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    https: Option<Arc<ProxyUrl>>,
    http: Option<Arc<ProxyUrl>>,
    no_proxy: NoProxy,
}

impl Proxies {
    /// The `Proxy-Authorization` values of these proxies, for the log's
    /// redaction list (the password itself is never kept).
    pub fn secrets(&self) -> Vec<String> {
        [&self.https, &self.http]
            .into_iter()
            .flatten()
            .filter_map(|p| p.authorization().map(str::to_string))
            .collect()
    }

    /// No proxy at all (`"proxy": ""`).
    pub fn none() -> Proxies {
        Proxies::default()
    }

    /// From the `proxy` option: `""` means none (the environment is
    /// ignored), anything else is the proxy for both schemes. `no_proxy` is
    /// the `no_proxy` option, else the environment's `no_proxy`.
    pub fn from_option(
        proxy: &str,
        no_proxy: Option<&str>,
        env: EnvLookup<'_>,
    ) -> Result<Proxies, Error> {
        if proxy.trim().is_empty() {
            return Ok(Proxies::none());
        }
        let p = Arc::new(ProxyUrl::parse(proxy, "option \"proxy\"")?);
        Ok(Proxies {
            https: Some(p.clone()),
            http: Some(p),
            no_proxy: NoProxy::parse(&no_proxy.map(str::to_string).or_else(|| env_no_proxy(env))),
        })
    }

    /// From the environment, as curl reads it: for https URLs
    /// `https_proxy`/`HTTPS_PROXY`, for http URLs `http_proxy`/`HTTP_PROXY`,
    /// else `all_proxy`/`ALL_PROXY`; `no_proxy`/`NO_PROXY` lists the
    /// exceptions (or the `no_proxy` option when given).
    pub fn from_env(no_proxy: Option<&str>, env: EnvLookup<'_>) -> Result<Proxies, Error> {
        let pick = |names: [&str; 2]| -> Result<Option<Arc<ProxyUrl>>, Error> {
            for name in names.into_iter().chain(["all_proxy", "ALL_PROXY"]) {
                if let Some(v) = env(name).filter(|v| !v.trim().is_empty()) {
                    let what = format!("environment variable {name}");
                    return ProxyUrl::parse(&v, &what).map(|p| Some(Arc::new(p)));
                }
            }
            Ok(None)
        };
        let https = pick(["https_proxy", "HTTPS_PROXY"])?;
        let http = pick(["http_proxy", "HTTP_PROXY"])?;
        let no_proxy = if https.is_some() || http.is_some() {
            NoProxy::parse(&no_proxy.map(str::to_string).or_else(|| env_no_proxy(env)))
        } else {
            NoProxy::default()
        };
        Ok(Proxies {
            https,
            http,
            no_proxy,
        })
    }

    /// The proxy for a URL (`scheme`, `host`, `port`), or `None` to go
    /// direct. The proxy itself is always reached directly.
    pub fn for_target(&self, scheme: &str, host: &str, port: u16) -> Option<&Arc<ProxyUrl>> {
        let p = match scheme {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        if p.is(host.trim_start_matches('[').trim_end_matches(']'), port)
            || self.no_proxy.matches(host, port)
        {
            return None;
        }
        Some(p)
    }

    /// The proxy for a full URL such as `https://host:port/v1/...`.
    pub fn for_url(&self, url: &str) -> Option<&Arc<ProxyUrl>> {
        if self.https.is_none() && self.http.is_none() {
            return None;
        }
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_host_port(authority)?;
        let port = port.or(match scheme {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        })?;
        self.for_target(scheme, host, port)
    }

    /// Whether any proxy is configured.
    pub fn any(&self) -> bool {
        self.https.is_some() || self.http.is_some()
    }
}

fn env_no_proxy(env: EnvLookup<'_>) -> Option<String> {
    env("no_proxy").or_else(|| env("NO_PROXY"))
}

/// Splits `host[:port]` / `[v6][:port]`; `None` when the port is not a number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    if s.parse::<IpAddr>().is_ok() {
        return Some((s, None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(p.parse().ok()?))),
        None => Some((s, None)),
    }
}

/// curl's `no_proxy`: a comma (or space) separated list of host names
/// (matching the name and every subdomain; a leading dot or `*.` is
/// optional), IP addresses, CIDR ranges (`10.0.0.0/8`), each optionally
/// with `:port`, or `*` for everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<NoProxyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Domain(String),
    Net(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NoProxyEntry {
    pattern: Pattern,
    port: Option<u16>,
}

impl NoProxy {
    pub fn parse(list: &Option<String>) -> NoProxy {
        let mut out = NoProxy::default();
        let Some(list) = list else { return out };
        for item in list.split([',', ' ', '\t']).map(str::trim) {
            if item.is_empty() {
                continue;
            }
            if item == "*" {
                out.all = true;
                continue;
            }
            if let Some(e) = NoProxyEntry::parse(item) {
                out.entries.push(e);
            }
        }
        out
    }

    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| {
            e.port.is_none_or(|p| p == port)
                && match (&e.pattern, ip) {
                    (Pattern::Net(net, bits), Some(ip)) => in_net(ip, *net, *bits),
                    (Pattern::Domain(d), None) => {
                        host == *d
                            || (host.len() > d.len()
                                && host.ends_with(d.as_str())
                                && host.as_bytes()[host.len() - d.len() - 1] == b'.')
                    }
                    _ => false,
                }
        })
    }
}

impl NoProxyEntry {
    fn parse(item: &str) -> Option<NoProxyEntry> {
        let (addr, bits) = match item.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (item, None),
        };
        let (host, port) = split_host_port(addr)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = bits.unwrap_or(max);
            return (bits <= max).then_some(NoProxyEntry {
                pattern: Pattern::Net(ip, bits),
                port,
            });
        }
        if bits.is_some() {
            return None;
        }
        let domain = host
            .trim_start_matches('*')
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        (!domain.is_empty()).then_some(NoProxyEntry {
            pattern: Pattern::Domain(domain),
            port,
        })
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(T[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn label(p: Option<&Arc<ProxyUrl>>) -> Option<String> {
        p.map(|p| p.label())
    }

    #[test]
    fn parses_proxy_urls_and_hides_credentials() {
        let p = ProxyUrl::parse("http://us%40er:p%3Ass@Proxy.Corp:3128/", "t").unwrap();
        assert_eq!(p.label(), "proxy.corp:3128");
        // base64("us@er:p:ss")
        assert_eq!(p.authorization(), Some("Basic dXNAZXI6cDpzcw=="));
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("p:ss") && !dbg.contains("dXNA"), "{dbg}");
        assert_eq!(
            ProxyUrl::parse("10.0.0.1", "t").unwrap().label(),
            "10.0.0.1:1080"
        );
        assert_eq!(
            ProxyUrl::parse("http://[::1]:8080", "t").unwrap().label(),
            "[::1]:8080"
        );
        let e = ProxyUrl::parse("socks5://u:secret@h:1", "option \"proxy\"").unwrap_err();
        assert!(e.message.contains("SOCKS") && e.message.contains("option \"proxy\""));
        assert!(!e.message.contains("secret"), "{}", e.message);
        let e = ProxyUrl::parse("http://u:secret@h:port", "env X").unwrap_err();
        assert!(!e.message.contains("secret"), "{}", e.message);
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn environment_follows_curl() {
        let env = env_of(&[
            ("HTTPS_PROXY", "http://s:1"),
            ("http_proxy", "http://h:2"),
            ("ALL_PROXY", "http://a:3"),
        ]);
        let p = Proxies::from_env(None, &env).unwrap();
        assert_eq!(label(p.for_url("https://x/v1")).as_deref(), Some("s:1"));
        assert_eq!(label(p.for_url("http://x/v1")).as_deref(), Some("h:2"));
        // Lower case wins, and all_proxy fills a scheme with no variable.
        let env = env_of(&[
            ("https_proxy", "l:1"),
            ("HTTPS_PROXY", "u:2"),
            ("all_proxy", "a:3"),
        ]);
        let p = Proxies::from_env(None, &env).unwrap();
        assert_eq!(label(p.for_url("https://x")).as_deref(), Some("l:1"));
        assert_eq!(label(p.for_url("http://x")).as_deref(), Some("a:3"));
        let p = Proxies::from_env(None, &env_of(&[])).unwrap();
        assert!(!p.any() && p.for_url("https://x").is_none());
        let e = Proxies::from_env(None, &env_of(&[("HTTPS_PROXY", "ftp://u:pw@x")])).unwrap_err();
        assert!(e.message.contains("HTTPS_PROXY") && !e.message.contains("pw"));
    }

    #[test]
    fn option_overrides_and_empty_option_ignores_the_environment() {
        let env = env_of(&[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", "internal")]);
        assert!(!Proxies::from_option("", None, &env).unwrap().any());
        let p = Proxies::from_option("http://o:9", None, &env).unwrap();
        assert_eq!(label(p.for_url("https://x")).as_deref(), Some("o:9"));
        assert_eq!(label(p.for_url("http://x:80/")).as_deref(), Some("o:9"));
        assert!(p.for_url("https://a.internal/v1").is_none());
        let p = Proxies::from_option("http://o:9", Some(""), &env).unwrap();
        assert!(p.for_url("https://a.internal/v1").is_some());
        // The proxy itself is never proxied.
        assert!(p.for_url("http://o:9/").is_none());
    }

    #[test]
    fn no_proxy_follows_curl() {
        let n = NoProxy::parse(&Some(
            "example.com, .corp.net,*.dev 10.0.0.0/8,127.0.0.1:8443,[::1]:7,gw:9000".into(),
        ));
        assert!(n.matches("example.com", 443));
        assert!(n.matches("api.EXAMPLE.com.", 443));
        assert!(!n.matches("badexample.com", 443));
        assert!(n.matches("corp.net", 1) && n.matches("a.b.corp.net", 1));
        assert!(n.matches("x.dev", 1) && !n.matches("xdev", 1));
        assert!(n.matches("10.20.30.40", 1) && !n.matches("11.0.0.1", 1));
        assert!(n.matches("127.0.0.1", 8443) && !n.matches("127.0.0.1", 8444));
        assert!(n.matches("[::1]", 7) && !n.matches("::1", 8));
        assert!(n.matches("gw", 9000) && !n.matches("gw", 443));
        // An IP entry does not match a name and a name does not match an IP.
        assert!(!n.matches("10.example", 1));
        assert!(NoProxy::parse(&Some("*".into())).matches("anything", 1));
        assert!(!NoProxy::parse(&None).matches("anything", 1));
    }
}
