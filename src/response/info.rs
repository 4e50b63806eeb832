//! The typed record of one call (`llmpool_response_info`'s fields).
//!
//! Every layer writes its own facts here while the call runs; Prometheus,
//! the log and cost settlement read them as fields. The record becomes JSON
//! once, in [`Info::to_json`], when the C API (or a test) asks for it.

use serde_json::{json, Map, Value};

pub use crate::assemble::BadArguments;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    pub attempts: u32,
    pub retries: u32,
    pub reconnects_after_idle_close: u32,
    pub connection_reused: bool,
    pub connections_opened: u32,
    pub latency_ms: f64,
    /// From the answer's `x-request-id`.
    pub request_id: Option<String>,
    /// The answer's `model`, else the one the request asked for.
    pub model: Option<String>,
    /// The answer's `usage` object as the gateway sent it.
    pub usage: Option<Value>,
    pub finish_reason: Option<String>,
    pub timings: Timings,
    /// Set once an endpoint was chosen (not for a call refused unsent).
    pub endpoint: Option<Endpoint>,
    /// Set by cost settlement (cost-managed calls only).
    pub cost: Option<Cost>,
    pub cache_hit: Option<bool>,
    pub route: Option<Route>,
    pub stream: Option<StreamFacts>,
    /// An async call's id.
    pub call_id: Option<u64>,
    /// Connections a warm-up opened.
    pub opened: Option<usize>,
    pub warnings: Vec<String>,
    /// Tool calls of the answer whose arguments are not valid JSON.
    pub bad_arguments: Vec<BadArguments>,
}

/// `info.timings_ms`: the phases of the last attempt (dns, connect and tls
/// are 0 when it used a pooled connection), each a duration in ms, so their
/// sum is at most `total`, the whole call (retries and backoff included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub dns: f64,
    pub connect: f64,
    pub tls: f64,
    pub ttfb: f64,
    pub total: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: String,
    pub failovers: u32,
    /// The proxy used, as `host:port` (never its credentials).
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cost {
    Usd(f64),
    /// No usage reported, or the model has no price.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The alias the request asked for.
    pub from: String,
    pub rule: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamFacts {
    /// From the call's start to the first non-empty delta.
    pub ttft_ms: Option<f64>,
    pub chunks: u64,
    /// The data of a mid-stream error event, as sent.
    pub error: Option<String>,
}

/// Token counts read from `usage`, in either API's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub total: Option<u64>,
}

impl Info {
    /// Only the duration, for a call that got no HTTP answer.
    pub fn elapsed(latency_ms: f64) -> Info {
        Info {
            latency_ms,
            timings: Timings {
                total: latency_ms,
                ..Timings::default()
            },
            ..Info::default()
        }
    }

    /// The token counts of `usage`; `total` falls back to input + output.
    pub fn tokens(&self) -> Tokens {
        let Some(u) = self.usage.as_ref() else {
            return Tokens::default();
        };
        let n = |a: &str, b: &str| u[a].as_u64().or_else(|| u[b].as_u64());
        let input = n("prompt_tokens", "input_tokens");
        let output = n("completion_tokens", "output_tokens");
        let total = u["total_tokens"].as_u64().or_else(|| {
            let p = u["prompt_tokens"].as_u64()?;
            Some(p + u["completion_tokens"].as_u64().unwrap_or(0))
        });
        Tokens {
            input,
            output,
            total,
        }
    }

