//! The scanners a response body is fed to as it passes: plain JSON, or SSE (chosen by the
//! response's `content-type`). Both use fixed memory whatever the body's size.

use super::findings::{Findings, Summary};
use super::sse::SseScanner;
use crate::json::{Finish, JsonScanner};

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
            // What was read before the document went wrong (trailing bytes, a second document,
            // a truncation after the usage) still counts: those figures came from the upstream.
            Finish::Malformed => Summary {
                usage: f.usage(),
                tool_calls: f.tool_calls,
                error: f.error,
                malformed: true,
                events: 0,
                anomalies: f.anomalies,
                model: f.model,
                cache: f.cache(),
            },
            Finish::Empty => Summary::default(),
            Finish::Complete => Summary {
                usage: f.usage(),
                tool_calls: f.tool_calls,
                error: f.error,
                malformed: false,
                events: 0,
                anomalies: f.anomalies,
                model: f.model,
                cache: f.cache(),
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
mod tests {
    use super::*;
    use crate::usage::findings::{Anomalies, CacheTokens};
    use crate::usage::testkit::{self, fixture, usage};

    const OPENAI: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
      "choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\" {usage}","usage":{"prompt_tokens":999}},"finish_reason":"stop"}],
      "usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":5}}}"#;

    const ANTHROPIC: &str = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],
      "model":"claude","stop_reason":"end_turn","usage":{"input_tokens":100,"cache_creation_input_tokens":20,
      "cache_read_input_tokens":30,"output_tokens":7}}"#;

    fn scan_every_split(body: &[u8], content_type: &str) -> Summary {
        let new = || BodyScanner::for_content_type(Some(content_type));
        testkit::scan_every_split(body, new, BodyScanner::feed, BodyScanner::finish)
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
    fn the_cached_part_of_the_input_is_read_on_each_api() {
        let chat = scan_every_split(OPENAI.as_bytes(), "application/json");
        assert_eq!(chat.cache, CacheTokens { read: 5, write: 0 }, "a part of prompt_tokens, not more of them");
        let anthropic = scan_every_split(ANTHROPIC.as_bytes(), "application/json");
        assert_eq!(anthropic.cache, CacheTokens { read: 30, write: 20 });
        let responses = r#"{"object":"response","model":"gpt-4.1","usage":{"input_tokens":40,
            "input_tokens_details":{"cached_tokens":32},"output_tokens":2,"output_tokens_details":{"cached_tokens":9}}}"#;
        let r = scan_every_split(responses.as_bytes(), "application/json");
        assert_eq!((r.usage, r.cache), (usage(40, 2), CacheTokens { read: 32, write: 0 }));
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
    fn garbage_bodies_are_malformed_and_count_nothing() {
        for body in [&b"<html>502 Bad Gateway</html>"[..], &[0xff, 0xfe, b'{'], br#"{"id":"x","choices":[{"#] {
            let s = scan_json(body);
            assert!(s.malformed);
            assert_eq!(s.usage, None);
        }
    }

    #[test]
    fn usage_read_before_the_body_went_wrong_still_counts() {
        let truncated = &OPENAI.as_bytes()[..OPENAI.len() - 1];
        let trailing = [OPENAI.as_bytes(), b" trailing bytes"].concat();
        let twice = [OPENAI.as_bytes(), OPENAI.as_bytes()].concat();
        for body in [truncated, &trailing, &twice, br#"{"usage":{"prompt_tokens":12,"completion_tokens":34}}}"#] {
            let s = scan_every_split(body, "application/json");
            assert!(s.malformed, "still flagged");
            assert_eq!(s.usage, usage(12, 34), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_document_is_skipped() {
        let with_bom = [&[0xEF, 0xBB, 0xBF][..], OPENAI.as_bytes()].concat();
        let s = scan_every_split(&with_bom, "application/json");
        assert_eq!((s.usage, s.malformed), (usage(12, 34), false));
        assert!(scan_json(&[0xEF, 0xBB, b'{', b'}']).malformed, "half a mark is not one");
    }

    #[test]
    fn usage_beside_deeply_nested_content_is_found() {
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let body = format!(
            r#"{{"choices":[{{"message":{{"tool_calls":[{{"function":{{"arguments":{deep}}}}}]}}}}],"usage":{{"prompt_tokens":7,"completion_tokens":5}}}}"#
        );
        let s = scan_json(body.as_bytes());
        assert_eq!((s.usage, s.malformed), (usage(7, 5), false));
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
