#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! What operators see in Envoy's own tools: fusebox's metrics at `/stats/prometheus` with the
//! denial reason as a label (`stats_tags` in envoy/demo.yaml), and its memory gauges.

use fusebox_integration::{demo_policy, generous, token, workspace_root, Stack};
use serde_json::{json, Value};

#[test]
fn denials_reach_prometheus_with_the_reason_as_a_label() {
    let mut tier = generous();
    tier["requests_10s"] = json!(1);
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let t = token("labelled", None);
    assert_eq!(stack.chat(Some(&t), &[]).status, 200);
    assert_eq!(stack.chat(Some(&t), &[]).status, 429);
    let prom = stack.get(&format!("http://127.0.0.1:{}/stats/prometheus", stack.ports.admin), &[]).body;
    let denied: Vec<&str> = prom.lines().filter(|l| l.contains("fusebox_requests_denied{")).collect();
    assert!(
        denied.iter().any(|l| l.contains(r#"fusebox_reason="requests_10s""#) && l.ends_with(" 1")),
        "one labelled series per reason: {denied:?}"
    );
    assert!(!prom.contains("fusebox_requests_denied_requests_10s"), "the reason is a label, not part of the name");
    // The workers' Wasm memory is reported (a gauge; wasm memory only grows, so also the peak).
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let memory = prom_value(&stack, "fusebox_worker_wasm_memory_bytes");
    assert!(memory >= 2 * 65_536, "two workers with at least a page each: {memory}");
    assert!(prom_value(&stack, "fusebox_singleton_wasm_memory_bytes") >= 65_536);
}

#[test]
fn access_logs_name_the_tenant_tier_run_and_refusal_reason() {
    let mut tier = generous();
    tier["requests_10s"] = json!(1);
    let stack =
        Stack::start(&demo_policy(json!({"free": generous(), "tight": tier}), json!({"lone": {"tier": "tight"}})));
    stack.wait_policy_version(1);
    let t = token("lone", None);
    assert_eq!(stack.chat(Some(&t), &[("x-agent-run-id", "run-42")]).status, 200);
    assert_eq!(stack.chat(Some(&t), &[]).status, 429);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let wanted = [
        "\"POST /v1/chat/completions\" 200 tenant=lone tier=tight run=run-42 reason=-",
        "\"POST /v1/chat/completions\" 429 tenant=lone tier=tight run=- reason=requests_10s",
    ];
    loop {
        let log = stack.log("envoy.out");
        if wanted.iter().all(|w| log.contains(w)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "access log lacks {wanted:?}:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn every_metric_the_grafana_dashboard_queries_exists_in_envoy_or_control() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    assert_eq!(stack.chat(Some(&token("graphed", None)), &[]).status, 200);
    let envoy = stack.get(&format!("http://127.0.0.1:{}/stats/prometheus", stack.ports.admin), &[]).body;
    let control = stack.get(&stack.control_url("/metrics"), &[]).body;
    let path = workspace_root().join("envoy/grafana/fusebox-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut names = std::collections::BTreeSet::new();
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            // Metric names: `fusebox_` followed by [a-z0-9_], not a label value inside quotes.
            let mut rest = expr;
            while let Some(at) = rest.find("fusebox_") {
                let tail = &rest[at..];
                let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
                let quoted = rest[..at].ends_with('"');
                if !quoted && !tail[..end].starts_with("fusebox_reason") {
                    names.insert(tail[..end].to_string());
                }
                rest = &tail[end..];
            }
        }
    }
    assert!(names.len() >= 20, "{names:?}");
    for name in &names {
        let declared = format!("# TYPE {name} ");
        assert!(
            envoy.contains(&declared) || control.contains(&declared),
            "the dashboard queries {name}, which nobody exports"
        );
    }
}

#[test]
fn spans_carry_the_tenant_tier_run_and_refusal_reason_as_tags() {
    let mut tier = generous();
    tier["requests_10s"] = json!(1);
    let stack = Stack::start(&demo_policy(json!({"free": tier}), json!({})));
    stack.wait_policy_version(1);
    let t = token("traced", None);
    assert_eq!(stack.chat(Some(&t), &[("x-agent-run-id", "run-7")]).status, 200);
    assert_eq!(stack.chat(Some(&t), &[]).status, 429);
    wait_for_spans(&stack, "fusebox's tags", |spans| {
        let ours: Vec<&Value> =
            spans.iter().copied().filter(|t| t["fusebox.tenant"] == "traced" && t["fusebox.tier"] == "free").collect();
        // Tags whose value is empty are left out: the admitted span has no reason, the refused one no run.
        let admitted = ours.iter().any(|t| t["fusebox.run_id"] == "run-7" && t.get("fusebox.reason").is_none());
        let refused = ours.iter().any(|t| t["fusebox.reason"] == "requests_10s" && t["http.status_code"] == "429");
        admitted && refused
    });
}

/// Waits until the tags of the spans the collector (the mock) received satisfy `ok`.
fn wait_for_spans(stack: &Stack, what: &str, ok: impl Fn(&[&Value]) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let spans = stack.get(&format!("http://127.0.0.1:{}/mock/spans", stack.ports.mock), &[]).json();
        let tags: Vec<&Value> = spans.as_array().into_iter().flatten().map(|s| &s["tags"]).collect();
        if ok(&tags) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "spans lack {what}: {spans}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn spans_carry_the_gen_ai_attributes_and_envoy_keeps_the_token_usage_histogram() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let t = token("genai", None);
    let usage = [("x-mock-input-tokens", "12"), ("x-mock-output-tokens", "34")];
    assert_eq!(stack.chat(Some(&t), &usage).status, 200);
    let messages = r#"{"model":"claude-sonnet-4","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(stack.post("/v1/messages", Some(&t), &usage, messages).status, 200);
    let want = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4")];
    wait_for_spans(&stack, "the gen_ai attributes", |spans| {
        want.iter().all(|(provider, model)| {
            spans.iter().any(|t| {
                t["fusebox.tenant"] == "genai"
                    && t["gen_ai.provider.name"] == *provider
                    && t["gen_ai.operation.name"] == "chat"
                    && t["gen_ai.request.model"] == *model
                    && t["gen_ai.response.model"] == *model
                    && t["gen_ai.usage.input_tokens"] == "12"
                    && t["gen_ai.usage.output_tokens"] == "34"
            })
        })
    });
    // Histograms reach the admin endpoint at Envoy's stats flush.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let prom = stack.get(&format!("http://127.0.0.1:{}/stats/prometheus", stack.ports.admin), &[]).body;
        let series = |part: &str, kind: &str| {
            let head = format!(r#"gen_ai_client_token_usage_{part}{{gen_ai_token_type="{kind}"}} "#);
            prom.lines().find_map(|l| l.strip_prefix(head.as_str())).and_then(|v| v.trim().parse::<f64>().ok())
        };
        // Two calls each; Envoy keeps histogram values in log-linear buckets, so its sums are
        // within a few percent (the exact totals are the fusebox.tokens.* counters).
        let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() <= want * 0.05);
        let counted = series("count", "input") == Some(2.0) && series("count", "output") == Some(2.0);
        if counted && near(series("sum", "input"), 24.0) && near(series("sum", "output"), 68.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no token-usage histogram: {}",
            prom.lines().filter(|l| l.contains("gen_ai")).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The value of an untagged series in `/stats/prometheus` (0 when absent).
fn prom_value(stack: &Stack, name: &str) -> u64 {
    let prom = stack.get(&format!("http://127.0.0.1:{}/stats/prometheus", stack.ports.admin), &[]).body;
    prom.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.split_once(' ')?;
            (series.trim_end_matches("{}") == name).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

#[test]
fn the_filter_logs_its_version_and_commit_when_it_loads() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .expect("git runs in the checkout");
    let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
    assert_eq!(head.len(), 12, "a commit hash: {head:?}");
    let line = format!("fusebox {} ({head}) loading its configuration", env!("CARGO_PKG_VERSION"));
    let log = stack.log("envoy.log");
    // Each worker's filter and the singleton say it once.
    assert!(log.matches(&line).count() >= 3, "{line:?} in:\n{log}");
}
