//! What a request is, read once where its JSON is parsed, then carried with
//! the call: routing, the budget, rate limits and the log read these fields
//! instead of parsing the body again.

pub mod estimate;

use serde_json::Value;

use crate::error::Error;
use estimate::{estimate_prompt_tokens, requested_max_output_tokens};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// `model`, when a string (after routing: the model sent).
    pub model: Option<String>,
    /// A streamed answer: no whole-call timeout, `stream_idle_timeout_ms`
    /// between reads instead.
    pub stream: bool,
    /// The prompt-token estimate, when some layer needs it (a budget,
    /// routing, a rate limit): a walk over every message is not free.
    pub prompt_tokens: Option<u64>,
    /// The output cap the request asks for (`max_tokens` and its kin).
    pub max_output: Option<u64>,
}

impl RequestFacts {
    /// The facts of a parsed request; `estimate` says whether to estimate
    /// its prompt tokens.
    pub fn read(v: &Value, estimate: bool) -> RequestFacts {
        RequestFacts {
            model: v["model"].as_str().map(str::to_string),
            stream: v["stream"] == Value::Bool(true),
            prompt_tokens: estimate.then(|| estimate_prompt_tokens(v)),
            max_output: requested_max_output_tokens(v),
        }
    }

    /// Tokens the call counts against a `tpm` limit: the prompt estimate
    /// plus the output cap it asks for (what gateways count before answering).
    pub fn tpm_tokens(&self) -> u64 {
        self.prompt_tokens.unwrap_or(0) + self.max_output.unwrap_or(0)
    }
}

/// Parses a request body that must be a JSON object.
pub fn parse_object(text: &str, what: &str) -> Result<Value, Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(Error::invalid(format!("{what}: expected a JSON object"))),
        Err(e) => Err(Error::invalid(format!("{what}: invalid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn facts_are_read_once_from_the_parsed_request() {
        let v = json!({"model": "m", "stream": true, "max_tokens": 7,
            "messages": [{"role": "user", "content": "abcd"}]});
        let f = RequestFacts::read(&v, true);
        assert_eq!(f.model.as_deref(), Some("m"));
        assert!(f.stream);
        assert_eq!(f.prompt_tokens, Some(estimate_prompt_tokens(&v)));
        assert_eq!(f.max_output, Some(7));
        assert_eq!(f.tpm_tokens(), estimate_prompt_tokens(&v) + 7);
        let lean = RequestFacts::read(&v, false);
        assert_eq!(lean.prompt_tokens, None);
        assert_eq!(lean.tpm_tokens(), 7);
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(parse_object("{}", "x").is_ok());
        let e = parse_object("[1]", "request_json").unwrap_err();
        assert!(e.message.contains("request_json: expected a JSON object"));
        let e = parse_object("{", "body_json").unwrap_err();
        assert!(e.message.starts_with("body_json: invalid JSON"));
    }
}
