//! An incremental JSON tokenizer with fixed memory that reports scalars with their path.
//!
//! It sees a document in whatever chunks arrive, never buffers it, checks it is well-formed
//! (balanced containers, complete strings and literals) and calls a [`Visitor`] for each
//! number and for each string the visitor asks for. Paths are tracked for the first
//! [`MAX_PATH`] levels; deeper values are validated but not reported.
//!
//! Longer than most files here: one tokenizer state machine, which reads best in one piece.
//! [`JsonScanner::step`] defines it a byte at a time; `runs` takes the same steps a span at a
//! time, which is what a stream's cost comes down to.

mod runs;
#[cfg(test)]
mod tests;

/// Object keys the usage scanners care about; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Usage,
    PromptTokens,
    CompletionTokens,
    InputTokens,
    OutputTokens,
    CacheCreationInputTokens,
    CacheReadInputTokens,
    PromptTokensDetails,
    InputTokensDetails,
    CachedTokens,
    Choices,
    Delta,
    Message,
    ToolCalls,
    Id,
    Type,
    Response,
    Output,
    Content,
    ContentBlock,
    Error,
    Model,
    MaxTokens,
    MaxCompletionTokens,
    MaxOutputTokens,
    Other,
}

impl Key {
    fn from_bytes(key: &[u8]) -> Key {
        match key {
            b"usage" => Key::Usage,
            b"prompt_tokens" => Key::PromptTokens,
            b"completion_tokens" => Key::CompletionTokens,
            b"input_tokens" => Key::InputTokens,
            b"output_tokens" => Key::OutputTokens,
            b"cache_creation_input_tokens" => Key::CacheCreationInputTokens,
            b"cache_read_input_tokens" => Key::CacheReadInputTokens,
            b"prompt_tokens_details" => Key::PromptTokensDetails,
            b"input_tokens_details" => Key::InputTokensDetails,
            b"cached_tokens" => Key::CachedTokens,
            b"choices" => Key::Choices,
            b"delta" => Key::Delta,
            b"message" => Key::Message,
            b"tool_calls" => Key::ToolCalls,
            b"id" => Key::Id,
            b"type" => Key::Type,
            b"response" => Key::Response,
            b"output" => Key::Output,
            b"content" => Key::Content,
            b"content_block" => Key::ContentBlock,
            b"error" => Key::Error,
            b"model" => Key::Model,
            b"max_tokens" => Key::MaxTokens,
            b"max_completion_tokens" => Key::MaxCompletionTokens,
            b"max_output_tokens" => Key::MaxOutputTokens,
            _ => Key::Other,
        }
    }
}

/// One step of a path: an object member or an array element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Key(Key),
    Elem,
}

/// A JSON number as far as token counting cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Number {
    /// Integer value (meaningless if `negative`, `non_integer` or `overflow`).
    pub value: u64,
    pub negative: bool,
    pub non_integer: bool,
    pub overflow: bool,
}

/// Receives scalars as they complete.
pub trait Visitor {
    fn number(&mut self, path: &[Seg], n: Number);
    /// Whether the string value starting at `path` should be collected for [`Visitor::string`].
    fn wants_string(&self, path: &[Seg]) -> bool;
    /// A wanted string; `truncated` when it was longer than [`STRING_CAP`] bytes.
    fn string(&mut self, path: &[Seg], value: &[u8], truncated: bool);
}

pub const MAX_PATH: usize = 8;
pub const STRING_CAP: usize = 64;
/// Nesting validated (tool inputs and echoed schemas nest deep); deeper is malformed. The
/// container kinds take one bit each, so this costs 128 bytes per scanner.
const MAX_DEPTH: u16 = 1024;
const DEPTH_WORDS: usize = MAX_DEPTH as usize / 64;

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
    Str { key: bool, escaped: bool, collect: bool },
    Num,
    Literal { word: &'static [u8], pos: u8 },
}

/// Outcome of a finished document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A complete, well-formed document.
    Complete,
    /// Nothing but whitespace.
    Empty,
    Malformed,
}

