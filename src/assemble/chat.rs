//! Chat completion chunks into one `chat.completion`.
//!
//! The rules, each for something real gateways send:
//! - choices are placed by their `index` (a missing one counts as its
//!   position in the chunk); `choices: []` is fine; they may arrive in any
//!   order and interleaved (`n > 1`);
//! - a delta's members merge as in [`super::merge`]: strings joined,
//!   objects merged, arrays by `index`, so `reasoning_content`,
//!   `reasoning` and provider extras survive under the names sent; `role`
//!   is set, not joined;
//! - tool calls: a fragment without `index` continues the open call unless
//!   it carries a new non-empty `id`; distinct non-empty ids at the same
//!   `index` are distinct calls; empty or null ids in later fragments are
//!   ignored; a name fragment equal to the whole name so far is not
//!   appended again (some gateways repeat it in every chunk, others split
//!   it); `arguments` fragments are joined; other members (such as
//!   `extra_content.google.thought_signature`) are merged and sent back
//!   unchanged;
//! - usage: the last non-null value wins, never a sum;
//! - top-level members (`id`, `created`, `model`, `system_fingerprint`, …)
//!   keep their last non-null value, so a changing chunk `id` is no error;
//! - `finish_reason`: the last non-null one per choice;
//! - `logprobs`: their `content` and `refusal` arrays joined.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::chunk::{Chunk, Member};
use super::merge::merge_object;
use super::{check_arguments, Assembled, Delta, DeltaKind, Step};

#[derive(Debug, Default)]
pub struct Chat {
    top: Map<String, Value>,
    usage: Option<Value>,
    /// By `index`, in order. A Vec (almost always of one): a BTreeMap's
    /// first node holds room for 11 choices, 1.8 KiB per stream in flight.
    choices: Vec<(u64, Choice)>,
}

#[derive(Debug, Default)]
struct Choice {
    message: Map<String, Value>,
    tool_calls: Vec<ToolCall>,
    /// The call the last fragment went to.
    open: Option<usize>,
    finish_reason: Option<Value>,
    logprobs: Option<Map<String, Value>>,
    /// Other members of the choice: their last value.
    other: Map<String, Value>,
}

#[derive(Debug, Default)]
struct ToolCall {
    /// The `index` it was sent with (None: it had none).
    index: Option<u64>,
    id: String,
    kind: String,
    name: String,
    arguments: String,
    /// Members of `function` other than name and arguments.
    function: Map<String, Value>,
    /// Members of the call other than index, id, type and function.
    extra: Map<String, Value>,
}

impl Chat {
    pub fn feed(&mut self, v: &Value, emit: &mut dyn FnMut(Delta)) -> Step {
        let Some(obj) = v.as_object() else {
            return Step::More;
        };
        if obj.get("error").is_some_and(|e| !e.is_null()) {
            return Step::Failed {
                message: super::error_message(v),
            };
        }
        for (k, val) in obj {
            match k.as_str() {
                "choices" | "object" => {}
                "usage" => {
                    if val.is_object() {
                        self.usage = Some(val.clone());
                    }
                }
                _ if val.is_null() => {}
                // Most chunks repeat them: no copy unless one changed.
                _ if self.top.get(k) == Some(val) => {}
                _ => {
                    self.top.insert(k.clone(), val.clone());
                }
            }
        }
        let choices = obj.get("choices").and_then(Value::as_array);
        for (pos, c) in choices.into_iter().flatten().enumerate() {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
            let choice = self.choice(index);
            choice.feed(index as u32, c, emit);
        }
        Step::More
    }

