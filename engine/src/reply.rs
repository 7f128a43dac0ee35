//! Local replies: the `429` denial and the `401` identity failure, in the stable shape the
//! README's walk-through shows (status, headers, OpenAI-compatible JSON body).
//!
//! Longer than most files here because its tests (about a third) compare every reply field by
//! field with the contract.

use crate::admission::{Denied, DenyCause, Quota};
use crate::budget::Budget;
use crate::identity::IdentityError;
use crate::metric::Metric;
use crate::run::RunDenied;
use serde_json::json;

/// Retry-after beyond this makes waiting pointless for a client: say `x-should-retry: false`.
pub const SHOULD_RETRY_MAX_S: u64 = 60;

/// A complete local reply for the filter to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// IETF `RateLimit-Policy` and `RateLimit` structured fields for one quota-like metric
/// (none for the error ratio and concurrency, which are not quotas).
pub fn ratelimit_fields(metric: Metric, threshold: u64, remaining: u64, reset_s: u64) -> Vec<(&'static str, String)> {
    if matches!(metric, Metric::ErrorRatio | Metric::Concurrency) {
        return Vec::new();
    }
    vec![
        ("ratelimit-policy", format!("\"{metric}\";q={threshold};w={}", metric.window_s())),
        ("ratelimit", format!("\"{metric}\";r={remaining};t={reset_s}")),
    ]
}

/// `RateLimit-Policy` and `RateLimit` for an allowed response, one item per limited window.
pub fn quota_fields(quotas: &[Quota]) -> Option<[(&'static str, String); 2]> {
    if quotas.is_empty() {
        return None;
    }
    // Written by hand: these are built for every admitted request, and `format!` per item was
    // a measurable part of a request's cost.
    let field = |a: &str, b: &str, value: &dyn Fn(&Quota) -> (u64, u64)| {
        let mut out = String::with_capacity(quotas.len() * 40);
        for (i, q) in quotas.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let (x, y) = value(q);
            out.push('"');
            out.push_str(q.metric.as_str());
            out.push_str(a);
            push_u64(&mut out, x);
            out.push_str(b);
            push_u64(&mut out, y);
        }
        out
    };
    Some([
        ("ratelimit-policy", field("\";q=", ";w=", &|q| (q.limit, q.metric.window_s()))),
        ("ratelimit", field("\";r=", ";t=", &|q| (q.remaining, q.reset_s))),
    ])
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while let Some(d) = i.checked_sub(1).and_then(|j| digits.get_mut(j)) {
        *d = b'0' + (n % 10) as u8;
        i -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits, pushed as chars: no UTF-8 check of bytes known to be digits.
    out.extend(digits.get(i..).unwrap_or_default().iter().map(|&d| char::from(d)));
}

/// Cost micros as currency units for replies.
fn currency(micros: u64) -> serde_json::Value {
    json!(micros as f64 / 1e6)
}

/// What every `429` says, whoever refused the request.
struct Refusal<'a> {
    kind: &'static str,
    reason: &'a str,
    message: String,
    tenant: &'a str,
    state: &'a str,
    threshold: Option<serde_json::Value>,
    observed: Option<serde_json::Value>,
    retry_after_s: u64,
    run_id: Option<&'a str>,
    should_retry: bool,
    /// The scope whose limit refused (`org:initech`); `None` for the tenant's own.
    scope: Option<&'a str>,
}

impl Refusal<'_> {
    fn reply(self) -> Reply {
        let mut body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "code": self.reason,
                "fusebox": {
                    "tenant": self.tenant,
                    "state": self.state,
                    "reason": self.reason,
                    "threshold": self.threshold,
                    "observed": self.observed,
                    "retry_after_s": self.retry_after_s,
                    "run_id": self.run_id,
                }
            }
        });
        // Only a scope's refusal names it: the tenant's own reply stays as documented.
        if let (Some(scope), Some(f)) = (self.scope, body.pointer_mut("/error/fusebox").and_then(|f| f.as_object_mut()))
        {
            f.insert("scope".into(), json!(scope));
        }
        let mut headers = vec![
            ("content-type", "application/json".to_string()),
            ("retry-after", self.retry_after_s.to_string()),
            ("x-fusebox-tenant", self.tenant.to_string()),
            ("x-fusebox-reason", self.reason.to_string()),
        ];
        if !self.should_retry {
            headers.push(("x-should-retry", "false".to_string()));
        }
        if let Some(scope) = self.scope {
            headers.push(("x-fusebox-scope", scope.to_string()));
        }
        Reply { status: 429, headers, body: body.to_string() }
    }
}

