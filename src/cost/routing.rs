//! Rule-based model routing for alias models such as `"auto"`.
//!
//! Cheap models answer simple prompts as well as expensive ones; routing
//! lets callers ask for `"auto"` and pay for a strong model only when the
//! request looks like it needs one. Rules are plain data (no regex, no
//! scripting) so a config file stays auditable.

use crate::request::estimate::estimate_prompt_tokens;
use serde_json::{json, Value};

/// Outcome of routing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    /// The real model to send the request to.
    pub model: String,
    /// Which rule chose it: `"rules[1]"`, or `"default"`.
    pub rule: String,
    /// The alias the request asked for, e.g. `"auto"`.
    pub from: String,
}

/// Conditions of one rule; all present conditions must hold (AND).
#[derive(Debug, Clone, Default)]
struct Conditions {
    min_prompt_tokens: Option<u64>,
    max_prompt_tokens: Option<u64>,
    /// Lower-cased needles.
    contains_any: Option<Vec<String>>,
    has_tools: Option<bool>,
    json_mode: Option<bool>,
}

#[derive(Debug, Clone)]
struct Rule {
    cond: Conditions,
    model: String,
}

/// Routes alias models to real ones by ordered rules; first match wins.
#[derive(Debug, Clone)]
pub struct Router {
    aliases: Vec<String>,
    rules: Vec<Rule>,
    default: String,
}

impl Router {
    /// Builds a router from the `routing` client option:
    /// `{"aliases": ["auto"], "rules": [{"if": {...}, "model": "m"}], "default": "m"}`.
    ///
    /// Conditions in an `if` (all optional, ANDed; an empty or missing `if`
    /// always matches):
    /// - `min_prompt_tokens` / `max_prompt_tokens`: integer bounds,
    ///   inclusive, on [`estimate_prompt_tokens`];
    /// - `contains_any`: list of strings, case-insensitive substring match
    ///   over the text of system, developer and user messages (assistant and
    ///   tool messages are excluded: they are not the user's intent);
    /// - `has_tools`: whether the request has a non-empty `tools` (or legacy
    ///   `functions`) array;
    /// - `json_mode`: whether `response_format.type` is `json_object` or
    ///   `json_schema`.
    ///
    /// `aliases` defaults to `["auto"]`; `default` is required so every
    /// aliased request gets a model. Targets must not be aliases, which
    /// would make the gateway see a model name it does not know.
    pub fn from_json(v: &Value) -> Result<Router, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "routing: expected an object".to_string())?;
        let mut aliases = vec!["auto".to_string()];
        let mut rules = Vec::new();
        let mut default = None;
        for (k, val) in obj {
            match k.as_str() {
                "aliases" => {
                    aliases = string_list(val, "routing.aliases")?;
                    if aliases.is_empty() {
                        return Err("routing.aliases: expected a non-empty array of strings".into());
                    }
                }
                "rules" => {
                    let arr = val
                        .as_array()
                        .ok_or_else(|| "routing.rules: expected an array".to_string())?;
                    for (i, r) in arr.iter().enumerate() {
                        rules.push(parse_rule(r, &format!("routing.rules[{i}]"))?);
                    }
                }
                "default" => default = Some(model_name(val, "routing.default")?),
                other => {
                    return Err(format!(
                    "routing.{other}: unknown key (expected \"aliases\", \"rules\" or \"default\")"
                ))
                }
            }
        }
        let default =
            default.ok_or_else(|| "routing.default: required (a model name)".to_string())?;
        if aliases.contains(&default) {
            return Err(format!("routing.default: \"{default}\" is itself an alias"));
        }
        for (i, r) in rules.iter().enumerate() {
            if aliases.contains(&r.model) {
                return Err(format!(
                    "routing.rules[{i}].model: \"{}\" is itself an alias",
                    r.model
                ));
            }
        }
        Ok(Router {
            aliases,
            rules,
            default,
        })
    }

    /// The example configuration: simple queries go to the cheap
    /// `deepseek-v3.2`, long prompts, reasoning keywords, tool use and JSON
    /// mode go to `gpt-4.1`.
    pub fn example_config() -> Value {
        json!({
            "aliases": ["auto", "smart"],
            "rules": [
                {"if": {"min_prompt_tokens": 2000}, "model": "gpt-4.1"},
                {"if": {"contains_any": ["prove", "step by step", "analyze"]}, "model": "gpt-4.1"},
                {"if": {"has_tools": true}, "model": "gpt-4.1"},
                {"if": {"json_mode": true}, "model": "gpt-4.1"},
                {"if": {"max_prompt_tokens": 200}, "model": "deepseek-v3.2"}
            ],
            "default": "deepseek-v3.2"
        })
    }

    /// Chooses a model for `request`, or `None` when its `model` is not an
    /// alias (or is missing): such requests pass through untouched. The
    /// client then sets `request["model"]` to the decision's model before
    /// pricing, budgeting or cache-keying the call.
    pub fn route(&self, request: &Value) -> Option<RouteDecision> {
        self.route_estimated(request, None)
    }

    /// [`Router::route`] with the request's prompt-token estimate when the
    /// caller has it already (else it is made here if a rule needs it).
    pub fn route_estimated(
        &self,
        request: &Value,
        prompt_tokens: Option<u64>,
    ) -> Option<RouteDecision> {
        let from = request.get("model").and_then(Value::as_str)?;
        if !self.aliases.iter().any(|a| a == from) {
            return None;
        }
        // Computed lazily and once: most rule sets only need one of them.
        let mut tokens = prompt_tokens;
        let mut text = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.cond.matches(request, &mut tokens, &mut text) {
                return Some(RouteDecision {
                    model: rule.model.clone(),
                    rule: format!("rules[{i}]"),
                    from: from.to_string(),
                });
            }
        }
        Some(RouteDecision {
            model: self.default.clone(),
            rule: "default".to_string(),
            from: from.to_string(),
        })
    }
}

