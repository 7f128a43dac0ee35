//! Token usage, tool calls and upstream errors from LLM response bodies, scanned as they pass.
//!
//! One visitor understands all three APIs, because their paths do not collide:
//! - OpenAI chat completions: `usage.prompt_tokens` / `usage.completion_tokens`; tool calls are the
//!   elements of `choices[].message.tool_calls` (JSON) or the first delta of each call in
//!   `choices[].delta.tool_calls` (SSE; only the first carries an `id`).
//! - OpenAI Responses: `usage.input_tokens` / `usage.output_tokens` (JSON) or
//!   `response.usage.*` of the `response.completed` / `incomplete` / `failed` event (SSE); tool
//!   calls are `output[]` (or `response.output[]`) items of type `function_call`.
//! - Anthropic Messages: `usage.*` (JSON, and the cumulative `message_delta`), `message.usage.*`
//!   of `message_start`; `cache_creation_input_tokens` and `cache_read_input_tokens` are input
//!   on top of `input_tokens`; tool calls are `content[]` / `content_block` of type `tool_use`.
//!
//! Within a stream the latest value of each figure wins (Anthropic's `message_delta` is
//! cumulative; OpenAI sends usage once).

use crate::json::{Finish, JsonScanner, Key, Number, Seg, Visitor};
use crate::sse::SseScanner;
use serde::Serialize;

/// Tokens one response used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A single usage figure above this is treated as an upstream bug, not as real usage.
pub const MAX_TOKENS_PER_FIGURE: u64 = 100_000_000;

/// Anomalies seen in usage figures (each counted as zero, reported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anomalies {
    pub negative: u32,
    pub non_integer: u32,
    pub absurd: u32,
}

impl Anomalies {
    pub fn total(&self) -> u32 {
        self.negative.saturating_add(self.non_integer).saturating_add(self.absurd)
    }

    fn add(&mut self, other: Anomalies) {
        self.negative = self.negative.saturating_add(other.negative);
        self.non_integer = self.non_integer.saturating_add(other.non_integer);
        self.absurd = self.absurd.saturating_add(other.absurd);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    Prompt,
    Completion,
    Input,
    Output,
    CacheCreation,
    CacheRead,
}

impl Figure {
    fn from_key(k: Key) -> Option<Figure> {
        Some(match k {
            Key::PromptTokens => Figure::Prompt,
            Key::CompletionTokens => Figure::Completion,
            Key::InputTokens => Figure::Input,
            Key::OutputTokens => Figure::Output,
            Key::CacheCreationInputTokens => Figure::CacheCreation,
            Key::CacheReadInputTokens => Figure::CacheRead,
            _ => return None,
        })
    }
}

/// A model name as the upstream reported it (at most [`crate::json::STRING_CAP`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelName {
    bytes: [u8; crate::json::STRING_CAP],
    len: u8,
}

impl Default for ModelName {
    fn default() -> Self {
        ModelName { bytes: [0; crate::json::STRING_CAP], len: 0 }
    }
}

impl ModelName {
    fn new(value: &[u8]) -> ModelName {
        let mut m = ModelName::default();
        let n = value.len().min(m.bytes.len());
        if let (Some(dst), Some(src)) = (m.bytes.get_mut(..n), value.get(..n)) {
            dst.copy_from_slice(src);
        }
        m.len = u8::try_from(n).unwrap_or(0);
        m
    }

    /// The name, if any was reported and it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        let bytes = self.bytes.get(..usize::from(self.len))?;
        std::str::from_utf8(bytes).ok().filter(|s| !s.is_empty())
    }
}

/// What one JSON document (a body, or one SSE event) said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Findings {
    figures: [Option<u64>; 6],
    pub tool_calls: u32,
    pub error: bool,
    pub anomalies: Anomalies,
    pub model: ModelName,
}

