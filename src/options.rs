//! Client options: parsed from the JSON object given to `llmpool_client_new`.
//!
//! Unknown keys and wrong types are errors that name the key, so a typo never
//! silently falls back to a default.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cost::spend::SpendConfig;
pub use crate::env::{process_env, EnvLookup};
use crate::error::Error;
use crate::net::proxy::Proxies;
use crate::net::tls::TlsOptions;
pub use crate::policy::failover::Endpoint;
use crate::policy::ratelimit::RateLimitConfig;
pub use crate::secret::{valid_api_key, ApiKey};
use crate::store::redis::RedisConfig;

/// The default gateway: the HolySheep relay.
pub const DEFAULT_BASE_URL: &str = "https://api.holysheep.ai/v1";

/// The `anthropic-version` sent with Messages API calls unless
/// `anthropic_version` says otherwise.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// How a Messages API call sends the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnthropicAuth {
    XApiKey,
    Bearer,
}

/// Every option, with defaults applied.
#[derive(Debug, Clone)]
pub struct Options {
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    pub preset: Option<String>,
    pub pool_max_idle: usize,
    pub pool_max_idle_per_host: usize,
    pub pool_idle_timeout: Duration,
    pub pool_max_age: Option<Duration>,
    pub max_concurrency: usize,
    pub queue_timeout: Duration,
    /// Most library threads running async calls at once (see `exec`).
    pub async_max_threads: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub response_header_timeout: Option<Duration>,
    pub body_timeout: Option<Duration>,
    pub stream_idle_timeout: Duration,
    /// Keep a stream's raw SSE bytes in its response (`keep_stream_body`).
    pub keep_stream_body: bool,
    /// A stream whose first delta has not come this long after its start
    /// (while the server sends keep-alives or empty events) is abandoned
    /// and sent again; `None`: no limit.
    pub first_token_timeout: Option<Duration>,
    pub tcp_keepalive: Option<Duration>,
    pub dns_cache_ttl: Duration,
    pub max_retries: u32,
    pub backoff_factor: f64,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
    pub retry_statuses: Vec<u16>,
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub tls_bundled_roots: bool,
    pub user_agent: String,
    pub headers: Vec<(String, String)>,
    pub max_response_bytes: u64,
    /// Ask for gzip (`Accept-Encoding: gzip`) and decode it.
    pub compression: bool,
    pub endpoints: Vec<Endpoint>,
    /// Forward proxies from `proxy`/`no_proxy` or the environment.
    pub proxies: Arc<Proxies>,
    pub circuit_failures: u32,
    pub cooldown: Duration,
    /// Cost-control sections, validated by `crate::cost` when the client is built.
    pub prices: Option<Value>,
    pub budget: Option<Value>,
    pub cache: Option<Value>,
    pub routing: Option<Value>,
    /// The shared store (`"redis"`); `None` keeps every limit in-process.
    pub redis: Option<RedisConfig>,
    /// `log_bodies`: request and response bodies in the log at TRACE.
    pub log_bodies: bool,
    /// The Messages API's `anthropic-version` header.
    pub anthropic_version: String,
    /// How the Messages API gets the key: `x-api-key` (api.anthropic.com)
    /// or `Authorization: Bearer` (relays that want it).
    pub anthropic_auth: AnthropicAuth,
    /// `"rate_limits"`: requests and tokens per minute.
    pub rate_limits: Option<RateLimitConfig>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: None,
            preset: None,
            pool_max_idle: 100,
            pool_max_idle_per_host: 20,
            pool_idle_timeout: Duration::from_millis(90_000),
            pool_max_age: None,
            max_concurrency: 0,
            queue_timeout: Duration::from_millis(30_000),
            async_max_threads: 64,
            timeout: Duration::from_millis(60_000),
            connect_timeout: Duration::from_millis(10_000),
            response_header_timeout: None,
            body_timeout: None,
            stream_idle_timeout: Duration::from_millis(60_000),
            keep_stream_body: false,
            first_token_timeout: None,
            tcp_keepalive: Some(Duration::from_millis(30_000)),
            dns_cache_ttl: Duration::from_millis(60_000),
            max_retries: 3,
            backoff_factor: 0.5,
            max_backoff: Duration::from_millis(30_000),
            max_retry_after: Duration::from_millis(60_000),
            retry_statuses: vec![429, 500, 502, 503, 504],
            ca_file: None,
            ca_pem: None,
            insecure_skip_tls_verify: false,
            tls_bundled_roots: true,
            user_agent: format!("llmpool/{}", env!("CARGO_PKG_VERSION")),
            headers: Vec::new(),
            max_response_bytes: 64 * 1024 * 1024,
            compression: true,
            endpoints: Vec::new(),
            proxies: Arc::new(Proxies::none()),
            circuit_failures: 3,
            cooldown: Duration::from_millis(30_000),
            prices: None,
            budget: None,
            cache: None,
            routing: None,
            redis: None,
            log_bodies: false,
            anthropic_version: DEFAULT_ANTHROPIC_VERSION.to_string(),
            anthropic_auth: AnthropicAuth::XApiKey,
            rate_limits: None,
        }
    }
}

