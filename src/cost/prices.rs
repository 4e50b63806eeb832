//! Model prices and cost arithmetic.
//!
//! Prices are USD per million tokens, the unit every provider publishes, so
//! users can paste numbers from a price page into the `prices` option.

use serde_json::Value;
use std::collections::BTreeMap;

const MTOK: f64 = 1_000_000.0;

/// Price of one model, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// Uncached prompt tokens.
    pub input_per_mtok: f64,
    /// Completion (output) tokens, reasoning tokens included.
    pub output_per_mtok: f64,
    /// Prompt tokens served from the provider's prompt cache. `None` means
    /// the provider gives no discount, so cached tokens bill at the input rate.
    pub cached_input_per_mtok: Option<f64>,
    /// Prompt tokens written to the provider's prompt cache (Anthropic's
    /// `cache_creation_input_tokens`). `None`: unknown, so an answer that
    /// wrote to the cache has an unknown cost.
    pub cache_write_input_per_mtok: Option<f64>,
}

/// Token usage of one call, as reported by the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, *including* the cached ones (OpenAI semantics).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// The subset of `prompt_tokens` that was served from the prompt cache.
    pub cached_tokens: u64,
    /// The subset of `prompt_tokens` written to the prompt cache.
    pub cache_write_tokens: u64,
}

impl Usage {
    /// Reads usage from a response body.
    ///
    /// Understands the chat/completions/embeddings shape
    /// (`usage.prompt_tokens`, `usage.completion_tokens`,
    /// `usage.prompt_tokens_details.cached_tokens`) and, as a fallback, the
    /// responses-API names (`input_tokens`, `output_tokens`,
    /// `input_tokens_details.cached_tokens`). Returns `None` when there is no
    /// usable prompt token count, so callers can tell "not reported" from
    /// "zero". Missing completion tokens (embeddings) count as 0.
    pub fn from_response_json(v: &Value) -> Option<Usage> {
        Usage::from_usage(v.get("usage")?)
    }