impl Findings {
    fn set(&mut self, f: Figure, n: Number) {
        let value = if n.negative {
            self.anomalies.negative += 1;
            0
        } else if n.non_integer {
            self.anomalies.non_integer += 1;
            0
        } else if n.overflow || n.value > MAX_TOKENS_PER_FIGURE {
            self.anomalies.absurd += 1;
            0
        } else {
            n.value
        };
        if let Some(slot) = self.figures.get_mut(f as usize) {
            *slot = Some(value);
        }
    }

    fn get(&self, f: Figure) -> u64 {
        self.figures.get(f as usize).copied().flatten().unwrap_or(0)
    }

    /// Folds a later document of the same stream into this one: later figures win.
    pub fn merge(&mut self, later: &Findings) {
        for (mine, theirs) in self.figures.iter_mut().zip(later.figures) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        self.tool_calls = self.tool_calls.saturating_add(later.tool_calls);
        self.error |= later.error;
        if later.model.len > 0 {
            self.model = later.model;
        }
        self.anomalies.add(later.anomalies);
    }

    pub fn usage(&self) -> Option<Usage> {
        if self.figures.iter().all(Option::is_none) {
            return None;
        }
        let input = self
            .get(Figure::Prompt)
            .saturating_add(self.get(Figure::Input))
            .saturating_add(self.get(Figure::CacheCreation))
            .saturating_add(self.get(Figure::CacheRead));
        let output = self.get(Figure::Completion).saturating_add(self.get(Figure::Output));
        Some(Usage { input_tokens: input, output_tokens: output })
    }
}

impl Visitor for Findings {
    fn number(&mut self, path: &[Seg], n: Number) {
        use Key::*;
        use Seg::Key as K;
        if let [K(Usage), K(f)] | [K(Message), K(Usage), K(f)] | [K(Response), K(Usage), K(f)] = path {
            if let Some(f) = Figure::from_key(*f) {
                self.set(f, n);
            }
        }
    }

    fn wants_string(&self, path: &[Seg]) -> bool {
        use Key::*;
        use Seg::{Elem, Key as K};
        matches!(
            path,
            [K(Choices), Elem, K(Delta | Message), K(ToolCalls), Elem, K(Id)]
                | [K(Output), Elem, K(Type)]
                | [K(Response), K(Output), Elem, K(Type)]
                | [K(Content), Elem, K(Type)]
                | [K(ContentBlock), K(Type)]
                | [K(Type)]
                | [K(Error), ..]
                | [K(Model)]
                | [K(Message | Response), K(Model)]
        )
    }

    fn string(&mut self, path: &[Seg], value: &[u8], _truncated: bool) {
        use Key::*;
        use Seg::{Elem, Key as K};
        match path {
            [K(Choices), Elem, K(Delta | Message), K(ToolCalls), Elem, K(Id)] => self.tool_calls += 1,
            [K(Output), Elem, K(Type)] | [K(Response), K(Output), Elem, K(Type)] if value == b"function_call" => {
                self.tool_calls += 1
            }
            [K(Content), Elem, K(Type)] | [K(ContentBlock), K(Type)] if value == b"tool_use" => self.tool_calls += 1,
            [K(Type)] if value == b"error" || value == b"response.failed" => self.error = true,
            [K(Error), ..] => self.error = true,
            [K(Model)] | [K(Message | Response), K(Model)] => self.model = ModelName::new(value),
            _ => {}
        }
    }
}

/// Everything learned from one response body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// `None` when the body carried no usage at all.
    pub usage: Option<Usage>,
    pub tool_calls: u32,
    /// The upstream reported an error inside the body (an SSE error event, `response.failed`).
    pub error: bool,
    /// The body (or, for SSE, at least one event) was not well-formed.
    pub malformed: bool,
    /// SSE only: events with data seen.
    pub events: u32,
    pub anomalies: Anomalies,
    /// The model the upstream says answered (for prices).
    pub model: ModelName,
}

