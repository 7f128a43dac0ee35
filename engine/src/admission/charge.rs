//! What a finished request is charged. A response whose body reported its usage is charged
//! that. One that ended without it (the client or the upstream reset the stream before its
//! usage event, the body was truncated, the upstream compressed it anyway) is charged what is
//! known instead, never 0: the prompt (the request body at about 4 bytes per token) and, as
//! output, the response bytes that went through at the same rate, at most the output the
//! request was allowed. A complete, well-formed response that names no usage (a model list, a
//! file) is charged nothing.

use super::record::Admitted;
use crate::request::estimate::BYTES_PER_TOKEN;
use crate::usage::{Summary, Usage};

/// How the response body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Sse,
    /// Compressed by the upstream despite fusebox's asking: not readable.
    Unreadable,
}

/// The response as far as charging is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// `None` when no response headers came (a reset before the upstream answered).
    pub status: Option<u16>,
    pub body: BodyKind,
    /// Response body bytes the upstream sent.
    pub bytes: u64,
}

/// What a request is charged, and whether it is an estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub usage: Usage,
    pub estimated: bool,
}

impl Admitted {
    /// The charge for this request, from what its response body said and how it ended.
    pub fn charge(&self, ending: Ending, summary: &Summary) -> Charge {
        if let Some(usage) = summary.usage {
            return Charge { usage, estimated: false };
        }
        let answered_ok = ending.status.is_some_and(|s| (200..300).contains(&s));
        let without_usage = match (ending.status, ending.body) {
            // The upstream may have read the prompt before the reset.
            (None, _) => true,
            (Some(_), BodyKind::Sse | BodyKind::Unreadable) => answered_ok,
            (Some(_), BodyKind::Json) => answered_ok && summary.malformed,
        };
        if !without_usage {
            return Charge::default();
        }
        let output = match ending.status {
            None => 0,
            Some(_) => ending.bytes.div_ceil(BYTES_PER_TOKEN).min(self.output_cap()),
        };
        let usage = Usage { input_tokens: self.prompt_tokens(), output_tokens: output };
        Charge { usage, estimated: usage.total() > 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Allowed;
    use crate::policy::Limits;

    /// A request with a 400-byte body (100 prompt tokens) and an output allowance of 700.
    fn admitted() -> Admitted {
        let allowed = Some(Allowed { probe: false, warning: None });
        let mut a = Admitted::new("acme".into(), None, "/v1/", Limits::unlimited(), allowed, 100, 700);
        a.estimate.feed(&[b' '; 400]);
        a
    }

    fn ending(status: Option<u16>, body: BodyKind, bytes: u64) -> Ending {
        Ending { status, body, bytes }
    }

    #[test]
    fn reported_usage_is_charged_as_it_is() {
        let usage = Usage { input_tokens: 12, output_tokens: 34 };
        let summary = Summary { usage: Some(usage), ..Summary::default() };
        assert_eq!(admitted().charge(ending(None, BodyKind::Sse, 0), &summary), Charge { usage, estimated: false });
    }

    #[test]
    fn a_stream_cut_before_its_usage_is_charged_its_prompt_and_the_output_that_went_through() {
        let c = admitted().charge(ending(Some(200), BodyKind::Sse, 2000), &Summary::default());
        assert_eq!(c, Charge { usage: Usage { input_tokens: 100, output_tokens: 500 }, estimated: true });
        // Never more output than the request was allowed.
        let long = admitted().charge(ending(Some(200), BodyKind::Sse, 1 << 20), &Summary::default());
        assert_eq!(long.usage.output_tokens, 700);
    }

    #[test]
    fn a_reset_before_any_answer_is_charged_the_prompt() {
        let c = admitted().charge(ending(None, BodyKind::Json, 0), &Summary::default());
        assert_eq!(c, Charge { usage: Usage { input_tokens: 100, output_tokens: 0 }, estimated: true });
    }

    #[test]
    fn a_truncated_json_answer_is_estimated_and_a_complete_one_without_usage_is_free() {
        let truncated = Summary { malformed: true, ..Summary::default() };
        assert!(admitted().charge(ending(Some(200), BodyKind::Json, 80), &truncated).estimated);
        let complete = admitted().charge(ending(Some(200), BodyKind::Json, 80), &Summary::default());
        assert_eq!(complete, Charge::default(), "a model list or a file costs no tokens");
    }

    #[test]
    fn an_upstream_error_is_not_charged() {
        for status in [400, 429, 500, 503] {
            let c = admitted().charge(ending(Some(status), BodyKind::Sse, 300), &Summary::default());
            assert_eq!(c, Charge::default(), "{status}");
        }
    }

    #[test]
    fn a_compressed_answer_is_estimated_rather_than_free() {
        assert!(admitted().charge(ending(Some(200), BodyKind::Unreadable, 400), &Summary::default()).estimated);
    }

    #[test]
    fn a_request_without_a_body_that_got_no_answer_costs_nothing() {
        let a = Admitted::new("acme".into(), None, "/v1/", Limits::unlimited(), None, 0, 700);
        assert_eq!(a.charge(ending(None, BodyKind::Json, 0), &Summary::default()), Charge::default());
    }
}
