//! Cost control through the client over loopback: prices, budgets, the
//! response cache and model routing.

use llmpool::{Client, Code};
use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::{merged, options};

fn client(s: &TestServer, extra: Value) -> Result<Client, llmpool::Error> {
    Client::from_json(Some(&options(s, extra)))
}

fn chat(model: &str, content: &str, extra: Value) -> String {
    merged(
        json!({"model": model, "messages": [{"role": "user", "content": content}]}),
        extra,
    )
    .to_string()
}

#[test]
fn cost_is_reported_per_call_and_per_model() {
    let s = TestServer::plain();
    let c = client(&s, json!({})).unwrap();
    let r = c.chat(&chat("gpt-4.1", "hello there", json!({})));
    assert_eq!(r.code, Code::Ok);
    let u = &r.info_json()["usage"];
    let expected = u["prompt_tokens"].as_f64().unwrap() * 2.0 / 1e6
        + u["completion_tokens"].as_f64().unwrap() * 8.0 / 1e6;
    let got = r.info_json()["cost_usd"].as_f64().unwrap();
    assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    let r = c.chat(&chat("my-private-model", "hello", json!({})));
    assert_eq!(
        r.info_json()["cost_usd"],
        "unknown",
        "an unknown model never costs a silent 0"
    );
    let m = c.metrics();
    assert_eq!(m["cost"]["per_model"]["gpt-4.1"]["calls"], 1);
    assert!(
        m["cost"]["per_model"]["gpt-4.1"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        m["cost"]["per_model"]["my-private-model"]["unpriced_calls"],
        1
    );
    assert!((m["cost"]["total_cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12);
}

#[test]
fn prices_can_be_overridden_and_extended() {
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"prices": {"my-model": {"input": 1.0, "output": 1.0}}}),
    )
    .unwrap();
    let r = c.chat(&chat("my-model", "x", json!({})));
    let total = r.info_json()["usage"]["total_tokens"].as_f64().unwrap();
    assert!((r.info_json()["cost_usd"].as_f64().unwrap() - total / 1e6).abs() < 1e-12);
    let e = client(&s, json!({"prices": {"m": {"input": -1, "output": 1}}})).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.message.contains("prices"), "{}", e.message);
}

#[test]
fn budget_refuses_a_call_that_would_exceed_it_without_sending_it() {
    let s = TestServer::plain();
    // gpt-4.1 output is $8/MTok: max_tokens 100000 alone is $0.80.
    let c = client(&s, json!({"budget": {"limit_usd": 0.5, "period": "month"}})).unwrap();
    let r = c.chat(&chat("gpt-4.1", "hi", json!({"max_tokens": 100000})));
    assert_eq!(r.code, Code::BudgetExceeded, "{}", r.error);
    assert!(
        r.error.contains("monthly budget") && r.error.contains("remains"),
        "{}",
        r.error
    );
    assert_eq!(s.requests(), 0);
    let r = c.chat(&chat("gpt-4.1", "hi", json!({"max_tokens": 100})));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let b = &c.metrics()["cost"]["budget"];
    assert!(b["spent_usd"].as_f64().unwrap() > 0.0, "{b}");
    assert_eq!(b["period"], "month");
}

#[test]
fn budget_without_a_price_refuses_rather_than_guess() {
    let s = TestServer::plain();
    let c = client(&s, json!({"budget": {"limit_usd": 5.0, "period": "day"}})).unwrap();
    let r = c.chat(&chat("mystery-model", "hi", json!({})));
    assert_eq!(r.code, Code::BudgetExceeded);
    assert!(r.error.contains("mystery-model"), "{}", r.error);
    assert_eq!(s.requests(), 0);
}

