//! Request rewrites:
//! - make OpenAI chat streams countable: a streamed chat completion carries usage only if the
//!   request sets `stream_options.include_usage`, so the filter sets it when a client did not (the
//!   client then also receives the final usage chunk, whose `choices` is empty);
//! - clamp the output allowance (`max_tokens`, `max_completion_tokens`, `max_output_tokens`) to
//!   what remains of the tenant's token windows, when the tier asks for it.

use serde_json::{Map, Value};

/// Request bodies larger than this are passed on unchanged rather than held: Envoy's default
/// per-connection buffer limit is 1 MiB, and holding more would make it answer 413.
pub const MAX_REWRITE_BYTES: usize = 512 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Not a stream, or usage already requested: forward unchanged.
    Unchanged,
    /// The body to send instead, and what was changed.
    Rewritten { body: Vec<u8>, stream_usage_added: bool, clamped: bool },
    /// Not a JSON object: forward unchanged (the upstream will answer it).
    NotJson,
}

/// Whether a canonical request path (see `crate::path`) is an OpenAI-style endpoint whose
/// streams carry usage only when asked: chat completions, and the legacy completions.
pub fn is_chat_completions(path: &str) -> bool {
    let bare = path.split(['?', '#']).next().unwrap_or_default();
    bare.trim_end_matches('/').ends_with("/completions")
}

/// Whether a model server reads this `stream` value as true: servers validate leniently
/// (pydantic's lax booleans), so `1`, `"true"`, `"yes"` and kin stream as well as `true` does.
pub fn streams(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(s) => ["1", "true", "yes", "on", "t", "y"].iter().any(|t| s.trim().eq_ignore_ascii_case(t)),
        _ => false,
    }
}

/// What to change in a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Add `stream_options.include_usage: true` to a streamed chat request that lacks it.
    pub stream_usage: bool,
    /// Lower any output allowance above this (to at least 1).
    pub max_output: Option<u64>,
}

const ALLOWANCE_FIELDS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

fn add_stream_usage(request: &mut Map<String, Value>) -> bool {
    if !request.get("stream").is_some_and(streams) {
        return false;
    }
    let options = request.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    let Value::Object(options) = options else { return false };
    if options.get("include_usage") == Some(&Value::Bool(true)) {
        return false;
    }
    options.insert("include_usage".to_string(), Value::Bool(true));
    true
}

fn clamp_allowance(request: &mut Map<String, Value>, max: u64) -> bool {
    let max = max.max(1);
    let mut changed = false;
    for field in ALLOWANCE_FIELDS {
        if let Some(v) = request.get_mut(field) {
            if v.as_u64().is_some_and(|n| n > max) {
                *v = Value::from(max);
                changed = true;
            }
        }
    }
    changed
}

/// Whether `rewrite` could change `body`, by a byte search that is much cheaper than parsing:
/// false only when no field it touches is named in the body (nor could be, behind a `\u`
/// escape in a name). Lets the common request skip the JSON parse and re-serialisation.
pub fn may_change(body: &[u8], rewrite: Rewrite) -> bool {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if !rewrite.stream_usage && rewrite.max_output.is_none() {
        return false;
    }
    may_hide_names(body)
        || (rewrite.stream_usage && has(b"\"stream\""))
        || (rewrite.max_output.is_some() && ALLOWANCE_FIELDS.iter().any(|f| has(f.as_bytes())))
}

/// Whether a body may spell a name behind a `\u` escape, which only a full parse reads (and
/// the model server reads the same way).
pub fn may_hide_names(body: &[u8]) -> bool {
    body.windows(2).any(|w| w == b"\\u")
}

/// Applies `rewrite` to a JSON request body.
pub fn rewrite(body: &[u8], rewrite: Rewrite) -> Injection {
    if !may_change(body, rewrite) {
        return Injection::Unchanged;
    }
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Injection::NotJson;
    };
    let stream_usage_added = rewrite.stream_usage && add_stream_usage(&mut request);
    let clamped = rewrite.max_output.is_some_and(|max| clamp_allowance(&mut request, max));
    if !stream_usage_added && !clamped {
        return Injection::Unchanged;
    }
    match serde_json::to_vec(&request) {
        Ok(body) => Injection::Rewritten { body, stream_usage_added, clamped },
        Err(_) => Injection::Unchanged,
    }
}

