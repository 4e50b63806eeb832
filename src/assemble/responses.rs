//! OpenAI Responses API events into the final `response` object.
//!
//! The terminal events (`response.completed`, `response.incomplete`,
//! `response.failed`) carry the whole response, which is the answer. Until
//! one arrives (or when the stream breaks off), the answer is the last
//! snapshot (`response.created`, `response.in_progress`) with the output
//! items assembled from `response.output_item.added` / `.done`,
//! `response.output_text.delta`, `response.refusal.delta`, the reasoning
//! deltas and `response.function_call_arguments.delta`.
//!
//! Codes: `response.completed` and `response.incomplete` end the stream
//! (an incomplete answer says why in `finish_reason`, e.g.
//! `max_output_tokens`, like a chat `length`); `response.failed` and an
//! `error` event fail it with `LLMPOOL_PROTOCOL` and the server's message.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{check_arguments, Assembled, Delta, DeltaKind, Step};

#[derive(Debug, Default)]
pub struct Responses {
    /// The last snapshot or terminal response.
    response: Map<String, Value>,
    /// A terminal event arrived: `response` is the answer as sent.
    terminal: bool,
    items: BTreeMap<u64, Map<String, Value>>,
}

impl Responses {
    pub fn feed(&mut self, v: &Value, emit: &mut dyn FnMut(Delta)) -> Step {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        let oi = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let text = v.get("delta").and_then(Value::as_str).unwrap_or("");
        let mut say = |kind, id: Option<&str>, name: Option<&str>| {
            emit(Delta {
                kind,
                choice: 0,
                call_index: oi as u32,
                id,
                name,
                text,
            })
        };
        match kind {
            "response.created" | "response.in_progress" | "response.queued" => {
                if let Some(Value::Object(r)) = v.get("response") {
                    self.response = r.clone();
                }
            }
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(Value::Object(item)) = v.get("item") {
                    self.items.insert(oi, item.clone());
                }
            }
            "response.output_text.delta" => {
                self.append_part(oi, v, "output_text", "text", text);
                say(DeltaKind::Content, None, None);
            }
            "response.refusal.delta" => {
                self.append_part(oi, v, "refusal", "refusal", text);
                say(DeltaKind::Refusal, None, None);
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                say(DeltaKind::Reasoning, None, None);
            }
            "response.function_call_arguments.delta" => {
                let item = self.items.entry(oi).or_default();
                match item.get_mut("arguments") {
                    Some(Value::String(s)) => s.push_str(text),
                    _ => {
                        item.insert("arguments".into(), text.into());
                    }
                }
                let item = &self.items[&oi];
                let s = |k: &str| item.get(k).and_then(Value::as_str);
                say(DeltaKind::ToolCall, s("call_id"), s("name"));
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                if let Some(Value::Object(r)) = v.get("response") {
                    self.response = r.clone();
                    self.terminal = true;
                }
                if kind == "response.failed" {
                    let err = self.response.get("error").cloned().unwrap_or(Value::Null);
                    let message = match err.get("message").and_then(Value::as_str) {
                        Some(m) => m.to_string(),
                        None => {
                            "the response failed (response.failed without an error message)".into()
                        }
                    };
                    return Step::Failed { message };
                }
                return Step::Done;
            }
            "error" => {
                return Step::Failed {
                    message: super::error_message(v),
                }
            }
            _ => {}
        }
        Step::More
    }

    /// The whole `response` object, as a gateway that ignored `stream` sends it.
    pub fn whole(&mut self, v: &Value) {
        if let Value::Object(r) = v {
            self.response = r.clone();
            self.terminal = true;
        }
    }

    /// Adds `text` to the `field` of content part `content_index` of item
    /// `oi`, making the part (of type `ty`) when it is not there yet.
    fn append_part(&mut self, oi: u64, v: &Value, ty: &str, field: &str, text: &str) {
        let ci = v.get("content_index").and_then(Value::as_u64).unwrap_or(0) as usize;
        let item = self.items.entry(oi).or_default();
        let content = item
            .entry("content")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(parts) = content else { return };
        while parts.len() <= ci {
            parts.push(serde_json::json!({"type": ty, field: ""}));
        }
        match parts[ci].get_mut(field) {
            Some(Value::String(s)) => s.push_str(text),
            _ => parts[ci][field] = text.into(),
        }
    }

    pub fn finish(&self) -> Assembled {
        let mut r = self.response.clone();
        if !self.terminal {
            let output: Vec<Value> = self.items.values().cloned().map(Value::Object).collect();
            r.insert("output".into(), Value::Array(output));
        }
        let r = Value::Object(r);
        let mut a = read_answer(&r);
        for (n, item) in r["output"].as_array().into_iter().flatten().enumerate() {
            if item["type"] == "function_call" {
                let name = item["name"].as_str().unwrap_or("");
                let args = item["arguments"].as_str().unwrap_or("");
                a.bad_arguments.extend(check_arguments(
                    format!("output[{n}].arguments"),
                    name,
                    args,
                ));
            }
        }
        a
    }
}

