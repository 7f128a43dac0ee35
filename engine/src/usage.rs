//! Token usage from LLM response bodies, scanned incrementally.
//!
//! [`JsonUsageScanner`] is a streaming JSON tokenizer with fixed memory: it sees the body in
//! whatever chunks Envoy delivers, never buffers it, checks it is well-formed, and picks the
//! integers under the top-level `usage` object:
//! - OpenAI chat completions: `usage.prompt_tokens`, `usage.completion_tokens`;
//! - OpenAI Responses and Anthropic Messages: `usage.input_tokens`, `usage.output_tokens`,
//!   plus Anthropic's `cache_creation_input_tokens` / `cache_read_input_tokens`, which are input
//!   the model processed on top of `input_tokens`.

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

/// What a finished scan found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOutcome {
    Counted(Usage),
    /// Well-formed, but without a usage object (or an empty body).
    Missing,
    /// Not well-formed JSON (truncated, garbage, too deep): counted as zero.
    Malformed,
}

/// A single usage figure above this is treated as an upstream bug, not as real usage.
pub const MAX_TOKENS_PER_FIGURE: u64 = 100_000_000;
const MAX_DEPTH: u8 = 64;
const KEY_CAP: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Prompt,
    Completion,
    Input,
    Output,
    CacheCreation,
    CacheRead,
}