/// The `429` for a request the breaker, a cap or a budget refused.
pub fn denial(tenant: &str, denied: &Denied, run_id: Option<&str>) -> Reply {
    denial_in(tenant, None, denied, run_id)
}

/// The `429` for a request refused by the limits of one of its scopes (`org:initech`), or by
/// its tenant's own with `scope` `None`.
pub fn denial_in(tenant: &str, scope: Option<&str>, denied: &Denied, run_id: Option<&str>) -> Reply {
    let retry = denied.retry_after_s.max(1);
    // Whose limit it is, in the messages.
    let who = match scope {
        Some(s) => format!("scope {s} of tenant '{tenant}'"),
        None => format!("tenant '{tenant}'"),
    };
    let state = denied.phase.as_str();
    let mut kind = "tenant_circuit_open";
    let (reason, threshold, observed, message) = match denied.cause {
        DenyCause::Tripped(t) => (
            t.metric.as_str(),
            Some(json!(t.threshold)),
            Some(json!(t.observed)),
            format!("{who} is over {} ({} > {}); retry in {retry}s", t.metric, t.observed, t.threshold),
        ),
        DenyCause::Budget { budget, limit, used } => {
            kind = "tenant_budget_exhausted";
            let (limit, used) = match budget {
                Budget::TokensDay => (json!(limit), json!(used)),
                Budget::CostMonth => (currency(limit), currency(used)),
            };
            let message = format!("{who} has used its {budget} ({used} of {limit}); it resets in {retry}s");
            (budget.as_str(), Some(limit), Some(used), message)
        }
        DenyCause::ProbesBusy => (
            "breaker_open",
            None,
            None,
            format!("{who} circuit is half-open and its probes are in flight; retry in {retry}s"),
        ),
        // Not a trip (the breaker stays closed): what is left of a window is reserved by the
        // tenant's requests in flight, and frees up as they finish.
        DenyCause::Reserved { metric, threshold, observed } => {
            kind = "tenant_capacity_reserved";
            let message = format!(
                "{who} would exceed {metric} with the requests it has in flight ({observed} > {threshold}); retry in {retry}s"
            );
            ("reserved", Some(json!(threshold)), Some(json!(observed)), message)
        }
        DenyCause::Concurrency { limit, in_flight } => (
            Metric::Concurrency.as_str(),
            Some(json!(limit)),
            Some(json!(in_flight)),
            format!("{who} is over concurrency ({in_flight} > {limit}); retry in {retry}s"),
        ),
        DenyCause::KillSwitch => {
            // The operator's reason stays internal (audit log); the tenant learns only the fact.
            kind = "tenant_kill_switch";
            ("kill_switch", None, None, format!("{who} has been stopped by an operator (kill switch)"))
        }
    };
    let budget = matches!(denied.cause, DenyCause::Budget { .. } | DenyCause::KillSwitch);
    let mut reply = Refusal {
        kind,
        reason,
        message,
        tenant,
        state,
        threshold,
        observed,
        retry_after_s: retry,
        run_id,
        should_retry: retry <= SHOULD_RETRY_MAX_S && !budget,
        scope,
    }
    .reply();
    let headers = &mut reply.headers;
    match denied.cause {
        DenyCause::Tripped(t) => headers.extend(ratelimit_fields(t.metric, t.threshold, 0, retry)),
        DenyCause::Budget { budget: Budget::TokensDay, limit, .. } => {
            headers.push(("ratelimit-policy", format!("\"budget_tokens_day\";q={limit};w=86400")));
            headers.push(("ratelimit", format!("\"budget_tokens_day\";r=0;t={retry}")));
        }
        _ => {}
    }
    reply
}

/// The `429` for a request of an agent run that is over one of its limits. Run limits are
/// cumulative: waiting does not help, so `x-should-retry: false` and `retry-after` is the time
/// until the run's record is forgotten.
pub fn run_denial(tenant: &str, run_id: &str, denied: &RunDenied, retry_after_s: u64) -> Reply {
    let reason = denied.limit.as_str();
    Refusal {
        kind: "agent_run_limit",
        reason,
        message: format!(
            "agent run '{run_id}' of tenant '{tenant}' is over {reason} ({} > {}); start a new run",
            denied.observed, denied.threshold
        ),
        tenant,
        state: "open",
        threshold: Some(json!(denied.threshold)),
        observed: Some(json!(denied.observed)),
        retry_after_s: retry_after_s.max(1),
        run_id: Some(run_id),
        should_retry: false,
        scope: None,
    }
    .reply()
}