/// The `preset` pool tiers: (pool_max_idle, pool_max_idle_per_host).
///
/// Named after urllib3-style settings, where `pool_connections` counts host
/// pools and `pool_maxsize` the connections per host: we keep
/// `pool_maxsize` per host and allow idle connections to that many hosts in
/// total (low 10 x 5, medium 50 x 10, high 100 x 20, enterprise 200 x 50).
pub fn preset_sizes(name: &str) -> Option<(usize, usize)> {
    match name {
        "low" => Some((5 * 10, 10)),
        "medium" => Some((10 * 50, 50)),
        "high" => Some((20 * 100, 100)),
        "enterprise" => Some((50 * 200, 200)),
        _ => None,
    }
}

impl Options {
    /// The cost settings, for `cost::spend`.
    pub fn spend(&self) -> SpendConfig {
        SpendConfig {
            prices: self.prices.clone(),
            budget: self.budget.clone(),
            cache: self.cache.clone(),
            routing: self.routing.clone(),
            hold_ttl: self.hold_ttl(),
        }
    }

    /// How long a budget hold counts when its process may have died unseen:
    /// a call can wait in the queue, then try `max_retries + 1` times, each
    /// up to `timeout` plus the longest wait before it; a minute of margin
    /// on top.
    fn hold_ttl(&self) -> Duration {
        let attempts = self.max_retries.saturating_add(1);
        let per_try = self.timeout + self.max_backoff.max(self.max_retry_after);
        self.queue_timeout + per_try.saturating_mul(attempts) + Duration::from_secs(60)
    }

