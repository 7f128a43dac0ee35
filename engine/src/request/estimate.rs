//! The token estimate reserved when a request is admitted, before its usage is known: the
//! prompt at about four bytes per token, plus the output the request allows itself
//! (`max_tokens`, `max_completion_tokens` or `max_output_tokens`). Read incrementally from the
//! request body with fixed memory.

use crate::json::{JsonScanner, Key, Number, Seg, Visitor};

/// Bytes per token for the prompt estimate (a common rule of thumb for English text and JSON).
pub const BYTES_PER_TOKEN: u64 = 4;
/// An output allowance above this is an estimate nobody should reserve.
const MAX_OUTPUT_ESTIMATE: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct MaxOutput(Option<u64>);

impl Visitor for MaxOutput {
    fn number(&mut self, path: &[Seg], n: Number) {
        if let [Seg::Key(Key::MaxTokens | Key::MaxCompletionTokens | Key::MaxOutputTokens)] = path {
            if !n.negative && !n.non_integer && !n.overflow {
                self.0 = Some(n.value.min(MAX_OUTPUT_ESTIMATE));
            }
        }
    }
    fn wants_string(&self, _path: &[Seg]) -> bool {
        false
    }
    fn string(&mut self, _path: &[Seg], _value: &[u8], _truncated: bool) {}
}

/// Accumulates a request body's estimate chunk by chunk.
#[derive(Debug, Clone, Default)]
pub struct RequestEstimate {
    json: JsonScanner,
    max_output: MaxOutput,
    bytes: u64,
}

impl RequestEstimate {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        self.json.feed(chunk, &mut self.max_output);
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
        self.max_output.0
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
    fn nested_or_bad_allowances_are_ignored() {
        let nested = r#"{"metadata":{"max_tokens":9999},"max_completion_tokens":-1}"#;
        assert_eq!(estimate(nested), (nested.len() as u64).div_ceil(4));
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("not json at all"), 4);
    }
}