    /// [`Usage::from_response_json`] for the `usage` object itself.
    pub fn from_usage(u: &Value) -> Option<Usage> {
        let prompt_tokens = u
            .get("prompt_tokens")
            .or_else(|| u.get("input_tokens"))
            .and_then(Value::as_u64)?;
        let completion_tokens = u
            .get("completion_tokens")
            .or_else(|| u.get("output_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let cached_tokens = u
            .get("prompt_tokens_details")
            .or_else(|| u.get("input_tokens_details"))
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        // The Messages API counts cache reads and writes apart from
        // `input_tokens`; here they are part of the prompt, as OpenAI counts.
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        let (read, write) = (
            n("cache_read_input_tokens"),
            n("cache_creation_input_tokens"),
        );
        if read.is_some() || write.is_some() {
            let (read, write) = (read.unwrap_or(0), write.unwrap_or(0));
            return Some(Usage {
                prompt_tokens: prompt_tokens + read + write,
                completion_tokens,
                cached_tokens: read,
                cache_write_tokens: write,
            });
        }
        Some(Usage {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            cache_write_tokens: 0,
        })
    }
}

/// Price lookup table keyed by model name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    /// An empty table: every model is unknown, so every cost is `None`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Built-in prices for the models the library documents.
    ///
    /// They are a starting point only: provider prices change, so the
    /// `prices` option ([`PriceTable::apply_json`]) can override any of them.
    pub fn with_defaults() -> Self {
        let mut t = Self::new();
        for (name, input, output, cached) in [
            ("gpt-4.1", 2.00, 8.00, 0.50),
            ("claude-sonnet-4.5", 3.00, 15.00, 0.30),
            ("gemini-2.5-flash", 0.30, 2.50, 0.075),
            ("deepseek-v3.2", 0.28, 0.42, 0.028),
        ] {
            t.insert(
                name,
                ModelPrice {
                    input_per_mtok: input,
                    output_per_mtok: output,
                    cached_input_per_mtok: Some(cached),
                    // Anthropic bills 5-minute cache writes at 1.25x input.
                    cache_write_input_per_mtok: name.starts_with("claude").then_some(input * 1.25),
                },
            );
        }
        t
    }

    /// Sets (or replaces) one model's price.
    pub fn insert(&mut self, model: &str, price: ModelPrice) {
        self.models.insert(model.to_string(), price);
    }

    /// Applies the `prices` client option, overriding or extending the table.
    ///
    /// Shape: `{"model-name": {"input": 1.0, "output": 2.0, "cached_input": 0.5,
    /// "cache_write_input": 1.25}}` (`cache_write_input`: tokens written to
    /// the prompt cache, as the Messages API reports them).
    /// For a model already in the table any subset of fields may be given;
    /// a new model needs `input` and `output`. `"cached_input": null` removes
    /// the cache discount. The update is all-or-nothing: on error the table
    /// is unchanged, so a typo cannot leave half-applied prices behind.
    /// Errors name the offending key, e.g.
    /// `prices.gpt-4.1.output: expected a non-negative number`.
    pub fn apply_json(&mut self, v: &Value) -> Result<(), String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "prices: expected an object of model names".to_string())?;
        let mut next = self.models.clone();
        for (model, spec) in obj {
            let at = format!("prices.{model}");
            if model.is_empty() {
                return Err("prices: model name must not be empty".to_string());
            }
            let spec = spec
                .as_object()
                .ok_or_else(|| format!("{at}: expected an object"))?;
            let mut input = None;
            let mut output = None;
            let mut cached = CachedPrice::Unsaid;
            let mut write = CachedPrice::Unsaid;
            for (k, val) in spec {
                match k.as_str() {
                    "input" => input = Some(price_number(val, &at, k)?),
                    "output" => output = Some(price_number(val, &at, k)?),
                    "cached_input" => {
                        cached = if val.is_null() {
                            CachedPrice::NoDiscount
                        } else {
                            CachedPrice::Per(price_number(val, &at, k)?)
                        }
                    }
                    "cache_write_input" => {
                        write = if val.is_null() {
                            CachedPrice::NoDiscount
                        } else {
                            CachedPrice::Per(price_number(val, &at, k)?)
                        }
                    }
                    other => {
                        return Err(format!(
                            "{at}.{other}: unknown key (expected \"input\", \"output\", \"cached_input\" or \"cache_write_input\")"
                        ))
                    }
                }
            }
            let price = match next.get(model.as_str()) {
                Some(old) => ModelPrice {
                    input_per_mtok: input.unwrap_or(old.input_per_mtok),
                    output_per_mtok: output.unwrap_or(old.output_per_mtok),
                    cached_input_per_mtok: cached.or(old.cached_input_per_mtok),
                    cache_write_input_per_mtok: write.or(old.cache_write_input_per_mtok),
                },
                None => ModelPrice {
                    input_per_mtok: input.ok_or_else(|| {
                        format!("{at}.input: required for a model without a default price")
                    })?,
                    output_per_mtok: output.ok_or_else(|| {
                        format!("{at}.output: required for a model without a default price")
                    })?,
                    cached_input_per_mtok: cached.or(None),
                    cache_write_input_per_mtok: write.or(None),
                },
            };
            next.insert(model.clone(), price);
        }
        self.models = next;
        Ok(())
    }

    /// Looks a model's price up.
    ///
    /// Exact name first; failing that, a provider-prefixed name such as
    /// `"openai/gpt-4.1"` (gateways like OpenRouter use these) falls back to
    /// the part after the last `/`, i.e. `"gpt-4.1"`. An exact entry for the
    /// prefixed name always wins, so gateway-specific pricing can be set.
    /// Matching is otherwise exact (case-sensitive, no dated-snapshot
    /// stripping) so that a wrong price is never silently picked.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        let (_, base) = model.rsplit_once('/')?;
        self.models.get(base)
    }

    /// Cost of a call in USD, or `None` when the model's price is unknown.
    ///
    /// `None` is deliberate: a silent 0 would let an unpriced model bypass
    /// every budget. Cached tokens are billed at the cached rate and the rest
    /// of the prompt at the input rate; `cached_tokens` larger than
    /// `prompt_tokens` is clamped, since it can only be a reporting glitch.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let p = self.get(model)?;
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let written = usage.cache_write_tokens.min(usage.prompt_tokens - cached);
        let uncached = usage.prompt_tokens - cached - written;
        let cached_rate = p.cached_input_per_mtok.unwrap_or(p.input_per_mtok);
        // An unknown cache-write price is an unknown cost, never 0.
        let write_rate = match (written, p.cache_write_input_per_mtok) {
            (0, _) => 0.0,
            (_, Some(r)) => r,
            (_, None) => return None,
        };
        Some(
            (uncached as f64 * p.input_per_mtok
                + cached as f64 * cached_rate
                + written as f64 * write_rate
                + usage.completion_tokens as f64 * p.output_per_mtok)
                / MTOK,
        )
    }

    /// Worst-case cost of `request` on `model`, for [`crate::cost::Budget::reserve`].
    ///
    /// Uses the estimated prompt tokens (no cache discount assumed) plus the
    /// request's own output cap, or `fallback_max_output_tokens` when the
    /// request sets none. `None` when the model's price is unknown.
    pub fn estimate_max_cost(
        &self,
        model: &str,
        request: &Value,
        fallback_max_output_tokens: u64,
    ) -> Option<f64> {
        self.max_cost(
            model,
            crate::request::estimate::estimate_prompt_tokens(request),
            crate::request::estimate::requested_max_output_tokens(request),
            fallback_max_output_tokens,
        )
    }

    /// [`PriceTable::estimate_max_cost`] from a request's facts (its
    /// prompt-token estimate and output cap) rather than its JSON.
    pub fn max_cost(
        &self,
        model: &str,
        prompt_tokens: u64,
        max_output: Option<u64>,
        fallback_max_output_tokens: u64,
    ) -> Option<f64> {
        let usage = Usage {
            prompt_tokens,
            completion_tokens: max_output.unwrap_or(fallback_max_output_tokens),
            cached_tokens: 0,
            cache_write_tokens: 0,
        };
        self.cost(model, &usage)
    }
}