/// Adds `stream_options.include_usage: true` to a streamed chat request that lacks it.
pub fn ensure_stream_usage(body: &[u8]) -> Injection {
    rewrite(body, Rewrite { stream_usage: true, max_output: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_without_the_fields_skip_the_parse() {
        let usage = Rewrite { stream_usage: true, max_output: None };
        let clamp = Rewrite { stream_usage: false, max_output: Some(10) };
        let plain = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(!may_change(plain, usage));
        assert!(!may_change(plain, clamp));
        assert!(!may_change(br#"{"max_tokens":5}"#, Rewrite::default()));
        assert!(may_change(br#"{"stream":true}"#, usage));
        assert!(may_change(br#"{"max_output_tokens":500}"#, clamp));
        // An escaped name could spell any field: parse to be sure.
        let escaped = br#"{"stream":true,"model":"m"}"#;
        assert!(may_change(escaped, usage));
        assert!(matches!(rewrite(escaped, usage), Injection::Rewritten { stream_usage_added: true, .. }));
        assert_eq!(rewrite(plain, usage), Injection::Unchanged);
    }

    fn rewritten(body: &str) -> Value {
        match ensure_stream_usage(body.as_bytes()) {
            Injection::Rewritten { body, stream_usage_added: true, clamped: false } => {
                serde_json::from_slice(&body).unwrap()
            }
            other => panic!("not rewritten: {other:?}"),
        }
    }

    #[test]
    fn stream_without_options_gets_include_usage() {
        let v = rewritten(r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        assert_eq!(v["messages"][0]["content"], "hi");
    }

    #[test]
    fn existing_options_are_kept_and_include_usage_forced_on() {
        let v = rewritten(r#"{"stream":true,"stream_options":{"include_usage":false,"other":1}}"#);
        assert_eq!(v["stream_options"], json!({"include_usage": true, "other": 1}));
        let v = rewritten(r#"{"stream":true,"stream_options":null}"#);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn requests_that_need_nothing_are_unchanged() {
        assert_eq!(ensure_stream_usage(br#"{"stream":false}"#), Injection::Unchanged);
        assert_eq!(ensure_stream_usage(br#"{"model":"x"}"#), Injection::Unchanged);
        assert_eq!(
            ensure_stream_usage(br#"{"stream":true,"stream_options":{"include_usage":true}}"#),
            Injection::Unchanged
        );
    }

    #[test]
    fn non_json_bodies_are_left_alone() {
        assert_eq!(ensure_stream_usage(br#"not json "stream""#), Injection::NotJson);
        assert_eq!(ensure_stream_usage(br#"["stream"]"#), Injection::NotJson);
        // Without the field's name there is nothing to change, JSON or not.
        assert_eq!(ensure_stream_usage(b"not json"), Injection::Unchanged);
        assert_eq!(ensure_stream_usage(b""), Injection::Unchanged);
    }

    #[test]
    fn output_allowances_above_the_room_left_are_clamped() {
        let clamp =
            |body: &str, max| match rewrite(body.as_bytes(), Rewrite { stream_usage: false, max_output: Some(max) }) {
                Injection::Rewritten { body, stream_usage_added: false, clamped: true } => {
                    serde_json::from_slice::<Value>(&body).unwrap()
                }
                other => panic!("{other:?}"),
            };
        assert_eq!(clamp(r#"{"max_tokens":4096,"model":"claude"}"#, 300)["max_tokens"], 300);
        assert_eq!(clamp(r#"{"max_completion_tokens":900}"#, 0)["max_completion_tokens"], 1);
        assert_eq!(clamp(r#"{"max_output_tokens":900,"stream":true}"#, 10)["max_output_tokens"], 10);
        let small = rewrite(br#"{"max_tokens":100}"#, Rewrite { stream_usage: false, max_output: Some(300) });
        assert_eq!(small, Injection::Unchanged);
        let absent = rewrite(br#"{"model":"x"}"#, Rewrite { stream_usage: false, max_output: Some(300) });
        assert_eq!(absent, Injection::Unchanged, "no allowance is invented");
    }

    #[test]
    fn chat_completions_paths_are_recognised() {
        assert!(is_chat_completions("/v1/chat/completions"));
        assert!(is_chat_completions("/openai/deployments/x/chat/completions?api-version=2024"));
        // The legacy completions stream carries usage only when asked, too.
        assert!(is_chat_completions("/v1/completions"));
        assert!(!is_chat_completions("/v1/messages"));
    }

    #[test]
    fn every_value_a_model_server_reads_as_true_gets_usage_asked_for() {
        for stream in ["true", "1", "1.0", r#""true""#, r#""True""#, r#""1""#, r#""yes""#, r#""on""#] {
            let body = format!(r#"{{"model":"m","stream":{stream}}}"#);
            let Injection::Rewritten { body, stream_usage_added, .. } = ensure_stream_usage(body.as_bytes()) else {
                panic!("{stream}: not rewritten")
            };
            assert!(stream_usage_added, "{stream}");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["stream_options"]["include_usage"], true, "{stream}");
        }
        for stream in ["false", "0", r#""false""#, r#""no""#, "null", "[]", "2"] {
            let body = format!(r#"{{"model":"m","stream":{stream}}}"#);
            assert_eq!(ensure_stream_usage(body.as_bytes()), Injection::Unchanged, "{stream}");
        }
    }

    #[test]
    fn chat_and_legacy_completions_paths_take_stream_options_with_or_without_a_trailing_slash() {
        assert!(is_chat_completions("/v1/chat/completions"));
        assert!(is_chat_completions("/v1/chat/completions/"));
        assert!(is_chat_completions("/v1/completions"));
        assert!(is_chat_completions("/openai/deployments/gpt4/chat/completions"));
        assert!(!is_chat_completions("/v1/responses"));
        assert!(!is_chat_completions("/v1/messages"));
    }
}