#[test]
fn ledger_survives_a_restart_and_corruption_is_an_error() {
    let dir = std::env::temp_dir().join(format!("llmpool-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ledger = dir.join("spend.json");
    let _ = std::fs::remove_file(&ledger);
    let s = TestServer::plain();
    let opts = json!({"budget": {"limit_usd": 10.0, "period": "total", "ledger_file": ledger.to_str().unwrap()}});
    let e = client(&s, opts.clone()).unwrap_err();
    assert!(
        e.message.contains("does not exist"),
        "a missing ledger is not a silent reset: {}",
        e.message
    );
    let mut create = opts.clone();
    create["budget"]["ledger_create"] = json!(true);
    let spent = {
        let c = client(&s, create).unwrap();
        for _ in 0..3 {
            assert_eq!(
                c.chat(&chat("gpt-4.1", "hello", json!({"max_tokens": 50})))
                    .code,
                Code::Ok
            );
        }
        c.metrics()["cost"]["budget"]["spent_usd"].as_f64().unwrap()
    };
    assert!(spent > 0.0);
    let c = client(&s, opts.clone()).unwrap();
    let again = c.metrics()["cost"]["budget"]["spent_usd"].as_f64().unwrap();
    assert!((again - spent).abs() < 1e-12, "{again} vs {spent}");
    std::fs::write(&ledger, "{ corrupt").unwrap();
    let e = client(&s, opts).unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument);
    assert!(e.message.contains("spend.json"), "{}", e.message);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cache_hits_never_reach_the_network() {
    let s = TestServer::plain();
    let c = client(&s, json!({"cache": {"max_entries": 100, "ttl_ms": 60000}})).unwrap();
    let a = r#"{"model":"gpt-4.1","temperature":0,"messages":[{"role":"user","content":"same"}]}"#;
    // Same request, other key order and whitespace.
    let b = r#"{ "messages": [ {"content":"same", "role":"user"} ], "temperature": 0, "model": "gpt-4.1" }"#;
    let first = c.chat(a);
    assert_eq!(first.info_json()["cache_hit"], false);
    let second = c.chat(b);
    assert_eq!(second.code, Code::Ok);
    assert_eq!(second.info_json()["cache_hit"], true);
    assert_eq!(second.info_json()["cost_usd"], 0.0);
    assert_eq!(second.text, first.text);
    assert_eq!(s.requests(), 1);
    // Non-deterministic requests are not cached by default; opt-in and opt-out work.
    let warm =
        r#"{"model":"gpt-4.1","temperature":0.7,"messages":[{"role":"user","content":"same"}]}"#;
    c.chat(warm);
    c.chat(warm);
    assert_eq!(s.requests(), 3);
    let opt_in =
        r#"{"model":"gpt-4.1","llmpool_cache":true,"messages":[{"role":"user","content":"x"}]}"#;
    c.chat(opt_in);
    assert_eq!(c.chat(opt_in).info_json()["cache_hit"], true);
    assert_eq!(s.requests(), 4);
    let sent = s.recorded().last().unwrap().json().unwrap();
    assert!(
        sent.get("llmpool_cache").is_none(),
        "the directive is not sent upstream"
    );
    let opt_out = r#"{"model":"gpt-4.1","temperature":0,"llmpool_cache":false,"messages":[{"role":"user","content":"same"}]}"#;
    assert_eq!(c.chat(opt_out).info_json()["cache_hit"], false);
    assert_eq!(s.requests(), 5);
    let m = c.metrics();
    assert_eq!(m["cost"]["cache"]["hits"], 2);
}

#[test]
fn routing_picks_a_model_for_auto() {
    let s = TestServer::plain();
    let routing = llmpool::cost::Router::example_config();
    let c = client(&s, json!({ "routing": routing })).unwrap();
    let r = c.chat(&chat("auto", "What is 2+2?", json!({})));
    assert_eq!(r.code, Code::Ok);
    assert_eq!(r.info_json()["model"], "deepseek-v3.2");
    assert_eq!(r.info_json()["routed_from"], "auto");
    let r = c.chat(&chat(
        "auto",
        "Prove step by step that sqrt(2) is irrational",
        json!({}),
    ));
    assert_eq!(r.info_json()["model"], "gpt-4.1");
    let sent: Vec<String> = s
        .recorded()
        .iter()
        .map(|r| r.json().unwrap()["model"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, vec!["deepseek-v3.2", "gpt-4.1"]);
    let r = c.chat(&chat(
        "gpt-4.1",
        "no routing for explicit models",
        json!({}),
    ));
    assert!(r.info_json().get("routed_from").is_none());
}
