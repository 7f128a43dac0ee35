#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! Admission holds for every request shape: 32 concurrent requests at a tenant just under its
//! limit overshoot it by at most one request's real usage, whether they name no output
//! allowance, an exact one or a far too large one, JSON or SSE, on each API; and requests that
//! fit are admitted on an idle tenant even when their `max_tokens` is far above what they use.

use fusebox_integration::{demo_policy, observed, token, Stack};
use serde_json::{json, Value};

const LIMIT: u64 = 40_000;
const HEADROOM: u64 = 500;
const INPUT: u64 = 10;
/// Each answer's output is drawn from this range (and never exceeds the request's allowance).
const OUTPUT: (u64, u64) = (300, 700);

#[derive(Debug, Clone, Copy)]
enum Allowance {
    None,
    /// The most the request will use.
    Exact,
    FarTooLarge,
}

/// The path and body of a request of `api` in this shape.
fn request(api: &str, sse: bool, allowance: Allowance) -> (&'static str, String) {
    let max = match allowance {
        Allowance::None => None,
        Allowance::Exact => Some(OUTPUT.1),
        Allowance::FarTooLarge => Some(32_000),
    };
    let (path, mut body, field) = match api {
        "chat" => (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            "max_completion_tokens",
        ),
        "responses" => ("/v1/responses", json!({"model": "gpt-4.1", "input": "hi"}), "max_output_tokens"),
        _ => {
            ("/v1/messages", json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}), "max_tokens")
        }
    };
    if sse {
        body["stream"] = json!(true);
        if api == "chat" {
            body["stream_options"] = json!({"include_usage": true});
        }
    }
    if let Some(m) = max {
        body[field] = json!(m);
    }
    (path, body.to_string())
}

fn used(stack: &Stack, t: &str) -> u64 {
    observed(&stack.status(t), "tokens_60s")
}

#[test]
fn concurrent_requests_of_every_shape_overshoot_by_at_most_one_request() {
    let tier = json!({"tokens_60s": LIMIT, "breaker": {"cooldown_s": 60}});
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let range = format!("{}-{}", OUTPUT.0, OUTPUT.1);
    let input = INPUT.to_string();
    let mut table = Vec::new();
    for api in ["chat", "responses", "messages"] {
        for sse in [false, true] {
            for allowance in [Allowance::None, Allowance::Exact, Allowance::FarTooLarge] {
                let shape = format!("{api} {} {allowance:?}", if sse { "sse" } else { "json" });
                let t = token(&format!("shape-{api}-{sse}-{allowance:?}").to_lowercase(), None);
                let (path, body) = request(api, sse, allowance);
                let varied = [("x-mock-input-tokens", input.as_str()), ("x-mock-output-tokens", range.as_str())];
                // Its history: what this tenant's responses of this shape use.
                for _ in 0..16 {
                    assert_eq!(stack.post(path, Some(&t), &varied, &body).status, 200, "{shape}");
                }
                // Just under the limit.
                let fill = (LIMIT - HEADROOM).checked_sub(used(&stack, &t) + OUTPUT.0).unwrap();
                let fill_headers =
                    [("x-mock-input-tokens", fill.to_string()), ("x-mock-output-tokens", OUTPUT.0.to_string())];
                let fill_headers: Vec<(&str, &str)> = fill_headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                assert_eq!(stack.post(path, Some(&t), &fill_headers, &body).status, 200, "{shape}");
                assert_eq!(used(&stack, &t), LIMIT - HEADROOM, "{shape}");
                let burst = [
                    ("x-mock-input-tokens", input.as_str()),
                    ("x-mock-output-tokens", range.as_str()),
                    ("x-mock-latency-ms", "300"),
                ];
                let statuses: Vec<u16> = std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..32)
                        .map(|_| scope.spawn(|| stack.post_with(&Stack::start_client(), path, Some(&t), &burst, &body)))
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap().status).collect()
                });
                assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{shape}: {statuses:?}");
                let admitted = statuses.iter().filter(|s| **s == 200).count();
                let total = used(&stack, &t);
                let over = total.saturating_sub(LIMIT);
                table.push(format!("{shape:<28} admitted {admitted:>2} of 32, over the limit by {over:>4} tokens"));
                assert!(admitted >= 1, "{shape}: the headroom admits a request");
                // One request's real usage at most (the estimate is the largest recent output,
                // and no answer of this tenant exceeds it).
                assert!(over <= INPUT + OUTPUT.1, "{shape}: {admitted} admitted, {total} used of {LIMIT}");
                assert_eq!(stack.status(&t)["breaker"]["reserved_tokens"], 0, "{shape}: every reservation released");
            }
        }
    }
    println!("{}", table.join("\n"));
    let denied = stack.envoy_counter("fusebox.requests.denied.reserved");
    assert!(denied > 0, "the held-back requests were refused for reservations, not by a trip");
}

#[test]
fn requests_that_fit_are_admitted_on_an_idle_tenant_whatever_their_max_tokens() {
    let tier = json!({"tokens_60s": 20_000});
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    for (api, sse) in [("chat", true), ("responses", false), ("messages", true)] {
        let t = token(&format!("honest-{api}"), None);
        let (path, body) = request(api, sse, Allowance::FarTooLarge);
        let h = [("x-mock-input-tokens", "100"), ("x-mock-output-tokens", "2000"), ("x-mock-latency-ms", "300")];
        let replies: Vec<(u16, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| stack.post_with(&Stack::start_client(), path, Some(&t), &h, &body)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).map(|r| (r.status, r.body)).collect()
        });
        for (status, body) in &replies {
            assert_eq!(*status, 200, "{api}: 4 x 2100 tokens fit in 20 000 though each asks for 32 000: {body}");
        }
        assert_eq!(used(&stack, &t), 4 * 2100, "{api}");
        let status: Value = stack.status(&t);
        assert_eq!(status["breaker"]["state"], "closed");
    }
}
