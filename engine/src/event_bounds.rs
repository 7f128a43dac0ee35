//! What an event from a filter can hold: control stores only events a filter could have sent
//! (ids and labels well-formed, every number within what real traffic produces), so that no
//! batch, however forged, can make a stored sum overflow or a read fail. Pure, so it is fuzzed.

use crate::event::Event;
use crate::policy::{is_valid_scope_name, is_valid_tenant_id, MAX_SCOPES};
use crate::usage::MAX_TOKENS_PER_FIGURE;

/// Requests one usage event may stand for: a worker merges a minute of one tenant's traffic
/// per model, route and status; far more than one worker can serve in a minute.
pub const MAX_REQUESTS_PER_EVENT: u64 = 10_000_000;
/// Counts (denials) and figures (thresholds, observed values) an event may carry.
pub const MAX_COUNT: u64 = 1 << 40;
/// How far ahead of control's clock an event's time may be (an Envoy's clock may run fast).
/// A state reported with a time far ahead would outrank every later report.
pub const MAX_SKEW_MS: u64 = 10 * 60_000;
/// The longest a breaker stays open (`max_cooldown_s` is at most a day).
const MAX_OPEN_MS: u64 = 86_400_000;

/// 1 to `max` printable ASCII characters: ids and labels control stores and shows.
pub fn is_label(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Event {
    /// Whether this is an event a filter could have sent by `now_ms` (control's clock).
    pub fn plausible(&self, now_ms: u64) -> bool {
        let latest = now_ms.saturating_add(MAX_SKEW_MS);
        let minute_ok = |minute: &u64| minute.saturating_mul(1000) <= latest;
        let in_time = match self {
            Event::Usage { minute, .. }
            | Event::Denial { minute, .. }
            | Event::ShadowDenial { minute, .. }
            | Event::Warning { minute, .. } => minute_ok(minute),
            Event::Transition { at_ms, open_until_ms, .. } => {
                *at_ms <= latest && open_until_ms.is_none_or(|u| u <= latest.saturating_add(MAX_OPEN_MS))
            }
        };
        in_time && self.well_formed()
    }

    fn well_formed(&self) -> bool {
        match self {
            Event::Usage {
                tenant,
                model,
                route,
                run_id,
                status,
                requests,
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_tokens,
                scopes,
                ..
            } => {
                let per_request = |tokens: u64| tokens <= requests.saturating_mul(MAX_TOKENS_PER_FIGURE);
                is_valid_tenant_id(tenant)
                    && model.len() <= 128
                    && is_label(route, 256)
                    && run_id.as_deref().is_none_or(|r| is_label(r, 128))
                    && *status <= 999
                    && (1..=MAX_REQUESTS_PER_EVENT).contains(requests)
                    && per_request(*input_tokens)
                    && per_request(*output_tokens)
                    && cache_read_tokens.saturating_add(*cache_write_tokens) <= *input_tokens
                    && scopes.len() <= MAX_SCOPES
                    && scopes.iter().all(|(s, v)| is_valid_scope_name(s) && is_valid_tenant_id(v))
            }
            Event::Denial { tenant, reason, count, .. } | Event::ShadowDenial { tenant, reason, count, .. } => {
                is_valid_tenant_id(tenant)
                    && is_label(reason, 32)
                    && reason.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    && (1..=MAX_REQUESTS_PER_EVENT).contains(count)
            }
            // The states are typed: an unknown name does not parse, so the event is ignored.
            Event::Transition { tenant, scope, metric, threshold, observed, .. } => {
                is_valid_tenant_id(tenant)
                    && scope.as_deref().is_none_or(|s| is_label(s, 32))
                    && metric.as_deref().is_none_or(|m| is_label(m, 32))
                    && threshold.is_none_or(|t| t <= MAX_COUNT)
                    && observed.is_none_or(|o| o <= MAX_COUNT)
            }
            Event::Warning { tenant, metric, percent, .. } => {
                is_valid_tenant_id(tenant) && is_label(metric, 32) && *percent <= 100_000
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_428_000_000;

    fn usage(requests: u64, input_tokens: u64) -> Event {
        Event::Usage {
            tenant: "acme".into(),
            model: "gpt-4o".into(),
            route: "/v1/".into(),
            run_id: None,
            status: 200,
            minute: NOW / 1000,
            requests,
            input_tokens,
            output_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            scopes: Default::default(),
        }
    }

    #[test]
    fn usage_is_plausible_up_to_what_its_requests_can_carry() {
        assert!(usage(2, 2 * MAX_TOKENS_PER_FIGURE).plausible(NOW));
        assert!(!usage(2, 2 * MAX_TOKENS_PER_FIGURE + 1).plausible(NOW));
        assert!(!usage(0, 0).plausible(NOW), "an event stands for at least one request");
        assert!(!usage(MAX_REQUESTS_PER_EVENT + 1, 0).plausible(NOW));
    }

    #[test]
    fn labels_are_short_and_printable() {
        assert!(is_label("tokens_60s", 32));
        assert!(
            !is_label("", 32) && !is_label("a b", 32) && !is_label("\u{1b}[2J", 32) && !is_label(&"x".repeat(33), 32)
        );
        let bad_reason = Event::Denial { tenant: "acme".into(), reason: "Kill-Switch".into(), minute: 1, count: 1 };
        assert!(!bad_reason.plausible(NOW));
    }

    fn trip(at_ms: u64, open_until_ms: u64) -> Event {
        Event::Transition {
            tenant: "acme".into(),
            run_id: None,
            from: crate::breaker::Phase::Closed,
            to: crate::breaker::Phase::Open,
            at_ms,
            metric: Some("tokens_60s".into()),
            threshold: Some(100),
            observed: Some(150),
            open_until_ms: Some(open_until_ms),
            scope: None,
        }
    }

    #[test]
    fn events_from_the_future_are_not_plausible_beyond_clock_skew() {
        // A trip dated ahead would outrank every later report of the tenant's breaker.
        assert!(trip(NOW + MAX_SKEW_MS, NOW + MAX_SKEW_MS + 30_000).plausible(NOW));
        assert!(!trip(NOW + MAX_SKEW_MS + 1, NOW + MAX_SKEW_MS + 30_000).plausible(NOW));
        assert!(!trip(NOW, u64::MAX).plausible(NOW), "open for ever");
        assert!(trip(0, 0).plausible(NOW), "old reports lose to newer ones anyway");
        let future =
            Event::Warning { tenant: "acme".into(), metric: "tokens_60s".into(), percent: 90, minute: u64::MAX };
        assert!(!future.plausible(NOW));
    }
}
