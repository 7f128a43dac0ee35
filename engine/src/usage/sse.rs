//! Server-sent events framing, incremental and with fixed memory.
//!
//! Lines end in LF, CRLF or CR; a blank line ends an event; `data:` lines of one event are joined
//! with LF. Each event's data is streamed straight into a [`JsonScanner`] (never buffered), and
//! the findings of complete events are folded into the stream's. `data: [DONE]` ends OpenAI
//! streams; comments (`: ping`) and other fields (`event:`, `id:`, `retry:`) are ignored, since
//! every API here repeats the event type inside the JSON.

use super::findings::{Findings, Summary};
use crate::json::{Finish, JsonScanner};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Line {
    #[default]
    FieldName,
    ValueStart,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Field {
    #[default]
    Ignored,
    Data,
}

const DONE: &[u8] = b"[DONE]";

#[derive(Debug, Clone, Default)]
pub struct SseScanner {
    line: Line,
    field: [u8; 4],
    field_len: usize,
    /// The field name is longer than any name we look for.
    field_long: bool,
    kind: Field,
    after_cr: bool,
    /// `data:` lines in the current event.
    data_lines: u32,
    /// Bytes of the current event's data, and whether they still spell a prefix of `[DONE]`.
    data_len: usize,
    data_is_done: bool,
    json: JsonScanner,
    event: Findings,
    stream: Findings,
    events: u32,
    malformed_events: u32,
    done: bool,
    saw_content: bool,
}

impl SseScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            // Fast path: hand the rest of a data line to the JSON scanner in one piece.
            if self.line == Line::Value && self.kind == Field::Data && !self.after_cr {
                let n = crate::bytes::find2(rest, b'\n', b'\r').unwrap_or(rest.len());
                if n > 0 {
                    let (span, tail) = rest.split_at(n);
                    self.data(span);
                    rest = tail;
                    continue;
                }
            }
            self.step(b);
            rest = tail;
        }
    }

    fn step(&mut self, b: u8) {
        if std::mem::take(&mut self.after_cr) && b == b'\n' {
            return; // the LF of a CRLF
        }
        if b == b'\r' || b == b'\n' {
            self.after_cr = b == b'\r';
            self.end_line();
            return;
        }
        match self.line {
            Line::FieldName if b == b':' => self.start_value(),
            Line::FieldName => match self.field.get_mut(self.field_len) {
                Some(slot) => {
                    *slot = b;
                    self.field_len += 1;
                }
                None => self.field_long = true,
            },
            Line::ValueStart => {
                self.line = Line::Value;
                if b != b' ' {
                    self.value_byte(b);
                }
            }
            Line::Value => self.value_byte(b),
        }
    }

    fn is_data_field(&self) -> bool {
        !self.field_long && self.field.get(..self.field_len) == Some(b"data".as_slice())
    }

    fn start_value(&mut self) {
        self.line = Line::ValueStart;
        self.kind = if self.is_data_field() { Field::Data } else { Field::Ignored };
        if self.field_len > 0 {
            self.saw_content = true;
        }
        if self.kind == Field::Data {
            self.start_data_line();
        }
    }

    fn start_data_line(&mut self) {
        if self.data_lines > 0 {
            self.data(b"\n");
        } else {
            self.data_is_done = true;
        }
        self.data_lines += 1;
    }

    fn value_byte(&mut self, b: u8) {
        if self.kind == Field::Data {
            self.data(&[b]);
        }
    }

    fn data(&mut self, bytes: &[u8]) {
        if self.data_is_done {
            let end = self.data_len + bytes.len();
            self.data_is_done = DONE.get(self.data_len..end) == Some(bytes);
        }
        self.data_len = self.data_len.saturating_add(bytes.len());
        self.json.feed(bytes, &mut self.event);
    }

    fn end_line(&mut self) {
        match self.line {
            Line::FieldName if self.field_len == 0 && !self.field_long => self.dispatch(),
            // A field name alone on its line has an empty value.
            Line::FieldName if self.is_data_field() => {
                self.saw_content = true;
                self.start_data_line();
            }
            Line::FieldName => self.saw_content = true,
            Line::ValueStart | Line::Value => {}
        }
        self.line = Line::FieldName;
        self.kind = Field::Ignored;
        self.field_len = 0;
        self.field_long = false;
    }

    fn dispatch(&mut self) {
        if self.data_lines > 0 {
            self.events = self.events.saturating_add(1);
            if self.data_is_done && self.data_len == DONE.len() {
                self.done = true;
            } else {
                match self.json.finish(&mut self.event) {
                    Finish::Complete => self.stream.merge(&self.event),
                    Finish::Empty => {}
                    Finish::Malformed => self.malformed_events = self.malformed_events.saturating_add(1),
                }
            }
        }
        self.json.reset();
        self.event = Findings::default();
        self.data_lines = 0;
        self.data_len = 0;
        self.data_is_done = false;
    }

    /// Whether `data: [DONE]` was seen.
    pub fn saw_done(&self) -> bool {
        self.done
    }

    pub fn finish(&mut self) -> Summary {
        // A last event without its closing blank line still counts if its JSON is complete.
        if self.line != Line::FieldName || self.field_len > 0 || self.field_long {
            self.end_line();
        }
        self.dispatch();
        let s = &self.stream;
        Summary {
            usage: s.usage(),
            tool_calls: s.tool_calls,
            error: s.error,
            malformed: self.malformed_events > 0 || (self.events == 0 && self.saw_content),
            events: self.events,
            anomalies: s.anomalies,
            model: s.model,
            cache: s.cache(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::testkit::{self, fixture, usage};

    fn scan_every_split(body: &[u8], _content_type: &str) -> Summary {
        testkit::scan_every_split(body, SseScanner::default, SseScanner::feed, SseScanner::finish)
    }

    const SSE: &str = "text/event-stream";

    fn scan(body: &[u8]) -> Summary {
        let mut s = SseScanner::default();
        s.feed(body);
        s.finish()
    }

    #[test]
    fn openai_chat_stream_usage_comes_from_the_final_chunk() {
        let s = scan_every_split(&fixture("openai-chat-stream.sse"), SSE);
        assert_eq!((s.usage, s.tool_calls, s.events, s.malformed), (usage(19, 10), 0, 5, false));
    }

    #[test]
    fn openai_chat_stream_tool_calls_are_counted_once_each_with_crlf_lines() {
        let s = scan_every_split(&fixture("openai-chat-stream-tools.sse"), SSE);
        assert_eq!((s.usage, s.tool_calls, s.malformed), (usage(140, 42), 2, false));
    }

    #[test]
    fn openai_chat_stream_without_include_usage_has_no_usage() {
        let body = fixture("openai-chat-stream.sse");
        let text = String::from_utf8(body).unwrap();
        let without: String =
            text.split("\n\n").filter(|e| !e.contains("\"usage\":{")).collect::<Vec<_>>().join("\n\n");
        let s = scan(without.as_bytes());
        assert_eq!(s.usage, None);
        assert!(!s.malformed);
    }

    #[test]
    fn openai_responses_stream_usage_and_function_calls_come_from_response_completed() {
        let s = scan_every_split(&fixture("openai-responses-stream.sse"), SSE);
        assert_eq!((s.usage, s.tool_calls, s.malformed), (usage(320, 31), 1, false));
        assert_eq!(s.model.as_str(), Some("gpt-4.1-2025-04-14"));
    }

    #[test]
    fn anthropic_stream_takes_input_from_message_start_and_cumulative_output_from_message_delta() {
        let s = scan_every_split(&fixture("anthropic-messages-stream.sse"), SSE);
        assert_eq!((s.usage, s.tool_calls, s.malformed), (usage(472 + 100 + 50, 89), 1, false));
        assert_eq!(s.model.as_str(), Some("claude-sonnet-4-5"));
    }

    #[test]
    fn error_event_is_flagged() {
        let s = scan(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
        assert!(s.error);
        assert!(!s.malformed);
    }

    #[test]
    fn torn_event_is_malformed_but_earlier_events_still_count() {
        let body = b"data: {\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}\n\ndata: {\"usage\":{\"output_tok";
        let s = scan(body);
        assert_eq!(s.usage, usage(5, 1));
        assert!(s.malformed);
    }

    #[test]
    fn last_event_without_a_blank_line_is_still_counted() {
        assert_eq!(scan(b"data: {\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}").usage, usage(3, 4));
    }

    #[test]
    fn missing_blank_lines_merge_events_into_one_malformed_document() {
        // Without the blank line the two data lines are one event: "{...}\n{...}" is not JSON.
        let body = b"data: {\"usage\":{\"input_tokens\":3}}\ndata: {\"usage\":{\"output_tokens\":4}}\n\n";
        let s = scan(body);
        assert!(s.malformed);
        assert_eq!(s.usage, None);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let body = b"data: {\"usage\":\ndata: {\"input_tokens\":3,\ndata: \"output_tokens\":4}}\n\n";
        assert_eq!(scan(body).usage, usage(3, 4));
    }

    #[test]
    fn comments_and_other_fields_are_ignored() {
        let body = b": keep-alive\nevent: x\nid: 7\nretry: 100\ndata:{\"usage\":{\"input_tokens\":1}}\n\n";
        let s = scan(body);
        assert_eq!(s.usage, usage(1, 0));
        assert_eq!(s.events, 1);
    }

    #[test]
    fn done_marker_is_not_a_malformed_event() {
        let mut s = SseScanner::default();
        s.feed(b"data: [DONE]\n\n");
        assert!(!s.finish().malformed);
        assert!(s.saw_done());
        let mut s = SseScanner::default();
        s.feed(b"data: [DONE]x\n\n");
        assert!(s.finish().malformed);
    }

    #[test]
    fn a_json_body_labelled_as_sse_is_malformed() {
        let s = scan(br#"{"error":{"message":"bad request"}}"#);
        assert!(s.malformed);
        assert_eq!(s.usage, None);
    }

    #[test]
    fn a_long_stream_is_scanned_event_by_event() {
        // The scanner owns no heap memory (fixed-size fields only), whatever the stream length.
        let mut s = SseScanner::default();
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}]}\n\n";
        for _ in 0..100_000 {
            s.feed(event);
        }
        s.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":100000}}\n\n");
        let summary = s.finish();
        assert_eq!((summary.events, summary.usage), (100_001, usage(9, 100_000)));
    }
}