    /// The TLS settings, for `net::tls`.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.ca_file.clone(),
            ca_pem: self.ca_pem.clone(),
            bundled_roots: self.tls_bundled_roots,
            insecure_skip_verify: self.insecure_skip_tls_verify,
        }
    }

    /// Parses the options JSON (`None` or `""` means all defaults), then fills
    /// `base_url` and `api_key` from the environment when the JSON has none.
    pub fn from_json(json: Option<&str>, env: EnvLookup<'_>) -> Result<Options, Error> {
        let map = match json.map(str::trim) {
            None | Some("") => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(Error::invalid("options_json: expected a JSON object")),
                Err(e) => return Err(Error::invalid(format!("options_json: invalid JSON: {e}"))),
            },
        };
        let mut o = Options::default();
        if let Some(p) = map.get("preset") {
            let name = p
                .as_str()
                .ok_or_else(|| Error::invalid("option \"preset\": expected a string"))?;
            let (idle, per_host) = preset_sizes(name).ok_or_else(|| {
                Error::invalid(format!(
                    "option \"preset\": unknown preset \"{name}\" (expected low, medium, high or enterprise)"
                ))
            })?;
            o.preset = Some(name.to_string());
            o.pool_max_idle = idle;
            o.pool_max_idle_per_host = per_host;
        }
        for (key, v) in &map {
            let k = key.as_str();
            match k {
                "preset" => {}
                "base_url" => o.base_url = string(k, v)?,
                "api_key" => o.api_key = Some(api_key(k, v)?),
                "pool_max_idle" => o.pool_max_idle = uint(k, v)? as usize,
                "pool_max_idle_per_host" => o.pool_max_idle_per_host = uint(k, v)? as usize,
                "pool_idle_timeout_ms" => o.pool_idle_timeout = ms(k, v)?,
                "pool_max_age_ms" => o.pool_max_age = Some(ms(k, v)?),
                "max_concurrency" => o.max_concurrency = uint(k, v)? as usize,
                "queue_timeout_ms" => o.queue_timeout = ms(k, v)?,
                "async_max_threads" => {
                    o.async_max_threads = uint(k, v)? as usize;
                    if o.async_max_threads == 0 {
                        return Err(Error::invalid("async_max_threads: must be at least 1"));
                    }
                }
                "timeout_ms" => o.timeout = positive_ms(k, v)?,
                "connect_timeout_ms" => o.connect_timeout = positive_ms(k, v)?,
                "response_header_timeout_ms" => {
                    o.response_header_timeout = Some(positive_ms(k, v)?)
                }
                "body_timeout_ms" => o.body_timeout = Some(positive_ms(k, v)?),
                "stream_idle_timeout_ms" => o.stream_idle_timeout = positive_ms(k, v)?,
                "keep_stream_body" => o.keep_stream_body = boolean(k, v)?,
                "first_token_timeout_ms" => {
                    let d = ms(k, v)?;
                    o.first_token_timeout = (!d.is_zero()).then_some(d);
                }
                "tcp_keepalive_ms" => {
                    let d = ms(k, v)?;
                    o.tcp_keepalive = if d.is_zero() { None } else { Some(d) };
                }
                "dns_cache_ttl_ms" => o.dns_cache_ttl = ms(k, v)?,
                "max_retries" => o.max_retries = uint(k, v)?.min(100) as u32,
                "backoff_factor" => o.backoff_factor = non_negative(k, v)?,
                "max_backoff_ms" => o.max_backoff = ms(k, v)?,
                "max_retry_after_ms" => o.max_retry_after = ms(k, v)?,
                "retry_statuses" => o.retry_statuses = statuses(k, v)?,
                "ca_file" => o.ca_file = Some(string(k, v)?),
                "ca_pem" => o.ca_pem = Some(string(k, v)?),
                "insecure_skip_tls_verify" => o.insecure_skip_tls_verify = boolean(k, v)?,
                "tls_bundled_roots" => o.tls_bundled_roots = boolean(k, v)?,
                "user_agent" => o.user_agent = string(k, v)?,
                "headers" => o.headers = headers(k, v)?,
                "max_response_bytes" => o.max_response_bytes = uint(k, v)?.max(1),
                "compression" => o.compression = boolean(k, v)?,
                "endpoints" => o.endpoints = endpoints(k, v)?,
                "circuit_failures" => o.circuit_failures = uint(k, v)?.max(1) as u32,
                "cooldown_ms" => o.cooldown = ms(k, v)?,
                "prices" => o.prices = Some(object(k, v)?),
                "budget" => o.budget = Some(object(k, v)?),
                "cache" => o.cache = Some(object(k, v)?),
                "routing" => o.routing = Some(object(k, v)?),
                "redis" => o.redis = Some(RedisConfig::parse(k, v)?),
                // Read below, together with the environment.
                "proxy" | "no_proxy" => {
                    string(k, v)?;
                }
                "log_bodies" => o.log_bodies = boolean(k, v)?,
                "anthropic_version" => {
                    o.anthropic_version = string(k, v)?;
                    if o.anthropic_version
                        .bytes()
                        .any(|b| !(0x21..0x7f).contains(&b))
                    {
                        return Err(Error::invalid(format!(
                            "option \"{k}\": must be printable ASCII without spaces"
                        )));
                    }
                }
                "anthropic_auth" => {
                    o.anthropic_auth = match string(k, v)?.as_str() {
                        "x-api-key" => AnthropicAuth::XApiKey,
                        "bearer" => AnthropicAuth::Bearer,
                        other => {
                            return Err(Error::invalid(format!(
                            "option \"{k}\": expected \"x-api-key\" or \"bearer\", got \"{other}\""
                        )))
                        }
                    }
                }
                "rate_limits" => o.rate_limits = Some(RateLimitConfig::parse(k, v)?),
                _ => return Err(Error::invalid(format!("unknown option \"{k}\""))),
            }
        }
        if !map.contains_key("base_url") {
            if let Some(url) = env("LLMPOOL_BASE_URL") {
                o.base_url = url;
            }
        }
        if !map.contains_key("api_key") {
            o.api_key = env("LLMPOOL_API_KEY")
                .or_else(|| env("HOLYSHEEP_API_KEY"))
                .map(ApiKey::new);
        }
        if o.api_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            o.api_key = None;
        }
        let no_proxy = map.get("no_proxy").and_then(Value::as_str);
        o.proxies = Arc::new(match map.get("proxy").and_then(Value::as_str) {
            Some(p) => Proxies::from_option(p, no_proxy, env)?,
            None => Proxies::from_env(no_proxy, env)?,
        });
        o.base_url = normalize_base_url(&o.base_url, "base_url")?;
        for (i, ep) in o.endpoints.iter_mut().enumerate() {
            ep.base_url = normalize_base_url(&ep.base_url, &format!("endpoints[{i}].base_url"))?;
        }
        Ok(o)
    }
}

