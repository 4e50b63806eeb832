//! Prometheus text exposition (format 0.0.4) of a client's metrics.
//!
//! Names follow Prometheus conventions (`_total` counters, base unit
//! seconds) and, where they name the same thing, OpenTelemetry's GenAI
//! semantic conventions: `gen_ai_client_operation_duration_seconds`,
//! `gen_ai_client_token_usage`, the labels `gen_ai_request_model` and
//! `gen_ai_token_type`, and their recommended histogram buckets.
//!
//! [`Labelled`] holds the per-label series; the unlabelled counters come
//! from [`crate::metrics::Metrics`] and the connection stats.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::response::{Cost, Info, Tokens};

/// OTel's advice for `gen_ai.client.operation.duration` (seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// OTel's advice for time to first token (seconds).
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// OTel's advice for `gen_ai.client.token.usage` (tokens).
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Distinct model names kept as labels; more are counted as `other`, so a
/// caller sending arbitrary model strings cannot grow the exposition
/// without bound.
const MAX_MODELS: usize = 64;

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

type CallKey = (String, String, &'static str);

/// Series with labels, updated once per finished call and per answer.
#[derive(Debug, Default)]
pub struct Labelled {
    /// (model, endpoint, code) -> calls and their duration.
    calls: BTreeMap<CallKey, Histogram>,
    /// (endpoint, status) -> HTTP answers (every attempt).
    answers: BTreeMap<(String, u16), u64>,
    /// (model, "input"|"output") -> tokens per call.
    tokens: BTreeMap<(String, &'static str), Histogram>,
    cost: BTreeMap<String, f64>,
    ttft: BTreeMap<String, Histogram>,
    models: Vec<String>,
}

/// What one finished call contributes.
pub struct CallRecord<'a> {
    pub model: Option<&'a str>,
    pub endpoint: &'a str,
    pub code: &'static str,
    pub seconds: f64,
    /// The call's record (usage, cost, time to first token).
    pub info: &'a Info,
}

impl Labelled {
    fn model(&mut self, m: Option<&str>) -> String {
        let m = m.unwrap_or("");
        if self.models.iter().any(|k| k == m) {
            return m.to_string();
        }
        if self.models.len() < MAX_MODELS {
            self.models.push(m.to_string());
            return m.to_string();
        }
        "other".to_string()
    }

    pub fn answer(&mut self, endpoint: &str, status: u16) {
        *self
            .answers
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
    }

    pub fn call(&mut self, r: CallRecord<'_>) {
        let model = self.model(r.model);
        self.calls
            .entry((model.clone(), r.endpoint.to_string(), r.code))
            .or_default()
            .observe(DURATION_BUCKETS, r.seconds);
        let Tokens { input, output, .. } = r.info.tokens();
        // A cache hit used no tokens at the server.
        let hit = r.info.cache_hit == Some(true);
        for (kind, n) in [("input", input), ("output", output)] {
            let n = n.filter(|_| !hit);
            if let Some(n) = n {
                self.tokens
                    .entry((model.clone(), kind))
                    .or_default()
                    .observe(TOKEN_BUCKETS, n as f64);
            }
        }
        if let Some(Cost::Usd(c)) = r.info.cost {
            if c.is_finite() {
                *self.cost.entry(model.clone()).or_default() += c;
            }
        }
        if let Some(ms) = r.info.stream.as_ref().and_then(|s| s.ttft_ms) {
            self.ttft
                .entry(model)
                .or_default()
                .observe(TTFT_BUCKETS, ms / 1000.0);
        }
    }
}

/// The unlabelled values.
pub struct Totals {
    pub retries: u64,
    pub reconnects: u64,
    pub key_refreshes: u64,
    pub connections_opened: u64,
    pub connections_reused: u64,
    pub connections_open: u64,
    pub in_flight: u64,
}

/// Escapes a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, bounds: &[f64], h: &Histogram) {
    let mut cum = 0;
    for (i, b) in bounds.iter().chain([f64::INFINITY].iter()).enumerate() {
        cum += h.counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {cum}", num(*b));
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", num(h.sum));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// The exposition text.
pub fn render(l: &Labelled, t: &Totals) -> String {
    let mut o = String::with_capacity(4096);
    head(
        &mut o,
        "llmpool_requests_total",
        "counter",
        "Calls finished, by requested model, endpoint and llmpool result code.",
    );
    for ((m, e, c), h) in &l.calls {
        let _ = writeln!(
            o,
            "llmpool_requests_total{{gen_ai_request_model=\"{}\",endpoint=\"{}\",code=\"{c}\"}} {}",
            esc(m),
            esc(e),
            h.count
        );
    }
    head(
        &mut o,
        "llmpool_errors_total",
        "counter",
        "Calls that did not succeed, by requested model, endpoint and llmpool result code.",
    );
    for ((m, e, c), h) in l.calls.iter().filter(|((_, _, c), _)| *c != "LLMPOOL_OK") {
        let _ = writeln!(
            o,
            "llmpool_errors_total{{gen_ai_request_model=\"{}\",endpoint=\"{}\",code=\"{c}\"}} {}",
            esc(m),
            esc(e),
            h.count
        );
    }
    head(
        &mut o,
        "llmpool_http_responses_total",
        "counter",
        "HTTP answers received (every attempt, retried or not), by endpoint and status.",
    );
    for ((e, s), n) in &l.answers {
        let _ = writeln!(
            o,
            "llmpool_http_responses_total{{endpoint=\"{}\",status=\"{s}\"}} {n}",
            esc(e)
        );
    }
    let plain = [
        (
            "llmpool_retries_total",
            "counter",
            "Extra attempts made after a retryable failure.",
            t.retries,
        ),
        (
            "llmpool_reconnects_after_idle_close_total",
            "counter",
            "Silent resends after a pooled connection was found closed by the server.",
            t.reconnects,
        ),
        (
            "llmpool_key_refreshes_total",
            "counter",
            "New API keys fetched from the key provider after a 401.",
            t.key_refreshes,
        ),
        (
            "llmpool_connections_opened_total",
            "counter",
            "Connections opened (TCP, with TLS for https).",
            t.connections_opened,
        ),
        (
            "llmpool_connections_reused_total",
            "counter",
            "Attempts served by an already open pooled connection.",
            t.connections_reused,
        ),
        (
            "llmpool_connections_open",
            "gauge",
            "Connections open now, pooled or in use.",
            t.connections_open,
        ),
        (
            "llmpool_calls_in_flight",
            "gauge",
            "Calls running now.",
            t.in_flight,
        ),
    ];
    for (name, kind, help, v) in plain {
        head(&mut o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }
    head(
        &mut o,
        "gen_ai_client_operation_duration_seconds",
        "histogram",
        "Duration of calls, retries included, by requested model, endpoint and llmpool result code.",
    );
    for ((m, e, c), h) in &l.calls {
        let labels = format!(
            "gen_ai_request_model=\"{}\",endpoint=\"{}\",code=\"{c}\"",
            esc(m),
            esc(e)
        );
        histogram(
            &mut o,
            "gen_ai_client_operation_duration_seconds",
            &labels,
            DURATION_BUCKETS,
            h,
        );
    }
    head(
        &mut o,
        "llmpool_time_to_first_token_seconds",
        "histogram",
        "Time from the start of a streamed call to its first token, by requested model.",
    );
    for (m, h) in &l.ttft {
        let labels = format!("gen_ai_request_model=\"{}\"", esc(m));
        histogram(
            &mut o,
            "llmpool_time_to_first_token_seconds",
            &labels,
            TTFT_BUCKETS,
            h,
        );
    }
    head(
        &mut o,
        "gen_ai_client_token_usage",
        "histogram",
        "Tokens used per call as reported by the server, by requested model and token type (input, output).",
    );
    for ((m, kind), h) in &l.tokens {
        let labels = format!(
            "gen_ai_request_model=\"{}\",gen_ai_token_type=\"{kind}\"",
            esc(m)
        );
        histogram(
            &mut o,
            "gen_ai_client_token_usage",
            &labels,
            TOKEN_BUCKETS,
            h,
        );
    }
    head(
        &mut o,
        "llmpool_tokens_total",
        "counter",
        "Tokens used as reported by the server, by requested model and token type (input, output).",
    );
    for ((m, kind), h) in &l.tokens {
        let _ = writeln!(
            o,
            "llmpool_tokens_total{{gen_ai_request_model=\"{}\",gen_ai_token_type=\"{kind}\"}} {}",
            esc(m),
            num(h.sum)
        );
    }
    head(
        &mut o,
        "llmpool_cost_usd_total",
        "counter",
        "Cost of calls in US dollars, from the price table, by requested model.",
    );
    for (m, c) in &l.cost {
        let _ = writeln!(
            o,
            "llmpool_cost_usd_total{{gen_ai_request_model=\"{}\"}} {}",
            esc(m),
            num(*c)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let mut l = Labelled::default();
        let info = Info {
            usage: Some(json!({"prompt_tokens": 10, "completion_tokens": 3})),
            cost: Some(Cost::Usd(0.5)),
            stream: Some(crate::response::StreamFacts {
                ttft_ms: Some(30.0),
                ..Default::default()
            }),
            ..Info::default()
        };
        for s in [0.005, 0.03, 100.0] {
            l.call(CallRecord {
                model: Some("m\"x"),
                endpoint: "http://h/v1",
                code: "LLMPOOL_OK",
                seconds: s,
                info: &info,
            });
        }
        l.answer("http://h/v1", 200);
        let t = Totals {
            retries: 1,
            reconnects: 0,
            key_refreshes: 0,
            connections_opened: 2,
            connections_reused: 1,
            connections_open: 1,
            in_flight: 0,
        };
        let text = render(&l, &t);
        let line = |p: &str| {
            text.lines()
                .find(|l| l.starts_with(p))
                .unwrap_or_else(|| panic!("{p} in\n{text}"))
                .to_string()
        };
        let lb = r#"gen_ai_request_model="m\"x",endpoint="http://h/v1",code="LLMPOOL_OK""#;
        assert_eq!(
            line(&format!(
                "gen_ai_client_operation_duration_seconds_bucket{{{lb},le=\"0.01\"}}"
            )),
            format!("gen_ai_client_operation_duration_seconds_bucket{{{lb},le=\"0.01\"}} 1")
        );
        assert!(line(&format!(
            "gen_ai_client_operation_duration_seconds_bucket{{{lb},le=\"0.04\"}}"
        ))
        .ends_with(" 2"));
        assert!(line(&format!(
            "gen_ai_client_operation_duration_seconds_bucket{{{lb},le=\"+Inf\"}}"
        ))
        .ends_with(" 3"));
        assert!(line(
            "llmpool_tokens_total{gen_ai_request_model=\"m\\\"x\",gen_ai_token_type=\"input\"}"
        )
        .ends_with(" 30"));
        assert!(line("llmpool_cost_usd_total").ends_with(" 1.5"));
        assert!(line("llmpool_retries_total ").ends_with(" 1"));
        assert!(line("llmpool_http_responses_total{").ends_with(" 1"));
    }

    #[test]
    fn model_labels_are_bounded() {
        let mut l = Labelled::default();
        for i in 0..(MAX_MODELS + 10) {
            let m = format!("m{i}");
            l.call(CallRecord {
                model: Some(&m),
                endpoint: "e",
                code: "LLMPOOL_OK",
                seconds: 0.1,
                info: &Info::default(),
            });
        }
        assert_eq!(l.calls.len(), MAX_MODELS + 1);
        assert!(l.calls.keys().any(|k| k.0 == "other"));
    }
}
