#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! A bounded soak (`make soak`, not part of `make test`): 2 Envoy workers, many tenants, mixed
//! JSON and SSE from concurrent clients for `FUSEBOX_SOAK_SECONDS` (default 60). Checks that the
//! tokens Envoy counted equal the mock's totals for every tenant, that no request failed, and
//! that Envoy's memory stops growing once no new tenants arrive.

use fusebox_integration::{demo_policy, generous, observed, token, Stack};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn envoy_rss_kb(stack: &Stack) -> u64 {
    // The admin port belongs to Envoy; find its pid through /proc.
    let pid = stack.envoy_pid().expect("envoy pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "bounded soak: run with `make soak`"]
fn soak_mixed_traffic_stays_exact_and_flat() {
    let seconds: u64 = std::env::var("FUSEBOX_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let tenants: Vec<String> = (0..200).map(|i| format!("soak-{i:03}")).collect();
    let tokens: Vec<String> = tenants.iter().map(|t| token(t, None)).collect();
    let stop = AtomicBool::new(false);
    let (sent, failed) = (AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    let mut rss = Vec::new();
    std::thread::scope(|scope| {
        for c in 0..8usize {
            let (stack, tokens, stop, sent, failed) = (&stack, &tokens, &stop, &sent, &failed);
            scope.spawn(move || {
                let agent = Stack::start_client();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let t = &tokens[(c * 7919 + i * 31) % tokens.len()];
                    let input = (1 + (c * 131 + i * 17) % 500).to_string();
                    let output = (1 + (c * 37 + i * 53) % 300).to_string();
                    let (path, body) = match i % 4 {
                        0 => ("/v1/chat/completions", r#"{"model":"m","messages":[]}"#),
                        1 => ("/v1/chat/completions", r#"{"model":"m","stream":true,"messages":[]}"#),
                        2 => ("/v1/responses", r#"{"model":"m","stream":true,"input":"hi"}"#),
                        _ => ("/v1/messages", r#"{"model":"m","stream":true,"max_tokens":64}"#),
                    };
                    let h = [
                        ("x-mock-input-tokens", input.as_str()),
                        ("x-mock-output-tokens", output.as_str()),
                        ("x-mock-chunks", "10"),
                    ];
                    let r = stack.post_with(&agent, path, Some(t), &h, body);
                    sent.fetch_add(1, Ordering::Relaxed);
                    if r.status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            });
        }
        // Memory once every tenant exists (after a third of the run), and at the end.
        while started.elapsed() < Duration::from_secs(seconds) {
            std::thread::sleep(Duration::from_secs(1));
            if rss.is_empty() && started.elapsed() >= Duration::from_secs(seconds / 3) {
                rss.push(envoy_rss_kb(&stack));
            }
        }
        rss.push(envoy_rss_kb(&stack));
        stop.store(true, Ordering::Relaxed);
    });
    let mock = stack.mock_stats();
    let (mut mock_total, mut envoy_total) = (0, 0);
    for (tenant, t) in tenants.iter().zip(&tokens) {
        let m = &mock["tenants"][tenant];
        let expected = m["input_tokens"].as_u64().unwrap_or(0) + m["output_tokens"].as_u64().unwrap_or(0);
        let counted = observed(&stack.status(t), "tokens_60s");
        mock_total += expected;
        envoy_total += counted;
        if seconds <= 55 {
            assert_eq!(counted, expected, "tenant {tenant}");
        }
    }
    println!(
        "soak: {seconds}s, {} requests, {} failed, mock tokens {mock_total}, envoy tokens (60 s window) {envoy_total}, envoy RSS {:?} kB",
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        rss
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert_eq!(
        stack.flushed_counter("fusebox.tokens.input") + stack.envoy_counter("fusebox.tokens.output"),
        mock_total
    );
    assert!(rss[1] <= rss[0] + rss[0] / 10, "Envoy memory kept growing after all tenants existed: {rss:?}");
    // Control's metering got every response exactly once (events arrive within a few seconds).
    let requests: u64 = tenants.iter().map(|t| mock["tenants"][t]["requests"].as_u64().unwrap_or(0)).sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let usage = stack.control_get("/v1/usage");
        let sum = |field: &str| -> u64 {
            usage["tenants"].as_array().into_iter().flatten().filter_map(|t| t["usage"][field].as_u64()).sum()
        };
        if sum("requests") >= requests {
            assert_eq!((sum("requests"), sum("total_tokens")), (requests, mock_total), "control's metering");
            println!("soak: control metered {requests} requests, {mock_total} tokens, exactly");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "control metered {} of {requests} requests", sum("requests"));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(stack.envoy_counter("fusebox.events.dropped"), 0);
}