/// Checks the scheme and strips trailing slashes so paths join cleanly.
pub fn normalize_base_url(url: &str, key: &str) -> Result<String, Error> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| {
            Error::invalid(format!(
                "option \"{key}\": expected an http:// or https:// URL, got \"{url}\""
            ))
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::invalid(format!(
            "option \"{key}\": URL has no host: \"{url}\""
        )));
    }
    Ok(trimmed.to_string())
}

fn type_err(key: &str, want: &str) -> Error {
    Error::invalid(format!("option \"{key}\": expected {want}"))
}

fn string(key: &str, v: &Value) -> Result<String, Error> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| type_err(key, "a string"))
}

fn api_key(key: &str, v: &Value) -> Result<ApiKey, Error> {
    let s = string(key, v)?;
    if !valid_api_key(&s) {
        return Err(Error::invalid(format!(
            "option \"{key}\": must be printable ASCII (a control or non-ASCII character was found)"
        )));
    }
    Ok(ApiKey::new(s))
}

fn boolean(key: &str, v: &Value) -> Result<bool, Error> {
    v.as_bool().ok_or_else(|| type_err(key, "true or false"))
}

fn uint(key: &str, v: &Value) -> Result<u64, Error> {
    v.as_u64()
        .ok_or_else(|| type_err(key, "a non-negative integer"))
}

fn ms(key: &str, v: &Value) -> Result<Duration, Error> {
    uint(key, v).map(Duration::from_millis)
}

fn positive_ms(key: &str, v: &Value) -> Result<Duration, Error> {
    match uint(key, v)? {
        0 => Err(type_err(key, "a positive number of milliseconds")),
        n => Ok(Duration::from_millis(n)),
    }
}

fn non_negative(key: &str, v: &Value) -> Result<f64, Error> {
    v.as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| type_err(key, "a non-negative number"))
}

fn object(key: &str, v: &Value) -> Result<Value, Error> {
    if v.is_object() {
        Ok(v.clone())
    } else {
        Err(type_err(key, "a JSON object"))
    }
}

fn statuses(key: &str, v: &Value) -> Result<Vec<u16>, Error> {
    let arr = v
        .as_array()
        .ok_or_else(|| type_err(key, "an array of HTTP status codes"))?;
    arr.iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_u64()
                .filter(|n| (100..=599).contains(n))
                .map(|n| n as u16)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "option \"{key}[{i}]\": expected an HTTP status code (100-599)"
                    ))
                })
        })
        .collect()
}

fn headers(key: &str, v: &Value) -> Result<Vec<(String, String)>, Error> {
    let map = v
        .as_object()
        .ok_or_else(|| type_err(key, "an object of header names to string values"))?;
    let mut out = Vec::new();
    for (name, value) in map {
        let value = value
            .as_str()
            .ok_or_else(|| Error::invalid(format!("option \"{key}.{name}\": expected a string")))?;
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(Error::invalid(format!(
                "option \"{key}\": invalid header name \"{name}\""
            )));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(Error::invalid(format!(
                "option \"{key}.{name}\": header value contains a control character"
            )));
        }
        out.push((name.clone(), value.to_string()));
    }
    Ok(out)
}

