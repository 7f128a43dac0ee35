//! The token estimate reserved when a request is admitted, before its usage is known: the
//! prompt at about four bytes per token, plus the output the request allows itself
//! (`max_tokens`, `max_completion_tokens` or `max_output_tokens`). Read incrementally from the
//! request body with fixed memory.

use crate::json::{JsonScanner, Key, Number, Seg, Visitor};
use crate::usage::ModelName;

/// Bytes per token for the prompt estimate (a common rule of thumb for English text and JSON).
pub const BYTES_PER_TOKEN: u64 = 4;
/// An output allowance above this is an estimate nobody should reserve.
const MAX_OUTPUT_ESTIMATE: u64 = 1_000_000;

/// What the request body names at its top level: its output allowance and its model.
#[derive(Debug, Clone, Copy, Default)]
struct Named {
    max_output: Option<u64>,
    model: ModelName,
}

impl Visitor for Named {
    fn number(&mut self, path: &[Seg], n: Number) {
        if let [Seg::Key(Key::MaxTokens | Key::MaxCompletionTokens | Key::MaxOutputTokens)] = path {
            if !n.negative && !n.non_integer && !n.overflow {
                self.max_output = Some(n.value.min(MAX_OUTPUT_ESTIMATE));
            }
        }
    }
    fn wants_string(&self, path: &[Seg]) -> bool {
        matches!(path, [Seg::Key(Key::Model)])
    }
    fn string(&mut self, path: &[Seg], value: &[u8], _truncated: bool) {
        if let [Seg::Key(Key::Model)] = path {
            self.model = ModelName::new(value);
        }
    }
}

/// Accumulates a request body's estimate chunk by chunk.
#[derive(Debug, Clone, Default)]
pub struct RequestEstimate {
    json: JsonScanner,
    named: Named,
    bytes: u64,
}

impl RequestEstimate {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        self.json.feed(chunk, &mut self.named);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The prompt's size in tokens (at [`BYTES_PER_TOKEN`]).
    pub fn prompt_tokens(&self) -> u64 {
        self.bytes.div_ceil(BYTES_PER_TOKEN)
    }

    /// The output allowance the body names (`max_tokens` and kin), if any.
    pub fn max_output(&self) -> Option<u64> {
        self.named.max_output
    }

    /// The model the request asks for (`model`), if it named one.
    pub fn model(&self) -> Option<&str> {
        self.named.model.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(body: &str) -> u64 {
        let mut e = RequestEstimate::default();
        for chunk in body.as_bytes().chunks(7) {
            e.feed(chunk);
        }
        e.prompt_tokens() + e.max_output().unwrap_or(0)
    }

    #[test]
    fn prompt_bytes_and_the_output_allowance_are_reserved() {
        let body = r#"{"model":"gpt-4o","max_tokens":500,"messages":[{"role":"user","content":"hello there"}]}"#;
        assert_eq!(estimate(body), (body.len() as u64).div_ceil(4) + 500);
        let responses = r#"{"model":"gpt-4.1","max_output_tokens":64,"input":"hi"}"#;
        assert_eq!(estimate(responses), (responses.len() as u64).div_ceil(4) + 64);
    }

    #[test]
    fn the_requested_model_is_read_at_the_top_level_only() {
        let mut e = RequestEstimate::default();
        let body = r#"{"metadata":{"model":"not-this"},"messages":[],"model":"claude-sonnet-4"}"#;
        for chunk in body.as_bytes().chunks(5) {
            e.feed(chunk);
        }
        assert_eq!(e.model(), Some("claude-sonnet-4"));
        assert_eq!(RequestEstimate::default().model(), None);
    }

    #[test]
    fn nested_or_bad_allowances_are_ignored() {
        let nested = r#"{"metadata":{"max_tokens":9999},"max_completion_tokens":-1}"#;
        assert_eq!(estimate(nested), (nested.len() as u64).div_ceil(4));
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("not json at all"), 4);
    }
}
