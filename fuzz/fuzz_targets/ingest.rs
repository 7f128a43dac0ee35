//! Any bytes as an event batch posted to control: each event parses or is ignored, and what
//! control would accept is bounded (labels printable and short, figures within what traffic
//! makes, times not ahead of control's clock), stays accepted after a round trip through JSON,
//! and fits the 64-bit integers the database stores.
#![no_main]
use fusebox_engine::event::Event;
use fusebox_engine::event_bounds::{MAX_COUNT, MAX_REQUESTS_PER_EVENT, MAX_SKEW_MS};
use fusebox_engine::usage::MAX_TOKENS_PER_FIGURE;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW_MS: u64 = 1_795_428_000_000;

fn printable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn check(e: &Event) {
    let fits = |n: u64| i64::try_from(n).is_ok();
    match e {
        Event::Usage { tenant, route, run_id, requests, input_tokens, output_tokens, minute, .. } => {
            assert!(printable(tenant) && printable(route) && run_id.as_deref().is_none_or(printable));
            assert!(*requests >= 1 && *requests <= MAX_REQUESTS_PER_EVENT);
            let most = requests * MAX_TOKENS_PER_FIGURE;
            assert!(*input_tokens <= most && *output_tokens <= most && fits(most));
            assert!(minute.saturating_mul(1000) <= NOW_MS + MAX_SKEW_MS);
        }
        Event::Denial { tenant, reason, count, .. } | Event::ShadowDenial { tenant, reason, count, .. } => {
            assert!(printable(tenant) && printable(reason) && *count <= MAX_REQUESTS_PER_EVENT);
        }
        Event::Transition { tenant, metric, threshold, observed, at_ms, .. } => {
            assert!(printable(tenant) && metric.as_deref().is_none_or(printable));
            assert!(threshold.is_none_or(|t| t <= MAX_COUNT) && observed.is_none_or(|o| o <= MAX_COUNT));
            assert!(*at_ms <= NOW_MS + MAX_SKEW_MS && fits(*at_ms));
        }
        Event::Warning { tenant, metric, .. } => assert!(printable(tenant) && printable(metric)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<Value>(data) else { return };
    let events = match &batch {
        Value::Array(events) => events.clone(),
        other => other.get("events").and_then(Value::as_array).cloned().unwrap_or_default(),
    };
    for raw in events {
        let Ok(e) = serde_json::from_value::<Event>(raw) else { continue };
        if !e.plausible(NOW_MS) {
            continue;
        }
        check(&e);
        let again: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(again, e);
        assert!(again.plausible(NOW_MS));
    }
});
