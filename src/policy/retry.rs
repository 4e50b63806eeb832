//! When to try again, and how long to wait first.
//!
//! Pure functions over a status, its headers and its body, so the policy is
//! unit-tested without a network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::civil::days_from_civil;

/// The retry settings taken from the client options.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub backoff_factor: f64,
    pub max_backoff: Duration,
    pub max_retry_after: Duration,
    pub retry_statuses: Vec<u16>,
}

/// What to do with an answered attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Sleep this long, then try again.
    Retry(Duration),
    /// Return this answer to the caller; the string says why we stopped
    /// retrying when that is not obvious (empty otherwise).
    Stop(String),
}

impl RetryPolicy {
    /// Backoff before retry number `n` (0-based): `backoff_factor * 2^n`
    /// seconds, capped by `max_backoff`, with "equal jitter" (a uniform value
    /// in the upper half) so that many clients do not retry in lockstep.
    pub fn backoff(&self, n: u32, jitter: f64) -> Duration {
        let base = self.backoff_factor * 2f64.powi(n.min(30) as i32);
        let capped = base.min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(capped * (0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
    }

    /// Decides about an HTTP answer after `retries_done` retries.
    ///
    /// `header` looks up a response header by lowercase name.
    pub fn decide(
        &self,
        retries_done: u32,
        status: u16,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now: SystemTime,
        jitter: f64,
    ) -> Decision {
        if (200..300).contains(&status) {
            return Decision::Stop(String::new());
        }
        let should_retry = header("x-should-retry").map(|v| v.trim().eq_ignore_ascii_case("true"));
        let listed = self.retry_statuses.contains(&status);
        match should_retry {
            Some(false) => return Decision::Stop("the server said x-should-retry: false".into()),
            Some(true) => {}
            None if !listed => return Decision::Stop(String::new()),
            None => {}
        }
        if status == 429 && is_insufficient_quota(body) {
            return Decision::Stop(
                "429 insufficient_quota is a billing state, not a rate limit: not retried".into(),
            );
        }
        if retries_done >= self.max_retries {
            return Decision::Stop(format!("gave up after {} retries", retries_done));
        }
        match retry_after(header, now) {
            Some(wait) if wait > self.max_retry_after => Decision::Stop(format!(
                "the server asked to retry after {} ms, beyond max_retry_after_ms ({} ms)",
                wait.as_millis(),
                self.max_retry_after.as_millis()
            )),
            Some(wait) => Decision::Retry(wait),
            None => Decision::Retry(self.backoff(retries_done, jitter)),
        }
    }
}

/// OpenAI answers 429 both for rate limits and for an exhausted account; only
/// the first is worth retrying.
pub fn is_insufficient_quota(body: &[u8]) -> bool {
    crate::body::error_fields(body).is_some_and(|e| {
        e.code.as_deref() == Some("insufficient_quota")
            || e.kind.as_deref() == Some("insufficient_quota")
    })
}

/// The server's requested wait: `retry-after-ms` (OpenAI), else `Retry-After`
/// in seconds or as an HTTP date.
pub fn retry_after(header: &dyn Fn(&str) -> Option<String>, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header("retry-after-ms") {
        if let Ok(v) = ms.trim().parse::<f64>() {
            if v.is_finite() && v >= 0.0 {
                return Some(Duration::from_secs_f64(v / 1000.0));
            }
        }
    }
    let v = header("retry-after")?;
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = parse_http_date(v)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form
/// servers are allowed to send.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    if parts.len() != 5 || parts[4] != "GMT" {
        return None;
    }
    let day: u32 = parts[0].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[1])? as u32
        + 1;
    let year: i64 = parts[2].parse().ok()?;
    let hms: Vec<u64> = parts[3]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) as i64;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// A cheap, lock-free source of jitter in [0, 1). Quality does not matter
/// here, only that concurrent clients spread out.
pub fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ nanos;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            backoff_factor: 0.5,
            max_backoff: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
            retry_statuses: vec![429, 500, 502, 503, 504],
        }
    }

    fn headers(list: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            list.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = policy();
        assert_eq!(p.backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(5, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(500));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn listed_statuses_retry_until_the_limit() {
        let p = policy();
        let none = headers(&[]);
        let now = SystemTime::now();
        assert!(matches!(
            p.decide(0, 503, &none, b"", now, 0.0),
            Decision::Retry(_)
        ));
        assert!(matches!(
            p.decide(2, 429, &none, b"", now, 0.0),
            Decision::Retry(_)
        ));
        match p.decide(3, 503, &none, b"", now, 0.0) {
            Decision::Stop(why) => assert!(why.contains("3 retries"), "{why}"),
            d => panic!("{d:?}"),
        }
        assert_eq!(
            p.decide(0, 400, &none, b"", now, 0.0),
            Decision::Stop(String::new())
        );
        assert_eq!(
            p.decide(0, 200, &none, b"", now, 0.0),
            Decision::Stop(String::new())
        );
    }

    #[test]
    fn x_should_retry_overrides_the_list() {
        let p = policy();
        let now = SystemTime::now();
        let yes = headers(&[("x-should-retry", "true")]);
        assert!(matches!(
            p.decide(0, 409, &yes, b"", now, 0.0),
            Decision::Retry(_)
        ));
        let no = headers(&[("x-should-retry", "false")]);
        assert!(matches!(
            p.decide(0, 503, &no, b"", now, 0.0),
            Decision::Stop(_)
        ));
    }

    #[test]
    fn insufficient_quota_is_not_retried() {
        let p = policy();
        let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        match p.decide(0, 429, &headers(&[]), body, SystemTime::now(), 0.0) {
            Decision::Stop(why) => assert!(why.contains("insufficient_quota")),
            d => panic!("{d:?}"),
        }
        assert!(!is_insufficient_quota(
            br#"{"error":{"code":"rate_limit_exceeded"}}"#
        ));
        assert!(!is_insufficient_quota(b"not json"));
    }

    #[test]
    fn retry_after_forms_and_cap() {
        let p = policy();
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let ms = headers(&[("retry-after-ms", "250"), ("retry-after", "9")]);
        assert_eq!(
            p.decide(0, 429, &ms, b"", now, 0.0),
            Decision::Retry(Duration::from_millis(250))
        );
        let secs = headers(&[("retry-after", "2")]);
        assert_eq!(
            p.decide(0, 429, &secs, b"", now, 0.0),
            Decision::Retry(Duration::from_secs(2))
        );
        let date = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:40 GMT")]);
        assert_eq!(
            p.decide(0, 503, &date, b"", now, 0.0),
            Decision::Retry(Duration::from_secs(3))
        );
        let past = headers(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]);
        assert_eq!(
            p.decide(0, 503, &past, b"", now, 0.0),
            Decision::Retry(Duration::ZERO)
        );
        let long = headers(&[("retry-after", "600")]);
        match p.decide(0, 429, &long, b"", now, 0.0) {
            Decision::Stop(why) => assert!(why.contains("max_retry_after_ms"), "{why}"),
            d => panic!("{d:?}"),
        }
        let junk = headers(&[("retry-after", "soon")]);
        assert_eq!(
            p.decide(0, 429, &junk, b"", now, 1.0),
            Decision::Retry(Duration::from_millis(500))
        );
    }

    #[test]
    fn http_dates_parse_exactly() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_709_164_800
        );
        assert!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST").is_none());
        assert!(parse_http_date("yesterday").is_none());
        assert!(parse_http_date("Sun, 32 Nov 1994 08:49:37 GMT").is_none());
    }
}
