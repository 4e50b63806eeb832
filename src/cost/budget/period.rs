//! Budget periods: calendar months and days in UTC, so every process and
//! machine sharing a ledger agrees on when a period starts.

use std::time::{SystemTime, UNIX_EPOCH};

/// How often spend resets. Calendar periods use UTC so every process
/// sharing a ledger agrees on when a period starts, whatever its time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Calendar month (UTC).
    Month,
    /// Calendar day (UTC).
    Day,
    /// Never resets.
    Total,
}

impl Period {
    /// The option / ledger spelling: `"month"`, `"day"` or `"total"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Day => "day",
            Period::Total => "total",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Period> {
        match s {
            "month" => Some(Period::Month),
            "day" => Some(Period::Day),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub(crate) fn budget_name(self) -> &'static str {
        match self {
            Period::Month => "monthly budget",
            Period::Day => "daily budget",
            Period::Total => "total budget",
        }
    }

    /// Identifies the period containing `now`: `"2026-11"`, `"2026-11-05"`
    /// or `"total"`. Spend is reset whenever this key changes.
    pub(crate) fn key(self, now: SystemTime) -> String {
        let (y, m, d) = civil_from_days(unix_days(now));
        match self {
            Period::Month => format!("{y:04}-{m:02}"),
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Total => "total".to_string(),
        }
    }

    /// ISO date of the first day of the period containing `now`.
    pub(crate) fn start(self, now: SystemTime) -> Option<String> {
        let (y, m, d) = civil_from_days(unix_days(now));
        match self {
            Period::Month => Some(format!("{y:04}-{m:02}-01")),
            Period::Day => Some(format!("{y:04}-{m:02}-{d:02}")),
            Period::Total => None,
        }
    }
}

/// Whole days since 1970-01-01 (UTC), flooring for instants before the epoch.
fn unix_days(t: SystemTime) -> i64 {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    };
    secs.div_euclid(86_400)
}

pub use crate::civil::{civil_from_days, days_from_civil};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(y: i64, m: u32, d: u32) -> SystemTime {
        let days = days_from_civil(y, m, d);
        UNIX_EPOCH + Duration::from_secs((days * 86_400 + 3_600) as u64)
    }

    #[test]
    fn civil_round_trip_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        for z in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        // Leap years: 2024 yes, 2100 no, 2000 yes.
        assert_eq!(
            days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28),
            1
        );
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(unix_days(UNIX_EPOCH - Duration::from_secs(1)), -1);
    }

    #[test]
    fn period_keys() {
        assert_eq!(Period::Month.key(at(2026, 11, 5)), "2026-11");
        assert_eq!(Period::Day.key(at(2026, 11, 5)), "2026-11-05");
        assert_eq!(Period::Total.key(at(2026, 11, 5)), "total");
        assert_eq!(Period::Month.start(at(2026, 11, 5)).unwrap(), "2026-11-01");
    }
}
