//! Token estimation without a tokenizer.
//!
//! Budgets must be checked *before* a call, when the gateway has not yet
//! told us how many tokens the prompt has. Shipping real tokenizers for every
//! model family would dwarf the library, so we use a cheap rule that is close
//! enough for reservations (the real usage is committed afterwards anyway).

use serde_json::Value;

/// Fixed per-message overhead: role markers and separators that chat
/// templates add around every message.
const PER_MESSAGE_OVERHEAD: u64 = 4;

/// Estimates the token count of `s`.
///
/// Rule: `ceil(ascii_bytes / 4) + non_ascii_chars`. English text averages
/// about four bytes per token in BPE vocabularies, while CJK and other
/// non-ASCII scripts tend towards one token per character (or more), so
/// counting each non-ASCII char as a whole token errs on the side of
/// over-estimating, which is the safe side for budget reservations.
pub fn estimate_text_tokens(s: &str) -> u64 {
    let mut ascii: u64 = 0;
    let mut other: u64 = 0;
    for c in s.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(4) + other
}

/// Estimates the prompt tokens of an OpenAI-style request body.
///
/// Counts, when present:
/// - `messages[*].content` as a string, or the `text` of array parts
///   (non-text parts such as images are not counted: their cost depends on
///   provider-specific resizing we cannot reproduce), plus
///   4 tokens per message, plus any `tool_calls` arguments;
/// - `tools` (serialized), since tool schemas are sent as prompt text;
/// - `input` (embeddings / responses): a string, an array of strings, or
///   arrays of token ids (counted one per id);
/// - `prompt` (legacy completions): a string or array of strings;
/// - `system` (Messages API) and `instructions` (Responses API).
pub fn estimate_prompt_tokens(request: &Value) -> u64 {
    let mut total: u64 = 0;
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for m in messages {
            total += PER_MESSAGE_OVERHEAD;
            if let Some(content) = m.get("content") {
                total += content_tokens(content);
            }
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    if let Some(args) = call
                        .get("function")
                        .and_then(|f| f.get("arguments"))
                        .and_then(Value::as_str)
                    {
                        total += estimate_text_tokens(args);
                    }
                }
            }
        }
    }
    if let Some(tools) = request.get("tools") {
        if !tools.is_null() {
            total += estimate_text_tokens(&tools.to_string());
        }
    }
    for field in ["input", "prompt"] {
        if let Some(v) = request.get(field) {
            total += input_tokens(v);
        }
    }
    // The Messages API's system prompt and the Responses API's instructions.
    for field in ["system", "instructions"] {
        if let Some(v) = request.get(field) {
            total += content_tokens(v);
        }
    }
    total
}

/// Returns the output-token cap the request asks for, if any.
///
/// Reads `max_completion_tokens` (current chat API), then `max_tokens`
/// (legacy), then `max_output_tokens` (responses API). The client uses this
/// to bound the worst-case cost it reserves; when absent it must pick its own
/// fallback, because the model's own limit is unknown to us.
pub fn requested_max_output_tokens(request: &Value) -> Option<u64> {
    ["max_completion_tokens", "max_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_u64))
}

fn content_tokens(content: &Value) -> u64 {
    match content {
        Value::String(s) => estimate_text_tokens(s),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => estimate_text_tokens(s),
                Value::Object(_) => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, estimate_text_tokens),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

fn input_tokens(v: &Value) -> u64 {
    match v {
        Value::String(s) => estimate_text_tokens(s),
        // A bare token id inside a pre-tokenized input.
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(input_tokens).sum(),
        // Responses-API style message items carry `content` like chat messages.
        Value::Object(_) => v.get("content").map_or(0, content_tokens),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ascii_rounds_up_by_four() {
        assert_eq!(estimate_text_tokens(""), 0);
        assert_eq!(estimate_text_tokens("a"), 1);
        assert_eq!(estimate_text_tokens("abcd"), 1);
        assert_eq!(estimate_text_tokens("abcde"), 2);
        assert_eq!(estimate_text_tokens(&"x".repeat(400)), 100);
    }

    #[test]
    fn non_ascii_counts_one_per_char() {
        assert_eq!(estimate_text_tokens("日本語"), 3);
        // 4 ascii bytes -> 1, plus 2 non-ascii chars.
        assert_eq!(estimate_text_tokens("café ok"), 2 + 1);
        assert_eq!(estimate_text_tokens("héé"), 1 + 2);
    }

    #[test]
    fn chat_messages_strings_and_parts() {
        let req = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "abcd"},
                {"role": "user", "content": [
                    {"type": "text", "text": "abcdefgh"},
                    {"type": "image_url", "image_url": {"url": "http://x"}}
                ]},
                {"role": "assistant", "content": null}
            ]
        });
        assert_eq!(estimate_prompt_tokens(&req), 3 * 4 + 1 + 2);
    }

    #[test]
    fn tool_call_arguments_and_tools_count() {
        let req = json!({
            "messages": [{"role": "assistant", "content": null, "tool_calls": [
                {"function": {"name": "f", "arguments": "{\"a\":1}"}}
            ]}],
        });
        assert_eq!(estimate_prompt_tokens(&req), 4 + 2);
        let with_tools = json!({"messages": [], "tools": [{"type": "function"}]});
        assert!(estimate_prompt_tokens(&with_tools) > 0);
    }

    #[test]
    fn embeddings_input_string_or_array() {
        assert_eq!(estimate_prompt_tokens(&json!({"input": "abcdefgh"})), 2);
        assert_eq!(
            estimate_prompt_tokens(&json!({"input": ["abcd", "日本"]})),
            3
        );
        assert_eq!(
            estimate_prompt_tokens(&json!({"input": [[1, 2, 3], [4]]})),
            4
        );
        assert_eq!(estimate_prompt_tokens(&json!({})), 0);
    }

    #[test]
    fn max_output_tokens_lookup_order() {
        assert_eq!(requested_max_output_tokens(&json!({})), None);
        assert_eq!(
            requested_max_output_tokens(&json!({"max_tokens": 10})),
            Some(10)
        );
        assert_eq!(
            requested_max_output_tokens(&json!({"max_tokens": 10, "max_completion_tokens": 20})),
            Some(20)
        );
        assert_eq!(
            requested_max_output_tokens(&json!({"max_output_tokens": 7})),
            Some(7)
        );
    }
}
