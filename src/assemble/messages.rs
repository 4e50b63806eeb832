//! Anthropic Messages API events into the final `message`.
//!
//! `message_start` gives the message, `content_block_start` each block,
//! `content_block_delta` its pieces (`text_delta`, `input_json_delta`,
//! `thinking_delta`, `signature_delta`, `citations_delta`; others merged
//! as chat deltas are), `message_delta` the stop reason and the usage so
//! far (the last value of each member wins), `message_stop` the end.
//! `ping` is skipped; `error` fails the stream. A `tool_use` block's
//! `input` is its joined `partial_json`, parsed.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::merge::merge_object;
use super::{check_arguments, Assembled, Delta, DeltaKind, Step};

#[derive(Debug, Default)]
pub struct Messages {
    message: Map<String, Value>,
    usage: Map<String, Value>,
    blocks: BTreeMap<u64, Block>,
}

#[derive(Debug, Default)]
struct Block {
    value: Map<String, Value>,
    partial_json: String,
}

impl Messages {
    pub fn feed(&mut self, event: Option<&str>, v: &Value, emit: &mut dyn FnMut(Delta)) -> Step {
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event)
            .unwrap_or("");
        match kind {
            "message_start" => {
                if let Some(Value::Object(m)) = v.get("message") {
                    self.message = m.clone();
                    if let Some(Value::Object(u)) = m.get("usage") {
                        self.usage = u.clone();
                    }
                }
            }
            "content_block_start" => {
                let i = index(v);
                let value = match v.get("content_block") {
                    Some(Value::Object(b)) => b.clone(),
                    _ => Map::new(),
                };
                self.blocks.insert(
                    i,
                    Block {
                        value,
                        partial_json: String::new(),
                    },
                );
            }
            "content_block_delta" => self.delta(index(v), v.get("delta"), emit),
            "message_delta" => {
                if let Some(Value::Object(d)) = v.get("delta") {
                    for (k, val) in d {
                        self.message.insert(k.clone(), val.clone());
                    }
                }
                if let Some(Value::Object(u)) = v.get("usage") {
                    for (k, val) in u {
                        if !val.is_null() {
                            self.usage.insert(k.clone(), val.clone());
                        }
                    }
                }
            }
            "message_stop" => return Step::Done,
            "error" => {
                return Step::Failed {
                    message: super::error_message(v),
                }
            }
            _ => {}
        }
        Step::More
    }

    /// The whole `message` object, as a gateway that ignored `stream` sends it.
    pub fn whole(&mut self, v: &Value) {
        let Value::Object(m) = v else { return };
        self.message = m.clone();
        if let Some(Value::Object(u)) = m.get("usage") {
            self.usage = u.clone();
        }
        let blocks = m.get("content").and_then(Value::as_array);
        for (i, b) in blocks.into_iter().flatten().enumerate() {
            if let Value::Object(b) = b {
                let block = Block {
                    value: b.clone(),
                    partial_json: String::new(),
                };
                self.blocks.insert(i as u64, block);
            }
        }
    }

    fn delta(&mut self, i: u64, d: Option<&Value>, emit: &mut dyn FnMut(Delta)) {
        let Some(Value::Object(d)) = d else { return };
        let block = self.blocks.entry(i).or_default();
        let ty = d.get("type").and_then(Value::as_str).unwrap_or("");
        let (field, kind) = match ty {
            "text_delta" => ("text", Some(DeltaKind::Content)),
            "thinking_delta" => ("thinking", Some(DeltaKind::Reasoning)),
            "signature_delta" => ("signature", None),
            "input_json_delta" => {
                let part = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                block.partial_json.push_str(part);
                let s = |k: &str| block.value.get(k).and_then(Value::as_str);
                emit(Delta {
                    kind: DeltaKind::ToolCall,
                    choice: 0,
                    call_index: i as u32,
                    id: s("id"),
                    name: s("name"),
                    text: part,
                });
                return;
            }
            "citations_delta" => {
                if let Some(c) = d.get("citation") {
                    let list = block
                        .value
                        .entry("citations")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(a) = list {
                        a.push(c.clone());
                    }
                }
                return;
            }
            _ => {
                let mut rest = d.clone();
                rest.remove("type");
                merge_object(&mut block.value, &rest);
                return;
            }
        };
        let text = d.get(field).and_then(Value::as_str).unwrap_or("");
        match block.value.get_mut(field) {
            Some(Value::String(s)) => s.push_str(text),
            _ => {
                block.value.insert(field.into(), text.into());
            }
        }
        if let (Some(kind), false) = (kind, text.is_empty()) {
            emit(Delta {
                kind,
                choice: 0,
                call_index: i as u32,
                id: None,
                name: None,
                text,
            });
        }
    }

    pub fn finish(&self) -> Assembled {
        let mut bad = Vec::new();
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|(i, b)| {
                let mut v = b.value.clone();
                if !b.partial_json.is_empty() {
                    let name = v.get("name").and_then(Value::as_str).unwrap_or("");
                    match check_arguments(format!("content[{i}].input"), name, &b.partial_json) {
                        None => {
                            let input = serde_json::from_str(&b.partial_json).unwrap_or_default();
                            v.insert("input".into(), input);
                        }
                        Some(e) => {
                            bad.push(e);
                            v.insert("input".into(), b.partial_json.clone().into());
                        }
                    }
                }
                Value::Object(v)
            })
            .collect();
        let mut m = self.message.clone();
        m.insert("content".into(), Value::Array(content));
        if !self.usage.is_empty() {
            m.insert("usage".into(), Value::Object(self.usage.clone()));
        }
        let mut a = read_answer(&Value::Object(m));
        a.bad_arguments = bad;
        a
    }
}

