//! A chat chunk of the usual shape, read straight from its JSON text
//! without building a `serde_json::Value` tree.
//!
//! Nearly every chunk a gateway streams is the same few members: `id`,
//! `object`, `created`, `model`, and one choice whose `delta` holds a piece
//! of `content` (or `reasoning_content`, `refusal`, `role`). Parsing that
//! into a `Value` cost about a fifth of llmpool's CPU at 5,000 streams
//! (three BTreeMaps, a String per key and per value, all freed again a
//! moment later). Here the strings borrow from the event's text where they
//! have no escapes, and the members the assembler reads are typed.
//!
//! Only the usual shape is read here. Anything else (a tool-call delta,
//! `logprobs`, `message` instead of `delta`, an `error`, a repeated member,
//! data that is not an object) makes [`parse`] return `None`, and the
//! caller takes the general path over a `Value`, which has every rule of
//! [`super::chat`]. Members the assembler keeps as they are (provider
//! extras) are read into a `Value` here too.

use std::borrow::Cow;
use std::fmt;

use serde_core::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde_core::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A value of a member: a string (borrowed when it has no escapes), or
/// anything else as a `Value` (`Null` included).
#[derive(Debug, PartialEq)]
pub enum Member<'a> {
    Str(Cow<'a, str>),
    Other(Value),
}

impl Member<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, Member::Other(Value::Null))
    }

    pub fn into_value(self) -> Value {
        match self {
            Member::Str(s) => Value::String(s.into_owned()),
            Member::Other(v) => v,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Member::Str(s) => Value::String(s.to_string()),
            Member::Other(v) => v.clone(),
        }
    }

    /// Whether `v` holds the same value.
    pub fn same_as(&self, v: &Value) -> bool {
        match (self, v) {
            (Member::Str(s), Value::String(t)) => s == t,
            (Member::Other(o), v) => o == v,
            _ => false,
        }
    }
}

/// One chunk of the usual shape.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk<'a> {
    /// Top-level members other than `choices`, `usage`, `object` and a
    /// null `error`, in the order sent.
    pub top: Vec<(Cow<'a, str>, Member<'a>)>,
    /// `usage` when it is an object.
    pub usage: Option<Value>,
    pub choices: Vec<Choice<'a>>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Choice<'a> {
    /// `index`, when sent.
    pub index: Option<u64>,
    /// `delta`'s members, sorted by name (the order the general path
    /// emits them in: a `Value`'s members are sorted).
    pub delta: Vec<(Cow<'a, str>, Member<'a>)>,
    /// `finish_reason` when not null.
    pub finish_reason: Option<Value>,
    /// Other members that are not null.
    pub other: Vec<(String, Value)>,
}

impl Chunk<'_> {
    /// Choice 0's `delta.content` ("" when it has none).
    pub fn content(&self) -> &str {
        let zero = self
            .choices
            .iter()
            .enumerate()
            .find(|(pos, c)| c.index.unwrap_or(*pos as u64) == 0);
        let content = zero.and_then(|(_, c)| c.delta.iter().find(|(k, _)| k == "content"));
        match content {
            Some((_, Member::Str(s))) => s,
            _ => "",
        }
    }
}

/// Reads `data` as a chunk of the usual shape; `None` for anything else
/// (the general path then reads it).
pub fn parse(data: &str) -> Option<Chunk<'_>> {
    if !data.trim_start().starts_with('{') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(data);
    let chunk = Chunk::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(chunk)
}

/// The error that sends a chunk to the general path.
fn unusual<E: de::Error>(what: &str) -> E {
    E::custom(format_args!("not a usual chunk: {what}"))
}

/// Marks a member seen; a repeated one sends the chunk to the general
/// path.
fn once<E: de::Error>(seen: &mut bool) -> Result<(), E> {
    match std::mem::replace(seen, true) {
        true => Err(unusual("a member twice")),
        false => Ok(()),
    }
}

/// A member's name, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Key)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

impl<'de> Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MemberVisitor)
    }
}