impl Conditions {
    fn matches(&self, req: &Value, tokens: &mut Option<u64>, text: &mut Option<String>) -> bool {
        if self.min_prompt_tokens.is_some() || self.max_prompt_tokens.is_some() {
            let n = *tokens.get_or_insert_with(|| estimate_prompt_tokens(req));
            if self.min_prompt_tokens.is_some_and(|min| n < min)
                || self.max_prompt_tokens.is_some_and(|max| n > max)
            {
                return false;
            }
        }
        if let Some(want) = self.has_tools {
            let has = ["tools", "functions"].iter().any(|k| {
                req.get(*k)
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            });
            if has != want {
                return false;
            }
        }
        if let Some(want) = self.json_mode {
            let ty = req
                .get("response_format")
                .and_then(|f| f.get("type"))
                .and_then(Value::as_str);
            let is_json = matches!(ty, Some("json_object" | "json_schema"));
            if is_json != want {
                return false;
            }
        }
        if let Some(needles) = &self.contains_any {
            let hay = text.get_or_insert_with(|| intent_text(req));
            if !needles.iter().any(|n| hay.contains(n.as_str())) {
                return false;
            }
        }
        true
    }
}

/// Lower-cased text of the system/developer/user messages (and a string
/// `input`/`prompt`), joined by newlines so needles cannot match across
/// message boundaries by accident.
fn intent_text(req: &Value) -> String {
    let mut out = String::new();
    let mut push = |s: &str| {
        out.push_str(&s.to_lowercase());
        out.push('\n');
    };
    if let Some(messages) = req.get("messages").and_then(Value::as_array) {
        for m in messages {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            if !matches!(role, "system" | "developer" | "user") {
                continue;
            }
            match m.get("content") {
                Some(Value::String(s)) => push(s),
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            push(t);
                        } else if let Some(t) = p.as_str() {
                            push(t);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for k in ["input", "prompt"] {
        if let Some(s) = req.get(k).and_then(Value::as_str) {
            push(s);
        }
    }
    out
}

fn parse_rule(v: &Value, at: &str) -> Result<Rule, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object with \"if\" and \"model\""))?;
    let mut cond = Conditions::default();
    let mut model = None;
    for (k, val) in obj {
        match k.as_str() {
            "if" => cond = parse_conditions(val, &format!("{at}.if"))?,
            "model" => model = Some(model_name(val, &format!("{at}.model"))?),
            other => {
                return Err(format!(
                    "{at}.{other}: unknown key (expected \"if\" or \"model\")"
                ))
            }
        }
    }
    let model = model.ok_or_else(|| format!("{at}.model: required (a model name)"))?;
    Ok(Rule { cond, model })
}

