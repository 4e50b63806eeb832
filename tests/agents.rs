//! What agents are built on, over loopback against the test server: one
//! assembled answer from every stream (tool calls, reasoning, refusals,
//! `n` choices) with a fixture per gateway quirk, typed deltas, and the
//! Responses and Messages APIs (streamed or not, blocking or async).

use std::sync::mpsc;
use std::time::Duration;

use llmpool::assemble::{Api, DeltaKind};
use llmpool::{Client, Code, Response};
use llmpool_testserver::TestServer;
use serde_json::{json, Value};

mod support;
use support::loopback::client;

/// A streamed chat request for the fixture `name` (with `extra` fields).
fn fixture(name: &str, extra: Value) -> String {
    let mut v = json!({"model": "test-model", "messages": [{"role": "user", "content": "go"}],
                       "x_test_fixture": name});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v.to_string()
}

/// Streams `req` on `api`, with every typed delta as (kind, choice,
/// call index, id, name, text).
type Seen = Vec<(DeltaKind, u32, u32, Option<String>, Option<String>, String)>;

fn deltas(c: &Client, api: Api, req: &str) -> (Response, Seen) {
    let mut seen = Vec::new();
    let r = c.stream_deltas(api, req, &mut |d| {
        seen.push((
            d.kind,
            d.choice,
            d.call_index,
            d.id.map(str::to_string),
            d.name.map(str::to_string),
            d.text.to_string(),
        ));
        true
    });
    (r, seen)
}

fn completion(r: &Response) -> Value {
    serde_json::from_str(&r.completion_json().expect("a completion")).expect("JSON")
}

/// (id, name, arguments) of choice 0's tool calls.
fn calls(r: &Response) -> Vec<(String, String, Value)> {
    completion(r)["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls")
        .iter()
        .map(|c| {
            let args = c["function"]["arguments"].as_str().unwrap();
            (
                c["id"].as_str().unwrap().to_string(),
                c["function"]["name"].as_str().unwrap().to_string(),
                serde_json::from_str(args).unwrap_or(Value::String(args.to_string())),
            )
        })
        .collect()
}

#[test]
fn a_streamed_tool_call_is_assembled_and_its_fragments_arrive_typed() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let (r, seen) = deltas(&c, Api::Chat, &fixture("tool_call", json!({})));
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(
        calls(&r),
        vec![(
            "call_1".into(),
            "get_weather".into(),
            json!({"city": "Paris"})
        )]
    );
    let done = completion(&r);
    assert_eq!(done["object"], "chat.completion");
    assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(done["choices"][0]["message"]["content"], Value::Null);
    assert_eq!(done["usage"]["total_tokens"], 19);
    assert_eq!(r.info.finish_reason.as_deref(), Some("tool_calls"));
    let tool: Vec<_> = seen.iter().filter(|d| d.0 == DeltaKind::ToolCall).collect();
    assert_eq!(tool.len(), 3);
    assert!(tool
        .iter()
        .all(|d| d.3.as_deref() == Some("call_1") && d.4.as_deref() == Some("get_weather")));
    let args: String = tool.iter().map(|d| d.5.as_str()).collect();
    assert_eq!(args, "{\"city\": \"Paris\"}");
    assert!(r.info_json().get("invalid_tool_arguments").is_none());
}