/// The `400` for a malformed request header fusebox relies on (e.g. a run id).
pub fn bad_request(code: &str, message: &str) -> Reply {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "code": code}});
    Reply {
        status: 400,
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("x-fusebox-reason", code.to_string()),
            ("x-should-retry", "false".to_string()),
        ],
        body: body.to_string(),
    }
}

/// The streaming API of a response, from its request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamApi {
    OpenAiChat,
    OpenAiResponses,
    AnthropicMessages,
}

impl StreamApi {
    pub fn for_path(path: &str) -> StreamApi {
        let bare = path.split_once('?').map_or(path, |(p, _)| p);
        if bare.ends_with("/messages") {
            StreamApi::AnthropicMessages
        } else if bare.ends_with("/responses") {
            StreamApi::OpenAiResponses
        } else {
            StreamApi::OpenAiChat
        }
    }
}

/// The final SSE event(s) that end a stream whose tenant's breaker opened mid-way: an error
/// event in the API's own shape (so SDKs raise it), and `[DONE]` for OpenAI chat.
pub fn stream_termination(api: StreamApi, tenant: &str, denied: &Denied) -> Vec<u8> {
    let denial = denial(tenant, denied, None);
    let error: serde_json::Value = serde_json::from_str(&denial.body).unwrap_or_default();
    let inner = error.get("error").cloned().unwrap_or_default();
    let text = match api {
        StreamApi::OpenAiChat => format!("data: {error}\n\ndata: [DONE]\n\n"),
        StreamApi::OpenAiResponses => {
            // The Responses `error` event, plus the `error` object SDKs raise from (the OpenAI
            // Python SDK raises `APIError` only for an event that carries one).
            let event = json!({"type": "error", "code": inner.get("code"), "message": inner.get("message"), "param": null, "error": inner, "fusebox": inner.get("fusebox")});
            format!("event: error\ndata: {event}\n\n")
        }
        StreamApi::AnthropicMessages => {
            let event = json!({"type": "error", "error": inner});
            format!("event: error\ndata: {event}\n\n")
        }
    };
    text.into_bytes()
}

/// The `401` for a request without a usable identity.
pub fn invalid_identity(err: IdentityError) -> Reply {
    let body = json!({
        "error": {
            "message": err.message(),
            "type": "invalid_identity",
            "code": err.code(),
            "fusebox": { "tenant": null, "state": null, "reason": err.code(), "retry_after_s": null, "run_id": null }
        }
    });
    Reply {
        status: 401,
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("www-authenticate", format!("Bearer error=\"invalid_token\", error_description=\"{}\"", err.code())),
            ("x-fusebox-reason", err.code().to_string()),
            ("x-should-retry", "false".to_string()),
        ],
        body: body.to_string(),
    }
}

/// A `503` for when the filter cannot decide (no usable policy): fail closed, clearly.
pub fn unavailable(message: &str) -> Reply {
    let body = json!({"error": {"message": message, "type": "fusebox_unavailable", "code": "policy_unavailable"}});
    Reply {
        status: 503,
        headers: vec![("content-type", "application/json".to_string()), ("retry-after", "5".to_string())],
        body: body.to_string(),
    }
}

