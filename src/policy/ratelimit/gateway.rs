//! The gateway's own limits: its `x-ratelimit-*` headers and reset durations.

use std::time::Duration;

pub(super) use crate::headers::find as header;

/// Parses a reset duration as OpenAI sends it (`6m0s`, `1s`, `20ms`,
/// `1h2m3.5s`, `250us`) or a plain number of seconds (`"0.5"`). At most a
/// day: anything longer is not believed.
pub fn parse_reset(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let secs = if let Ok(n) = s.parse::<f64>() {
        n
    } else {
        let mut total = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_end == 0 {
                return None;
            }
            let n: f64 = rest[..num_end].parse().ok()?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_end] {
                "h" => 3600.0,
                "m" => 60.0,
                "s" => 1.0,
                "ms" => 1e-3,
                "us" | "µs" => 1e-6,
                "ns" => 1e-9,
                _ => return None,
            };
            total += n * scale;
            rest = &rest[unit_end..];
        }
        total
    };
    (secs.is_finite() && (0.0..=86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_reset_durations() {
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_reset("7d"), None);
        assert_eq!(parse_reset("s"), None);
        assert_eq!(parse_reset("-1s"), None);
        assert_eq!(parse_reset("48h"), None);
    }
}