/// The facts of a `response` object, streamed or not.
pub fn read_answer(v: &Value) -> Assembled {
    let text: String = v["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message" || i.get("type").is_none())
        .flat_map(|i| i["content"].as_array().into_iter().flatten())
        .filter(|p| p["type"] == "output_text")
        .filter_map(|p| p["text"].as_str())
        .collect();
    let finish_reason = v["incomplete_details"]["reason"]
        .as_str()
        .or_else(|| v["status"].as_str())
        .map(str::to_string);
    Assembled {
        completion: v.clone(),
        text,
        finish_reason,
        usage: v.get("usage").filter(|u| u.is_object()).cloned(),
        model: v["model"].as_str().map(str::to_string),
        bad_arguments: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_and_a_function_call_then_completed() {
        let events = [
            json!({"type": "response.created", "response": {"id": "resp_1", "object": "response", "status": "in_progress", "model": "gpt-x", "output": []}}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "m1", "role": "assistant", "content": []}}),
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Hel"}),
            json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "lo"}),
            json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "function_call", "id": "fc1", "call_id": "call_1", "name": "get_weather", "arguments": ""}}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"city\":"}),
            json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "\"Paris\"}"}),
        ];
        let mut a = Responses::default();
        let mut seen = Vec::new();
        for e in &events {
            assert_eq!(
                a.feed(e, &mut |d| seen.push((
                    d.kind,
                    d.text.to_string(),
                    d.id.map(str::to_string)
                ))),
                Step::More
            );
        }
        // Broken off here: the answer so far.
        let partial = a.finish();
        assert_eq!(partial.text, "Hello");
        assert_eq!(
            partial.completion["output"][1]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            seen[2],
            (
                DeltaKind::ToolCall,
                "{\"city\":".to_string(),
                Some("call_1".to_string())
            )
        );
        let done = json!({"type": "response.completed", "response": {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-x",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "Hello"}]},
                       {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}],
            "usage": {"input_tokens": 5, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 2}}}});
        assert_eq!(a.feed(&done, &mut |_| {}), Step::Done);
        let r = a.finish();
        assert_eq!(r.text, "Hello");
        assert_eq!(r.finish_reason.as_deref(), Some("completed"));
        assert_eq!(r.usage.unwrap()["output_tokens"], 7);
        assert!(r.bad_arguments.is_empty());
    }

    #[test]
    fn failed_incomplete_and_error() {
        let mut a = Responses::default();
        let s = a.feed(&json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}}}), &mut |_| {});
        assert_eq!(
            s,
            Step::Failed {
                message: "boom".into()
            }
        );
        let mut a = Responses::default();
        let s = a.feed(&json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": []}}), &mut |_| {});
        assert_eq!(s, Step::Done);
        assert_eq!(
            a.finish().finish_reason.as_deref(),
            Some("max_output_tokens")
        );
        let mut a = Responses::default();
        let s = a.feed(
            &json!({"type": "error", "code": "rate_limit", "message": "slow down"}),
            &mut |_| {},
        );
        assert_eq!(
            s,
            Step::Failed {
                message: "slow down".into()
            }
        );
    }
}