/// What an option says of a model's `cached_input` price.
#[derive(Clone, Copy)]
enum CachedPrice {
    /// Nothing: the old price (or none) stays.
    Unsaid,
    /// `null`: cached input costs what input costs.
    NoDiscount,
    Per(f64),
}

impl CachedPrice {
    fn or(self, old: Option<f64>) -> Option<f64> {
        match self {
            CachedPrice::Unsaid => old,
            CachedPrice::NoDiscount => None,
            CachedPrice::Per(p) => Some(p),
        }
    }
}

fn price_number(v: &Value, at: &str, key: &str) -> Result<f64, String> {
    match v.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{at}.{key}: expected a non-negative number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn default_prices() {
        let t = PriceTable::with_defaults();
        let p = t.get("gpt-4.1").unwrap();
        assert_eq!(p.input_per_mtok, 2.0);
        assert_eq!(p.output_per_mtok, 8.0);
        assert_eq!(p.cached_input_per_mtok, Some(0.5));
        assert_eq!(t.get("claude-sonnet-4.5").unwrap().output_per_mtok, 15.0);
        assert_eq!(
            t.get("gemini-2.5-flash").unwrap().cached_input_per_mtok,
            Some(0.075)
        );
        assert_eq!(t.get("deepseek-v3.2").unwrap().input_per_mtok, 0.28);
    }

    #[test]
    fn cost_math() {
        let t = PriceTable::with_defaults();
        let u = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
            cached_tokens: 0,
            cache_write_tokens: 0,
        };
        assert!(close(t.cost("gpt-4.1", &u).unwrap(), 10.0));
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 500,
            cached_tokens: 400,
            cache_write_tokens: 0,
        };
        // 600*2 + 400*0.5 + 500*8 = 1200 + 200 + 4000 = 5400 per M.
        assert!(close(t.cost("gpt-4.1", &u).unwrap(), 0.0054));
        // Cached above prompt is clamped.
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 0,
            cached_tokens: 50,
            cache_write_tokens: 0,
        };
        assert!(close(
            t.cost("deepseek-v3.2", &u).unwrap(),
            10.0 * 0.028 / 1e6
        ));
    }

    #[test]
    fn unknown_model_is_none_not_zero() {
        let t = PriceTable::with_defaults();
        assert_eq!(t.cost("mystery-model", &Usage::default()), None);
        assert_eq!(PriceTable::new().cost("gpt-4.1", &Usage::default()), None);
    }

    #[test]
    fn provider_prefix_falls_back_to_base_name() {
        let mut t = PriceTable::with_defaults();
        assert_eq!(t.get("openai/gpt-4.1"), t.get("gpt-4.1"));
        assert!(t.get("openai/gpt-4.1-mini").is_none());
        assert!(t.get("gpt-4.1/").is_none());
        t.apply_json(&json!({"openai/gpt-4.1": {"input": 9.0, "output": 9.0}}))
            .unwrap();
        assert_eq!(t.get("openai/gpt-4.1").unwrap().input_per_mtok, 9.0);
        assert_eq!(t.get("gpt-4.1").unwrap().input_per_mtok, 2.0);
    }

    #[test]
    fn override_and_extend() {
        let mut t = PriceTable::with_defaults();
        t.apply_json(&json!({
            "gpt-4.1": {"output": 7.5},
            "my-model": {"input": 1, "output": 2},
            "deepseek-v3.2": {"cached_input": null}
        }))
        .unwrap();
        let g = t.get("gpt-4.1").unwrap();
        assert_eq!((g.input_per_mtok, g.output_per_mtok), (2.0, 7.5));
        let m = t.get("my-model").unwrap();
        assert_eq!(
            *m,
            ModelPrice {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
                cached_input_per_mtok: None,
                cache_write_input_per_mtok: None,
            }
        );
        assert_eq!(t.get("deepseek-v3.2").unwrap().cached_input_per_mtok, None);
        // Without a cache discount cached tokens bill at the input rate.
        let u = Usage {
            prompt_tokens: 100,
            completion_tokens: 0,
            cached_tokens: 100,
            cache_write_tokens: 0,
        };
        assert!(close(t.cost("my-model", &u).unwrap(), 100.0 / 1e6));
    }

    #[test]
    fn bad_option_errors_name_the_key_and_change_nothing() {
        let mut t = PriceTable::with_defaults();
        let before = t.clone();
        let cases = [
            (json!([]), "prices: expected an object"),
            (json!({"gpt-4.1": 3}), "prices.gpt-4.1: expected an object"),
            (
                json!({"gpt-4.1": {"output": -1}}),
                "prices.gpt-4.1.output: expected a non-negative number",
            ),
            (
                json!({"gpt-4.1": {"input": "2"}}),
                "prices.gpt-4.1.input: expected a non-negative number",
            ),
            (
                json!({"gpt-4.1": {"inptu": 1}}),
                "prices.gpt-4.1.inptu: unknown key",
            ),
            (json!({"new": {"input": 1}}), "prices.new.output: required"),
            (
                json!({"a": {"input": 1, "output": 1}, "b": {"output": 1}}),
                "prices.b.input: required",
            ),
        ];
        for (v, want) in cases {
            let err = t.apply_json(&v).unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
            assert_eq!(t, before, "failed apply must not change the table");
        }
    }

    #[test]
    fn usage_from_response() {
        let v = json!({"usage": {"prompt_tokens": 10, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 3}}});
        assert_eq!(
            Usage::from_response_json(&v),
            Some(Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                cached_tokens: 3,
                cache_write_tokens: 0,
            })
        );
        let emb = json!({"usage": {"prompt_tokens": 8, "total_tokens": 8}});
        assert_eq!(
            Usage::from_response_json(&emb),
            Some(Usage {
                prompt_tokens: 8,
                completion_tokens: 0,
                cached_tokens: 0,
                cache_write_tokens: 0,
            })
        );
        let resp = json!({"usage": {"input_tokens": 4, "output_tokens": 2,
            "input_tokens_details": {"cached_tokens": 1}}});
        assert_eq!(Usage::from_response_json(&resp).unwrap().cached_tokens, 1);
        assert_eq!(Usage::from_response_json(&json!({})), None);
        assert_eq!(Usage::from_response_json(&json!({"usage": null})), None);
    }

    #[test]
    fn messages_usage_counts_cache_reads_and_writes_and_unknown_write_prices_stay_unknown() {
        let u = Usage::from_usage(&json!({"input_tokens": 10, "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 6, "output_tokens": 2}))
        .unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.cache_write_tokens),
            (20, 4, 6)
        );
        let mut t = PriceTable::with_defaults();
        // claude-sonnet-4.5: input 3, cached 0.30, writes 3.75, output 15.
        let c = t.cost("claude-sonnet-4.5", &u).unwrap();
        assert!(
            close(c, (10.0 * 3.0 + 4.0 * 0.30 + 6.0 * 3.75 + 2.0 * 15.0) / 1e6),
            "{c}"
        );
        t.apply_json(&json!({"m": {"input": 1.0, "output": 1.0}}))
            .unwrap();
        assert_eq!(
            t.cost("m", &u),
            None,
            "a write without a write price is unknown"
        );
        let no_write = Usage {
            cache_write_tokens: 0,
            prompt_tokens: 14,
            ..u
        };
        assert!(t.cost("m", &no_write).is_some());
        t.apply_json(&json!({"m": {"cache_write_input": 2.0}}))
            .unwrap();
        assert!(close(
            t.cost("m", &u).unwrap(),
            (10.0 + 4.0 + 12.0 + 2.0) / 1e6
        ));
    }

    #[test]
    fn estimate_max_cost_uses_cap_or_fallback() {
        let t = PriceTable::with_defaults();
        let req = json!({"messages": [{"role": "user", "content": "abcd"}], "max_tokens": 1000});
        // 5 prompt tokens * 2 + 1000 * 8.
        let c = t.estimate_max_cost("gpt-4.1", &req, 1).unwrap();
        assert!(close(c, (5.0 * 2.0 + 8000.0) / 1e6));
        let req = json!({"messages": []});
        assert!(close(
            t.estimate_max_cost("gpt-4.1", &req, 100).unwrap(),
            800.0 / 1e6
        ));
        assert_eq!(t.estimate_max_cost("nope", &req, 100), None);
    }
}
