//! The Prometheus exposition after a mix of successes, retries, errors,
//! streams, a cache hit and a budget refusal: the real `promtool check
//! metrics` accepts it, and its numbers match what happened.

use std::io::Write;
use std::process::{Command, Stdio};

use llmpool::Code;
use llmpool_testserver::{Fault, TestServer};
use serde_json::json;

mod support;
use support::loopback::{client, client_for, closed_port, status};
use support::Skip;

const SKIP: Skip = Skip::new("the promtool check", "prometheus: ");
const MARKER: &str = "sk-MARKER-prom-5e1d0c77";

fn chat(model: &str, text: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0})
        .to_string()
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
}

fn promtool(prog: &str, text: &str) -> (bool, String) {
    let mut child = Command::new(prog)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool output");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), msg)
}

#[test]
fn promtool_accepts_the_exposition_after_a_mix_of_calls() {
    let Some(prog) = SKIP.tool(
        "PROMTOOL",
        "promtool",
        "promtool (Debian package prometheus)",
    ) else {
        return;
    };
    let server = TestServer::plain();
    let c = client(
        &server,
        json!({
            "api_key": MARKER,
            "max_retries": 2,
            "cache": {"max_entries": 10},
            "budget": {"limit_usd": 1000, "period": "total", "per_model": {"claude-sonnet-4.5": 0.0000001}},
        }),
    );
    // An empty exposition is valid too.
    let (ok, msg) = promtool(&prog, &c.metrics_prometheus());
    assert!(ok, "promtool rejected the empty exposition: {msg}");

    assert_eq!(c.chat(&chat("gpt-4.1", "one")).code, Code::Ok);
    server.push_fault(status(503, &[]));
    assert_eq!(c.chat(&chat("gpt-4.1", "two")).code, Code::Ok);
    server.push_fault(status(400, &[]));
    let r = c.chat(&chat("deepseek-v3.2", "three"));
    assert_eq!(r.code, Code::HttpStatus, "{}", r.error);
    server.push_fault(Fault::ResetMidBody);
    assert_eq!(c.chat(&chat("deepseek-v3.2", "four")).code, Code::Io);
    let streamed = c.chat_stream(&chat("gpt-4.1", "a stream"), &mut |_, _| true);
    assert_eq!(streamed.code, Code::Ok, "{}", streamed.error);
    // The same request again: answered from the cache.
    let hit = c.chat(&chat("gpt-4.1", "one"));
    assert_eq!(hit.info_json()["cache_hit"], true, "{}", hit.info_json());
    let refused = c.chat(&chat("claude-sonnet-4.5", "too dear"));
    assert_eq!(refused.code, Code::BudgetExceeded, "{}", refused.error);
    let e = c.embeddings(r#"{"model":"gemini-2.5-flash","input":"x"}"#);
    assert_eq!(e.code, Code::Ok, "{}", e.error);
    // A second client whose endpoint refuses connections.
    let down = client_for(
        &format!("http://127.0.0.1:{}/v1", closed_port()),
        json!({"max_retries": 0}),
    );
    assert_eq!(down.chat(&chat("gpt-4.1", "x")).code, Code::Connect);

    let text = c.metrics_prometheus();
    println!("{text}");
    let (ok, msg) = promtool(&prog, &text);
    assert!(ok, "promtool check metrics failed: {msg}\n{text}");
    assert!(msg.trim().is_empty(), "promtool lint output: {msg}");
    let (ok, msg) = promtool(&prog, &down.metrics_prometheus());
    assert!(ok, "promtool: {msg}");
    assert!(!text.contains("MARKER"), "{text}");

    let ep = server.base_url();
    let ok_4_1 = format!(
        "llmpool_requests_total{{gen_ai_request_model=\"gpt-4.1\",endpoint=\"{ep}\",code=\"LLMPOOL_OK\"}}"
    );
    // one, two, the stream and the cache hit.
    assert_eq!(sample(&text, &ok_4_1), 4.0);
    let io = format!(
        "llmpool_errors_total{{gen_ai_request_model=\"deepseek-v3.2\",endpoint=\"{ep}\",code=\"LLMPOOL_IO\"}}"
    );
    assert_eq!(sample(&text, &io), 1.0);
    assert_eq!(
        sample(
            &text,
            "llmpool_errors_total{gen_ai_request_model=\"claude-sonnet-4.5\""
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("llmpool_http_responses_total{{endpoint=\"{ep}\",status=\"503\"}}")
        ),
        1.0
    );
    assert_eq!(sample(&text, "llmpool_retries_total "), 1.0);
    assert!(sample(&text, "llmpool_connections_opened_total ") >= 2.0);
    assert!(sample(&text, "llmpool_connections_reused_total ") >= 1.0);
    assert_eq!(sample(&text, "llmpool_calls_in_flight "), 0.0);
    assert_eq!(
        sample(
            &text,
            "llmpool_time_to_first_token_seconds_count{gen_ai_request_model=\"gpt-4.1\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &text,
            "llmpool_tokens_total{gen_ai_request_model=\"gpt-4.1\",gen_ai_token_type=\"output\"}"
        ) > 0.0
    );
    assert!(
        sample(&text, "gen_ai_client_token_usage_count{gen_ai_request_model=\"gpt-4.1\",gen_ai_token_type=\"input\"}") >= 3.0
    );
    assert!(
        sample(
            &text,
            "llmpool_cost_usd_total{gen_ai_request_model=\"gpt-4.1\"}"
        ) > 0.0
    );
    let dur = format!(
        "gen_ai_client_operation_duration_seconds_count{{gen_ai_request_model=\"gpt-4.1\",endpoint=\"{ep}\",code=\"LLMPOOL_OK\"}}"
    );
    assert_eq!(sample(&text, &dur), 4.0);
}
