//! Reading answer bodies: the few fields llmpool needs without a tree of
//! the whole document (`scan`), and the vectors of embeddings answers
//! (`embeddings`, `base64`).

pub mod base64;
pub mod embeddings;
pub mod scan;

use serde_json::Value;

pub use embeddings::Matrix;
pub use scan::NotJson;

/// What llmpool reads out of an OpenAI-style answer body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields {
    /// `choices[0].message.content`, or "".
    pub text: String,
    /// `choices[0].finish_reason`, when a string.
    pub finish_reason: Option<String>,
    /// `model`, when a string.
    pub model: Option<String>,
    /// The `usage` object, or null.
    pub usage: Value,
}

/// Reads [`Fields`] from a body, checking that the body is JSON.
pub fn fields(body: &[u8]) -> Result<Fields, NotJson> {
    let [model, usage, choices] = scan::members(body, ["model", "usage", "choices"])?;
    let first = choices
        .and_then(scan::elements)
        .and_then(|c| c.into_iter().next());
    let message = first.and_then(|c| scan::member(c, "message"));
    Ok(Fields {
        text: message
            .and_then(|m| scan::member(m, "content"))
            .and_then(scan::string)
            .unwrap_or_default(),
        finish_reason: first
            .and_then(|c| scan::member(c, "finish_reason"))
            .and_then(scan::string),
        model: model.and_then(scan::string),
        usage: usage
            .filter(|u| u.first() == Some(&b'{'))
            .and_then(|u| serde_json::from_slice(u).ok())
            .unwrap_or(Value::Null),
    })
}

/// `error.message` and `error.code` (or `error.type`) of an error answer;
/// a string `error` or top-level `message` counts as the message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ErrorFields {
    pub message: Option<String>,
    pub code: Option<String>,
    pub kind: Option<String>,
}

/// Reads [`ErrorFields`]; `None` when the body is not JSON.
pub fn error_fields(body: &[u8]) -> Option<ErrorFields> {
    let [error, message] = scan::members(body, ["error", "message"]).ok()?;
    let field = |k: &str| {
        error
            .and_then(|e| scan::member(e, k))
            .and_then(scan::string)
    };
    Some(ErrorFields {
        message: field("message")
            .or_else(|| error.and_then(scan::string))
            .or_else(|| message.and_then(scan::string)),
        code: field("code"),
        kind: field("type"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_fields() {
        let body = br#"{"id":"x","object":"chat.completion","model":"gpt-x",
            "choices":[{"index":0,"message":{"role":"assistant","content":"H\u00e9llo \"you\""},
            "logprobs":null,"finish_reason":"stop"},{"index":1,"message":{"content":"other"}}],
            "usage":{"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}}}"#;
        let f = fields(body).unwrap();
        assert_eq!(f.text, "Héllo \"you\"");
        assert_eq!(f.finish_reason.as_deref(), Some("stop"));
        assert_eq!(f.model.as_deref(), Some("gpt-x"));
        assert_eq!(
            f.usage,
            json!({"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}})
        );
    }

    #[test]
    fn missing_or_odd_fields_are_defaults() {
        let f =
            fields(br#"{"choices":[{"message":{"content":null}}],"model":7,"usage":[1]}"#).unwrap();
        assert_eq!(
            f,
            Fields {
                usage: Value::Null,
                ..Fields::default()
            }
        );
        assert_eq!(fields(b"[1,2]").unwrap(), Fields::default());
        assert_eq!(fields(b" \"text\" ").unwrap(), Fields::default());
        // The last of repeated keys wins, and escaped keys are keys.
        let f = fields(br#"{"model":"a","mod\u0065l":"b"}"#).unwrap();
        assert_eq!(f.model.as_deref(), Some("b"));
    }

    #[test]
    fn embeddings_answer_fields_without_reading_the_vectors() {
        let row: Vec<String> = (0..1000).map(|i| format!("{}.{:06}", i % 3, i)).collect();
        let body = format!(
            r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[{}]}}],"model":"emb","usage":{{"prompt_tokens":5,"total_tokens":5}}}}"#,
            row.join(",")
        );
        let f = fields(body.as_bytes()).unwrap();
        assert_eq!(f.model.as_deref(), Some("emb"));
        assert_eq!(f.usage["prompt_tokens"], 5);
        assert_eq!(f.text, "");
    }

    #[test]
    fn bodies_that_are_not_json_are_refused() {
        for (body, at) in [
            ("<html>502</html>", 0),
            ("{\"a\":1", 6),
            ("{\"a\":1}x", 7),
            ("{\"a\":[1,2}", 9),
            ("{\"a\":\"x\ty\"}", 7),
            ("{\"a\":\"\\q\"}", 7),
            ("{\"a\":tru}", 5),
            ("{\"a\":01}", 6),
            ("{\"a\":-}", 6),
            ("{\"a\":1.}", 7),
            ("{a:1}", 1),
            ("{\"a\" 1}", 5),
            ("[1,2", 4),
            ("[\"a\" \"b\"]", 5),
            ("", 0),
        ] {
            let e = fields(body.as_bytes()).unwrap_err();
            assert_eq!(e.at, at, "{body}: {e}");
            assert!(
                serde_json::from_str::<Value>(body).is_err(),
                "serde_json agrees: {body}"
            );
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(
            fields(deep.as_bytes()).unwrap_err().what,
            "nested too deeply"
        );
    }

    #[test]
    fn agrees_with_serde_json_on_valid_documents() {
        for body in [
            r#"{"a":[1,-2.5e+3,0,true,false,null,"s\n\u0041",{"b":[]},[[1],[2,3]]],"c":{}}"#,
            r#"  {"model" : "m" , "usage" : { "prompt_tokens" : 1 } }  "#,
            r#"{"x":[ 1 , 2 ],"y":[-0.5]}"#,
            "0",
            "[]",
        ] {
            serde_json::from_str::<Value>(body).unwrap();
            fields(body.as_bytes()).unwrap();
        }
        // Inside a flat array of numbers only the characters are checked
        // (see `scan`); the numbers are checked when the vectors are read.
        assert!(fields(br#"{"e":[1,,2]}"#).is_ok());
        assert!(fields(br#"{"e":[1 2]}"#).is_ok());
        assert!(fields(br#"{"e":[1,x]}"#).is_err());
    }

    #[test]
    fn error_answers() {
        let e = error_fields(br#"{"error":{"message":"over quota","type":"insufficient_quota","code":"insufficient_quota"}}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some("over quota"));
        assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
        assert_eq!(e.kind.as_deref(), Some("insufficient_quota"));
        let e = error_fields(br#"{"error":"bad key"}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some("bad key"));
        let e = error_fields(br#"{"message":"nope"}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some("nope"));
        assert_eq!(error_fields(b"oops"), None);
    }
}
