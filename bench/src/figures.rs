//! The figures drawn from one run: the ratios (with their goals), the per-request cost model,
//! and the stream lines.

use crate::report::{Ratio, Summary};
use crate::stream;
use serde_json::{json, Value};

pub(crate) fn ratios(s: &[Summary]) -> Vec<Ratio> {
    let get = |k: &str| s.iter().find(|x| x.key == k);
    let pairs: [(&'static str, &str, &str, Option<f64>); 17] = [
        ("fusebox / token-counter floor", "fusebox", "floor", Some(0.9)),
        ("fusebox / no-op Wasm", "fusebox", "noop", None),
        ("fusebox / native jwt_authn+ratelimit", "fusebox", "native", Some(1.0)),
        ("no-op Wasm / bare Envoy", "noop", "bare", None),
        ("fusebox RS256 / HS256", "fusebox_rs256", "fusebox", None),
        ("fusebox 1k / 10 tenants", "fusebox_1k", "fusebox", None),
        ("fusebox 100k / 10 tenants", "fusebox_100k", "fusebox", Some(0.9)),
        ("fusebox, every token new / cached", "fusebox_miss", "fusebox", None),
        ("fusebox 4 scopes / tenant only", "fusebox_scopes", "fusebox", None),
        ("fusebox 100k tenants / every token new", "fusebox_100k", "fusebox_miss", None),
        ("fleet sync on / off", "fusebox_fleet", "fusebox", Some(0.95)),
        ("fleet sync on / off, 100k tenants", "fusebox_fleet_100k", "fusebox_100k", Some(0.95)),
        ("fusebox / no-op, 2 workers", "fusebox_2w", "noop_2w", None),
        ("fusebox / no-op, HTTP/2", "fusebox_h2", "noop_h2", None),
        ("fusebox / LiteLLM", "fusebox", "litellm", None),
        ("this build / baseline build", "fusebox", "baseline", None),
        ("this build / baseline, 100k tenants", "fusebox_100k", "baseline_100k", None),
    ];
    pairs.iter().filter_map(|(name, n, d, goal)| Some(Ratio::of(name, get(n)?, get(d)?, *goal))).collect()
}

/// The goal on latency: fusebox's p99 over bare Envoy's, in milliseconds, at the bench's
/// connections (closed loop: each connection sends its next request when the last is
/// answered, so the figure includes the queueing its lower throughput brings).
pub(crate) const P99_ADDED_GOAL_MS: f64 = 0.5;

/// fusebox's p99 latency minus bare Envoy's, in milliseconds.
pub(crate) fn p99_added_ms(s: &[Summary]) -> Option<f64> {
    let get = |k: &str| s.iter().find(|x| x.key == k);
    let (f, b) = (get("fusebox")?, get("bare")?);
    Some((f.p99_us as f64 - b.p99_us as f64) / 1000.0)
}

/// The latency goal's line, when both were measured.
pub(crate) fn p99_line(s: &[Summary], connections: u32) -> String {
    match p99_added_ms(s) {
        Some(ms) => {
            let verdict = if ms <= P99_ADDED_GOAL_MS { "met" } else { "MISSED" };
            format!("p99 added over bare Envoy at {connections} connections: {ms:+.3} ms  goal <= {P99_ADDED_GOAL_MS} ms: {verdict}\n")
        }
        None => String::new(),
    }
}

/// Microseconds of Envoy's time per request that `key` adds over `base`: its CPU time per
/// request where both were measured (time stolen by other guests does not count), else from
/// the throughput of a single saturated worker (1 / req/s).
pub(crate) fn added_us(s: &[Summary], key: &str, base: &str) -> Option<f64> {
    let get = |k: &str| s.iter().find(|x| x.key == k);
    let (a, b) = (get(key)?, get(base)?);
    if let (Some(x), Some(y)) = (a.cpu_us, b.cpu_us) {
        return Some(x - y);
    }
    let rate = |x: &Summary| Some(x.rps).filter(|r| *r > 0.0);
    Some(1e6 / rate(a)? - 1e6 / rate(b)?)
}

/// The cost model the ratios come from: what a hostcall costs here, and what each layer adds.
pub(crate) fn costs(s: &[Summary]) -> Value {
    json!({
        "hostcall_us": added_us(s, "noop_x20", "noop").map(|us| us / 19.0),
        "noop_over_bare_us": added_us(s, "noop", "bare"),
        "native_over_bare_us": added_us(s, "native", "bare"),
        "fusebox_over_noop_us": added_us(s, "fusebox", "noop"),
        "floor_over_noop_us": added_us(s, "floor", "noop"),
        "fusebox_over_floor_us": added_us(s, "fusebox", "floor"),
        "fusebox_over_bare_us": added_us(s, "fusebox", "bare"),
        "token_cache_miss_us": added_us(s, "fusebox_miss", "fusebox"),
        "three_more_scopes_us": added_us(s, "fusebox_scopes", "fusebox"),
        "new_tenants_over_misses_us": added_us(s, "fusebox_100k", "fusebox_miss"),
    })
}

pub(crate) fn cost_lines(costs: &Value) -> String {
    let mut out = String::from("Envoy's CPU time per request (or 1 / req/s of its one saturated worker):\n");
    for (k, label) in [
        ("hostcall_us", "one hostcall (noop_x20 vs noop, / 19)"),
        ("noop_over_bare_us", "a no-op Wasm filter over bare Envoy"),
        ("native_over_bare_us", "native jwt_authn + local_ratelimit over bare"),
        ("fusebox_over_noop_us", "fusebox over the no-op Wasm filter"),
        ("floor_over_noop_us", "the token-counter floor over the no-op filter"),
        ("fusebox_over_floor_us", "fusebox over the token-counter floor"),
        ("token_cache_miss_us", "a token-cache miss (HS256 verified again)"),
        ("new_tenants_over_misses_us", "100k tenants' states over token misses alone"),
        ("three_more_scopes_us", "3 limited scopes beside the tenant"),
    ] {
        if let Some(v) = costs.get(k).and_then(Value::as_f64) {
            out.push_str(&format!("  {label:<46} {v:>6.1} us\n"));
        }
    }
    out
}

/// The 100 MB stream through fusebox, against the no-op filter's MB/s.
const STREAM_GOAL: f64 = 0.9;

pub(crate) fn stream_lines(streams: &[stream::Summary]) -> String {
    let mut out: String = streams.iter().map(|s| s.line() + "\n").collect();
    let rate = |key: &str| streams.iter().find(|s| s.key == key).map(|s| s.mb_per_s);
    if let (Some(f), Some(n)) = (rate("fusebox_stream"), rate("noop_stream")) {
        let verdict = if f / n >= STREAM_GOAL { "met" } else { "MISSED" };
        out.push_str(&format!(
            "{:<34} {:>6.3}  goal >= {STREAM_GOAL:.2}: {verdict}\n",
            "stream fusebox / no-op",
            f / n
        ));
    }
    let by_cpu = |key: &str| streams.iter().find(|s| s.key == key).and_then(|s| s.mb_per_cpu_s);
    if let (Some(f), Some(n)) = (by_cpu("fusebox_stream"), by_cpu("noop_stream")) {
        // The stream's MB/s is often set by the upstream and client on their one CPU; Envoy's
        // CPU time per MB is what the filter itself costs.
        out.push_str(&format!("{:<34} {:>6.3}\n", "stream fusebox / no-op, by CPU", f / n));
    }
    if let (Some(f), Some(b)) = (by_cpu("fusebox_stream"), by_cpu("baseline_stream")) {
        out.push_str(&format!("{:<34} {:>6.3}\n", "stream this / baseline, by CPU", f / b));
    }
    // Any token counter reads every chunk: what that alone costs, beside what fusebox costs.
    if let (Some(f), Some(n)) = (rate("floor_stream"), rate("noop_stream")) {
        out.push_str(&format!("{:<34} {:>6.3}\n", "stream floor / no-op", f / n));
    }
    if let (Some(f), Some(n)) = (rate("fusebox_stream"), rate("floor_stream")) {
        out.push_str(&format!("{:<34} {:>6.3}\n", "stream fusebox / floor", f / n));
    }
    if let (Some(f), Some(b)) = (rate("fusebox_stream"), rate("baseline_stream")) {
        out.push_str(&format!("{:<34} {:>6.3}\n", "stream this build / baseline", f / b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Run;

    fn at_p99(key: &'static str, p99_us: u64) -> Summary {
        let run = Run { requests: 1000, rps: 1000.0, p50_us: 100, p99_us, errors: 0, cpu_us: None };
        Summary::of(key, "", vec![run])
    }

    #[test]
    fn the_latency_goal_compares_fusebox_p99_with_bare_envoys() {
        let s = [at_p99("bare", 2_000), at_p99("fusebox", 2_400)];
        assert_eq!(p99_added_ms(&s), Some(0.4));
        assert!(p99_line(&s, 16).ends_with("goal <= 0.5 ms: met\n"), "{}", p99_line(&s, 16));
        let slow = [at_p99("bare", 2_000), at_p99("fusebox", 2_600)];
        assert!(p99_line(&slow, 16).contains("+0.600 ms"));
        assert!(p99_line(&slow, 16).ends_with("MISSED\n"));
        assert_eq!(p99_line(&s[..1], 16), "", "nothing to compare without fusebox");
    }

    fn stream(key: &'static str, mb_per_s: f64) -> stream::Summary {
        stream::Summary { key, mb_per_s, mb_per_cpu_s: None, runs: Vec::new() }
    }

    #[test]
    fn the_stream_lines_judge_fusebox_against_the_no_op_filter_and_show_the_floor_beside_it() {
        let lines = stream_lines(&[
            stream("noop_stream", 200.0),
            stream("floor_stream", 150.0),
            stream("fusebox_stream", 120.0),
        ]);
        assert!(lines.contains("stream fusebox / no-op              0.600  goal >= 0.90: MISSED"), "{lines}");
        assert!(lines.contains("stream floor / no-op                0.750"), "{lines}");
        assert!(lines.contains("stream fusebox / floor              0.800"), "{lines}");
        let fast = stream_lines(&[stream("noop_stream", 200.0), stream("fusebox_stream", 190.0)]);
        assert!(fast.contains("goal >= 0.90: met") && !fast.contains("floor"), "{fast}");
        assert!(!lines.contains("by CPU"), "no CPU figure without CPU times: {lines}");
    }

    #[test]
    fn envoys_cpu_time_per_mb_is_compared_beside_the_mb_per_second() {
        let timed = |key, mb_per_s, by_cpu| stream::Summary { mb_per_cpu_s: Some(by_cpu), ..stream(key, mb_per_s) };
        let lines = stream_lines(&[
            timed("noop_stream", 60.0, 600.0),
            timed("fusebox_stream", 58.0, 200.0),
            timed("baseline_stream", 55.0, 160.0),
        ]);
        assert!(lines.contains("stream fusebox / no-op, by CPU      0.333"), "{lines}");
        assert!(lines.contains("stream this / baseline, by CPU      1.250"), "{lines}");
        assert!(lines.contains("stream this build / baseline        1.055"), "{lines}");
    }
}