#[test]
fn each_gateway_quirk_has_a_defined_answer() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let run = |name: &str| {
        let (r, _) = deltas(&c, Api::Chat, &fixture(name, json!({})));
        assert_eq!(r.code, Code::Ok, "{name}: {}", r.error);
        r
    };
    // No `index`: a new id starts a new call, else the open one goes on.
    assert_eq!(
        calls(&run("tool_calls_no_index")),
        vec![
            (
                "call_a".into(),
                "get_weather".into(),
                json!({"city": "Paris"})
            ),
            ("call_b".into(), "get_time".into(), json!({"tz": "CET"}))
        ]
    );
    // Distinct ids at the same index are distinct calls, not `{..}{..}`.
    let p = calls(&run("parallel_same_index"));
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[0].2.clone(), p[1].2.clone()),
        (json!({"city": "Paris"}), json!({"city": "Rome"}))
    );
    // A name repeated whole is not doubled; a split name joins.
    assert_eq!(calls(&run("name_repeated"))[0].1, "get_weather");
    assert_eq!(calls(&run("name_split"))[0].1, "get_weather");
    // Empty and null ids later on create no phantom call.
    assert_eq!(
        calls(&run("empty_ids")),
        vec![(
            "call_1".into(),
            "get_weather".into(),
            json!({"city": "Lima"})
        )]
    );
    // Usage on every chunk: the last one, never a sum.
    let u = run("usage_every_chunk");
    assert_eq!(u.info.usage.as_ref().unwrap()["completion_tokens"], 3);
    assert_eq!(u.text, "w1 w2 w3 ");
    // Reasoning under the names sent.
    let m = completion(&run("reasoning"))["choices"][0]["message"].clone();
    assert_eq!(m["reasoning_content"], "Let me think.");
    assert_eq!(m["reasoning"], "r1");
    assert_eq!(m["content"], "Answer.");
    // Provider fields to send back unchanged.
    let sig = completion(&run("thought_signature"));
    assert_eq!(
        sig["choices"][0]["message"]["tool_calls"][0]["extra_content"]["google"]
            ["thought_signature"],
        "c2lnbmF0dXJl"
    );
    // A changing chunk id is no error.
    let id = run("changing_id");
    assert_eq!(id.text, "Hello");
    assert_eq!(completion(&id)["id"], "chatcmpl-two");
    // A refusal.
    assert_eq!(
        completion(&run("refusal"))["choices"][0]["message"]["refusal"],
        "I can't help with that."
    );
}

#[test]
fn two_choices_interleaved_give_choice_zero_as_the_text() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let mut events = 0;
    let r = c.chat_stream(&fixture("two_choices", json!({})), &mut |_, _| {
        events += 1;
        true
    });
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "A1 A2");
    let done = completion(&r);
    assert_eq!(done["choices"][0]["index"], 0);
    assert_eq!(done["choices"][1]["message"]["content"], "B1 B2");
    assert_eq!(events, 3);
}

#[test]
fn an_error_inside_a_200_stream_keeps_what_arrived() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let (r, _) = deltas(&c, Api::Chat, &fixture("error_in_200", json!({})));
    assert_eq!(r.code, Code::Protocol);
    assert_eq!(r.status, 200);
    assert!(r.error.contains("Provider returned error"), "{}", r.error);
    assert_eq!(r.text, "Partial ");
    let done = completion(&r);
    assert_eq!(done["choices"][0]["message"]["content"], "Partial ");
    assert_eq!(done["choices"][0]["finish_reason"], Value::Null);
}

#[test]
fn a_character_split_across_reads_arrives_whole() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let req = fixture(
        "multibyte",
        json!({"x_test_split_multibyte": true, "x_test_stream_delay_ms": 5}),
    );
    let (r, seen) = deltas(&c, Api::Chat, &req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "héllo wörld ✓");
    assert_eq!(
        seen.iter().map(|d| d.5.as_str()).collect::<Vec<_>>(),
        vec!["héllo ", "wörld ✓"]
    );
}

#[test]
fn tool_arguments_that_are_not_json_are_reported() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let (r, _) = deltas(&c, Api::Chat, &fixture("bad_arguments", json!({})));
    assert_eq!(r.code, Code::Ok);
    let bad = &r.info_json()["invalid_tool_arguments"];
    assert_eq!(bad[0]["at"], "choices[0].message.tool_calls[0]");
    assert_eq!(bad[0]["name"], "get_weather");
    assert!(
        bad[0]["error"].as_str().unwrap().contains("column"),
        "{bad}"
    );
}