impl Field {
    fn from_key(key: &[u8]) -> Option<Field> {
        Some(match key {
            b"prompt_tokens" => Field::Prompt,
            b"completion_tokens" => Field::Completion,
            b"input_tokens" => Field::Input,
            b"output_tokens" => Field::Output,
            b"cache_creation_input_tokens" => Field::CacheCreation,
            b"cache_read_input_tokens" => Field::CacheRead,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    ArrayFirst,
    ObjectFirst,
    Key,
    Colon,
    AfterValue,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Between,
    Str { key: bool, escaped: bool },
    Num,
    Literal { word: &'static [u8], pos: u8 },
}

#[derive(Debug, Clone, Copy, Default)]
struct Number {
    value: u64,
    negative: bool,
    non_integer: bool,
    overflow: bool,
}

/// Anomalies seen in usage figures (counted as zero, reported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Anomalies {
    pub negative: u32,
    pub non_integer: u32,
    pub absurd: u32,
}

impl Anomalies {
    pub fn any(&self) -> bool {
        self.negative + self.non_integer + self.absurd > 0
    }
}

/// Incremental, bounded-memory scanner for one JSON response body.
#[derive(Debug, Clone)]
pub struct JsonUsageScanner {
    /// Bit i set = container at depth i+1 is an array.
    arrays: u64,
    depth: u8,
    expect: Expect,
    lex: Lex,
    key: [u8; KEY_CAP],
    key_len: usize,
    key_overflow: bool,
    /// The current top-level key is `usage`.
    at_usage_key: bool,
    /// Inside the top-level `usage` object.
    in_usage: bool,
    seen_usage: bool,
    field: Option<Field>,
    number: Number,
    figures: [Option<u64>; 6],
    anomalies: Anomalies,
    failed: bool,
    bytes: u64,
}

impl Default for JsonUsageScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonUsageScanner {
    pub fn new() -> Self {
        Self {
            arrays: 0,
            depth: 0,
            expect: Expect::Value,
            lex: Lex::Between,
            key: [0; KEY_CAP],
            key_len: 0,
            key_overflow: false,
            at_usage_key: false,
            in_usage: false,
            seen_usage: false,
            field: None,
            number: Number::default(),
            figures: [None; 6],
            anomalies: Anomalies::default(),
            failed: false,
            bytes: 0,
        }
    }

    pub fn anomalies(&self) -> Anomalies {
        self.anomalies
    }

    pub fn bytes_seen(&self) -> u64 {
        self.bytes
    }

    /// Feeds the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        for &b in chunk {
            if self.failed {
                return;
            }
            self.step(b);
        }
    }

    /// Ends the body and reports what was found.
    pub fn finish(&mut self) -> UsageOutcome {
        if self.failed {
            return UsageOutcome::Malformed;
        }
        if self.lex == Lex::Num {
            self.end_number();
        }
        if self.expect == Expect::Value && self.depth == 0 && self.lex == Lex::Between {
            // Empty or whitespace-only body: nothing to count, nothing wrong.
            return UsageOutcome::Missing;
        }
        if self.expect != Expect::End || self.lex != Lex::Between {
            return UsageOutcome::Malformed;
        }
        if !self.seen_usage || self.figures.iter().all(Option::is_none) {
            return UsageOutcome::Missing;
        }
        let get = |f: Field| self.figures.get(f.index()).copied().flatten().unwrap_or(0);
        let input = get(Field::Prompt)
            .saturating_add(get(Field::Input))
            .saturating_add(get(Field::CacheCreation))
            .saturating_add(get(Field::CacheRead));
        let output = get(Field::Completion).saturating_add(get(Field::Output));
        UsageOutcome::Counted(Usage { input_tokens: input, output_tokens: output })
    }

    fn fail(&mut self) {
        self.failed = true;
    }

    fn is_array(&self, depth: u8) -> bool {
        depth >= 1 && (self.arrays >> (depth - 1)) & 1 == 1
    }

    fn push(&mut self, array: bool) {
        if self.depth >= MAX_DEPTH {
            self.fail();
            return;
        }
        self.depth += 1;
        let bit = 1u64 << (self.depth - 1);
        if array {
            self.arrays |= bit;
        } else {
            self.arrays &= !bit;
            if self.depth == 2 && self.at_usage_key && !self.is_array(1) {
                self.in_usage = true;
                self.seen_usage = true;
            }
        }
        self.expect = if array { Expect::ArrayFirst } else { Expect::ObjectFirst };
    }

    fn pop(&mut self, array: bool) {
        if self.depth == 0 || self.is_array(self.depth) != array {
            self.fail();
            return;
        }
        if self.depth == 2 {
            self.in_usage = false;
        }
        self.depth -= 1;
        self.after_value();
    }

    fn after_value(&mut self) {
        self.field = None;
        self.expect = if self.depth == 0 { Expect::End } else { Expect::AfterValue };
    }

    fn end_key(&mut self) {
        let key = self.key.get(..self.key_len).unwrap_or(&[]);
        if self.depth == 1 {
            self.at_usage_key = !self.key_overflow && key == b"usage";
        } else if self.depth == 2 && self.in_usage {
            self.field = if self.key_overflow { None } else { Field::from_key(key) };
        }
        self.expect = Expect::Colon;
    }

    fn start_number(&mut self, b: u8) {
        self.lex = Lex::Num;
        self.number = Number { negative: b == b'-', ..Number::default() };
        if b != b'-' {
            self.number_byte(b);
        }
    }

    fn number_byte(&mut self, b: u8) {
        match b {
            b'0'..=b'9' if !self.number.non_integer => {
                let d = u64::from(b - b'0');
                match self.number.value.checked_mul(10).and_then(|v| v.checked_add(d)) {
                    Some(v) => self.number.value = v,
                    None => self.number.overflow = true,
                }
            }
            b'0'..=b'9' => {}
            _ => self.number.non_integer = true, // '.', 'e', 'E', '+', '-'
        }
    }

    fn end_number(&mut self) {
        self.lex = Lex::Between;
        if let Some(field) = self.field.filter(|_| self.in_usage && self.depth == 2) {
            let n = self.number;
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
            if let Some(slot) = self.figures.get_mut(field.index()) {
                *slot = Some(value);
            }
        }
        self.after_value();
    }

    fn step(&mut self, b: u8) {
        match self.lex {
            Lex::Str { key, escaped } => {
                if escaped {
                    // Escapes in keys never match a usage field name.
                    self.key_overflow |= key;
                    self.lex = Lex::Str { key, escaped: false };
                } else if b == b'\\' {
                    self.lex = Lex::Str { key, escaped: true };
                } else if b == b'"' {
                    self.lex = Lex::Between;
                    if key {
                        self.end_key();
                    } else {
                        self.after_value();
                    }
                } else if key && self.depth <= 2 {
                    match self.key.get_mut(self.key_len) {
                        Some(slot) => {
                            *slot = b;
                            self.key_len += 1;
                        }
                        None => self.key_overflow = true,
                    }
                }
            }
            Lex::Num => {
                if matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    self.number_byte(b);
                } else {
                    self.end_number();
                    self.structural(b);
                }
            }
            Lex::Literal { word, pos } => {
                if word.get(usize::from(pos)) == Some(&b) {
                    let pos = pos + 1;
                    if usize::from(pos) == word.len() {
                        self.lex = Lex::Between;
                        self.after_value();
                    } else {
                        self.lex = Lex::Literal { word, pos };
                    }
                } else {
                    self.fail();
                }
            }
            Lex::Between => self.structural(b),
        }
    }

    fn structural(&mut self, b: u8) {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return;
        }
        match self.expect {
            Expect::Value | Expect::ArrayFirst => match b {
                b'{' => self.push(false),
                b'[' => self.push(true),
                b']' if self.expect == Expect::ArrayFirst => self.pop(true),
                b'"' => self.lex = Lex::Str { key: false, escaped: false },
                b'-' | b'0'..=b'9' => self.start_number(b),
                b't' => self.lex = Lex::Literal { word: b"true", pos: 1 },
                b'f' => self.lex = Lex::Literal { word: b"false", pos: 1 },
                b'n' => self.lex = Lex::Literal { word: b"null", pos: 1 },
                _ => self.fail(),
            },
            Expect::ObjectFirst | Expect::Key => match b {
                b'"' => {
                    self.key_len = 0;
                    self.key_overflow = false;
                    self.lex = Lex::Str { key: true, escaped: false };
                }
                b'}' if self.expect == Expect::ObjectFirst => self.pop(false),
                _ => self.fail(),
            },
            Expect::Colon => {
                if b == b':' {
                    self.expect = Expect::Value;
                } else {
                    self.fail();
                }
            }
            Expect::AfterValue => match b {
                b',' => self.expect = if self.is_array(self.depth) { Expect::Value } else { Expect::Key },
                b'}' => self.pop(false),
                b']' => self.pop(true),
                _ => self.fail(),
            },
            Expect::End => self.fail(),
        }
    }
}

