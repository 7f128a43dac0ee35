//! What a worker keeps of a request it admitted, from admission until its response ends, and
//! the settlements that give back what admission took and add what the response used.

use super::decision::{Allowed, Settlement};
use crate::breaker::ProbeEnd;
use crate::policy::Limits;
use crate::request::estimate::RequestEstimate;
use crate::usage::Summary;

/// What admission took for a request it counted in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Admitted as a half-open probe: its outcome decides the breaker.
    pub probe: bool,
    /// Tokens reserved so far (the prompt at admission, the output allowance once the body is read).
    pub reserved: u64,
}

/// An admitted request.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub tenant: String,
    /// The route tier whose state this request is counted in (`None`: the tenant's own).
    pub scope: Option<String>,
    /// The route rule's label, for usage reports.
    pub route: String,
    pub limits: Limits,
    /// `None` when the request passes without holding anything: observe mode would have
    /// refused it, or the tenant's state could not be updated.
    pub in_flight: Option<InFlight>,
    /// The request body as it passes, for the output allowance (`max_tokens` and kin).
    pub estimate: RequestEstimate,
}

impl Admitted {
    /// A request admission let through; `allowed` is `None` when it holds nothing in flight.
    pub fn new(
        tenant: String,
        scope: Option<String>,
        route: &str,
        limits: Limits,
        allowed: Option<Allowed>,
        reserved: u64,
    ) -> Admitted {
        let in_flight = allowed.map(|a| InFlight { probe: a.probe, reserved });
        Admitted { tenant, scope, route: route.to_string(), limits, in_flight, estimate: RequestEstimate::default() }
    }

    /// Tokens the whole request body asks to reserve beyond what is reserved already (0 when
    /// the request holds nothing in flight).
    pub fn extra_reservation(&self) -> u64 {
        self.in_flight.map_or(0, |f| self.estimate.tokens().saturating_sub(f.reserved))
    }

    /// Records that `extra` more tokens are reserved for this request.
    pub fn reserved_more(&mut self, extra: u64) {
        if let Some(f) = self.in_flight.as_mut() {
            f.reserved = f.reserved.saturating_add(extra);
        }
    }

    /// Gives back what admission took, counting nothing: for a request refused after the
    /// tenant admitted it (by its agent run's limits).
    pub fn release(&self) -> Settlement {
        Settlement {
            release: self.in_flight.is_some(),
            reserved: self.in_flight.map_or(0, |f| f.reserved),
            probe: self.in_flight.filter(|f| f.probe).map(|_| ProbeEnd::Abandoned),
            ..Settlement::default()
        }
    }

    /// The settlement of the response: what its body reported, whether it was an upstream
    /// error, and the release of what admission took. `status` is `None` when no response
    /// headers came.
    pub fn settlement(&self, status: Option<u16>, summary: &Summary, end: ProbeEnd, cost_micros: u64) -> Settlement {
        let completed = end == ProbeEnd::Completed;
        let upstream_error = status.is_some_and(|s| s >= 500 || s == 429) || summary.error;
        Settlement {
            tokens: summary.usage.map_or(0, |u| u.total()),
            tool_calls: u64::from(summary.tool_calls),
            completed,
            error: completed && upstream_error,
            probe: self.in_flight.filter(|f| f.probe).map(|_| end),
            release: self.in_flight.is_some(),
            cost_micros,
            reserved: self.in_flight.map_or(0, |f| f.reserved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;

    fn admitted(allowed: Option<Allowed>, reserved: u64) -> Admitted {
        Admitted::new("acme".into(), None, "/v1/", Limits::unlimited(), allowed, reserved)
    }

    const PROBE: Allowed = Allowed { probe: true, warning: None };
    const PLAIN: Allowed = Allowed { probe: false, warning: None };

    fn used(input: u64, output: u64) -> Summary {
        Summary {
            usage: Some(Usage { input_tokens: input, output_tokens: output }),
            tool_calls: 2,
            ..Summary::default()
        }
    }

    #[test]
    fn a_completed_response_settles_its_usage_and_releases_what_admission_took() {
        let a = admitted(Some(PLAIN), 30);
        let s = a.settlement(Some(200), &used(10, 5), ProbeEnd::Completed, 7);
        assert_eq!(
            s,
            Settlement {
                tokens: 15,
                tool_calls: 2,
                completed: true,
                error: false,
                probe: None,
                release: true,
                cost_micros: 7,
                reserved: 30
            }
        );
    }

    #[test]
    fn server_errors_rate_limits_and_error_events_count_as_upstream_errors_only_when_completed() {
        let a = admitted(Some(PLAIN), 0);
        for status in [500, 503, 429] {
            assert!(a.settlement(Some(status), &Summary::default(), ProbeEnd::Completed, 0).error, "{status}");
        }
        assert!(!a.settlement(Some(404), &Summary::default(), ProbeEnd::Completed, 0).error);
        let event = Summary { error: true, ..Summary::default() };
        assert!(a.settlement(Some(200), &event, ProbeEnd::Completed, 0).error);
        assert!(!a.settlement(Some(500), &event, ProbeEnd::Abandoned, 0).error, "an abandoned stream judges nothing");
        assert!(!a.settlement(None, &Summary::default(), ProbeEnd::Completed, 0).error, "no response headers");
    }

    #[test]
    fn a_probe_reports_how_it_ended_and_a_plain_request_does_not() {
        let probe = admitted(Some(PROBE), 0);
        assert_eq!(probe.settlement(Some(200), &used(1, 1), ProbeEnd::Abandoned, 0).probe, Some(ProbeEnd::Abandoned));
        assert_eq!(probe.settlement(Some(200), &used(1, 1), ProbeEnd::Completed, 0).probe, Some(ProbeEnd::Completed));
        assert_eq!(admitted(Some(PLAIN), 0).settlement(Some(200), &used(1, 1), ProbeEnd::Completed, 0).probe, None);
    }

    #[test]
    fn a_request_holding_nothing_counts_its_usage_but_releases_nothing() {
        let a = admitted(None, 40);
        let s = a.settlement(Some(200), &used(3, 4), ProbeEnd::Completed, 0);
        assert_eq!((s.tokens, s.release, s.reserved, s.probe), (7, false, 0, None));
        assert_eq!(a.release(), Settlement::default());
        assert_eq!(a.extra_reservation(), 0);
    }

    #[test]
    fn releasing_a_refused_request_gives_back_its_slot_reservation_and_probe() {
        let a = admitted(Some(PROBE), 25);
        assert_eq!(
            a.release(),
            Settlement { release: true, reserved: 25, probe: Some(ProbeEnd::Abandoned), ..Settlement::default() }
        );
    }

    #[test]
    fn the_body_reserves_only_what_admission_did_not_reserve_already() {
        let mut a = admitted(Some(PLAIN), 10);
        a.estimate.feed(br#"{"max_tokens": 100, "messages": []}"#);
        let extra = a.extra_reservation();
        assert_eq!(extra, a.estimate.tokens() - 10);
        a.reserved_more(extra);
        assert_eq!(a.extra_reservation(), 0);
        assert_eq!(a.in_flight.map(|f| f.reserved), Some(a.estimate.tokens()));
    }
}