    /// [`Chat::feed`] for a chunk of the usual shape read without a
    /// `Value` ([`super::chunk`]), with the same rules and results.
    pub fn feed_chunk(&mut self, c: &Chunk, emit: &mut dyn FnMut(Delta)) -> Step {
        for (k, v) in &c.top {
            if v.is_null() || self.top.get(&**k).is_some_and(|old| v.same_as(old)) {
                continue;
            }
            self.top.insert(k.to_string(), v.to_value());
        }
        if let Some(u) = &c.usage {
            self.usage = Some(u.clone());
        }
        for (pos, ch) in c.choices.iter().enumerate() {
            let index = ch.index.unwrap_or(pos as u64);
            let choice = self.choice(index);
            choice.delta_members(index as u32, &ch.delta, emit);
            if let Some(f) = &ch.finish_reason {
                choice.finish_reason = Some(f.clone());
            }
            for (k, v) in &ch.other {
                choice.other.insert(k.clone(), v.clone());
            }
        }
        Step::More
    }

    /// The choice of `index`, made when it is new.
    fn choice(&mut self, index: u64) -> &mut Choice {
        let at = match self.choices.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => at,
            Err(at) => {
                // Room for this one only: a first insert makes room for
                // four (640 bytes per stream in flight), and n > 1 is rare.
                self.choices.reserve_exact(1);
                self.choices.insert(at, (index, Choice::default()));
                at
            }
        };
        &mut self.choices[at].1
    }

    pub fn finish(&self) -> Assembled {
        let mut out = self.top.clone();
        out.insert("object".into(), "chat.completion".into());
        let mut bad = Vec::new();
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|(i, c)| c.to_json(*i, &mut bad))
            .collect();
        out.insert("choices".into(), Value::Array(choices));
        out.insert("usage".into(), self.usage.clone().unwrap_or(Value::Null));
        let first = self
            .choices
            .first()
            .filter(|(i, _)| *i == 0)
            .map(|(_, c)| c);
        Assembled {
            text: first
                .and_then(|c| c.message.get("content"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            finish_reason: first
                .and_then(|c| c.finish_reason.as_ref())
                .and_then(Value::as_str)
                .map(str::to_string),
            usage: self.usage.clone(),
            model: self
                .top
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string),
            completion: Value::Object(out),
            bad_arguments: bad,
        }
    }
}