fn parse_conditions(v: &Value, at: &str) -> Result<Conditions, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{at}: expected an object of conditions"))?;
    let mut c = Conditions::default();
    for (k, val) in obj {
        let key_at = format!("{at}.{k}");
        let int = || {
            val.as_u64()
                .ok_or_else(|| format!("{key_at}: expected an integer"))
        };
        let boolean = || {
            val.as_bool()
                .ok_or_else(|| format!("{key_at}: expected true or false"))
        };
        match k.as_str() {
            "min_prompt_tokens" => c.min_prompt_tokens = Some(int()?),
            "max_prompt_tokens" => c.max_prompt_tokens = Some(int()?),
            "has_tools" => c.has_tools = Some(boolean()?),
            "json_mode" => c.json_mode = Some(boolean()?),
            "contains_any" => {
                let list = string_list(val, &key_at)?;
                if list.iter().any(String::is_empty) {
                    // An empty needle would match every request.
                    return Err(format!("{key_at}: strings must not be empty"));
                }
                c.contains_any = Some(list.iter().map(|s| s.to_lowercase()).collect());
            }
            other => {
                return Err(format!(
                    "{at}.{other}: unknown condition (expected \"min_prompt_tokens\", \"max_prompt_tokens\", \"contains_any\", \"has_tools\" or \"json_mode\")"
                ))
            }
        }
    }
    Ok(c)
}

fn string_list(v: &Value, at: &str) -> Result<Vec<String>, String> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("{at}: expected an array of strings"))
}

