//! OpenTelemetry GenAI semantic conventions for what fusebox sees of an LLM call: the span
//! attributes (`gen_ai.*`) the filter leaves in Envoy's filter state for `custom_tags` to
//! read, and the token-usage histogram's names. Model names stay off metric names: a client
//! chooses them, and every distinct name would be a stat of its own that Envoy keeps forever.

use crate::reply::StreamApi;
use crate::usage::Usage;

/// `gen_ai.provider.name` for the API a request speaks (an OpenAI-compatible server, Azure
/// OpenAI included, speaks `openai`).
pub fn provider_name(api: StreamApi) -> &'static str {
    match api {
        StreamApi::OpenAiChat | StreamApi::OpenAiResponses => "openai",
        StreamApi::AnthropicMessages => "anthropic",
    }
}

/// `gen_ai.operation.name`: all three APIs are chat (a conversation in, a message out).
pub const OPERATION_NAME: &str = "chat";

/// The filter state a span attribute is read from (`%FILTER_STATE(wasm.<name>:PLAIN)%`), with
/// the attribute's semantic-convention name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute {
    pub filter_state: &'static str,
    pub name: &'static str,
}

pub const PROVIDER: Attribute = Attribute { filter_state: "fusebox_gen_ai_provider", name: "gen_ai.provider.name" };
pub const OPERATION: Attribute = Attribute { filter_state: "fusebox_gen_ai_operation", name: "gen_ai.operation.name" };
pub const REQUEST_MODEL: Attribute =
    Attribute { filter_state: "fusebox_gen_ai_request_model", name: "gen_ai.request.model" };
pub const RESPONSE_MODEL: Attribute =
    Attribute { filter_state: "fusebox_gen_ai_response_model", name: "gen_ai.response.model" };
pub const INPUT_TOKENS: Attribute =
    Attribute { filter_state: "fusebox_gen_ai_input_tokens", name: "gen_ai.usage.input_tokens" };
pub const OUTPUT_TOKENS: Attribute =
    Attribute { filter_state: "fusebox_gen_ai_output_tokens", name: "gen_ai.usage.output_tokens" };

/// Every attribute, for configurations and their tests.
pub const ATTRIBUTES: [Attribute; 6] =
    [PROVIDER, OPERATION, REQUEST_MODEL, RESPONSE_MODEL, INPUT_TOKENS, OUTPUT_TOKENS];

/// `gen_ai.client.token.usage` (a histogram of tokens per call) by `gen_ai.token.type`, as
/// Envoy stat names; the shipped bootstraps turn the last segment into the label.
pub const TOKEN_USAGE_INPUT: &str = "gen_ai.client.token.usage.input";
pub const TOKEN_USAGE_OUTPUT: &str = "gen_ai.client.token.usage.output";

/// What a finished call adds to its span: the models asked for and answered with, and the
/// usage when the upstream reported it (an estimate is fusebox's, not the provider's).
pub fn finished(
    request_model: Option<&str>,
    response_model: Option<&str>,
    reported: Option<Usage>,
) -> Vec<(Attribute, String)> {
    let mut out = Vec::with_capacity(4);
    if let Some(m) = request_model {
        out.push((REQUEST_MODEL, m.to_string()));
    }
    if let Some(m) = response_model {
        out.push((RESPONSE_MODEL, m.to_string()));
    }
    if let Some(u) = reported {
        out.push((INPUT_TOKENS, u.input_tokens.to_string()));
        out.push((OUTPUT_TOKENS, u.output_tokens.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_names_its_provider() {
        assert_eq!(provider_name(StreamApi::OpenAiResponses), "openai");
        assert_eq!(provider_name(StreamApi::AnthropicMessages), "anthropic");
    }

    #[test]
    fn a_finished_call_reports_its_models_and_only_reported_usage() {
        let u = Usage { input_tokens: 12, output_tokens: 34 };
        let all = finished(Some("gpt-4o"), Some("gpt-4o-2024-08-06"), Some(u));
        let names: Vec<(&str, &str)> = all.iter().map(|(a, v)| (a.name, v.as_str())).collect();
        assert_eq!(
            names,
            [
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.response.model", "gpt-4o-2024-08-06"),
                ("gen_ai.usage.input_tokens", "12"),
                ("gen_ai.usage.output_tokens", "34")
            ]
        );
        assert!(finished(None, None, None).is_empty(), "an estimate is not the provider's usage");
    }

    #[test]
    fn filter_state_names_are_distinct_and_namespaced() {
        let mut names: Vec<&str> = ATTRIBUTES.iter().map(|a| a.filter_state).collect();
        assert!(names.iter().all(|n| n.starts_with("fusebox_gen_ai_")));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ATTRIBUTES.len());
    }
}
