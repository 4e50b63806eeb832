//! The `"rate_limits"` option.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::Error;

/// Requests and tokens per minute; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// The parsed `"rate_limits"` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub global: Limits,
    pub per_model: BTreeMap<String, Limits>,
    /// Honour the gateway's `x-ratelimit-remaining-*`/`-reset-*` headers.
    pub adaptive: bool,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            global: Limits::default(),
            per_model: BTreeMap::new(),
            adaptive: true,
        }
    }
}

impl RateLimitConfig {
    /// Parses the option `key`; errors name the offending member.
    pub fn parse(key: &str, v: &Value) -> Result<RateLimitConfig, Error> {
        let obj = v.as_object().ok_or_else(|| {
            Error::invalid(format!(
                "option \"{key}\": expected an object like {{\"rpm\": 600, \"tpm\": 100000}}"
            ))
        })?;
        let mut cfg = RateLimitConfig::default();
        for (k, v) in obj {
            let path = format!("{key}.{k}");
            match k.as_str() {
                "rpm" => cfg.global.rpm = Some(per_minute(&path, v)?),
                "tpm" => cfg.global.tpm = Some(per_minute(&path, v)?),
                "adaptive" => {
                    cfg.adaptive = v.as_bool().ok_or_else(|| {
                        Error::invalid(format!("option \"{path}\": expected true or false"))
                    })?
                }
                "per_model" => {
                    let models = v.as_object().ok_or_else(|| {
                        Error::invalid(format!(
                            "option \"{path}\": expected an object of model names to {{\"rpm\", \"tpm\"}}"
                        ))
                    })?;
                    for (model, lv) in models {
                        let mpath = format!("{path}.{model}");
                        let lobj = lv.as_object().ok_or_else(|| {
                            Error::invalid(format!(
                                "option \"{mpath}\": expected an object like {{\"rpm\": 60}}"
                            ))
                        })?;
                        let mut l = Limits::default();
                        for (lk, x) in lobj {
                            let p = format!("{mpath}.{lk}");
                            match lk.as_str() {
                                "rpm" => l.rpm = Some(per_minute(&p, x)?),
                                "tpm" => l.tpm = Some(per_minute(&p, x)?),
                                _ => return Err(Error::invalid(format!("unknown option \"{p}\""))),
                            }
                        }
                        cfg.per_model.insert(model.clone(), l);
                    }
                }
                _ => return Err(Error::invalid(format!("unknown option \"{path}\""))),
            }
        }
        Ok(cfg)
    }
}

fn per_minute(path: &str, v: &Value) -> Result<u64, Error> {
    v.as_u64()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::invalid(format!("option \"{path}\": expected a positive integer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_names_bad_keys() {
        let c = RateLimitConfig::parse(
            "rate_limits",
            &json!({"rpm": 600, "per_model": {"gpt-4.1": {"tpm": 1000}}}),
        )
        .unwrap();
        assert_eq!(c.global.rpm, Some(600));
        assert_eq!(c.per_model["gpt-4.1"].tpm, Some(1000));
        let err = |v: Value| {
            RateLimitConfig::parse("rate_limits", &v)
                .unwrap_err()
                .message
        };
        assert!(err(json!({"rpn": 1})).contains("rate_limits.rpn"));
        assert!(err(json!({"rpm": 0})).contains("rate_limits.rpm"));
        assert!(err(json!({"tpm": "5"})).contains("rate_limits.tpm"));
        assert!(
            err(json!({"per_model": {"m": {"rpx": 1}}})).contains("rate_limits.per_model.m.rpx")
        );
        assert!(err(json!({"per_model": {"m": 3}})).contains("rate_limits.per_model.m"));
        assert!(err(json!([])).contains("\"rate_limits\""));
    }
}