#[test]
fn a_stream_aborted_by_its_callback_keeps_the_partial_completion() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let mut n = 0;
    let r = c.stream_deltas(Api::Chat, &fixture("tool_call", json!({})), &mut |_| {
        n += 1;
        n < 2
    });
    assert_eq!(r.code, Code::Cancelled);
    let done = completion(&r);
    assert_eq!(
        done["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(done["choices"][0]["finish_reason"], Value::Null);
}

#[test]
fn a_non_streamed_chat_completion_is_its_body() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let r = c.chat(r#"{"model":"test-model","messages":[{"role":"user","content":"hi"}]}"#);
    assert!(r.is_ok());
    assert_eq!(r.completion_json().unwrap().as_bytes(), &r.body[..]);
    let e = c.embeddings(r#"{"model":"m","input":"x"}"#);
    assert!(e.is_ok());
    assert_eq!(
        e.completion_json(),
        None,
        "an embeddings answer is no completion"
    );
}

#[test]
fn the_responses_api_streamed_and_not_with_cost() {
    let s = TestServer::plain();
    let c = client(
        &s,
        json!({"prices": {"test-model": {"input": 1.0, "output": 2.0, "cached_input": 0.5}}}),
    );
    let r = c.responses(r#"{"model":"test-model","input":"hello there"}"#);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "Echo: hello there");
    assert_eq!(r.info.finish_reason.as_deref(), Some("completed"));
    // 9 input (4 cached), 5 output.
    let cost = r.info_json()["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (5.0 * 1.0 + 4.0 * 0.5 + 5.0 * 2.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(completion(&r)["object"], "response");

    let req = r#"{"model":"test-model","input":"hello there","x_test_tool":true}"#;
    let (r, seen) = deltas(&c, Api::Responses, req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "Echo: hello there");
    let done = completion(&r);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][1]["arguments"], "{\"city\": \"Paris\"}");
    let text: String = seen
        .iter()
        .filter(|d| d.0 == DeltaKind::Content)
        .map(|d| d.5.as_str())
        .collect();
    assert_eq!(text, "Echo: hello there");
    let tool: Vec<_> = seen.iter().filter(|d| d.0 == DeltaKind::ToolCall).collect();
    assert_eq!(tool.len(), 2);
    assert_eq!(
        (tool[0].2, tool[0].3.as_deref(), tool[0].4.as_deref()),
        (1, Some("call_1"), Some("get_weather"))
    );
    assert!(r.info_json()["cost_usd"].as_f64().unwrap() > 0.0);
    // The events callback sees the output_text deltas as `delta`.
    let mut joined = String::new();
    let r = c.stream_events(Api::Responses, req, &mut |d, e| {
        assert!(e.starts_with('{'));
        joined.push_str(d);
        true
    });
    assert!(r.is_ok());
    assert_eq!(joined, "Echo: hello there");
}

#[test]
fn the_messages_api_sends_its_headers_and_assembles_tool_use() {
    let s = TestServer::plain();
    let c = client(&s, json!({"api_key": "sk-ant-test"}));
    let r = c.messages(r#"{"model":"claude-sonnet-4.5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "Echo: hi");
    assert_eq!(r.info.finish_reason.as_deref(), Some("end_turn"));
    let rec = s.recorded();
    let last = rec.last().unwrap();
    assert_eq!(last.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(last.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(last.header("authorization"), None);
    // 9 input + 2 cache reads + 3 cache writes, 5 output, at the defaults.
    let cost = r.info_json()["cost_usd"].as_f64().unwrap();
    let want = (9.0 * 3.0 + 2.0 * 0.30 + 3.0 * 3.75 + 5.0 * 15.0) / 1e6;
    assert!((cost - want).abs() < 1e-12, "{cost} vs {want}");

    let req = r#"{"model":"claude-sonnet-4.5","max_tokens":64,"messages":[{"role":"user","content":"hi"}],"x_test_tool":true}"#;
    let (r, seen) = deltas(&c, Api::Messages, req);
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    assert_eq!(r.text, "Echo: hi");
    let done = completion(&r);
    assert_eq!(done["content"][1]["input"], json!({"city": "Paris"}));
    assert_eq!(done["stop_reason"], "tool_use");
    assert_eq!(done["usage"]["output_tokens"], 5);
    assert!(seen
        .iter()
        .any(|d| d.0 == DeltaKind::ToolCall && d.4.as_deref() == Some("get_weather")));

    let over = r#"{"model":"claude-sonnet-4.5","max_tokens":64,"messages":[{"role":"user","content":"hi"}],"x_test_overloaded":true}"#;
    let (r, _) = deltas(&c, Api::Messages, over);
    assert_eq!(r.code, Code::Protocol);
    assert!(r.error.contains("Overloaded"), "{}", r.error);
    assert_eq!(r.text, "Echo: hi");

    let bearer = client(
        &s,
        json!({"api_key": "sk-relay", "anthropic_auth": "bearer", "anthropic_version": "2024-01-01"}),
    );
    assert!(bearer.messages(r#"{"model":"m","messages":[]}"#).is_ok());
    let rec = s.recorded();
    let last = rec.last().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer sk-relay"));
    assert_eq!(last.header("x-api-key"), None);
    assert_eq!(last.header("anthropic-version"), Some("2024-01-01"));
    let bad = Client::from_json(Some(r#"{"anthropic_auth":"cookie"}"#)).unwrap_err();
    assert!(bad.message.contains("anthropic_auth"), "{}", bad.message);
}

#[test]
fn a_gateway_that_ignores_stream_gives_the_whole_answer_as_one_delta() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    for (api, req) in [
        (
            Api::Chat,
            r#"{"model":"m","messages":[{"role":"user","content":"whole"}],"x_test_ignore_stream":true}"#,
        ),
        (
            Api::Responses,
            r#"{"model":"m","input":"whole","x_test_ignore_stream":true}"#,
        ),
        (
            Api::Messages,
            r#"{"model":"m","messages":[{"role":"user","content":"whole"}],"x_test_ignore_stream":true}"#,
        ),
    ] {
        let (r, seen) = deltas(&c, api, req);
        assert_eq!(r.code, Code::Ok, "{api:?}: {}", r.error);
        assert_eq!(r.text, "Echo: whole", "{api:?}");
        assert_eq!(seen.len(), 1, "{api:?}: {seen:?}");
        assert_eq!(
            (seen[0].0, seen[0].5.as_str()),
            (DeltaKind::Content, "Echo: whole")
        );
        assert!(r.info.usage.is_some(), "{api:?}");
        assert!(r.info.finish_reason.is_some(), "{api:?}");
        let done = completion(&r);
        assert!(
            done.is_object() && !done.as_object().unwrap().is_empty(),
            "{api:?}: {done}"
        );
    }
}

#[test]
fn a_cached_responses_or_messages_answer_reads_like_the_first() {
    let s = TestServer::plain();
    let c = client(&s, json!({"cache": {"max_entries": 8, "default_on": true}}));
    for (call, req) in [
        (
            Client::responses as fn(&Client, &str) -> Response,
            r#"{"model":"m","input":"once","temperature":0}"#,
        ),
        (
            Client::messages,
            r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"once"}]}"#,
        ),
    ] {
        let first = call(&c, req);
        let hit = call(&c, req);
        assert_eq!(hit.info.cache_hit, Some(true), "{}", hit.error);
        assert_eq!(hit.text, "Echo: once");
        assert_eq!(hit.text, first.text);
        assert_eq!(hit.info.finish_reason, first.info.finish_reason);
        assert_eq!(hit.completion_json(), first.completion_json());
    }
    assert_eq!(s.requests_to("/responses") + s.requests_to("/messages"), 2);
}

#[test]
fn typed_deltas_and_the_new_apis_without_blocking() {
    let s = TestServer::plain();
    let c = client(&s, json!({}));
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let (dtx, drx) = mpsc::channel();
    c.stream_deltas_async(
        Api::Chat,
        &fixture("reasoning", json!({})),
        Box::new(move |d| {
            dtx.send((d.kind, d.text.to_string())).unwrap();
            true
        }),
        Box::new(move |r| tx.send(r).unwrap()),
    )
    .unwrap();
    let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(r.code, Code::Ok, "{}", r.error);
    let kinds: Vec<_> = drx.try_iter().collect();
    assert_eq!(kinds[0], (DeltaKind::Reasoning, "Let me ".to_string()));
    assert!(kinds.contains(&(DeltaKind::Content, "Answer.".to_string())));
    c.messages_async(
        r#"{"model":"m","messages":[{"role":"user","content":"yo"}]}"#,
        Box::new(move |r| tx2.send(r).unwrap()),
    )
    .unwrap();
    let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(r.text, "Echo: yo");
    assert!(r.info.call_id.is_some());
}
