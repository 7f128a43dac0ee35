//! Request rewrite that makes OpenAI chat streams countable: a streamed chat completion carries
//! usage only if the request sets `stream_options.include_usage`, so the filter sets it when a
//! client did not (the client then also receives the final usage chunk, whose `choices` is empty).

use serde_json::{Map, Value};

/// Request bodies larger than this are passed on unchanged rather than held: Envoy's default
/// per-connection buffer limit is 1 MiB, and holding more would make it answer 413.
pub const MAX_REWRITE_BYTES: usize = 512 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// Not a stream, or usage already requested: forward unchanged.
    Unchanged,
    /// The body to send instead.
    Rewritten(Vec<u8>),
    /// Not a JSON object: forward unchanged (the upstream will answer it).
    NotJson,
}

/// Whether a request path is an OpenAI-style chat completions endpoint.
pub fn is_chat_completions(path: &str) -> bool {
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    bare.ends_with("/chat/completions")
}

/// Adds `stream_options.include_usage: true` to a streamed chat request that lacks it.
pub fn ensure_stream_usage(body: &[u8]) -> Injection {
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Injection::NotJson;
    };
    if request.get("stream") != Some(&Value::Bool(true)) {
        return Injection::Unchanged;
    }
    let options = request.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    let Value::Object(options) = options else { return Injection::Unchanged };
    if options.get("include_usage") == Some(&Value::Bool(true)) {
        return Injection::Unchanged;
    }
    options.insert("include_usage".to_string(), Value::Bool(true));
    match serde_json::to_vec(&request) {
        Ok(bytes) => Injection::Rewritten(bytes),
        Err(_) => Injection::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rewritten(body: &str) -> Value {
        match ensure_stream_usage(body.as_bytes()) {
            Injection::Rewritten(b) => serde_json::from_slice(&b).unwrap(),
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
        assert_eq!(ensure_stream_usage(b"not json"), Injection::NotJson);
        assert_eq!(ensure_stream_usage(b"[1]"), Injection::NotJson);
        assert_eq!(ensure_stream_usage(b""), Injection::NotJson);
    }

    #[test]
    fn chat_completions_paths_are_recognised() {
        assert!(is_chat_completions("/v1/chat/completions"));
        assert!(is_chat_completions("/openai/deployments/x/chat/completions?api-version=2024"));
        assert!(!is_chat_completions("/v1/completions"));
        assert!(!is_chat_completions("/v1/messages"));
    }
}