/// Scans a plain JSON body.
#[derive(Debug, Clone, Default)]
pub struct JsonBodyScanner {
    json: JsonScanner,
    findings: Findings,
}

impl JsonBodyScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.json.feed(chunk, &mut self.findings);
    }

    pub fn finish(&mut self) -> Summary {
        let finish = self.json.finish(&mut self.findings);
        let f = &self.findings;
        match finish {
            Finish::Malformed => Summary { malformed: true, anomalies: f.anomalies, ..Summary::default() },
            Finish::Empty => Summary::default(),
            Finish::Complete => Summary {
                usage: f.usage(),
                tool_calls: f.tool_calls,
                error: f.error,
                malformed: false,
                events: 0,
                anomalies: f.anomalies,
                model: f.model,
            },
        }
    }
}

/// The scanner for a response, chosen by its `content-type`.
// One per response, living inline in the request context: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum BodyScanner {
    Json(JsonBodyScanner),
    Sse(SseScanner),
}

impl BodyScanner {
    pub fn for_content_type(content_type: Option<&str>) -> BodyScanner {
        let is_sse = content_type
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/event-stream"));
        if is_sse {
            BodyScanner::Sse(SseScanner::default())
        } else {
            BodyScanner::Json(JsonBodyScanner::default())
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            BodyScanner::Json(s) => s.feed(chunk),
            BodyScanner::Sse(s) => s.feed(chunk),
        }
    }

    pub fn finish(&mut self) -> Summary {
        match self {
            BodyScanner::Json(s) => s.finish(),
            BodyScanner::Sse(s) => s.finish(),
        }
    }
}