    /// The JSON object of `llmpool_response_info`; `status` is the
    /// response's HTTP status.
    pub fn to_json(&self, status: u16) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("attempts", json!(self.attempts));
        put("retries", json!(self.retries));
        put(
            "reconnects_after_idle_close",
            json!(self.reconnects_after_idle_close),
        );
        put("connection_reused", json!(self.connection_reused));
        put("connections_opened", json!(self.connections_opened));
        put("latency_ms", json!(self.latency_ms));
        put("status", json!(status));
        put("request_id", json!(self.request_id));
        put("model", json!(self.model));
        put("usage", self.usage.clone().unwrap_or(Value::Null));
        put("finish_reason", json!(self.finish_reason));
        let t = &self.timings;
        put(
            "timings_ms",
            json!({"dns": t.dns, "connect": t.connect, "tls": t.tls, "ttfb": t.ttfb, "total": t.total}),
        );
        if let Some(e) = &self.endpoint {
            put("endpoint", json!(e.url));
            put("failovers", json!(e.failovers));
            put("proxy", json!(e.proxy));
        }
        if let Some(c) = self.cost {
            put(
                "cost_usd",
                match c {
                    Cost::Usd(x) => json!(x),
                    Cost::Unknown => json!("unknown"),
                },
            );
        }
        if let Some(h) = self.cache_hit {
            put("cache_hit", json!(h));
        }
        if let Some(r) = &self.route {
            put("routed_from", json!(r.from));
            put("route_rule", json!(r.rule));
        }
        if let Some(s) = &self.stream {
            put("ttft_ms", json!(s.ttft_ms));
            put("chunks", json!(s.chunks));
            if let Some(raw) = &s.error {
                let v = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()));
                put("stream_error", v);
            }
        }
        if let Some(id) = self.call_id {
            put("call_id", json!(id));
        }
        if let Some(n) = self.opened {
            put("opened", json!(n));
        }
        if !self.warnings.is_empty() {
            put("warnings", json!(self.warnings));
        }
        if !self.bad_arguments.is_empty() {
            let list: Vec<Value> = self
                .bad_arguments
                .iter()
                .map(|b| json!({"at": b.at, "name": b.name, "error": b.error}))
                .collect();
            put("invalid_tool_arguments", Value::Array(list));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_kind_has_the_same_base_fields() {
        let base = [
            "attempts",
            "retries",
            "reconnects_after_idle_close",
            "connection_reused",
            "connections_opened",
            "latency_ms",
            "status",
            "request_id",
            "model",
            "usage",
            "finish_reason",
            "timings_ms",
        ];
        let v = Info::elapsed(3.5).to_json(0);
        for k in base {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(v["timings_ms"]["total"], 3.5);
        for k in ["endpoint", "cost_usd", "cache_hit", "chunks", "call_id"] {
            assert!(v.get(k).is_none(), "{k} present in {v}");
        }
    }

    #[test]
    fn optional_facts_appear_when_set() {
        let i = Info {
            endpoint: Some(Endpoint {
                url: "http://e/v1".into(),
                failovers: 1,
                proxy: None,
            }),
            cost: Some(Cost::Unknown),
            route: Some(Route {
                from: "auto".into(),
                rule: "default".into(),
            }),
            stream: Some(StreamFacts {
                ttft_ms: None,
                chunks: 2,
                error: Some(r#"{"error":{"message":"x"}}"#.into()),
            }),
            warnings: vec!["w".into()],
            ..Info::default()
        };
        let v = i.to_json(200);
        assert_eq!(v["endpoint"], "http://e/v1");
        assert_eq!(v["failovers"], 1);
        assert!(v["proxy"].is_null() && v.get("proxy").is_some());
        assert_eq!(v["cost_usd"], "unknown");
        assert_eq!(v["routed_from"], "auto");
        assert_eq!(v["chunks"], 2);
        assert!(v["ttft_ms"].is_null() && v.get("ttft_ms").is_some());
        assert_eq!(v["stream_error"]["error"]["message"], "x");
        assert_eq!(v["warnings"], json!(["w"]));
        assert_eq!(v["status"], 200);
    }

    #[test]
    fn tokens_read_both_apis() {
        let mut i = Info {
            usage: Some(json!({"prompt_tokens": 3, "completion_tokens": 2})),
            ..Info::default()
        };
        assert_eq!(
            i.tokens(),
            Tokens {
                input: Some(3),
                output: Some(2),
                total: Some(5)
            }
        );
        i.usage = Some(json!({"input_tokens": 4, "output_tokens": 1}));
        assert_eq!(i.tokens().input, Some(4));
        assert_eq!(i.tokens().output, Some(1));
        assert_eq!(i.tokens().total, None);
    }
}