fn model_name(v: &Value, at: &str) -> Result<String, String> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(format!("{at}: expected a model name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Router {
        Router::from_json(&Router::example_config()).unwrap()
    }

    fn chat(model: &str, user: &str) -> Value {
        json!({"model": model, "messages": [{"role": "user", "content": user}]})
    }

    fn routed(r: &Router, req: &Value) -> (String, String) {
        let d = r.route(req).expect("should route");
        (d.model, d.rule)
    }

    #[test]
    fn non_alias_passes_through() {
        let r = example();
        assert_eq!(r.route(&chat("gpt-4.1", "prove it")), None);
        assert_eq!(r.route(&json!({"messages": []})), None);
        assert_eq!(r.route(&json!({"model": 5})), None);
    }

    #[test]
    fn simple_query_goes_cheap() {
        let r = example();
        let d = r
            .route(&chat("auto", "What is the capital of France?"))
            .unwrap();
        assert_eq!(
            d,
            RouteDecision {
                model: "deepseek-v3.2".into(),
                rule: "rules[4]".into(),
                from: "auto".into()
            }
        );
        assert_eq!(r.route(&chat("smart", "hi")).unwrap().from, "smart");
    }

    #[test]
    fn each_condition() {
        let r = example();
        let long = "word ".repeat(2000);
        assert_eq!(
            routed(&r, &chat("auto", &long)),
            ("gpt-4.1".into(), "rules[0]".into())
        );
        assert_eq!(
            routed(&r, &chat("auto", "Please ANALYZE this")),
            ("gpt-4.1".into(), "rules[1]".into())
        );
        assert_eq!(
            routed(&r, &chat("auto", "think Step By Step")),
            ("gpt-4.1".into(), "rules[1]".into())
        );
        let mut tools = chat("auto", "hi");
        tools["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        assert_eq!(routed(&r, &tools), ("gpt-4.1".into(), "rules[2]".into()));
        tools["tools"] = json!([]);
        assert_eq!(routed(&r, &tools).1, "rules[4]");
        let mut js = chat("auto", "hi");
        js["response_format"] = json!({"type": "json_object"});
        assert_eq!(routed(&r, &js), ("gpt-4.1".into(), "rules[3]".into()));
        js["response_format"] = json!({"type": "text"});
        assert_eq!(routed(&r, &js).1, "rules[4]");
        // Medium prompt, no keywords: falls to the default.
        let medium = "word ".repeat(400);
        assert_eq!(
            routed(&r, &chat("auto", &medium)),
            ("deepseek-v3.2".into(), "default".into())
        );
    }

    #[test]
    fn contains_any_ignores_assistant_text() {
        let r = example();
        let req = json!({"model": "auto", "messages": [
            {"role": "assistant", "content": "let me analyze"},
            {"role": "user", "content": [{"type": "text", "text": "ok thanks"}]}
        ]});
        assert_eq!(routed(&r, &req).1, "rules[4]");
        let req = json!({"model": "auto", "messages": [
            {"role": "system", "content": "You PROVE theorems."},
            {"role": "user", "content": "go"}
        ]});
        assert_eq!(routed(&r, &req).1, "rules[1]");
    }

    #[test]
    fn conditions_are_anded_and_order_wins() {
        let r = Router::from_json(&json!({
            "rules": [
                {"if": {"has_tools": true, "contains_any": ["urgent"]}, "model": "a"},
                {"if": {"contains_any": ["urgent"]}, "model": "b"},
                {"if": {}, "model": "c"},
                {"if": {"contains_any": ["never reached"]}, "model": "d"}
            ],
            "default": "z"
        }))
        .unwrap();
        let mut req = chat("auto", "urgent");
        assert_eq!(routed(&r, &req), ("b".into(), "rules[1]".into()));
        req["tools"] = json!([{"type": "function"}]);
        assert_eq!(routed(&r, &req), ("a".into(), "rules[0]".into()));
        assert_eq!(
            routed(&r, &chat("auto", "never reached")),
            ("c".into(), "rules[2]".into())
        );
        // Only the default alias "auto" applies when none are configured.
        assert_eq!(r.route(&chat("smart", "x")), None);
    }

    #[test]
    fn token_bounds_are_inclusive() {
        let r = Router::from_json(&json!({
            "rules": [{"if": {"min_prompt_tokens": 6, "max_prompt_tokens": 6}, "model": "six"}],
            "default": "other"
        }))
        .unwrap();
        // 4 overhead + "abcdefgh" (2) = 6.
        assert_eq!(routed(&r, &chat("auto", "abcdefgh")).0, "six");
        assert_eq!(routed(&r, &chat("auto", "abcdefghi")).0, "other");
        assert_eq!(routed(&r, &chat("auto", "abcd")).0, "other");
    }

    #[test]
    fn bad_options_name_the_key() {
        let cases = [
            (json!([]), "routing: expected an object"),
            (json!({"rules": []}), "routing.default: required"),
            (
                json!({"default": ""}),
                "routing.default: expected a model name",
            ),
            (
                json!({"default": "auto"}),
                "routing.default: \"auto\" is itself an alias",
            ),
            (
                json!({"aliases": "auto", "default": "m"}),
                "routing.aliases: expected an array of strings",
            ),
            (
                json!({"aliases": [], "default": "m"}),
                "routing.aliases: expected a non-empty",
            ),
            (
                json!({"rules": {}, "default": "m"}),
                "routing.rules: expected an array",
            ),
            (
                json!({"rules": [{"model": "a"}, {"model": "b"}, {"if": {"min_prompt_tokens": "x"}, "model": "c"}], "default": "m"}),
                "routing.rules[2].if.min_prompt_tokens: expected an integer",
            ),
            (
                json!({"rules": [{"if": {"max_prompt_tokens": -1}, "model": "c"}], "default": "m"}),
                "routing.rules[0].if.max_prompt_tokens: expected an integer",
            ),
            (
                json!({"rules": [{"if": {"has_tools": "yes"}, "model": "c"}], "default": "m"}),
                "routing.rules[0].if.has_tools: expected true or false",
            ),
            (
                json!({"rules": [{"if": {"contains_any": [1]}, "model": "c"}], "default": "m"}),
                "routing.rules[0].if.contains_any: expected an array of strings",
            ),
            (
                json!({"rules": [{"if": {"contains_any": [""]}, "model": "c"}], "default": "m"}),
                "routing.rules[0].if.contains_any: strings must not be empty",
            ),
            (
                json!({"rules": [{"if": {"regex": "x"}, "model": "c"}], "default": "m"}),
                "routing.rules[0].if.regex: unknown condition",
            ),
            (
                json!({"rules": [{"if": {}}], "default": "m"}),
                "routing.rules[0].model: required",
            ),
            (
                json!({"rules": [{"model": "auto"}], "default": "m"}),
                "routing.rules[0].model: \"auto\" is itself an alias",
            ),
            (
                json!({"rules": [{"model": "a", "then": 1}], "default": "m"}),
                "routing.rules[0].then: unknown key",
            ),
            (
                json!({"default": "m", "fallback": "x"}),
                "routing.fallback: unknown key",
            ),
        ];
        for (v, want) in cases {
            let err = Router::from_json(&v).unwrap_err();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }
}