/// Scans a whole JSON body at once (tests and small bodies).
pub fn scan_json(body: &[u8]) -> Summary {
    let mut s = JsonBodyScanner::default();
    s.feed(body);
    s.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const OPENAI: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
      "choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\" {usage}","usage":{"prompt_tokens":999}},"finish_reason":"stop"}],
      "usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":5}}}"#;

    const ANTHROPIC: &str = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],
      "model":"claude","stop_reason":"end_turn","usage":{"input_tokens":100,"cache_creation_input_tokens":20,
      "cache_read_input_tokens":30,"output_tokens":7}}"#;

    pub(crate) fn usage(input: u64, output: u64) -> Option<Usage> {
        Some(Usage { input_tokens: input, output_tokens: output })
    }

    /// Reads a recorded provider response from `tests/responses/`.
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/responses").join(name)).unwrap()
    }

    /// Scans `body` split at every point (and byte by byte) and checks all answers agree.
    pub(crate) fn scan_every_split(body: &[u8], content_type: &str) -> Summary {
        let scan = |parts: &[&[u8]]| {
            let mut s = BodyScanner::for_content_type(Some(content_type));
            for p in parts {
                s.feed(p);
            }
            s.finish()
        };
        let whole = scan(&[body]);
        for cut in 0..=body.len() {
            assert_eq!(scan(&[&body[..cut], &body[cut..]]), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = body.iter().map(std::slice::from_ref).collect();
        assert_eq!(scan(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn openai_chat_usage_is_counted_and_nested_lookalikes_ignored() {
        let s = scan_every_split(OPENAI.as_bytes(), "application/json");
        assert_eq!(s.usage, usage(12, 34));
        assert!(!s.malformed);
    }

    #[test]
    fn anthropic_usage_includes_cache_tokens_in_input() {
        assert_eq!(scan_every_split(ANTHROPIC.as_bytes(), "application/json").usage, usage(150, 7));
    }

    #[test]
    fn openai_chat_tool_calls_are_counted() {
        let s = scan_every_split(&fixture("openai-chat-tools.json"), "application/json");
        assert_eq!((s.usage, s.tool_calls), (usage(82, 17), 2));
    }

    #[test]
    fn openai_responses_function_calls_are_counted() {
        let s = scan_every_split(&fixture("openai-responses-tools.json"), "application/json");
        assert_eq!((s.usage, s.tool_calls), (usage(291, 23), 1));
    }

    #[test]
    fn anthropic_tool_use_blocks_are_counted() {
        let s = scan_every_split(&fixture("anthropic-messages-tools.json"), "application/json");
        assert_eq!((s.usage, s.tool_calls), (usage(384, 58), 1));
    }

    #[test]
    fn the_answering_model_is_reported() {
        assert_eq!(scan_every_split(ANTHROPIC.as_bytes(), "application/json").model.as_str(), Some("claude"));
        assert_eq!(scan_json(OPENAI.as_bytes()).model.as_str(), Some("gpt-4o"));
        assert_eq!(scan_json(br#"{"usage":{}}"#).model.as_str(), None);
    }

    #[test]
    fn body_without_usage_has_none() {
        assert_eq!(scan_json(br#"{"id":"x","choices":[]}"#).usage, None);
        assert_eq!(scan_json(br#"{"usage":null}"#).usage, None);
        assert_eq!(scan_json(br#"{"usage":{}}"#).usage, None);
        assert_eq!(scan_json(b""), Summary::default());
        assert_eq!(scan_json(b"[1,2,{\"usage\":{\"input_tokens\":3}}]").usage, None);
    }

    #[test]
    fn error_bodies_are_flagged() {
        let s = scan_json(br#"{"error":{"message":"overloaded","type":"server_error"}}"#);
        assert!(s.error);
        assert_eq!(s.usage, None);
    }

    #[test]
    fn truncated_and_garbage_bodies_are_malformed_and_count_nothing() {
        let truncated = &OPENAI.as_bytes()[..OPENAI.len() - 1];
        for body in
            [truncated, b"<html>502 Bad Gateway</html>", br#"{"usage":{"input_tokens":1}}}"#, &[0xff, 0xfe, b'{']]
        {
            let s = scan_json(body);
            assert!(s.malformed);
            assert_eq!(s.usage, None);
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_malformed_not_a_crash() {
        assert!(scan_json("[".repeat(10_000).as_bytes()).malformed);
    }

    #[test]
    fn negative_fractional_and_absurd_figures_count_as_zero_with_an_anomaly() {
        let s = scan_json(
            br#"{"usage":{"input_tokens":-5,"output_tokens":2.5,"cache_read_input_tokens":99999999999999999999999}}"#,
        );
        assert_eq!(s.usage, usage(0, 0));
        assert_eq!(s.anomalies, Anomalies { negative: 1, non_integer: 1, absurd: 1 });
    }

    #[test]
    fn non_utf8_inside_strings_is_tolerated() {
        let mut body = br#"{"content":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xc3, 0x28]);
        body.extend_from_slice(br#"","usage":{"input_tokens":4,"output_tokens":1}}"#);
        assert_eq!(scan_json(&body).usage, usage(4, 1));
    }

    #[test]
    fn escaped_quotes_in_keys_and_values_do_not_confuse_the_scanner() {
        let body = br#"{"k\"ey":"v\\","usage":{"input_tokens":1,"output_\u0074okens":50,"output_tokens":2}}"#;
        assert_eq!(scan_json(body).usage, usage(1, 2));
    }

    #[test]
    fn later_usage_object_wins() {
        assert_eq!(scan_json(br#"{"usage":{"input_tokens":1},"usage":{"input_tokens":9}}"#).usage, usage(9, 0));
    }

    #[test]
    fn content_type_picks_the_scanner() {
        assert!(matches!(BodyScanner::for_content_type(Some("text/event-stream; charset=utf-8")), BodyScanner::Sse(_)));
        assert!(matches!(BodyScanner::for_content_type(Some("application/json")), BodyScanner::Json(_)));
        assert!(matches!(BodyScanner::for_content_type(None), BodyScanner::Json(_)));
    }
}