struct MemberVisitor;

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Member::Other(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Member::Other(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value` reads it (JSON has no NaN, so this is never Null).
        Ok(Member::Other(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Member::Other(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Member::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Member::Other)
    }
}

impl<'de> Deserialize<'de> for Chunk<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ChunkVisitor)
    }
}

struct ChunkVisitor;

impl<'de> Visitor<'de> for ChunkVisitor {
    type Value = Chunk<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a chat chunk")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut c = Chunk::default();
        let (mut choices, mut usage, mut object) = (false, false, false);
        while let Some(Key(k)) = map.next_key::<Key>()? {
            match &*k {
                "choices" => {
                    once(&mut choices)?;
                    c.choices = map.next_value::<Choices>()?.0;
                }
                "usage" => {
                    once(&mut usage)?;
                    let u = map.next_value::<Value>()?;
                    if u.is_object() {
                        c.usage = Some(u);
                    }
                }
                "object" => {
                    once(&mut object)?;
                    map.next_value::<IgnoredAny>()?;
                }
                "error" => {
                    if !map.next_value::<Member>()?.is_null() {
                        return Err(unusual("an error"));
                    }
                }
                _ => {
                    let v = map.next_value::<Member>()?;
                    if c.top.iter().any(|(t, _)| *t == k) {
                        return Err(unusual("a member twice"));
                    }
                    c.top.push((k, v));
                }
            }
        }
        Ok(c)
    }
}

struct Choices<'a>(Vec<Choice<'a>>);

impl<'de> Deserialize<'de> for Choices<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ChoicesVisitor)
    }
}

struct ChoicesVisitor;

impl<'de> Visitor<'de> for ChoicesVisitor {
    type Value = Choices<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of choices")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(1);
        while let Some(c) = seq.next_element::<Choice>()? {
            out.push(c);
        }
        Ok(Choices(out))
    }
}

impl<'de> Deserialize<'de> for Choice<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ChoiceVisitor)
    }
}

struct ChoiceVisitor;

impl<'de> Visitor<'de> for ChoiceVisitor {
    type Value = Choice<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a choice")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut c = Choice::default();
        let (mut index, mut delta, mut finish) = (false, false, false);
        while let Some(Key(k)) = map.next_key::<Key>()? {
            match &*k {
                "index" => {
                    once(&mut index)?;
                    match map.next_value::<Member>()? {
                        Member::Other(Value::Number(n)) if n.is_u64() => c.index = n.as_u64(),
                        _ => return Err(unusual("an index that is no count")),
                    }
                }
                "delta" => {
                    once(&mut delta)?;
                    c.delta = map.next_value::<DeltaMembers>()?.0;
                }
                "finish_reason" => {
                    once(&mut finish)?;
                    let v = map.next_value::<Member>()?;
                    if !v.is_null() {
                        c.finish_reason = Some(v.into_value());
                    }
                }
                "message" => return Err(unusual("a message")),
                "logprobs" => {
                    if !map.next_value::<Member>()?.is_null() {
                        return Err(unusual("logprobs"));
                    }
                }
                _ => {
                    let v = map.next_value::<Member>()?;
                    if c.other.iter().any(|(o, _)| *o == k) {
                        return Err(unusual("a member twice"));
                    }
                    if !v.is_null() {
                        c.other.push((k.into_owned(), v.into_value()));
                    }
                }
            }
        }
        Ok(c)
    }
}

/// A `delta` object's members, sorted by name.
struct DeltaMembers<'a>(Vec<(Cow<'a, str>, Member<'a>)>);

impl<'de> Deserialize<'de> for DeltaMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(DeltaVisitor)
    }
}

struct DeltaVisitor;

impl<'de> Visitor<'de> for DeltaVisitor {
    type Value = DeltaMembers<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a delta object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<(Cow<str>, Member)> = Vec::with_capacity(2);
        while let Some(Key(k)) = map.next_key::<Key>()? {
            if k == "tool_calls" {
                return Err(unusual("tool calls"));
            }
            let v = map.next_value::<Member>()?;
            out.push((k, v));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if out.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(unusual("a member twice"));
        }
        Ok(DeltaMembers(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_chunk_borrowing_its_strings() {
        let data = r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"m",
            "choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,"logprobs":null}],
            "usage":null,"system_fingerprint":null}"#;
        let c = parse(data).unwrap();
        assert_eq!(c.content(), "Hi");
        assert!(matches!(&c.top[0], (k, Member::Str(Cow::Borrowed("c1"))) if k == "id"));
        assert_eq!(c.top[1], ("created".into(), Member::Other(7.into())));
        assert_eq!(
            c.top[3],
            ("system_fingerprint".into(), Member::Other(Value::Null))
        );
        assert_eq!(c.usage, None);
        let ch = &c.choices[0];
        assert_eq!(ch.index, Some(0));
        let names: Vec<&str> = ch.delta.iter().map(|(k, _)| &**k).collect();
        assert_eq!(
            names,
            ["content", "role"],
            "sorted as a Value's members are"
        );
        assert_eq!(ch.finish_reason, None);
    }

    #[test]
    fn escapes_numbers_and_extras_read_as_a_value_would() {
        let data = r#"{"choices":[{"delta":{"content":"a\"b\u00e9","x":{"k":[1,2.5,-3]}},"finish_reason":"stop","extra":true}],"usage":{"total_tokens":3}}"#;
        let c = parse(data).unwrap();
        assert_eq!(c.content(), "a\"bé");
        let ch = &c.choices[0];
        assert_eq!(ch.index, None);
        assert_eq!(
            ch.delta[1],
            (
                "x".into(),
                Member::Other(serde_json::json!({"k": [1, 2.5, -3]}))
            )
        );
        assert_eq!(ch.finish_reason, Some("stop".into()));
        assert_eq!(ch.other, vec![("extra".to_string(), Value::Bool(true))]);
        assert_eq!(c.usage, Some(serde_json::json!({"total_tokens": 3})));
    }

    #[test]
    fn anything_unusual_goes_to_the_general_path() {
        for data in [
            "[DONE]",
            "[1]",
            "\"text\"",
            "{\"choices\":[]} trailing",
            "{\"choices\": [",
            r#"{"error":{"message":"boom"}}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"index":0,"message":{"content":"x"}}]}"#,
            r#"{"choices":[{"index":0,"logprobs":{"content":[]}}]}"#,
            r#"{"choices":[{"index":"0","delta":{}}]}"#,
            r#"{"choices":[{"index":-1,"delta":{}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"id":"a","id":"b","choices":[]}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":{}}"#,
            r#"{"choices":[{"index":0,"delta":"text"}]}"#,
        ] {
            assert!(parse(data).is_none(), "{data}");
        }
        // A null error is no error.
        assert!(parse(r#"{"error":null,"choices":[]}"#).is_some());
    }
}
