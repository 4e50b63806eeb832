//! Streams as real gateways send them, one named fixture per quirk, for
//! `POST /v1/chat/completions` with `"stream": true` and
//! `"x_test_fixture": NAME`; and the Responses and Messages APIs
//! (`POST /v1/responses`, `POST /v1/messages`), streamed or not.
//!
//! `"x_test_split_multibyte": true` sends every event in two writes split
//! inside its first multi-byte character (with `x_test_stream_delay_ms`
//! between them, so the client reads them apart).

use serde_json::{json, Value};

/// One SSE event: its `event:` name (if any) and its data.
pub(crate) type Event = (Option<&'static str>, String);

fn chunk(id: &str, choices: Value) -> String {
    json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
           "model": "test-model", "choices": choices})
    .to_string()
}

fn delta(d: Value) -> Value {
    json!([{"index": 0, "delta": d, "finish_reason": null}])
}

fn tool(t: Value) -> Value {
    delta(json!({"tool_calls": [t]}))
}

fn finish(reason: &str) -> Value {
    json!([{"index": 0, "delta": {}, "finish_reason": reason}])
}

const USAGE: &str = r#"{"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}"#;

fn usage_chunk(id: &str) -> String {
    let u: Value = serde_json::from_str(USAGE).unwrap();
    json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
           "model": "test-model", "choices": [], "usage": u})
    .to_string()
}

/// The chat fixture `name`: data payloads, `[DONE]` included (a payload
/// starting with `:` is sent as an SSE comment line instead).
pub(crate) fn chat(name: &str) -> Option<Vec<String>> {
    let c = |choices| chunk("chatcmpl-fx", choices);
    let role = c(delta(json!({"role": "assistant", "content": null})));
    let mut d: Vec<String> = match name {
        // The plain shape: index, id and name in the first fragment.
        "tool_call" => vec![
            role,
            c(tool(json!({"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}))),
            c(tool(json!({"index": 0, "function": {"arguments": "{\"city\": "}}))),
            c(tool(json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}))),
            c(finish("tool_calls")),
            usage_chunk("chatcmpl-fx"),
        ],
        // Gemini through OpenAI-compatible endpoints, Ollama: no `index`.
        "tool_calls_no_index" => vec![
            role,
            c(tool(json!({"id": "call_a", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\":"}}))),
            c(tool(json!({"function": {"arguments": " \"Paris\"}"}}))),
            c(tool(json!({"id": "call_b", "type": "function",
                          "function": {"name": "get_time", "arguments": "{\"tz\": \"CET\"}"}}))),
            c(finish("tool_calls")),
        ],
        // Every parallel call at index 0 with distinct ids.
        "parallel_same_index" => vec![
            role,
            c(tool(json!({"index": 0, "id": "call_a", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}))),
            c(tool(json!({"index": 0, "id": "call_b", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}))),
            c(finish("tool_calls")),
        ],
        // MiniMax, Kimi: the whole name in every fragment.
        "name_repeated" => vec![
            role,
            c(tool(json!({"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\""}}))),
            c(tool(json!({"index": 0, "function": {"name": "get_weather", "arguments": ": \"Oslo\"}"}}))),
            c(finish("tool_calls")),
        ],
        // Gemini: the name split across fragments.
        "name_split" => vec![
            role,
            c(tool(json!({"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_", "arguments": ""}}))),
            c(tool(json!({"index": 0, "function": {"name": "weather", "arguments": "{}"}}))),
            c(finish("tool_calls")),
        ],
        // Later fragments with `id: ""` and `id: null`.
        "empty_ids" => vec![
            role,
            c(tool(json!({"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\":"}}))),
            c(tool(json!({"index": 0, "id": "", "type": "function", "function": {"arguments": " \"Lima\""}}))),
            c(tool(json!({"index": 0, "id": null, "function": {"arguments": "}"}}))),
            c(finish("tool_calls")),
        ],
        // Usage on every chunk, growing: the last one is the total.
        "usage_every_chunk" => (1..=3)
            .map(|n| {
                json!({"id": "chatcmpl-fx", "object": "chat.completion.chunk", "model": "test-model",
                       "choices": [{"index": 0, "delta": {"content": format!("w{n} ")},
                                    "finish_reason": if n == 3 { json!("stop") } else { Value::Null }}],
                       "usage": {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}})
                .to_string()
            })
            .collect(),
        // DeepSeek's `reasoning_content`, OpenRouter's `reasoning`.
        "reasoning" => vec![
            role,
            c(delta(json!({"reasoning_content": "Let me "}))),
            c(delta(json!({"reasoning_content": "think.", "reasoning": "r1"}))),
            c(delta(json!({"content": "Answer."}))),
            c(finish("stop")),
            usage_chunk("chatcmpl-fx"),
        ],
        // Gemini's thought signature, to be sent back on the next turn.
        "thought_signature" => vec![
            role,
            c(tool(json!({"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{}"},
                          "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}}))),
            c(finish("tool_calls")),
        ],
        // LiteLLM: the chunk id changes mid-stream.
        "changing_id" => vec![
            chunk("chatcmpl-one", delta(json!({"role": "assistant", "content": "Hel"}))),
            chunk("chatcmpl-two", delta(json!({"content": "lo"}))),
            chunk("chatcmpl-two", finish("stop")),
        ],
        // `n: 2`, interleaved, out of index order.
        "two_choices" => vec![
            c(json!([{"index": 1, "delta": {"role": "assistant", "content": "B1 "}}, {"index": 0, "delta": {"role": "assistant", "content": "A1 "}}])),
            c(json!([{"index": 1, "delta": {"content": "B2"}, "finish_reason": "stop"}])),
            c(json!([{"index": 0, "delta": {"content": "A2"}, "finish_reason": "stop"}])),
        ],
        // OpenRouter, LiteLLM: an error object inside an HTTP 200 stream.
        "error_in_200" => vec![
            role,
            c(delta(json!({"content": "Partial "}))),
            json!({"error": {"message": "Provider returned error", "code": 502}}).to_string(),
        ],
        // Arguments that never become JSON.
        "bad_arguments" => vec![
            role,
            c(tool(json!({"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": "{\"city\": \"Pa"}}))),
            c(finish("tool_calls")),
        ],
        // Text with multi-byte characters (split with x_test_split_multibyte).
        "multibyte" => vec![
            role,
            c(delta(json!({"content": "héllo "}))),
            c(delta(json!({"content": "wörld ✓"}))),
            c(finish("stop")),
        ],
        // Keep-alive comments for a while before the first delta (a
        // gateway waiting for a busy provider).
        "slow_first_token" => {
            let mut v = vec![role];
            v.extend((0..8).map(|_| ": PROCESSING".to_string()));
            v.push(c(delta(json!({"content": "late"}))));
            v.push(c(finish("stop")));
            v
        }
        // A refusal.
        "refusal" => vec![
            role,
            c(delta(json!({"refusal": "I can't "}))),
            c(delta(json!({"refusal": "help with that."}))),
            c(finish("stop")),
        ],
        // A long tool-call stream: 2,000 argument fragments (benchmarks).
        "long_tool_call" => {
            let mut v = vec![
                role,
                c(tool(json!({"index": 0, "id": "call_1", "type": "function",
                              "function": {"name": "write_file", "arguments": "{\"text\": \""}}))),
            ];
            for i in 0..2000 {
                v.push(c(tool(json!({"index": 0, "function": {"arguments": format!("w{i} ")}}))));
            }
            v.push(c(tool(json!({"index": 0, "function": {"arguments": "\"}"}}))));
            v.push(c(finish("tool_calls")));
            v
        }
        _ => return None,
    };
    d.push("[DONE]".to_string());
    Some(d)
}