fn index(v: &Value) -> u64 {
    v.get("index").and_then(Value::as_u64).unwrap_or(0)
}

/// The facts of a `message` object, streamed or not.
pub fn read_answer(v: &Value) -> Assembled {
    let text: String = v["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    Assembled {
        completion: v.clone(),
        text,
        finish_reason: v["stop_reason"].as_str().map(str::to_string),
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
    fn a_message_with_thinking_text_and_a_tool_use() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-x", "content": [], "stop_reason": null,
                "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1}}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "there"}}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
        ];
        let mut a = Messages::default();
        let mut kinds = Vec::new();
        for e in &events {
            assert_eq!(
                a.feed(None, e, &mut |d| kinds.push((
                    d.kind,
                    d.text.to_string(),
                    d.name.map(str::to_string)
                ))),
                Step::More
            );
        }
        assert_eq!(
            a.feed(Some("message_stop"), &json!({}), &mut |_| {}),
            Step::Done
        );
        let r = a.finish();
        assert_eq!(r.text, "Hi there");
        assert_eq!(r.finish_reason.as_deref(), Some("tool_use"));
        let c = &r.completion;
        assert_eq!(
            c["content"][0],
            json!({"type": "thinking", "thinking": "hmm", "signature": "sig"})
        );
        assert_eq!(c["content"][2]["input"], json!({"city": "Paris"}));
        assert_eq!(
            c["usage"],
            json!({"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 30})
        );
        assert_eq!(kinds[0], (DeltaKind::Reasoning, "hmm".to_string(), None));
        assert_eq!(kinds[3].0, DeltaKind::ToolCall);
        assert_eq!(kinds[3].2.as_deref(), Some("get_weather"));
    }

    #[test]
    fn an_error_event_fails_and_bad_input_is_reported() {
        let mut a = Messages::default();
        a.feed(None, &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}), &mut |_| {});
        a.feed(None, &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}), &mut |_| {});
        let s = a.feed(Some("error"), &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}), &mut |_| {});
        assert_eq!(
            s,
            Step::Failed {
                message: "Overloaded".into()
            }
        );
        let r = a.finish();
        assert_eq!(r.bad_arguments.len(), 1);
        assert_eq!(r.bad_arguments[0].at, "content[0].input");
    }
}