fn endpoints(key: &str, v: &Value) -> Result<Vec<Endpoint>, Error> {
    let arr = v
        .as_array()
        .ok_or_else(|| type_err(key, "an array of {base_url, api_key?, weight?} objects"))?;
    let mut out = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        let obj = item
            .as_object()
            .ok_or_else(|| Error::invalid(format!("option \"{key}[{i}]\": expected an object")))?;
        let mut ep = Endpoint {
            base_url: String::new(),
            api_key: None,
            weight: 1,
        };
        for (k, v) in obj {
            let path = format!("{key}[{i}].{k}");
            match k.as_str() {
                "base_url" => ep.base_url = string(&path, v)?,
                "api_key" => ep.api_key = Some(api_key(&path, v)?),
                "weight" => ep.weight = uint(&path, v)?.min(u32::MAX as u64) as u32,
                _ => return Err(Error::invalid(format!("unknown option \"{path}\""))),
            }
        }
        if ep.base_url.is_empty() {
            return Err(Error::invalid(format!(
                "option \"{key}[{i}].base_url\": missing"
            )));
        }
        out.push(ep);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(json: &str) -> Result<Options, Error> {
        Options::from_json(Some(json), &no_env)
    }

    #[test]
    fn defaults_match_the_documentation() {
        let o = Options::from_json(None, &no_env).unwrap();
        assert_eq!(o.base_url, DEFAULT_BASE_URL);
        assert_eq!(o.timeout, Duration::from_secs(60));
        assert_eq!(o.max_retries, 3);
        assert_eq!(o.backoff_factor, 0.5);
        assert_eq!(o.retry_statuses, vec![429, 500, 502, 503, 504]);
        assert_eq!(o.pool_idle_timeout, Duration::from_secs(90));
        assert!(!o.insecure_skip_tls_verify);
        assert!(o.api_key.is_none());
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let e = parse(r#"{"time_out_ms": 5}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e.message.contains("time_out_ms"), "{}", e.message);
        let e = parse(r#"{"timeout_ms": "5"}"#).unwrap_err();
        assert!(e.message.contains("timeout_ms"), "{}", e.message);
        let e = parse(r#"{"retry_statuses": [429, 42]}"#).unwrap_err();
        assert!(e.message.contains("retry_statuses[1]"), "{}", e.message);
        let e = parse(r#"{"headers": {"X-A": 1}}"#).unwrap_err();
        assert!(e.message.contains("headers.X-A"), "{}", e.message);
        let e = parse(r#"{"endpoints": [{"base_url": "http://a", "wieght": 2}]}"#).unwrap_err();
        assert!(e.message.contains("endpoints[0].wieght"), "{}", e.message);
        let e = parse("[1]").unwrap_err();
        assert!(e.message.contains("JSON object"), "{}", e.message);
        let e = parse("{").unwrap_err();
        assert!(e.message.contains("invalid JSON"), "{}", e.message);
        let e = parse(r#"{"base_url": "ftp://x"}"#).unwrap_err();
        assert!(e.message.contains("base_url"), "{}", e.message);
        let e = parse(r#"{"redis": {"url": "redis://127.0.0.1", "prefixx": "a"}}"#).unwrap_err();
        if cfg!(feature = "redis") {
            assert!(e.message.contains("redis.prefixx"), "{}", e.message);
        } else {
            assert!(e.message.contains("lacks Redis support"), "{}", e.message);
        }
        let e = parse(r#"{"preset": "huge"}"#).unwrap_err();
        assert!(e.message.contains("huge"), "{}", e.message);
    }

    #[test]
    fn preset_then_explicit_values_win_whatever_the_order() {
        let o = parse(r#"{"pool_max_idle_per_host": 3, "preset": "high"}"#).unwrap();
        assert_eq!(o.pool_max_idle_per_host, 3);
        assert_eq!(o.pool_max_idle, 2000);
        let o = parse(r#"{"preset": "low"}"#).unwrap();
        assert_eq!((o.pool_max_idle, o.pool_max_idle_per_host), (50, 10));
    }

    #[test]
    fn environment_fills_what_the_json_leaves_out() {
        let env = |k: &str| match k {
            "LLMPOOL_BASE_URL" => Some("http://127.0.0.1:9/v1/".to_string()),
            "HOLYSHEEP_API_KEY" => Some("sk-holy".to_string()),
            _ => None,
        };
        let o = Options::from_json(None, &env).unwrap();
        assert_eq!(o.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(o.api_key.unwrap().expose(), "sk-holy");
        let o = Options::from_json(Some(r#"{"api_key": "sk-json"}"#), &env).unwrap();
        assert_eq!(o.api_key.unwrap().expose(), "sk-json");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let o = parse(r#"{"api_key": "sk-very-secret", "endpoints": [{"base_url": "http://a", "api_key": "sk-other-secret"}]}"#).unwrap();
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("sk-very-secret"), "{dbg}");
        assert!(!dbg.contains("sk-other-secret"), "{dbg}");
    }

    #[test]
    fn api_keys_must_fit_in_a_header_and_errors_do_not_quote_them() {
        let e = parse(r#"{"api_key": "sk-secret\nX-Evil: 1"}"#).unwrap_err();
        assert!(e.message.contains("api_key"), "{}", e.message);
        assert!(!e.message.contains("sk-secret"), "{}", e.message);
        let e =
            parse(r#"{"endpoints": [{"base_url": "http://a", "api_key": "sk-é"}]}"#).unwrap_err();
        assert!(e.message.contains("endpoints[0].api_key"), "{}", e.message);
        assert!(parse(r#"{"api_key": "sk-proj-AbC_123-xyz"}"#).is_ok());
    }

    #[test]
    fn header_injection_is_refused() {
        let e = parse(r#"{"headers": {"X-A": "a\r\nX-B: b"}}"#).unwrap_err();
        assert!(e.message.contains("control character"), "{}", e.message);
        let e = parse(r#"{"headers": {"X A": "a"}}"#).unwrap_err();
        assert!(e.message.contains("invalid header name"), "{}", e.message);
    }
}
