//! What a response body says: the usage figures, tool calls, errors and model of one JSON
//! document (a body, or one SSE event), and the summary of a whole body.

use crate::json::{Key, Number, Seg, Visitor};
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

/// The part of a response's input tokens that was read from (or written to) the provider's
/// prompt cache, for prices that differ: OpenAI's `cached_tokens` (chat and Responses) and
/// Anthropic's `cache_read_input_tokens` are reads, Anthropic's `cache_creation_input_tokens`
/// writes. Both are already inside [`Usage::input_tokens`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheTokens {
    pub read: u64,
    pub write: u64,
}

impl CacheTokens {
    /// At most `input` tokens in all (a charge may be lower than what the body reported).
    pub fn within(self, input: u64) -> CacheTokens {
        let read = self.read.min(input);
        CacheTokens { read, write: self.write.min(input - read) }
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
    /// OpenAI's `*_tokens_details.cached_tokens`: a part of the prompt, not more of it.
    Cached,
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
    pub(crate) fn new(value: &[u8]) -> ModelName {
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
    figures: [Option<u64>; 7],
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

    /// The cached part of the input (see [`CacheTokens`]).
    pub fn cache(&self) -> CacheTokens {
        let read = self.get(Figure::CacheRead).saturating_add(self.get(Figure::Cached));
        CacheTokens { read, write: self.get(Figure::CacheCreation) }
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
        if let [K(Usage), K(PromptTokensDetails | InputTokensDetails), K(CachedTokens)]
        | [K(Response), K(Usage), K(InputTokensDetails), K(CachedTokens)] = path
        {
            self.set(Figure::Cached, n);
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
    /// The cached part of the reported input.
    pub cache: CacheTokens,
}
