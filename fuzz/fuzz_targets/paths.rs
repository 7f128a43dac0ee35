//! Any bytes as a request path against a filter with several rules: the canonical form is a
//! clean absolute path (no empty, `.` or `..` segments, no `;` parameters, no upper case), a
//! second pass changes nothing (unless the one decoding pass made new escapes or delimiters),
//! and the rule a raw path lands on is the rule of its canonical form, so no spelling of a
//! counted path can fall through to another rule.
#![no_main]
use fusebox_engine::config::FilterConfig;
use fusebox_engine::path::canonical;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const CONFIG: &str = r#"{
  "routes": [
    {"path": "/healthz", "mode": "pass"},
    {"prefix": "/v1/embeddings", "mode": "enforce", "tier": "embeddings"},
    {"prefix": "/v1/", "mode": "enforce"},
    {"prefix": "/Admin/", "mode": "pass"}
  ],
  "unmatched": "enforce",
  "policy": {"identity": {"jwt": {"issuer": "i", "audiences": ["a"],
    "keys": [{"alg": "HS256", "secret": "0123456789abcdef"}]}},
    "tiers": {"free": {}, "embeddings": {"requests_10s": 5}}}
}"#;

fn config() -> &'static FilterConfig {
    static C: OnceLock<FilterConfig> = OnceLock::new();
    C.get_or_init(|| FilterConfig::from_json(CONFIG.as_bytes()).unwrap_or_else(|e| panic!("fixture config: {e}")))
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let c = canonical(&raw);
    assert!(c.starts_with('/'), "{raw:?} -> {c:?}");
    assert!(!c.contains("//") && !c.contains(';'), "{raw:?} -> {c:?}");
    assert!(!c.bytes().any(|b| b.is_ascii_uppercase()), "{raw:?} -> {c:?}");
    let trimmed = c.strip_suffix('/').unwrap_or(&c);
    assert!(trimmed.split('/').skip(1).all(|s| s != "." && s != ".."), "{raw:?} -> {c:?}");
    if !c.contains(['%', '?', '#', '\\']) {
        assert_eq!(canonical(&c), c, "{raw:?}");
    }
    let cfg = config();
    let (by_raw, by_canonical) = (cfg.route_for(&raw), cfg.route_for_canonical(&c));
    assert_eq!((by_raw.mode, by_raw.label, by_raw.tier), (by_canonical.mode, by_canonical.label, by_canonical.tier));
    // Every spelling of a path under /v1/ is counted under a /v1/ rule, never passed.
    if c.starts_with("/v1/") {
        assert!(by_raw.label.starts_with("/v1/"), "{raw:?} -> {c:?} -> {}", by_raw.label);
    }
});
