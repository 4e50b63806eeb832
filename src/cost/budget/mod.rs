//! Spend limits with reservations and an optional on-disk ledger.
//!
//! A budget has to hold under concurrency: if eight threads each check
//! "is there money left?" and then call, they can all pass the check and
//! overspend eightfold. So callers *reserve* a worst-case estimate before the
//! call and *commit* the real cost afterwards; reserved-but-uncommitted money
//! counts as spent for every other caller's check.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
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

    fn parse(s: &str) -> Option<Period> {
        match s {
            "month" => Some(Period::Month),
            "day" => Some(Period::Day),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    fn budget_name(self) -> &'static str {
        match self {
            Period::Month => "monthly budget",
            Period::Day => "daily budget",
            Period::Total => "total budget",
        }
    }

    /// Identifies the period containing `now`: `"2026-11"`, `"2026-11-05"`
    /// or `"total"`. Spend is reset whenever this key changes.
    fn key(self, now: SystemTime) -> String {
        let (y, m, d) = civil_from_days(unix_days(now));
        match self {
            Period::Month => format!("{y:04}-{m:02}"),
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Total => "total".to_string(),
        }
    }

    /// ISO date of the first day of the period containing `now`.
    fn start(self, now: SystemTime) -> Option<String> {
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

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`); hand-written to avoid a date-library dependency.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: `(year, month 1..=12, day 1..=31)`.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Why [`Budget::reserve`] refused a call.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetError {
    /// Human-readable reason naming the budget and what is left, e.g.
    /// `monthly budget exceeded: estimated $0.0123 but $0.0040 of $5.0000 remains`.
    pub message: String,
    /// Which budget refused: `"monthly budget"`, `"per-model budget for gpt-4.1"`, ...
    pub budget: String,
    /// USD still available in that budget (limit − spent − in flight), ≥ 0.
    pub remaining_usd: f64,
    /// That budget's limit in USD.
    pub limit_usd: f64,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BudgetError {}

/// Money set aside for one call that is in flight.
///
/// Deliberately not `Clone`: each reservation must be settled exactly once,
/// via [`Budget::commit`] or [`Budget::release`]. If it is dropped unsettled
/// (an early return, a panic) it releases itself, so a bug can make the
/// budget too generous for one call but never leaks reserved money forever.
#[derive(Debug)]
pub struct Reservation {
    state: Weak<Mutex<State>>,
    model_key: String,
    amount: f64,
    settled: bool,
}

impl Reservation {
    /// The USD amount held by this reservation.
    pub fn amount_usd(&self) -> f64 {
        self.amount
    }

    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        if let Some(state) = self.state.upgrade() {
            lock(&state).unreserve(&self.model_key, self.amount);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.settle();
    }
}

#[derive(Debug, Default)]
struct InFlight {
    usd: f64,
    count: u64,
}

impl InFlight {
    fn add(&mut self, usd: f64) {
        self.usd += usd;
        self.count += 1;
    }

    fn remove(&mut self, usd: f64) {
        self.count = self.count.saturating_sub(1);
        // Exact zero once nothing is in flight, so float drift from many
        // add/subtract cycles cannot slowly eat (or grow) the budget.
        self.usd = if self.count == 0 {
            0.0
        } else {
            (self.usd - usd).max(0.0)
        };
    }
}

#[derive(Debug)]
struct State {
    period_key: String,
    spent: f64,
    per_model_spent: BTreeMap<String, f64>,
    in_flight: InFlight,
    per_model_in_flight: BTreeMap<String, InFlight>,
    last_ledger_error: Option<String>,
}

impl State {
    fn roll(&mut self, key: String) {
        if self.period_key != key {
            self.period_key = key;
            self.spent = 0.0;
            self.per_model_spent.clear();
        }
    }

    fn unreserve(&mut self, model_key: &str, amount: f64) {
        self.in_flight.remove(amount);
        if let Some(f) = self.per_model_in_flight.get_mut(model_key) {
            f.remove(amount);
            if f.count == 0 {
                self.per_model_in_flight.remove(model_key);
            }
        }
    }

    fn model_in_flight(&self, model_key: &str) -> f64 {
        self.per_model_in_flight
            .get(model_key)
            .map_or(0.0, |f| f.usd)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave State inconsistent in a
    // way that matters more than refusing all further accounting would.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A spend limit, shared between threads (wrap it in an `Arc`).
#[derive(Debug)]
pub struct Budget {
    limit_usd: Option<f64>,
    period: Period,
    per_model: BTreeMap<String, f64>,
    ledger: Option<PathBuf>,
    state: Arc<Mutex<State>>,
}

impl Budget {
    /// Builds a budget from the `budget` client option:
    /// `{"limit_usd": 5.0, "period": "month"|"day"|"total",
    ///   "per_model": {"gpt-4.1": 5.0}, "ledger_file": "path"}`.
    ///
    /// `period` defaults to `"month"`. At least one of `limit_usd` and
    /// `per_model` is required, since a budget without a limit is almost
    /// certainly a configuration mistake. Per-model names match like
    /// [`crate::cost::PriceTable::get`]: exact, else the part after the last `/`.
    ///
    /// With `ledger_file`, spend survives restarts: an existing file is
    /// loaded, and a corrupt one is an error naming the file rather than a
    /// silent reset to zero (which would re-grant the whole budget). A missing
    /// file is an error too (a deleted or mistyped ledger is the same silent
    /// reset) unless `"ledger_create": true` says to start a new one, which is
    /// then written at once; a missing parent directory is always an error
    /// now rather than a write failure after the first paid call.
    pub fn from_json(v: &Value) -> Result<Budget, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "budget: expected an object".to_string())?;
        let mut limit_usd = None;
        let mut period = Period::Month;
        let mut per_model = BTreeMap::new();
        let mut ledger = None;
        let mut create = false;
        for (k, val) in obj {
            match k.as_str() {
                "limit_usd" => limit_usd = Some(usd(val, "budget.limit_usd")?),
                "period" => {
                    period = val.as_str().and_then(Period::parse).ok_or_else(|| {
                        "budget.period: expected \"month\", \"day\" or \"total\"".to_string()
                    })?
                }
                "per_model" => {
                    let m = val.as_object().ok_or_else(|| {
                        "budget.per_model: expected an object of model names".to_string()
                    })?;
                    for (model, lim) in m {
                        if model.is_empty() {
                            return Err("budget.per_model: model name must not be empty".into());
                        }
                        per_model.insert(model.clone(), usd(lim, &format!("budget.per_model.{model}"))?);
                    }
                }
                "ledger_file" => match val.as_str() {
                    Some(s) if !s.is_empty() => ledger = Some(PathBuf::from(s)),
                    _ => return Err("budget.ledger_file: expected a file path string".into()),
                },
                "ledger_create" => {
                    create = val
                        .as_bool()
                        .ok_or_else(|| "budget.ledger_create: expected true or false".to_string())?
                }
                other => {
                    return Err(format!(
                        "budget.{other}: unknown key (expected \"limit_usd\", \"period\", \"per_model\", \"ledger_file\" or \"ledger_create\")"
                    ))
                }
            }
        }
        if limit_usd.is_none() && per_model.is_empty() {
            return Err("budget.limit_usd: required (or give budget.per_model limits)".into());
        }
        let mut state = State {
            // Empty key: the first operation rolls into the current period.
            period_key: String::new(),
            spent: 0.0,
            per_model_spent: BTreeMap::new(),
            in_flight: InFlight::default(),
            per_model_in_flight: BTreeMap::new(),
            last_ledger_error: None,
        };
        if let Some(path) = &ledger {
            let found = load_ledger(path, period, &mut state)?;
            if !found {
                if !create {
                    return Err(format!(
                        "budget ledger {} does not exist: starting from zero would silently reset the spend; set budget.ledger_create: true to start a new ledger",
                        path.display()
                    ));
                }
                state.roll(period.key(SystemTime::now()));
                write_ledger(path, period, &state)?;
            }
        }
        Ok(Budget {
            limit_usd,
            period,
            per_model,
            ledger,
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// The configured reset period.
    pub fn period(&self) -> Period {
        self.period
    }

    /// Maps a request's model to the name spend is tracked under: the
    /// per-model limit key when one matches, else the name as given.
    fn model_key(&self, model: &str) -> String {
        if self.per_model.contains_key(model) {
            return model.to_string();
        }
        match model.rsplit_once('/') {
            Some((_, base)) if self.per_model.contains_key(base) => base.to_string(),
            _ => model.to_string(),
        }
    }

    /// Sets aside `estimated_max_cost_usd` for a call to `model`, or refuses.
    ///
    /// Refuses when spent + in-flight reservations + this estimate would
    /// exceed the period limit or the model's per-model limit, and also when
    /// that budget is already used up, so a call whose cost is unknown
    /// (estimate 0, e.g. an unpriced model) cannot slip through an exhausted
    /// budget. Negative or NaN estimates count as 0.
    pub fn reserve(
        &self,
        model: &str,
        estimated_max_cost_usd: f64,
        now: SystemTime,
    ) -> Result<Reservation, BudgetError> {
        let amount = sanitize(estimated_max_cost_usd);
        let model_key = self.model_key(model);
        let mut st = lock(&self.state);
        st.roll(self.period.key(now));
        if let Some(limit) = self.limit_usd {
            let used = st.spent + st.in_flight.usd;
            check(self.period.budget_name(), limit, used, amount)?;
        }
        if let Some(&limit) = self.per_model.get(&model_key) {
            let used = st.per_model_spent.get(&model_key).copied().unwrap_or(0.0)
                + st.model_in_flight(&model_key);
            check(
                &format!("per-model budget for {model_key}"),
                limit,
                used,
                amount,
            )?;
        }
        st.in_flight.add(amount);
        st.per_model_in_flight
            .entry(model_key.clone())
            .or_default()
            .add(amount);
        Ok(Reservation {
            state: Arc::downgrade(&self.state),
            model_key,
            amount,
            settled: false,
        })
    }

    /// Records the real cost of a finished call and frees its reservation.
    ///
    /// Spend counts toward the period current at `now` (a call straddling
    /// midnight bills the new day). If the real cost is unknown, pass the
    /// reserved estimate ([`Reservation::amount_usd`]) rather than 0. A real
    /// cost above the estimate is recorded in full even if it pushes spend
    /// past the limit (the money is already gone); later reservations are
    /// then refused. The
    /// spend is always recorded in memory; the `Err` only reports that the
    /// ledger file could not be written (the message names the file), so
    /// the limit keeps holding for this process even when the disk fails.
    pub fn commit(
        &self,
        r: Reservation,
        actual_cost_usd: f64,
        now: SystemTime,
    ) -> Result<(), String> {
        let mut r = r;
        let actual = sanitize(actual_cost_usd);
        let model_key = r.model_key.clone();
        let ours = Weak::ptr_eq(&r.state, &Arc::downgrade(&self.state));
        if !ours {
            // A reservation from another budget: free it there (taking
            // that lock, never both at once), but still bill the spend here.
            r.settle();
        }
        let mut st = lock(&self.state);
        if ours && !r.settled {
            // Release and spend under one lock: releasing first and spending
            // later would open a window where another caller could reserve
            // the freed money and the two together overshoot the limit.
            r.settled = true;
            st.unreserve(&r.model_key, r.amount);
        }
        st.roll(self.period.key(now));
        st.spent += actual;
        *st.per_model_spent.entry(model_key).or_insert(0.0) += actual;
        let Some(path) = &self.ledger else {
            return Ok(());
        };
        // Written under the lock so concurrent commits cannot interleave
        // their temp files or land an older total after a newer one.
        let result = write_ledger(path, self.period, &st);
        st.last_ledger_error = result.as_ref().err().cloned();
        result
    }

    /// Frees a reservation without spending (the call failed before the
    /// provider did any billable work).
    pub fn release(&self, r: Reservation) {
        drop(r);
    }

    /// Current state for the metrics JSON:
    /// `{"period", "period_key", "period_start", "limit_usd", "spent_usd",
    ///   "in_flight_usd", "remaining_usd", "per_model": {name: {"spent_usd",
    ///   "limit_usd", "remaining_usd"}}, "ledger_file", "ledger_error"}`.
    /// Unlimited values are `null`.
    pub fn snapshot(&self, now: SystemTime) -> Value {
        let mut st = lock(&self.state);
        st.roll(self.period.key(now));
        let mut per_model = Map::new();
        let names: std::collections::BTreeSet<&String> = st
            .per_model_spent
            .keys()
            .chain(self.per_model.keys())
            .collect();
        for name in names {
            let spent = st.per_model_spent.get(name).copied().unwrap_or(0.0);
            let limit = self.per_model.get(name).copied();
            let remaining = limit.map(|l| (l - spent - st.model_in_flight(name)).max(0.0));
            per_model.insert(
                name.clone(),
                json!({"spent_usd": spent, "limit_usd": limit, "remaining_usd": remaining}),
            );
        }
        json!({
            "period": self.period.as_str(),
            "period_key": st.period_key,
            "period_start": self.period.start(now),
            "limit_usd": self.limit_usd,
            "spent_usd": st.spent,
            "in_flight_usd": st.in_flight.usd,
            "remaining_usd": self.limit_usd.map(|l| (l - st.spent - st.in_flight.usd).max(0.0)),
            "per_model": per_model,
            "ledger_file": self.ledger.as_ref().map(|p| p.display().to_string()),
            "ledger_error": st.last_ledger_error,
        })
    }
}

fn sanitize(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        0.0
    } else {
        x
    }
}

fn check(name: &str, limit: f64, used: f64, amount: f64) -> Result<(), BudgetError> {
    let remaining = (limit - used).max(0.0);
    if remaining <= 0.0 || used + amount > limit {
        let message = if remaining <= 0.0 {
            format!("{name} exhausted: ${remaining:.4} of ${limit:.4} remains")
        } else {
            format!("{name} exceeded: estimated ${amount:.4} but ${remaining:.4} of ${limit:.4} remains")
        };
        return Err(BudgetError {
            message,
            budget: name.to_string(),
            remaining_usd: remaining,
            limit_usd: limit,
        });
    }
    Ok(())
}

fn usd(v: &Value, at: &str) -> Result<f64, String> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{at}: expected a non-negative number of USD")),
    }
}

