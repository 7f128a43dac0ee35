//! Local replies in the shape of the API a route serves, so each SDK raises its own error type
//! with fusebox's fields in it. OpenAI routes get the OpenAI error object the replies are built
//! as; Anthropic Messages routes get Anthropic's (`{"type": "error", "error": {"type":
//! "rate_limit_error", "message": ...}}`), with fusebox's own type and fields beside.

use crate::reply::{Reply, StreamApi};
use serde_json::{json, Value};

/// Anthropic's error type for a status.
fn anthropic_type(status: u32) -> &'static str {
    match status {
        400 | 413 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// `reply` (built in the OpenAI shape) in the shape of `api`.
pub fn for_api(mut reply: Reply, api: StreamApi) -> Reply {
    if api != StreamApi::AnthropicMessages {
        return reply;
    }
    let Ok(body) = serde_json::from_str::<Value>(&reply.body) else { return reply };
    let Some(openai) = body.get("error") else { return reply };
    let mut fusebox = openai.get("fusebox").cloned().unwrap_or(Value::Null);
    if let Some(fields) = fusebox.as_object_mut() {
        fields.insert("type".into(), openai.get("type").cloned().unwrap_or(Value::Null));
    }
    let shaped = json!({
        "type": "error",
        "error": {
            "type": anthropic_type(reply.status),
            "message": openai.get("message"),
            "code": openai.get("code"),
            "fusebox": fusebox,
        }
    });
    reply.body = shaped.to_string();
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{Denied, DenyCause};
    use crate::breaker::{Phase, Trip};
    use crate::identity::IdentityError;
    use crate::metric::Metric;
    use crate::reply::{denial, invalid_identity};

    fn tripped() -> Reply {
        let trip = Trip { metric: Metric::Tokens60s, threshold: 60_000, observed: 61_234 };
        denial("acme", &Denied { cause: DenyCause::Tripped(trip), phase: Phase::Open, retry_after_s: 27 }, None)
    }

    #[test]
    fn openai_routes_keep_the_openai_shape() {
        assert_eq!(for_api(tripped(), StreamApi::OpenAiChat), tripped());
        assert_eq!(for_api(tripped(), StreamApi::OpenAiResponses), tripped());
    }

    #[test]
    fn a_refusal_on_an_anthropic_route_is_an_anthropic_error_with_the_fusebox_fields() {
        let r = for_api(tripped(), StreamApi::AnthropicMessages);
        assert_eq!((r.status, r.header("retry-after")), (429, Some("27")), "status and headers are kept");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("tokens_60s"));
        assert_eq!(body["error"]["fusebox"]["type"], "tenant_circuit_open");
        assert_eq!(body["error"]["fusebox"]["reason"], "tokens_60s");
        assert_eq!(body["error"]["fusebox"]["observed"], 61_234);
    }

    #[test]
    fn an_identity_failure_on_an_anthropic_route_is_an_authentication_error() {
        let r = for_api(invalid_identity(IdentityError::Expired), StreamApi::AnthropicMessages);
        assert_eq!(r.status, 401);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (body["error"]["type"].as_str(), body["error"]["code"].as_str()),
            (Some("authentication_error"), Some("token_expired"))
        );
        assert_eq!(body["error"]["fusebox"]["type"], "invalid_identity");
    }
}