#[derive(Debug, Clone)]
pub struct JsonScanner {
    /// Bit i set = container at depth i+1 is an array.
    arrays: [u64; DEPTH_WORDS],
    depth: u16,
    /// Bytes of a leading UTF-8 byte order mark skipped so far (a BOM is not JSON, but some
    /// servers send one).
    bom: u8,
    path: [Seg; MAX_PATH],
    expect: Expect,
    lex: Lex,
    buf: [u8; STRING_CAP],
    buf_len: usize,
    buf_overflow: bool,
    number: Number,
    failed: bool,
}

impl Default for JsonScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonScanner {
    pub fn new() -> Self {
        Self {
            arrays: [0; DEPTH_WORDS],
            depth: 0,
            bom: 0,
            path: [Seg::Elem; MAX_PATH],
            expect: Expect::Value,
            lex: Lex::Between,
            buf: [0; STRING_CAP],
            buf_len: 0,
            buf_overflow: false,
            number: Number::default(),
            failed: false,
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The path of the value at the current position, if it is shallow enough to track.
    fn current_path(&self) -> Option<&[Seg]> {
        self.path.get(..usize::from(self.depth))
    }

    pub fn feed<V: Visitor>(&mut self, chunk: &[u8], v: &mut V) {
        if self.failed {
            return;
        }
        let mut rest = self.skip_bom(chunk);
        // Each lexer state consumes as much of the chunk as it can at once (see `runs`); escapes
        // and literals go a byte at a time.
        while !rest.is_empty() {
            rest = match self.lex {
                Lex::Between => self.structural_run(rest, v),
                Lex::Str { key, escaped: false, collect } => self.string_run(rest, key, collect, v),
                Lex::Num => self.number_run(rest, v),
                Lex::Str { escaped: true, .. } | Lex::Literal { .. } => self.byte_run(rest, v),
            };
            if self.failed {
                return;
            }
        }
    }

    /// Skips a byte order mark before the document, in whatever chunks it comes (a BOM is not
    /// JSON, but some servers send one), and returns the rest of `chunk`; half a BOM fails.
    fn skip_bom<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
        let mut rest = chunk;
        while self.bom < 3 {
            let Some((&b, tail)) = rest.split_first() else { break };
            if BOM.get(usize::from(self.bom)) == Some(&b) {
                self.bom += 1;
                rest = tail;
            } else if self.bom > 0 {
                self.fail();
                return &[];
            } else {
                self.bom = 3; // no BOM: stop looking
            }
        }
        rest
    }

    pub fn finish<V: Visitor>(&mut self, v: &mut V) -> Finish {
        if self.failed {
            return Finish::Malformed;
        }
        if self.lex == Lex::Num {
            self.end_number(v);
        }
        if self.expect == Expect::Value && self.depth == 0 && self.lex == Lex::Between {
            return Finish::Empty;
        }
        if self.expect != Expect::End || self.lex != Lex::Between {
            return Finish::Malformed;
        }
        Finish::Complete
    }

    fn fail(&mut self) {
        self.failed = true;
    }

    fn is_array(&self, depth: u16) -> bool {
        let Some(i) = depth.checked_sub(1) else { return false };
        self.arrays.get(usize::from(i / 64)).is_some_and(|w| (w >> (i % 64)) & 1 == 1)
    }

    fn push(&mut self, array: bool) {
        if self.depth >= MAX_DEPTH {
            self.fail();
            return;
        }
        let i = self.depth;
        self.depth += 1;
        if let Some(word) = self.arrays.get_mut(usize::from(i / 64)) {
            let bit = 1u64 << (i % 64);
            if array {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
        if let Some(seg) = self.path.get_mut(usize::from(self.depth) - 1) {
            *seg = if array { Seg::Elem } else { Seg::Key(Key::Other) };
        }
        self.expect = if array { Expect::ArrayFirst } else { Expect::ObjectFirst };
    }

    fn pop(&mut self, array: bool) {
        if self.depth == 0 || self.is_array(self.depth) != array {
            self.fail();
            return;
        }
        self.depth -= 1;
        self.after_value();
    }

    fn after_value(&mut self) {
        self.expect = if self.depth == 0 { Expect::End } else { Expect::AfterValue };
    }

    fn end_key(&mut self) {
        let key =
            if self.buf_overflow { Key::Other } else { Key::from_bytes(self.buf.get(..self.buf_len).unwrap_or(&[])) };
        self.set_key(key);
    }

    fn set_key(&mut self, key: Key) {
        if let Some(seg) = self.path.get_mut(usize::from(self.depth).wrapping_sub(1)) {
            *seg = Seg::Key(key);
        }
        self.expect = Expect::Colon;
    }

    fn end_string<V: Visitor>(&mut self, v: &mut V) {
        if let Some(path) = self.current_path() {
            v.string(path, self.buf.get(..self.buf_len).unwrap_or(&[]), self.buf_overflow);
        }
    }

    fn start_string(&mut self, key: bool, collect: bool) {
        self.buf_len = 0;
        self.buf_overflow = false;
        self.lex = Lex::Str { key, escaped: false, collect };
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

    fn end_number<V: Visitor>(&mut self, v: &mut V) {
        self.lex = Lex::Between;
        if let Some(path) = self.current_path() {
            v.number(path, self.number);
        }
        self.after_value();
    }

    fn step<V: Visitor>(&mut self, b: u8, v: &mut V) {
        match self.lex {
            Lex::Str { key, escaped, collect } => {
                if escaped {
                    // Escaped strings never match the plain names the visitors look for.
                    self.buf_overflow |= key || collect;
                    self.lex = Lex::Str { key, escaped: false, collect };
                } else if b == b'\\' {
                    self.lex = Lex::Str { key, escaped: true, collect };
                } else if b == b'"' {
                    self.lex = Lex::Between;
                    if key {
                        self.end_key();
                    } else {
                        if collect {
                            self.end_string(v);
                        }
                        self.after_value();
                    }
                } else if key || collect {
                    self.collect_bytes(&[b]);
                }
            }
            Lex::Num => {
                if runs::is_number_byte(b) {
                    self.number_byte(b);
                } else {
                    self.end_number(v);
                    self.structural(b, v);
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
            Lex::Between => self.structural(b, v),
        }
    }

    /// Appends a string's bytes to the buffer of the key or value being read, as many as fit
    /// (a string longer than the buffer is marked as such).
    fn collect_bytes(&mut self, bytes: &[u8]) {
        let room = self.buf.len().saturating_sub(self.buf_len);
        let (fits, rest) = bytes.split_at(bytes.len().min(room));
        if let Some(slots) = self.buf.get_mut(self.buf_len..self.buf_len + fits.len()) {
            slots.copy_from_slice(fits);
            self.buf_len += fits.len();
        }
        self.buf_overflow |= !rest.is_empty();
    }

    fn structural<V: Visitor>(&mut self, b: u8, v: &mut V) {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return;
        }
        match self.expect {
            Expect::Value | Expect::ArrayFirst => match b {
                b'{' => self.push(false),
                b'[' => self.push(true),
                b']' if self.expect == Expect::ArrayFirst => self.pop(true),
                b'"' => {
                    let collect = self.current_path().is_some_and(|p| v.wants_string(p));
                    self.start_string(false, collect);
                }
                b'-' | b'0'..=b'9' => self.start_number(b),
                b't' => self.lex = Lex::Literal { word: b"true", pos: 1 },
                b'f' => self.lex = Lex::Literal { word: b"false", pos: 1 },
                b'n' => self.lex = Lex::Literal { word: b"null", pos: 1 },
                _ => self.fail(),
            },
            Expect::ObjectFirst | Expect::Key => match b {
                b'"' => self.start_string(true, false),
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
                b',' => {
                    if self.is_array(self.depth) {
                        self.expect = Expect::Value;
                    } else {
                        self.expect = Expect::Key;
                    }
                }
                b'}' => self.pop(false),
                b']' => self.pop(true),
                _ => self.fail(),
            },
            Expect::End => self.fail(),
        }
    }
}