/// The `503` for a tenant this Envoy has no room to count: every slot its state could take holds
/// another tenant's that still matters. Fail closed (an uncounted request would be free).
pub fn state_full(tenant: &str) -> Reply {
    let message = format!("fusebox is counting as many tenants as it can hold; tenant '{tenant}' must retry shortly");
    let body = json!({"error": {"message": message, "type": "fusebox_unavailable", "code": "state_full"}});
    Reply {
        status: 503,
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("retry-after", "5".to_string()),
            ("x-fusebox-reason", "state_full".to_string()),
        ],
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{Phase, Trip};
    use serde_json::Value;

    #[test]
    fn denial_matches_the_documented_reply() {
        let denied = Denied {
            cause: DenyCause::Tripped(Trip { metric: Metric::Tokens60s, threshold: 60_000, observed: 61_234 }),
            phase: Phase::Open,
            retry_after_s: 27,
        };
        let r = denial("acme", &denied, None);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("27"));
        assert_eq!(r.header("x-fusebox-tenant"), Some("acme"));
        assert_eq!(r.header("x-fusebox-reason"), Some("tokens_60s"));
        assert_eq!(r.header("x-should-retry"), None);
        assert_eq!(r.header("ratelimit-policy"), Some("\"tokens_60s\";q=60000;w=60"));
        assert_eq!(r.header("ratelimit"), Some("\"tokens_60s\";r=0;t=27"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let expected: Value = serde_json::from_str(
            r#"{"error": {"message": "tenant 'acme' is over tokens_60s (61234 > 60000); retry in 27s",
               "type": "tenant_circuit_open", "code": "tokens_60s",
               "fusebox": {"tenant": "acme", "state": "open", "reason": "tokens_60s",
                           "threshold": 60000, "observed": 61234, "retry_after_s": 27, "run_id": null}}}"#,
        )
        .unwrap();
        assert_eq!(body, expected);
    }

    #[test]
    fn a_scopes_refusal_names_the_scope_in_the_body_the_header_and_the_message() {
        let denied = Denied {
            cause: DenyCause::Budget { budget: Budget::TokensDay, limit: 1000, used: 1200 },
            phase: Phase::Closed,
            retry_after_s: 3600,
        };
        let r = denial_in("acme", Some("org:initech"), &denied, None);
        assert_eq!(r.header("x-fusebox-scope"), Some("org:initech"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["fusebox"]["scope"], "org:initech");
        assert_eq!(body["error"]["fusebox"]["tenant"], "acme");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("scope org:initech of tenant 'acme' has used"));
        assert_eq!(denial("acme", &denied, None).header("x-fusebox-scope"), None);
    }

    #[test]
    fn allowed_responses_list_every_limited_window() {
        let quotas = [
            Quota { metric: Metric::Tokens60s, limit: 60_000, remaining: 5766, reset_s: 41 },
            Quota { metric: Metric::Requests10s, limit: 20, remaining: 19, reset_s: 10 },
        ];
        let [(p, policy), (r, state)] = quota_fields(&quotas).unwrap();
        assert_eq!(
            (p, policy.as_str()),
            ("ratelimit-policy", "\"tokens_60s\";q=60000;w=60, \"requests_10s\";q=20;w=10")
        );
        assert_eq!((r, state.as_str()), ("ratelimit", "\"tokens_60s\";r=5766;t=41, \"requests_10s\";r=19;t=10"));
        assert_eq!(quota_fields(&[]), None);
    }

    #[test]
    fn quota_numbers_are_written_in_full_from_zero_to_the_largest() {
        for n in [0, 7, 10, 99, 1_000_000_000_000, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn long_cooldown_tells_clients_not_to_retry() {
        let denied = Denied {
            cause: DenyCause::Tripped(Trip { metric: Metric::Requests10s, threshold: 5, observed: 6 }),
            phase: Phase::Open,
            retry_after_s: 300,
        };
        assert_eq!(denial("a", &denied, None).header("x-should-retry"), Some("false"));
    }

    #[test]
    fn half_open_probe_denial_says_breaker_open() {
        let denied = Denied { cause: DenyCause::ProbesBusy, phase: Phase::HalfOpen, retry_after_s: 1 };
        let r = denial("a", &denied, Some("run-1"));
        assert_eq!(r.header("x-fusebox-reason"), Some("breaker_open"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["fusebox"]["state"], "half_open");
        assert_eq!(body["error"]["fusebox"]["run_id"], "run-1");
    }

    #[test]
    fn kill_switch_denial_has_its_own_type_and_says_not_to_retry_soon() {
        let denied = Denied { cause: DenyCause::KillSwitch, phase: Phase::Open, retry_after_s: 60 };
        let r = denial("acme", &denied, None);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("x-fusebox-reason"), Some("kill_switch"));
        assert_eq!(r.header("x-should-retry"), Some("false"));
        assert_eq!(r.header("retry-after"), Some("60"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["type"], "tenant_kill_switch");
        assert_eq!(body["error"]["code"], "kill_switch");
        assert_eq!(body["error"]["fusebox"]["state"], "open");
    }

    #[test]
    fn concurrency_denial_names_the_cap_and_has_no_quota_fields() {
        let denied =
            Denied { cause: DenyCause::Concurrency { limit: 4, in_flight: 5 }, phase: Phase::Closed, retry_after_s: 1 };
        let r = denial("a", &denied, None);
        assert_eq!(r.header("x-fusebox-reason"), Some("concurrency"));
        assert_eq!(r.header("ratelimit"), None);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["fusebox"]["state"], "closed");
        assert_eq!(
            (body["error"]["fusebox"]["threshold"].as_u64(), body["error"]["fusebox"]["observed"].as_u64()),
            (Some(4), Some(5))
        );
    }

    #[test]
    fn exhausted_budget_is_its_own_type_and_says_not_to_retry_soon() {
        let denied = Denied {
            cause: DenyCause::Budget { budget: Budget::CostMonth, limit: 50_000_000, used: 50_012_000 },
            phase: Phase::Closed,
            retry_after_s: 3600,
        };
        let r = denial("acme", &denied, None);
        assert_eq!(r.header("x-should-retry"), Some("false"));
        assert_eq!(r.header("x-fusebox-reason"), Some("budget_cost_month"));
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["type"], "tenant_budget_exhausted");
        assert_eq!(body["error"]["fusebox"]["threshold"], 50.0);
        assert_eq!(body["error"]["fusebox"]["observed"], 50.012);
        assert_eq!(
            body["error"]["message"],
            "tenant 'acme' has used its budget_cost_month (50.012 of 50.0); it resets in 3600s"
        );
    }

    #[test]
    fn run_denial_names_the_run_and_says_to_start_a_new_one() {
        let denied = RunDenied { limit: crate::run::RunLimit::Steps, threshold: 3, observed: 4 };
        let r = run_denial("acme", "run-7", &denied, 3600);
        assert_eq!(
            (r.status, r.header("x-fusebox-reason"), r.header("x-should-retry")),
            (429, Some("run_steps"), Some("false"))
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["type"], "agent_run_limit");
        assert_eq!(body["error"]["fusebox"]["run_id"], "run-7");
        assert_eq!(body["error"]["fusebox"]["observed"], 4);
    }

    #[test]
    fn stream_termination_is_a_well_formed_final_event_per_api() {
        let denied = Denied {
            cause: DenyCause::Tripped(Trip { metric: Metric::Tokens60s, threshold: 10, observed: 20 }),
            phase: Phase::Open,
            retry_after_s: 5,
        };
        let chat =
            String::from_utf8(stream_termination(StreamApi::for_path("/v1/chat/completions"), "a", &denied)).unwrap();
        assert!(chat.starts_with("data: {\"error\":{") && chat.ends_with("\n\ndata: [DONE]\n\n"), "{chat}");
        let anthropic =
            String::from_utf8(stream_termination(StreamApi::for_path("/v1/messages"), "a", &denied)).unwrap();
        assert!(anthropic.starts_with("event: error\ndata: {"), "{anthropic}");
        let data: Value =
            serde_json::from_str(anthropic.trim_start_matches("event: error\ndata: ").trim_end()).unwrap();
        assert_eq!(
            (data["type"].as_str(), data["error"]["type"].as_str()),
            (Some("error"), Some("tenant_circuit_open"))
        );
        let responses =
            String::from_utf8(stream_termination(StreamApi::for_path("/v1/responses"), "a", &denied)).unwrap();
        let data: Value =
            serde_json::from_str(responses.trim_start_matches("event: error\ndata: ").trim_end()).unwrap();
        assert_eq!((data["type"].as_str(), data["code"].as_str()), (Some("error"), Some("tokens_60s")));
    }

    #[test]
    fn identity_failure_is_a_401_with_a_code() {
        let r = invalid_identity(IdentityError::Expired);
        assert_eq!(r.status, 401);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["type"], "invalid_identity");
        assert_eq!(body["error"]["code"], "token_expired");
        assert!(r.header("retry-after").is_none());
    }

    #[test]
    fn a_refusal_for_reservations_in_flight_says_so_and_is_not_a_tripped_breaker() {
        let cause = DenyCause::Reserved { metric: Metric::Tokens60s, threshold: 20_000, observed: 20_700 };
        let r = denial("acme", &Denied { cause, phase: Phase::Closed, retry_after_s: 1 }, None);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("x-fusebox-reason"), Some("reserved"));
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("x-should-retry"), None, "waiting a second helps");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["type"], "tenant_capacity_reserved");
        assert_eq!(body["error"]["code"], "reserved");
        assert_eq!(body["error"]["fusebox"]["state"], "closed");
        assert_eq!(body["error"]["fusebox"]["threshold"], 20_000);
        assert_eq!(body["error"]["fusebox"]["observed"], 20_700);
        assert!(body["error"]["message"].as_str().unwrap().contains("tokens_60s"));
    }
}