impl Choice {
    fn feed(&mut self, index: u32, c: &Value, emit: &mut dyn FnMut(Delta)) {
        let Some(c) = c.as_object() else { return };
        for (k, v) in c {
            match k.as_str() {
                "index" => {}
                "delta" | "message" => self.delta(index, v, emit),
                "finish_reason" => {
                    if !v.is_null() {
                        self.finish_reason = Some(v.clone());
                    }
                }
                "logprobs" => {
                    if let Value::Object(l) = v {
                        merge_object(self.logprobs.get_or_insert_with(Map::new), l);
                    }
                }
                _ if v.is_null() => {}
                _ => {
                    self.other.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn delta(&mut self, choice: u32, d: &Value, emit: &mut dyn FnMut(Delta)) {
        let Some(d) = d.as_object() else { return };
        for (k, v) in d {
            let kind = match k.as_str() {
                "tool_calls" => {
                    for tc in v.as_array().into_iter().flatten() {
                        self.tool_fragment(choice, tc, emit);
                    }
                    continue;
                }
                "role" => {
                    if !v.is_null() {
                        self.message.insert(k.clone(), v.clone());
                    }
                    continue;
                }
                name => text_kind(name),
            };
            emit_text(kind, choice, v.as_str(), emit);
            let mut one = Map::new();
            one.insert(k.clone(), v.clone());
            merge_object(&mut self.message, &one);
        }
    }

    /// [`Choice::delta`] for a delta read by [`super::chunk`] (no tool
    /// calls; members sorted by name, as a `Value`'s are).
    fn delta_members(
        &mut self,
        choice: u32,
        members: &[(Cow<str>, Member)],
        emit: &mut dyn FnMut(Delta),
    ) {
        for (k, v) in members {
            let kind = match &**k {
                "role" => {
                    if !v.is_null() {
                        self.message.insert(k.to_string(), v.to_value());
                    }
                    continue;
                }
                name => text_kind(name),
            };
            let text = match v {
                Member::Str(t) => Some(&**t),
                Member::Other(_) => None,
            };
            emit_text(kind, choice, text, emit);
            // As merge_object does with a one-member delta.
            match v {
                Member::Str(s) => match self.message.get_mut(&**k) {
                    Some(Value::String(a)) => a.push_str(s),
                    Some(old) => *old = Value::String(s.to_string()),
                    None => {
                        self.message
                            .insert(k.to_string(), Value::String(s.to_string()));
                    }
                },
                Member::Other(v) => {
                    let mut one = Map::new();
                    one.insert(k.to_string(), v.clone());
                    merge_object(&mut self.message, &one);
                }
            }
        }
    }

    fn tool_fragment(&mut self, choice: u32, tc: &Value, emit: &mut dyn FnMut(Delta)) {
        let Some(tc) = tc.as_object() else { return };
        let index = tc.get("index").and_then(Value::as_u64);
        let id = tc
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let at = self.target(index, id);
        self.open = Some(at);
        let call = &mut self.tool_calls[at];
        if let (Some(id), true) = (id, call.id.is_empty()) {
            call.id = id.to_string();
        }
        let mut fragment = "";
        for (k, v) in tc {
            match (k.as_str(), v) {
                ("index" | "id", _) => {}
                ("type", Value::String(t)) if !t.is_empty() => call.kind = t.clone(),
                ("function", Value::Object(f)) => {
                    for (fk, fv) in f {
                        match (fk.as_str(), fv) {
                            ("name", Value::String(n)) => {
                                if !n.is_empty() && *n != call.name {
                                    call.name.push_str(n);
                                }
                            }
                            ("arguments", Value::String(a)) => {
                                call.arguments.push_str(a);
                                fragment = a;
                            }
                            (_, Value::Null) => {}
                            _ => {
                                let mut one = Map::new();
                                one.insert(fk.clone(), fv.clone());
                                merge_object(&mut call.function, &one);
                            }
                        }
                    }
                }
                (_, Value::Null) => {}
                _ => {
                    let mut one = Map::new();
                    one.insert(k.clone(), v.clone());
                    merge_object(&mut call.extra, &one);
                }
            }
        }
        let call = &self.tool_calls[at];
        emit(Delta {
            kind: DeltaKind::ToolCall,
            choice,
            call_index: at as u32,
            id: Some(call.id.as_str()).filter(|s| !s.is_empty()),
            name: Some(call.name.as_str()).filter(|s| !s.is_empty()),
            text: fragment,
        });
    }

    /// The call a fragment belongs to (a new one when it starts one).
    fn target(&mut self, index: Option<u64>, id: Option<&str>) -> usize {
        let found = match index {
            None => match (self.open, id) {
                (Some(o), None) => Some(o),
                (Some(o), Some(id)) if self.tool_calls[o].id == id => Some(o),
                (Some(o), Some(_)) if self.tool_calls[o].id.is_empty() => Some(o),
                _ => None,
            },
            Some(i) => {
                let same = |c: &ToolCall| c.index == Some(i);
                match id {
                    None => self.tool_calls.iter().rposition(same),
                    Some(id) => self
                        .tool_calls
                        .iter()
                        .position(|c| same(c) && c.id == id)
                        .or_else(|| {
                            self.tool_calls
                                .iter()
                                .rposition(|c| same(c) && c.id.is_empty())
                        }),
                }
            }
        };
        found.unwrap_or_else(|| {
            self.tool_calls.push(ToolCall {
                index,
                kind: "function".to_string(),
                ..ToolCall::default()
            });
            self.tool_calls.len() - 1
        })
    }

    fn to_json(&self, index: u64, bad: &mut Vec<super::BadArguments>) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), "assistant".into());
        m.insert("content".into(), Value::Null);
        m.insert("refusal".into(), Value::Null);
        for (k, v) in &self.message {
            m.insert(k.clone(), v.clone());
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    if let Some(b) = check_arguments(
                        format!("choices[{index}].message.tool_calls[{n}]"),
                        &c.name,
                        &c.arguments,
                    ) {
                        bad.push(b);
                    }
                    let mut f = c.function.clone();
                    f.insert("name".into(), c.name.clone().into());
                    f.insert("arguments".into(), c.arguments.clone().into());
                    let mut call = c.extra.clone();
                    call.insert("id".into(), c.id.clone().into());
                    call.insert("type".into(), c.kind.clone().into());
                    call.insert("function".into(), Value::Object(f));
                    Value::Object(call)
                })
                .collect();
            m.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut c = self.other.clone();
        c.insert("index".into(), index.into());
        c.insert("message".into(), Value::Object(m));
        c.insert(
            "finish_reason".into(),
            self.finish_reason.clone().unwrap_or(Value::Null),
        );
        c.insert(
            "logprobs".into(),
            self.logprobs.clone().map_or(Value::Null, Value::Object),
        );
        Value::Object(c)
    }
}