/// Loads the ledger into `st`; `Ok(false)` when the file does not exist.
fn load_ledger(path: &Path, period: Period, st: &mut State) -> Result<bool, String> {
    let shown = path.display();
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent {
                if !dir.is_dir() {
                    return Err(format!(
                        "budget.ledger_file: directory {} does not exist",
                        dir.display()
                    ));
                }
            }
            return Ok(false);
        }
        Err(e) => return Err(format!("budget ledger {shown}: cannot read: {e}")),
    };
    let corrupt = |why: &str| format!("budget ledger {shown} is corrupt: {why}");
    let v: Value = serde_json::from_str(&text).map_err(|e| corrupt(&e.to_string()))?;
    if v.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(corrupt("expected \"version\": 1"));
    }
    let file_period = v
        .get("period")
        .and_then(Value::as_str)
        .and_then(Period::parse)
        .ok_or_else(|| corrupt("bad \"period\""))?;
    if file_period != period {
        // Refuse rather than reset: switching e.g. total -> month would
        // otherwise quietly forget everything spent so far.
        return Err(format!(
            "budget ledger {shown} was written for period \"{}\" but budget.period is \"{}\"; move the file away to start over",
            file_period.as_str(),
            period.as_str()
        ));
    }
    let key = v
        .get("period_key")
        .and_then(Value::as_str)
        .ok_or_else(|| corrupt("missing \"period_key\""))?;
    let amount = |x: &Value| x.as_f64().filter(|f| f.is_finite() && *f >= 0.0);
    let spent = v
        .get("spent_usd")
        .and_then(amount)
        .ok_or_else(|| corrupt("bad \"spent_usd\""))?;
    let mut per_model = BTreeMap::new();
    match v.get("per_model") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, x) in m {
                let f = amount(x).ok_or_else(|| corrupt(&format!("bad per_model.{name}")))?;
                per_model.insert(name.clone(), f);
            }
        }
        Some(_) => return Err(corrupt("bad \"per_model\"")),
    }
    st.period_key = key.to_string();
    st.spent = spent;
    st.per_model_spent = per_model;
    Ok(true)
}

