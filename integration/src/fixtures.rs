//! What tests send and expect: the demo identity, tokens, policies and templates.

use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const DEMO_SECRET: &str = "fusebox-demo-secret-change-me";
pub const DEMO_ISSUER: &str = "https://auth.fusebox.demo";
pub const DEMO_AUDIENCE: &str = "fusebox";
/// Admin token of the control service the harness starts (writes need it).
pub const DEMO_ADMIN_TOKEN: &str = "fusebox-demo-admin-token";
/// The filter's token for control (reads the policy, posts events), as in `envoy/*.yaml`.
pub const DEMO_FILTER_TOKEN: &str = "fusebox-demo-filter-token";
pub(crate) const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A demo bearer token (HS256, demo key) for `tenant`.
pub fn token(tenant: &str, tier: Option<&str>) -> String {
    let mut claims = serde_json::Map::new();
    if let Some(t) = tier {
        claims.insert("tier".into(), t.into());
    }
    token_with(tenant, claims)
}

/// A demo bearer token for `tenant` with more claims (scopes: `org`, `team`, ...).
pub fn token_with(tenant: &str, mut claims: serde_json::Map<String, serde_json::Value>) -> String {
    claims.insert("tenant".into(), tenant.into());
    fusebox_engine::identity::mint(
        fusebox_engine::identity::MintKey::Hs256(DEMO_SECRET),
        Some("demo"),
        DEMO_ISSUER,
        DEMO_AUDIENCE,
        claims,
        now_s(),
        3600,
    )
    .unwrap_or_default()
}

/// A policy with the demo identity (the key [`token`] signs with) and the given tiers and tenants.
pub fn demo_policy(tiers: Value, tenants: Value) -> String {
    serde_json::json!({
        "identity": {"jwt": {
            "issuer": DEMO_ISSUER,
            "audiences": [DEMO_AUDIENCE],
            "keys": [{"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]
        }},
        "default_tier": "free",
        "tiers": tiers,
        "tenants": tenants,
    })
    .to_string()
}

/// Limits so high that only the test's own limits matter.
pub fn generous() -> Value {
    serde_json::json!({"tokens_10s": 100_000_000u64, "tokens_60s": 100_000_000u64, "requests_10s": 100_000})
}

/// A metric's observed value in a status document (`u64::MAX` when absent, so asserts fail).
pub fn observed(status: &Value, metric: &str) -> u64 {
    status
        .pointer("/breaker/metrics")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().find(|m| m.get("metric").and_then(Value::as_str) == Some(metric)))
        .and_then(|m| m.get("observed"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

/// `envoy/demo.yaml` with `control` fields appended to the singleton's `control` object and
/// `singleton` fields to the singleton's own (each starting with `, `).
pub fn demo_bootstrap_with(control: &str, singleton: &str) -> String {
    let demo = std::fs::read_to_string(crate::paths::workspace_root().join("envoy/demo.yaml")).unwrap_or_default();
    let plain = r#""token": "fusebox-demo-filter-token"}}}'"#;
    assert!(demo.contains(plain), "envoy/demo.yaml's singleton configuration changed");
    demo.replace(plain, &format!(r#""token": "fusebox-demo-filter-token"{control}}}{singleton}}}}}'"#))
}

/// `bootstrap` (a template like `envoy/demo.yaml`, which ends with its control cluster) with
/// that cluster replaced by the one in `envoy/snippets/<snippet>` (its comment lines dropped).
pub fn with_control_cluster(bootstrap: &str, snippet: &str) -> String {
    let path = crate::paths::workspace_root().join("envoy/snippets").join(snippet);
    let cluster = std::fs::read_to_string(&path).unwrap_or_default();
    let cluster: String = cluster.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    let kept = bootstrap.find("  - name: fusebox_control\n").and_then(|at| bootstrap.get(..at));
    assert!(kept.is_some() && !cluster.is_empty(), "no control cluster to replace, or {} is empty", path.display());
    format!("{}{cluster}", kept.unwrap_or_default())
}

/// Fills `${NAME}` placeholders.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |acc, (k, v)| acc.replace(&format!("${{{k}}}"), v))
}

/// Polls `ok` every 20 ms until it holds; fails the test after `secs`. Returns how long it took.
pub fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The demo bootstrap (`envoy/demo.yaml`, a template) as one of `envoys` Envoys of a fleet:
/// its node id, fleet counting every `interval_ms`, and a second control replica on `replica`
/// (health-checked, so a dead one is skipped).
pub fn fleet_bootstrap(node: &str, envoys: u32, interval_ms: u64, replica: Option<u16>) -> String {
    // With two replicas, a sync may land on one just killed before its health check (0.5 s)
    // says so; on this loaded 2-core machine two such misses in a row once outlasted the 1 s
    // default and fell back (seen in CI). The replica test is about failing over, not about
    // how soon a fallback starts, so it allows 3 s.
    let fallback = if replica.is_some() { r#", "fallback_after_ms": 3000"# } else { "" };
    let fleet = format!(r#", "fleet": {{"expected_envoys": {envoys}, "interval_ms": {interval_ms}{fallback}}}"#);
    let mut b = demo_bootstrap_with(&format!(r#", "node_id": "{node}""#), &fleet);
    if let Some(port) = replica {
        let last = "port_value: ${CONTROL_PORT} } } }\n";
        assert!(b.ends_with(last), "envoy/demo.yaml no longer ends with the control cluster");
        let endpoint = format!("{{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}");
        // Checked every 0.5 s even before the cluster carries traffic (Envoy's default for a
        // cluster without traffic is once a minute, and the singleton's calls do not count).
        let check = "{ timeout: 0.5s, interval: 0.5s, no_traffic_interval: 0.5s, unhealthy_threshold: 1, \
                     healthy_threshold: 1, http_health_check: { path: /healthz } }";
        b.push_str(&format!("        - endpoint: {endpoint}\n    health_checks:\n    - {check}\n"));
    }
    b
}