/// The kind of delta a member of `delta` of this name carries as text.
fn text_kind(name: &str) -> Option<DeltaKind> {
    match name {
        "content" => Some(DeltaKind::Content),
        "refusal" => Some(DeltaKind::Refusal),
        "reasoning_content" | "reasoning" => Some(DeltaKind::Reasoning),
        _ => None,
    }
}

/// Emits a non-empty text of a kind that is one.
fn emit_text(
    kind: Option<DeltaKind>,
    choice: u32,
    text: Option<&str>,
    emit: &mut dyn FnMut(Delta),
) {
    if let (Some(kind), Some(text)) = (kind, text) {
        if !text.is_empty() {
            emit(Delta {
                kind,
                choice,
                call_index: 0,
                id: None,
                name: None,
                text,
            });
        }
    }
}

/// Choice 0's `delta.content` in one chunk ("" when it has none).
pub fn chunk_content(v: &Value) -> &str {
    let choices = v.get("choices").and_then(Value::as_array);
    choices
        .into_iter()
        .flatten()
        .enumerate()
        .find(|(pos, c)| {
            c.get("index")
                .and_then(Value::as_u64)
                .unwrap_or(*pos as u64)
                == 0
        })
        .and_then(|(_, c)| c.get("delta")?.get("content")?.as_str())
        .unwrap_or("")
}