/// Scans a whole body at once (convenience for tests and small bodies).
pub fn scan_json(body: &[u8]) -> UsageOutcome {
    let mut s = JsonUsageScanner::new();
    s.feed(body);
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
      "choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\" {usage}","usage":{"prompt_tokens":999}},"finish_reason":"stop"}],
      "usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":5}}}"#;

    const ANTHROPIC: &str = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],
      "model":"claude","stop_reason":"end_turn","usage":{"input_tokens":100,"cache_creation_input_tokens":20,
      "cache_read_input_tokens":30,"output_tokens":7}}"#;

    fn counted(input: u64, output: u64) -> UsageOutcome {
        UsageOutcome::Counted(Usage { input_tokens: input, output_tokens: output })
    }

    #[test]
    fn openai_chat_usage_is_counted_and_nested_lookalikes_ignored() {
        assert_eq!(scan_json(OPENAI.as_bytes()), counted(12, 34));
    }

    #[test]
    fn anthropic_usage_includes_cache_tokens_in_input() {
        assert_eq!(scan_json(ANTHROPIC.as_bytes()), counted(150, 7));
    }

    #[test]
    fn every_split_point_gives_the_same_answer() {
        for body in [OPENAI, ANTHROPIC] {
            let bytes = body.as_bytes();
            let whole = scan_json(bytes);
            for cut in 0..=bytes.len() {
                let mut s = JsonUsageScanner::new();
                s.feed(&bytes[..cut]);
                s.feed(&bytes[cut..]);
                assert_eq!(s.finish(), whole, "split at {cut}");
            }
            let mut s = JsonUsageScanner::new();
            for b in bytes {
                s.feed(std::slice::from_ref(b));
            }
            assert_eq!(s.finish(), whole, "byte by byte");
        }
    }

    #[test]
    fn body_without_usage_is_missing() {
        assert_eq!(scan_json(br#"{"id":"x","choices":[]}"#), UsageOutcome::Missing);
        assert_eq!(scan_json(br#"{"usage":null}"#), UsageOutcome::Missing);
        assert_eq!(scan_json(br#"{"usage":{}}"#), UsageOutcome::Missing);
        assert_eq!(scan_json(b""), UsageOutcome::Missing);
        assert_eq!(scan_json(b"[1,2,{\"usage\":{\"input_tokens\":3}}]"), UsageOutcome::Missing);
    }

    #[test]
    fn truncated_and_garbage_bodies_are_malformed() {
        let truncated = &OPENAI.as_bytes()[..OPENAI.len() - 1];
        assert_eq!(scan_json(truncated), UsageOutcome::Malformed);
        assert_eq!(scan_json(b"<html>502 Bad Gateway</html>"), UsageOutcome::Malformed);
        assert_eq!(scan_json(br#"{"usage":{"input_tokens":1}}}"#), UsageOutcome::Malformed);
        assert_eq!(scan_json(br#"{"a" 1}"#), UsageOutcome::Malformed);
        assert_eq!(scan_json(br#"{"a":tru}"#), UsageOutcome::Malformed);
        assert_eq!(scan_json(&[0xff, 0xfe, b'{']), UsageOutcome::Malformed);
    }

    #[test]
    fn nesting_beyond_the_limit_is_malformed_not_a_crash() {
        let deep = "[".repeat(10_000);
        assert_eq!(scan_json(deep.as_bytes()), UsageOutcome::Malformed);
    }

    #[test]
    fn negative_fractional_and_absurd_figures_count_as_zero_with_an_anomaly() {
        let mut s = JsonUsageScanner::new();
        s.feed(
            br#"{"usage":{"input_tokens":-5,"output_tokens":2.5,"cache_read_input_tokens":99999999999999999999999}}"#,
        );
        assert_eq!(s.finish(), counted(0, 0));
        assert_eq!(s.anomalies(), Anomalies { negative: 1, non_integer: 1, absurd: 1 });
    }

    #[test]
    fn non_utf8_inside_strings_is_tolerated() {
        let mut body = br#"{"content":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xc3, 0x28]);
        body.extend_from_slice(br#"","usage":{"input_tokens":4,"output_tokens":1}}"#);
        assert_eq!(scan_json(&body), counted(4, 1));
    }

    #[test]
    fn escaped_quotes_in_keys_and_values_do_not_confuse_the_scanner() {
        let body = br#"{"k\"ey":"v\\","usage":{"input_tokens":1,"output_\u0074okens":50,"output_tokens":2}}"#;
        assert_eq!(scan_json(body), counted(1, 2));
    }

    #[test]
    fn later_usage_object_wins() {
        assert_eq!(scan_json(br#"{"usage":{"input_tokens":1},"usage":{"input_tokens":9}}"#), counted(9, 0));
    }
}