/// Path of the temp file: same directory, so the rename stays on one
/// filesystem and is atomic.
fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

fn write_ledger(path: &Path, period: Period, st: &State) -> Result<(), String> {
    let doc = json!({
        "version": 1,
        "period": period.as_str(),
        "period_key": st.period_key,
        "spent_usd": st.spent,
        "per_model": st.per_model_spent,
    });
    let tmp = tmp_path(path);
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable; directories cannot be opened for
        // syncing on every platform, so this is Unix-only.
        #[cfg(unix)]
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("budget ledger {}: write failed: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(y: i64, m: u32, d: u32) -> SystemTime {
        let days = days_from_civil(y, m, d);
        UNIX_EPOCH + Duration::from_secs((days * 86_400 + 3_600) as u64)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "llmpool-budget-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
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

    #[test]
    fn allow_then_refuse() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0})).unwrap();
        let now = at(2026, 1, 10);
        let r = b.reserve("gpt-4.1", 0.6, now).unwrap();
        b.commit(r, 0.5, now).unwrap();
        let err = b.reserve("gpt-4.1", 0.6, now).unwrap_err();
        assert_eq!(err.budget, "monthly budget");
        assert!((err.remaining_usd - 0.5).abs() < 1e-9);
        assert!(err.to_string().contains("monthly budget"), "{err}");
        assert!(err.to_string().contains("0.5000"), "{err}");
        let r = b.reserve("gpt-4.1", 0.5, now).unwrap();
        b.commit(r, 0.5, now).unwrap();
        // Exhausted: even a zero (unknown-cost) estimate is refused.
        let err = b.reserve("x", 0.0, now).unwrap_err();
        assert!(err.message.contains("exhausted"), "{err}");
    }

    #[test]
    fn in_flight_reservations_count_and_release_frees() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0, "period": "total"})).unwrap();
        let now = at(2026, 1, 1);
        let r1 = b.reserve("m", 0.7, now).unwrap();
        assert!(b.reserve("m", 0.4, now).is_err());
        b.release(r1);
        let r2 = b.reserve("m", 0.4, now).unwrap();
        {
            let _r3 = b.reserve("m", 0.6, now).unwrap();
            assert!(b.reserve("m", 0.01, now).is_err());
        } // dropped unsettled -> released
        let r4 = b.reserve("m", 0.6, now).unwrap();
        b.commit(r2, 0.1, now).unwrap();
        b.commit(r4, 0.1, now).unwrap();
        let s = b.snapshot(now);
        assert_eq!(s["in_flight_usd"], json!(0.0));
        assert!((s["spent_usd"].as_f64().unwrap() - 0.2).abs() < 1e-9);
        assert!(s["period_start"].is_null());
    }

    #[test]
    fn per_model_limit() {
        let b = Budget::from_json(&json!({
            "limit_usd": 10.0, "per_model": {"gpt-4.1": 1.0}
        }))
        .unwrap();
        let now = at(2026, 5, 5);
        let r = b.reserve("openai/gpt-4.1", 0.9, now).unwrap();
        b.commit(r, 0.9, now).unwrap();
        let err = b.reserve("gpt-4.1", 0.2, now).unwrap_err();
        assert_eq!(err.budget, "per-model budget for gpt-4.1");
        assert!(err.message.contains("per-model budget for gpt-4.1"));
        assert!((err.remaining_usd - 0.1).abs() < 1e-9);
        // Other models still use the global budget.
        assert!(b.reserve("deepseek-v3.2", 5.0, now).is_ok());
        let s = b.snapshot(now);
        assert!((s["per_model"]["gpt-4.1"]["spent_usd"].as_f64().unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(s["per_model"]["gpt-4.1"]["limit_usd"], json!(1.0));
        // Only per-model limits: fine, global fields are null.
        let b = Budget::from_json(&json!({"per_model": {"a": 1.0}})).unwrap();
        assert!(b.snapshot(now)["limit_usd"].is_null());
        assert!(b.reserve("b", 100.0, now).is_ok());
        assert!(b.reserve("a", 2.0, now).is_err());
    }

    #[test]
    fn concurrent_reservations_never_overspend() {
        let limit = 1.0;
        let b = Arc::new(Budget::from_json(&json!({"limit_usd": limit})).unwrap());
        let now = at(2026, 3, 3);
        let max_seen = Arc::new(Mutex::new(0.0f64));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let b = Arc::clone(&b);
                let max_seen = Arc::clone(&max_seen);
                std::thread::spawn(move || {
                    let mut granted = 0;
                    for j in 0..200 {
                        let est = 0.01 + 0.001 * ((i + j) % 5) as f64;
                        if let Ok(r) = b.reserve("m", est, now) {
                            granted += 1;
                            let s = b.snapshot(now);
                            let used = s["spent_usd"].as_f64().unwrap()
                                + s["in_flight_usd"].as_f64().unwrap();
                            let mut m = max_seen.lock().unwrap();
                            *m = m.max(used);
                            drop(m);
                            // Actual is at most the estimate.
                            b.commit(r, est * 0.5, now).unwrap();
                        }
                    }
                    granted
                })
            })
            .collect();
        let granted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(granted > 0);
        let s = b.snapshot(now);
        assert!(s["spent_usd"].as_f64().unwrap() <= limit + 1e-9);
        assert!(*max_seen.lock().unwrap() <= limit + 1e-9);
        assert_eq!(s["in_flight_usd"], json!(0.0));
    }

    #[test]
    fn month_rollover_including_december() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0, "period": "month"})).unwrap();
        let r = b.reserve("m", 1.0, at(2026, 12, 31)).unwrap();
        b.commit(r, 1.0, at(2026, 12, 31)).unwrap();
        assert!(b.reserve("m", 0.1, at(2026, 12, 31)).is_err());
        let s = b.snapshot(at(2027, 1, 1));
        assert_eq!(s["period_key"], "2027-01");
        assert_eq!(s["period_start"], "2027-01-01");
        assert_eq!(s["spent_usd"], json!(0.0));
        assert!(b.reserve("m", 0.9, at(2027, 1, 1)).is_ok());
    }

    #[test]
    fn day_rollover_including_leap_day() {
        let b = Budget::from_json(&json!({"limit_usd": 1.0, "period": "day"})).unwrap();
        for (y, m, d) in [
            (2028, 2, 28),
            (2028, 2, 29),
            (2028, 3, 1),
            (2100, 2, 28),
            (2100, 3, 1),
        ] {
            let now = at(y, m, d);
            let r = b.reserve("m", 1.0, now).unwrap();
            b.commit(r, 1.0, now).unwrap();
            assert!(b.reserve("m", 0.5, now).is_err(), "{y}-{m}-{d}");
        }
        assert_eq!(b.snapshot(at(2028, 2, 29))["period_key"], "2028-02-29");
        // A total budget never resets.
        let t = Budget::from_json(&json!({"limit_usd": 1.0, "period": "total"})).unwrap();
        let r = t.reserve("m", 1.0, at(2020, 1, 1)).unwrap();
        t.commit(r, 1.0, at(2020, 1, 1)).unwrap();
        assert!(t.reserve("m", 0.1, at(2030, 1, 1)).is_err());
    }

    #[test]
    fn ledger_round_trip_and_no_tmp_left() {
        let dir = tmpdir("rt");
        let path = dir.join("ledger.json");
        let cfg = json!({"limit_usd": 2.0, "period": "month",
            "ledger_file": path.to_str().unwrap(), "ledger_create": true});
        let now = at(2026, 11, 20);
        {
            let b = Budget::from_json(&cfg).unwrap();
            let r = b.reserve("gpt-4.1", 1.0, now).unwrap();
            b.commit(r, 0.75, now).unwrap();
        }
        assert!(!tmp_path(&path).exists());
        let doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["period"], "month");
        assert_eq!(doc["period_key"], "2026-11");
        assert_eq!(doc["spent_usd"], json!(0.75));
        assert_eq!(doc["per_model"]["gpt-4.1"], json!(0.75));
        let b = Budget::from_json(&cfg).unwrap();
        assert_eq!(b.snapshot(now)["spent_usd"], json!(0.75));
        assert!(b.reserve("gpt-4.1", 1.3, now).is_err());
        // Next month the loaded spend no longer counts.
        assert_eq!(b.snapshot(at(2026, 12, 1))["spent_usd"], json!(0.0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_or_mismatched_ledger_is_an_error() {
        let dir = tmpdir("bad");
        let path = dir.join("ledger.json");
        let cfg = json!({"limit_usd": 2.0, "ledger_file": path.to_str().unwrap()});
        for bad in [
            "{not json",
            "{\"version\":2,\"period\":\"month\",\"period_key\":\"x\",\"spent_usd\":0}",
            "{\"version\":1,\"period\":\"month\",\"period_key\":\"x\",\"spent_usd\":-1}",
            "{\"version\":1,\"period\":\"month\",\"spent_usd\":1}",
        ] {
            fs::write(&path, bad).unwrap();
            let err = Budget::from_json(&cfg).unwrap_err();
            assert!(err.contains(path.to_str().unwrap()), "{err}");
            assert!(err.contains("corrupt"), "{err}");
        }
        fs::write(
            &path,
            "{\"version\":1,\"period\":\"day\",\"period_key\":\"2026-01-01\",\"spent_usd\":1}",
        )
        .unwrap();
        let err = Budget::from_json(&cfg).unwrap_err();
        assert!(err.contains("period"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_ledger_is_an_error_unless_creation_is_asked_for() {
        let dir = tmpdir("missing");
        let path = dir.join("new.json");
        let plain = json!({"limit_usd": 1.0, "ledger_file": path.to_str().unwrap()});
        let err = Budget::from_json(&plain).unwrap_err();
        assert!(
            err.contains("does not exist") && err.contains("ledger_create"),
            "{err}"
        );
        let ok =
            json!({"limit_usd": 1.0, "ledger_file": path.to_str().unwrap(), "ledger_create": true});
        let b = Budget::from_json(&ok).unwrap();
        assert_eq!(b.snapshot(at(2026, 1, 1))["spent_usd"], json!(0.0));
        assert!(path.is_file(), "a created ledger is written at once");
        Budget::from_json(&plain).expect("the ledger exists now");
        let bad = json!({"limit_usd": 1.0,
            "ledger_file": dir.join("nope").join("l.json").to_str().unwrap()});
        let err = Budget::from_json(&bad).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ledger_write_failure_is_reported_but_spend_kept() {
        let dir = tmpdir("wfail");
        let path = dir.join("sub").join("l.json");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let b = Budget::from_json(&json!({"limit_usd": 1.0,
            "ledger_file": path.to_str().unwrap(), "ledger_create": true}))
        .unwrap();
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
        let now = at(2026, 1, 1);
        let r = b.reserve("m", 0.5, now).unwrap();
        let err = b.commit(r, 0.5, now).unwrap_err();
        assert!(err.contains("l.json"), "{err}");
        let s = b.snapshot(now);
        assert_eq!(s["spent_usd"], json!(0.5));
        assert!(s["ledger_error"].is_string());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_options_name_the_key() {
        let cases = [
            (json!(1), "budget: expected an object"),
            (
                json!({"limit_usd": 1, "period": "week"}),
                "budget.period: expected \"month\", \"day\" or \"total\"",
            ),
            (
                json!({"limit_usd": -1}),
                "budget.limit_usd: expected a non-negative",
            ),
            (
                json!({"limit_usd": "5"}),
                "budget.limit_usd: expected a non-negative",
            ),
            (
                json!({"limit_usd": 1, "per_model": {"a": "x"}}),
                "budget.per_model.a: expected",
            ),
            (
                json!({"limit_usd": 1, "per_model": []}),
                "budget.per_model: expected an object",
            ),
            (
                json!({"limit_usd": 1, "ledger_file": 3}),
                "budget.ledger_file: expected",
            ),
            (
                json!({"limit_usd": 1, "limit": 2}),
                "budget.limit: unknown key",
            ),
            (json!({}), "budget.limit_usd: required"),
        ];
        for (v, want) in cases {
            let err = Budget::from_json(&v).unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }
}