/// The facts of a non-streamed chat answer (its tool calls checked).
pub fn read_answer(v: &Value) -> Assembled {
    let mut a = Chat::default();
    a.feed(v, &mut |_| {});
    let mut out = a.finish();
    out.completion = Value::Null;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(d: Delta) -> String {
        format!(
            "{:?}/{}/{}/{}/{}/{}",
            d.kind,
            d.choice,
            d.call_index,
            d.id.unwrap_or("-"),
            d.name.unwrap_or("-"),
            d.text
        )
    }

    /// Assembles the chunks through the general path, and checks that the
    /// stream's path (the usual chunks read without a Value) gives the same.
    fn run(chunks: &[Value]) -> (Assembled, Vec<String>) {
        let texts: Vec<String> = chunks.iter().map(Value::to_string).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let general = run_general(chunks);
        assert_eq!(run_text(&texts), general, "typed and general paths differ");
        general
    }

    fn run_general(chunks: &[Value]) -> (Assembled, Vec<String>) {
        let mut a = Chat::default();
        let mut out = Vec::new();
        for c in chunks {
            a.feed(c, &mut |d| out.push(seen(d)));
        }
        (a.finish(), out)
    }

    /// As the stream reader does: typed where the chunk is usual.
    fn run_text(texts: &[&str]) -> (Assembled, Vec<String>) {
        let mut a = Chat::default();
        let mut out = Vec::new();
        for t in texts {
            match crate::assemble::chunk::parse(t) {
                Some(c) => a.feed_chunk(&c, &mut |d| out.push(seen(d))),
                None => a.feed(&serde_json::from_str(t).unwrap(), &mut |d| {
                    out.push(seen(d))
                }),
            };
        }
        (a.finish(), out)
    }

    #[test]
    fn random_chunks_read_typed_as_through_a_value() {
        // Chunks built from pieces gateways send, in random mixes and
        // orders (a fixed-seed generator: the same cases every run).
        let top = [
            r#""id":"a""#,
            r#""id":"b\u0041""#,
            r#""object":"chat.completion.chunk""#,
            r#""created":1"#,
            r#""created":-2.5"#,
            r#""model":"m""#,
            r#""model":null"#,
            r#""usage":null"#,
            r#""usage":{"total_tokens":3}"#,
            r#""error":null"#,
            r#""provider":{"x":[1,null]}"#,
            r#""system_fingerprint":"fp""#,
        ];
        let choice = [
            r#""index":0"#,
            r#""index":1"#,
            r#""finish_reason":null"#,
            r#""finish_reason":"stop""#,
            r#""logprobs":null"#,
            r#""native":7"#,
            r#""native":null"#,
        ];
        let delta = [
            r#""content":"x""#,
            r#""content":"\n\"q\"""#,
            r#""content":null"#,
            r#""content":3"#,
            r#""role":"assistant""#,
            r#""role":null"#,
            r#""reasoning_content":"r""#,
            r#""reasoning":"s""#,
            r#""refusal":"no""#,
            r#""extra":{"k":"v"}"#,
            r#""extra":"w""#,
            r#""tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":"{"}}]"#,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        // Up to `most` members of `from`, each name once (JSON with a
        // repeated name is read differently by every parser).
        let mut pick = |from: &[&str], most: usize| -> String {
            let mut out: Vec<&str> = Vec::new();
            for _ in 0..next(most + 1) {
                let m = from[next(from.len())];
                if !out
                    .iter()
                    .any(|o| o.split(':').next() == m.split(':').next())
                {
                    out.push(m);
                }
            }
            out.join(",")
        };
        let mut typed = 0;
        for _ in 0..300 {
            let texts: Vec<String> = (0..4)
                .map(|_| {
                    let n = pick(&["a", "b"], 2)
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .count();
                    let choices: Vec<String> = (0..n)
                        .map(|_| {
                            let c = pick(&choice, 3);
                            let d = format!(r#""delta":{{{}}}"#, pick(&delta, 3));
                            match c.is_empty() {
                                true => format!("{{{d}}}"),
                                false => format!("{{{c},{d}}}"),
                            }
                        })
                        .collect();
                    let t = pick(&top, 4);
                    let sep = if t.is_empty() { "" } else { "," };
                    format!(r#"{{{t}{sep}"choices":[{}]}}"#, choices.join(","))
                })
                .collect();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            typed += texts
                .iter()
                .filter(|t| crate::assemble::chunk::parse(t).is_some())
                .count();
            let values: Vec<Value> = texts
                .iter()
                .map(|t| serde_json::from_str(t).expect(t))
                .collect();
            assert_eq!(run_text(&texts), run_general(&values), "{texts:#?}");
        }
        assert!(typed > 300, "most take the typed path ({typed} of 1200)");
    }

    #[test]
    fn chunks_as_sent_read_typed_as_through_a_value() {
        // Members in the order gateways send them (not sorted), escapes,
        // nulls, numbers, extras, a changing id, two choices, reasoning and
        // content in one delta.
        let texts = [
            r#"{"id":"a","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"id":"a","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"think \"hard\"","content":"H\u00e9"},"finish_reason":null}]}"#,
            r#"{"id":"b","model":"m2","provider":{"name":"x"},"choices":[{"index":1,"delta":{"content":"other","x_extra":{"k":[1]}},"native":7},{"index":0,"delta":{"content":"llo","x_extra":null}}]}"#,
            r#"{"id":"b","choices":[{"index":0,"delta":{"content":5}}]}"#,
            r#"{"id":"b","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}],"system_fingerprint":"fp"}"#,
            r#"{"id":"b","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":"{}"}}]}}]}"#,
            r#"{"id":"b","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ];
        let values: Vec<Value> = texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let general = run_general(&values);
        assert_eq!(run_text(&texts), general);
        assert_eq!(
            general.1[..3],
            [
                "Content/0/0/-/-/Hé",
                "Reasoning/0/0/-/-/think \"hard\"",
                "Content/1/0/-/-/other"
            ]
        );
        // Most were read typed: the point of the fast path.
        let typed = texts
            .iter()
            .filter(|t| crate::assemble::chunk::parse(t).is_some());
        assert_eq!(typed.count(), 6);
    }

    fn calls(a: &Assembled, choice: usize) -> Vec<(String, String, String)> {
        a.completion["choices"][choice]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["function"]["name"].as_str().unwrap().to_string(),
                    c["function"]["arguments"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn tc(v: Value) -> Value {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": {"tool_calls": [v]}, "finish_reason": null}]})
    }

    #[test]
    fn text_and_role_and_finish_and_usage() {
        let (a, seen) = run(&[
            json!({"id": "x", "created": 5, "model": "m", "system_fingerprint": "fp",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
            json!({"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
            json!({"id": "x", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
            json!({"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
        ]);
        assert_eq!(a.text, "Hello");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        let c = &a.completion;
        assert_eq!(c["object"], "chat.completion");
        assert_eq!(c["system_fingerprint"], "fp");
        assert_eq!(c["created"], 5);
        assert_eq!(
            c["choices"][0]["message"],
            json!({"role": "assistant", "content": "Hello", "refusal": null})
        );
        assert_eq!(c["usage"]["completion_tokens"], 2);
        assert_eq!(seen, vec!["Content/0/0/-/-/Hel", "Content/0/0/-/-/lo"]);
    }

    #[test]
    fn n_choices_interleaved_and_out_of_order() {
        let (a, _) = run(&[
            json!({"choices": [{"index": 1, "delta": {"content": "B1 "}}, {"index": 0, "delta": {"content": "A1 "}}]}),
            json!({"choices": [{"index": 1, "delta": {"content": "B2"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "A2"}}]}),
        ]);
        assert_eq!(a.text, "A1 A2");
        assert_eq!(a.completion["choices"][0]["index"], 0);
        assert_eq!(a.completion["choices"][1]["message"]["content"], "B1 B2");
    }

    #[test]
    fn tool_call_fragments_by_index_with_id_and_name_from_the_first() {
        let (a, seen) = run(&[
            tc(
                json!({"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
            ),
            tc(json!({"index": 0, "function": {"arguments": "{\"city\":"}})),
            tc(json!({"index": 0, "function": {"arguments": "\"Paris\"}"}})),
        ]);
        assert_eq!(
            calls(&a, 0),
            vec![(
                "call_1".into(),
                "get_weather".into(),
                r#"{"city":"Paris"}"#.into()
            )]
        );
        assert!(a.bad_arguments.is_empty());
        assert_eq!(seen[1], "ToolCall/0/0/call_1/get_weather/{\"city\":");
        assert_eq!(
            a.completion["choices"][0]["message"]["content"],
            Value::Null
        );
    }

    #[test]
    fn fragments_without_index_continue_the_open_call_unless_a_new_id() {
        let (a, _) = run(&[
            tc(json!({"id": "a", "function": {"name": "f", "arguments": "{\"x\""}})),
            tc(json!({"function": {"arguments": ":1}"}})),
            tc(json!({"id": "b", "function": {"name": "g", "arguments": "{}"}})),
        ]);
        assert_eq!(
            calls(&a, 0),
            vec![
                ("a".into(), "f".into(), "{\"x\":1}".into()),
                ("b".into(), "g".into(), "{}".into())
            ]
        );
    }

    #[test]
    fn distinct_ids_at_the_same_index_are_distinct_calls() {
        let (a, _) = run(&[
            tc(json!({"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"n\":1}"}})),
            tc(json!({"index": 0, "id": "b", "function": {"name": "f", "arguments": "{\"n\":2}"}})),
        ]);
        assert_eq!(
            calls(&a, 0),
            vec![
                ("a".into(), "f".into(), "{\"n\":1}".into()),
                ("b".into(), "f".into(), "{\"n\":2}".into())
            ]
        );
    }

    #[test]
    fn a_repeated_whole_name_is_not_appended_but_split_names_join() {
        let (a, _) = run(&[
            tc(
                json!({"index": 0, "id": "a", "function": {"name": "get_weather", "arguments": "{"}}),
            ),
            tc(json!({"index": 0, "function": {"name": "get_weather", "arguments": "}"}})),
            tc(json!({"index": 1, "id": "b", "function": {"name": "get_", "arguments": ""}})),
            tc(json!({"index": 1, "function": {"name": "time", "arguments": "{}"}})),
        ]);
        let c = calls(&a, 0);
        assert_eq!(c[0].1, "get_weather");
        assert_eq!(c[1].1, "get_time");
    }

    #[test]
    fn empty_or_null_ids_in_later_fragments_are_ignored() {
        let (a, _) = run(&[
            tc(json!({"index": 0, "id": "a", "function": {"name": "f", "arguments": "{"}})),
            tc(json!({"index": 0, "id": "", "function": {"arguments": "}"}})),
            tc(json!({"index": 0, "id": null, "function": {"arguments": ""}})),
        ]);
        assert_eq!(calls(&a, 0), vec![("a".into(), "f".into(), "{}".into())]);
    }

    #[test]
    fn usage_last_wins_and_a_changing_id_is_fine_and_extras_survive() {
        let (a, _) = run(&[
            json!({"id": "one", "usage": {"total_tokens": 1}, "choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]}),
            json!({"id": "two", "usage": {"total_tokens": 5}, "choices": [{"index": 0, "delta": {"reasoning_content": "ing", "content": "x"}}]}),
            tc(
                json!({"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"},
                      "extra_content": {"google": {"thought_signature": "sig"}}}),
            ),
        ]);
        assert_eq!(a.usage.unwrap()["total_tokens"], 5);
        assert_eq!(a.completion["id"], "c1");
        let m = &a.completion["choices"][0]["message"];
        assert_eq!(m["reasoning_content"], "thinking");
        assert_eq!(
            m["tool_calls"][0]["extra_content"]["google"]["thought_signature"],
            "sig"
        );
    }

    #[test]
    fn bad_arguments_are_reported_with_where_they_break() {
        let (a, _) = run(&[tc(
            json!({"index": 0, "id": "a", "function": {"name": "f", "arguments": "{\"x\":"}}),
        )]);
        assert_eq!(a.bad_arguments.len(), 1);
        assert_eq!(a.bad_arguments[0].at, "choices[0].message.tool_calls[0]");
        assert!(
            a.bad_arguments[0].error.contains("column"),
            "{:?}",
            a.bad_arguments
        );
    }

    #[test]
    fn an_error_object_fails_the_stream() {
        let mut a = Chat::default();
        let s = a.feed(&json!({"error": {"message": "overloaded"}}), &mut |_| {});
        assert_eq!(
            s,
            Step::Failed {
                message: "overloaded".into()
            }
        );
    }

    #[test]
    fn logprobs_join() {
        let (a, _) = run(&[
            json!({"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [{"token": "a"}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "b"}, "logprobs": {"content": [{"token": "b"}]}}]}),
        ]);
        assert_eq!(
            a.completion["choices"][0]["logprobs"]["content"],
            json!([{"token": "a"}, {"token": "b"}])
        );
    }
}
