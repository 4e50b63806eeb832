//! The book of a budget: what was spent in the current period, per model,
//! and the holds (reservations) of calls still in flight.
//!
//! Every store keeps one: the in-memory budget, the ledger file shared by
//! the processes of one machine, and Redis. The limit check runs against
//! the book as the store holds it, so holds of every process count.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::owner::{fate, Fate, Owner};
use super::period::Period;

/// Money set aside for one call in flight.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hold {
    pub usd: f64,
    /// The key spend is tracked under (see `Budget::model_key`).
    pub model: String,
    /// Wall-clock expiry (ms since the Unix epoch) for holds whose process
    /// cannot be seen from here (see `owner`).
    pub expires_ms: u64,
    pub owner: Option<Owner>,
}

/// What a shared store has not been told yet, because a write failed:
/// spend of finished calls (never lost) and holds to drop. Applied at the
/// next write that succeeds, in whatever period is current then.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Only its per-model spend is used.
    pub spend: Book,
    pub released: Vec<String>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        !self.has_spend() && self.released.is_empty()
    }

    pub fn has_spend(&self) -> bool {
        !self.spend.per_model.is_empty()
    }

    /// Keeps `usd` spent on `model` and, when given, drops hold `id`.
    pub fn keep(&mut self, model: &str, usd: f64, id: Option<&str>) {
        self.spend.spend(model, usd);
        self.released.extend(id.map(str::to_string));
    }

    /// Adds the kept spend to `book` and drops the released holds from it.
    pub fn apply_to(&self, book: &mut Book) {
        // Nearly always nothing is pending: skip the walk.
        if self.is_empty() {
            return;
        }
        book.absorb_spend(&self.spend);
        for id in &self.released {
            book.holds.remove(id);
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Book {
    /// Empty until the first operation rolls into the current period.
    pub period_key: String,
    pub spent: f64,
    pub per_model: BTreeMap<String, f64>,
    pub holds: BTreeMap<String, Hold>,
}

impl Book {
    /// Starts a new period when `key` differs: spend resets, holds stay
    /// (their calls are still in flight and will bill the new period).
    pub fn roll(&mut self, key: &str) {
        if self.period_key != key {
            self.period_key = key.to_string();
            self.spent = 0.0;
            self.per_model.clear();
        }
    }

    /// USD held by calls in flight (summed afresh, so no float drift).
    pub fn held(&self) -> f64 {
        self.holds.values().map(|h| h.usd).sum()
    }

    pub fn held_for(&self, model: &str) -> f64 {
        self.holds
            .values()
            .filter(|h| h.model == model)
            .map(|h| h.usd)
            .sum()
    }

    pub fn spent_for(&self, model: &str) -> f64 {
        self.per_model.get(model).copied().unwrap_or(0.0)
    }

    pub fn spend(&mut self, model: &str, usd: f64) {
        self.spent += usd;
        *self.per_model.entry(model.to_string()).or_insert(0.0) += usd;
    }

    /// Drops the holds whose process is gone, and those that expired at
    /// `now_ms` unless their process is seen running; returns how many.
    pub fn prune(&mut self, now_ms: u64) -> usize {
        self.prune_with(now_ms, fate)
    }

    pub(crate) fn prune_with(&mut self, now_ms: u64, fate: impl Fn(&Owner) -> Fate) -> usize {
        let before = self.holds.len();
        self.holds
            .retain(|_, h| match h.owner.as_ref().map_or(Fate::Unknown, &fate) {
                Fate::Running => true,
                Fate::Gone => false,
                Fate::Unknown => h.expires_ms > now_ms,
            });
        before - self.holds.len()
    }

    /// Adds `other`'s spend (not its holds) to this book's current period.
    pub fn absorb_spend(&mut self, other: &Book) {
        for (model, usd) in &other.per_model {
            self.spend(model, *usd);
        }
    }

    /// The ledger file's document (version 2).
    pub fn to_json(&self, period: Period) -> Value {
        let holds: Map<String, Value> = self
            .holds
            .iter()
            .map(|(id, h)| {
                let mut v = json!({"usd": h.usd, "model": h.model, "expires_ms": h.expires_ms});
                if let Some(o) = &h.owner {
                    v["pid"] = json!(o.pid);
                    v["pidns"] = json!(o.pidns);
                    v["boot"] = json!(o.boot);
                    v["start"] = json!(o.start);
                }
                (id.clone(), v)
            })
            .collect();
        json!({
            "version": 2,
            "period": period.as_str(),
            "period_key": self.period_key,
            "spent_usd": self.spent,
            "per_model": self.per_model,
            "holds": holds,
        })
    }

    /// Reads a ledger document (version 1, without holds, or 2). `shown`
    /// names the file in errors. A wrong `period` is refused rather than
    /// reset: switching e.g. total -> month would quietly forget the spend.
    pub fn from_json(text: &str, period: Period, shown: &str) -> Result<Book, String> {
        let corrupt = |why: &str| format!("budget ledger {shown} is corrupt: {why}");
        let v: Value = serde_json::from_str(text).map_err(|e| corrupt(&e.to_string()))?;
        let version = v.get("version").and_then(Value::as_u64);
        if version != Some(1) && version != Some(2) {
            return Err(corrupt("expected \"version\": 1 or 2"));
        }
        let file_period = v
            .get("period")
            .and_then(Value::as_str)
            .and_then(Period::parse)
            .ok_or_else(|| corrupt("bad \"period\""))?;
        if file_period != period {
            return Err(format!(
                "budget ledger {shown} was written for period \"{}\" but budget.period is \"{}\"; move the file away to start over",
                file_period.as_str(),
                period.as_str()
            ));
        }
        let period_key = v
            .get("period_key")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt("missing \"period_key\""))?
            .to_string();
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
        let mut holds = BTreeMap::new();
        match v.get("holds") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (id, h) in m {
                    let bad = || corrupt(&format!("bad holds.{id}"));
                    let usd = h.get("usd").and_then(amount).ok_or_else(bad)?;
                    let model = h.get("model").and_then(Value::as_str).ok_or_else(bad)?;
                    let expires_ms = h
                        .get("expires_ms")
                        .and_then(Value::as_u64)
                        .ok_or_else(bad)?;
                    let owner = match (
                        h.get("pid").and_then(Value::as_u64),
                        h.get("pidns").and_then(Value::as_str),
                        h.get("boot").and_then(Value::as_str),
                        h.get("start").and_then(Value::as_u64),
                    ) {
                        (Some(pid), Some(ns), Some(boot), Some(start)) => Some(Owner {
                            pid: u32::try_from(pid).map_err(|_| bad())?,
                            pidns: ns.to_string(),
                            boot: boot.to_string(),
                            start,
                        }),
                        _ => None,
                    };
                    holds.insert(
                        id.clone(),
                        Hold {
                            usd,
                            model: model.to_string(),
                            expires_ms,
                            owner,
                        },
                    );
                }
            }
            Some(_) => return Err(corrupt("bad \"holds\"")),
        }
        Ok(Book {
            period_key,
            spent,
            per_model,
            holds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(usd: f64, model: &str, expires_ms: u64, owner: Option<Owner>) -> Hold {
        Hold {
            usd,
            model: model.into(),
            expires_ms,
            owner,
        }
    }

    #[test]
    fn roll_resets_spend_but_keeps_holds() {
        let mut b = Book::default();
        b.roll("2026-11");
        b.spend("a", 1.5);
        b.holds.insert("h".into(), hold(0.5, "a", 10, None));
        b.roll("2026-11");
        assert_eq!(b.spent, 1.5);
        b.roll("2026-12");
        assert_eq!((b.spent, b.spent_for("a")), (0.0, 0.0));
        assert_eq!(b.held(), 0.5);
    }

    #[test]
    fn held_sums_by_model_and_prune_follows_the_owners_fate() {
        let mut b = Book::default();
        let owner = |pid| Owner {
            pid,
            pidns: "ns".into(),
            boot: "b".into(),
            start: 5,
        };
        let fate = |o: &Owner| match o.pid {
            1 => Fate::Running,
            2 => Fate::Gone,
            _ => Fate::Unknown,
        };
        b.holds.insert("none".into(), hold(0.25, "a", 100, None));
        b.holds
            .insert("running".into(), hold(0.5, "b", 50, Some(owner(1))));
        b.holds
            .insert("gone".into(), hold(1.0, "a", 1000, Some(owner(2))));
        b.holds
            .insert("far".into(), hold(2.0, "a", 80, Some(owner(3))));
        assert_eq!(b.held(), 3.75);
        assert_eq!(b.held_for("a"), 3.25);
        assert_eq!(b.prune_with(60, fate), 1, "gone at once");
        assert_eq!(b.prune_with(90, fate), 1, "far expired");
        assert_eq!(b.prune_with(100, fate), 1, "no owner expired");
        assert_eq!(b.prune_with(u64::MAX, fate), 0, "running never expires");
        assert_eq!(b.holds.keys().collect::<Vec<_>>(), ["running"]);
    }

    #[test]
    fn pending_spend_lands_in_the_current_period_and_releases_drop_holds() {
        let mut p = Pending::default();
        assert!(p.is_empty());
        p.keep("a", 0.25, Some("h1"));
        p.keep("a", 0.25, None);
        p.released.push("h2".into());
        let mut b = Book::default();
        b.roll("2026-12");
        for id in ["h1", "h2", "h3"] {
            b.holds.insert(id.into(), hold(1.0, "a", 9, None));
        }
        p.apply_to(&mut b);
        assert_eq!((b.spent, b.spent_for("a")), (0.5, 0.5));
        assert_eq!(b.holds.keys().collect::<Vec<_>>(), ["h3"]);
        assert!(!p.is_empty() && p.has_spend());
    }

    #[test]
    fn json_round_trip_and_version_1() {
        let mut b = Book::default();
        b.roll("2026-11");
        b.spend("gpt-4.1", 0.75);
        let owner = Owner {
            pid: 42,
            pidns: "pid:[4026531836]".into(),
            boot: "3f1c".into(),
            start: 99,
        };
        b.holds.insert(
            "x".into(),
            hold(0.125, "gpt-4.1", 1_800_000_000_000, Some(owner)),
        );
        b.holds.insert("y".into(), hold(0.5, "m", 7, None));
        let text = b.to_json(Period::Month).to_string();
        assert_eq!(Book::from_json(&text, Period::Month, "f").unwrap(), b);
        let v1 = r#"{"version":1,"period":"day","period_key":"2026-01-02","spent_usd":2.5,"per_model":{"m":2.5}}"#;
        let old = Book::from_json(v1, Period::Day, "f").unwrap();
        assert_eq!((old.spent, old.spent_for("m")), (2.5, 2.5));
        assert!(old.holds.is_empty());
        let err = Book::from_json(v1, Period::Month, "f").unwrap_err();
        assert!(err.contains("period"), "{err}");
        let bad = r#"{"version":2,"period":"day","period_key":"k","spent_usd":0,"holds":{"h":{"usd":-1}}}"#;
        let err = Book::from_json(bad, Period::Day, "/x/l.json").unwrap_err();
        assert!(
            err.contains("/x/l.json") && err.contains("holds.h"),
            "{err}"
        );
    }
}