/// A non-streamed Responses answer echoing `text`.
pub(crate) fn response_object(id: &str, model: &str, text: &str) -> Value {
    json!({"id": id, "object": "response", "created_at": 1_700_000_000u64, "status": "completed",
           "model": model, "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}],
           "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4},
                     "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14}})
}

/// The events of a streamed Responses answer echoing `words` (with
/// `tool`, a function call after the text).
pub(crate) fn response_events(id: &str, model: &str, words: &[String], tool: bool) -> Vec<Event> {
    let text: String = words.concat();
    let mut final_obj = response_object(id, model, &text);
    let mut ev: Vec<Event> = Vec::new();
    let mut push = |name: &'static str, v: Value| ev.push((Some(name), v.to_string()));
    let mut snap = final_obj.clone();
    snap["status"] = "in_progress".into();
    snap["output"] = json!([]);
    push(
        "response.created",
        json!({"type": "response.created", "response": snap}),
    );
    push(
        "response.output_item.added",
        json!({"type": "response.output_item.added", "output_index": 0,
        "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
    );
    for w in words {
        push(
            "response.output_text.delta",
            json!({"type": "response.output_text.delta",
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": w}),
        );
    }
    if tool {
        let call = json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": ""});
        push(
            "response.output_item.added",
            json!({"type": "response.output_item.added", "output_index": 1, "item": call}),
        );
        for part in ["{\"city\":", " \"Paris\"}"] {
            push(
                "response.function_call_arguments.delta",
                json!({"type": "response.function_call_arguments.delta",
                "item_id": "fc_1", "output_index": 1, "delta": part}),
            );
        }
        let mut done = call.clone();
        done["arguments"] = "{\"city\": \"Paris\"}".into();
        final_obj["output"].as_array_mut().unwrap().push(done);
    }
    push(
        "response.completed",
        json!({"type": "response.completed", "response": final_obj}),
    );
    ev
}

/// A non-streamed Messages answer echoing `text`.
pub(crate) fn message_object(id: &str, model: &str, text: &str) -> Value {
    json!({"id": id, "type": "message", "role": "assistant", "model": model,
           "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
           "usage": {"input_tokens": 9, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 5}})
}

/// The events of a streamed Messages answer echoing `words` (with `tool`,
/// a tool_use block after the text; with `overloaded`, an error event
/// instead of the end).
pub(crate) fn message_events(
    id: &str,
    model: &str,
    words: &[String],
    tool: bool,
    overloaded: bool,
) -> Vec<Event> {
    let mut ev: Vec<Event> = Vec::new();
    let mut push = |name: &'static str, v: Value| ev.push((Some(name), v.to_string()));
    push(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
        "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 9, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
    );
    push("ping", json!({"type": "ping"}));
    push(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for w in words {
        push(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
        );
    }
    if overloaded {
        push(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        );
        return ev;
    }
    push(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    let mut stop = "end_turn";
    if tool {
        stop = "tool_use";
        push(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        );
        for part in ["{\"city\":", " \"Paris\"}"] {
            push(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": part}}),
            );
        }
        push(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        );
    }
    push(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": 5}}),
    );
    push("message_stop", json!({"type": "message_stop"}));
    ev
}

/// `bytes` in two pieces split inside its first multi-byte character (one
/// piece when it has none).
pub(crate) fn split_multibyte(bytes: Vec<u8>) -> Vec<Vec<u8>> {
    match bytes.iter().position(|b| *b >= 0xC0) {
        Some(i) => vec![bytes[..i + 1].to_vec(), bytes[i + 1..].to_vec()],
        None => vec![bytes],
    }
}
