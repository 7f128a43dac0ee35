//! What a worker keeps of a request it admitted, from admission until its response ends, and
//! the settlements that give back what admission took and add what the response used.

use super::decision::{Allowed, Settlement};
use crate::breaker::ProbeEnd;
use crate::policy::Limits;
use crate::request::estimate::RequestEstimate;
use crate::usage::{Summary, Usage};

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
    /// The prompt's size in tokens as admission saw it (from `content-length`).
    pub prompt: u64,
    /// The output tokens admission reserved: what this tenant's responses have used (see
    /// [`super::output_allowance`]); a smaller `max_tokens` in the body lowers it.
    pub output_allowance: u64,
    /// The request body as it passes, for the prompt size and its `max_tokens` (and kin).
    pub estimate: RequestEstimate,
}

/// How a request's reservation changes once its whole body is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationChange {
    Keep,
    Add(u64),
    Release(u64),
}

impl ReservationChange {
    /// `reserved` tokens after this change.
    pub fn applied_to(self, reserved: u64) -> u64 {
        match self {
            ReservationChange::Keep => reserved,
            ReservationChange::Add(n) => reserved.saturating_add(n),
            ReservationChange::Release(n) => reserved.saturating_sub(n),
        }
    }
}

impl Admitted {
    /// A request admission let through with `prompt + output_allowance` reserved; `allowed` is
    /// `None` when it holds nothing in flight.
    pub fn new(
        tenant: String,
        scope: Option<String>,
        route: &str,
        limits: Limits,
        allowed: Option<Allowed>,
        prompt: u64,
        output_allowance: u64,
    ) -> Admitted {
        let reserved = prompt.saturating_add(output_allowance);
        let in_flight = allowed.map(|a| InFlight { probe: a.probe, reserved });
        Admitted {
            tenant,
            scope,
            route: route.to_string(),
            limits,
            in_flight,
            prompt,
            output_allowance,
            estimate: RequestEstimate::default(),
        }
    }

    /// What the request should hold once its whole body is known: the prompt it really has,
    /// plus the tenant's output allowance or the body's own `max_tokens` where that is smaller
    /// (a request is not held to an allowance far above what this tenant uses).
    pub fn target_reservation(&self) -> u64 {
        self.estimate.prompt_tokens().saturating_add(self.output_cap())
    }

    /// The output this request is allowed: the tenant's allowance, or the body's own
    /// `max_tokens` where that is smaller.
    pub fn output_cap(&self) -> u64 {
        self.estimate.max_output().map_or(self.output_allowance, |m| m.min(self.output_allowance))
    }

    /// The prompt's size in tokens: from the body that passed, or `content-length` before it.
    pub fn prompt_tokens(&self) -> u64 {
        self.estimate.prompt_tokens().max(self.prompt)
    }

    /// The change from what is reserved to [`Admitted::target_reservation`] (none when the
    /// request holds nothing in flight).
    pub fn reservation_change(&self) -> ReservationChange {
        self.change_to(self.target_reservation())
    }

    /// The change from what is reserved to `target` (none when the request holds nothing).
    pub fn change_to(&self, target: u64) -> ReservationChange {
        let Some(f) = self.in_flight else { return ReservationChange::Keep };
        match target.cmp(&f.reserved) {
            std::cmp::Ordering::Greater => ReservationChange::Add(target - f.reserved),
            std::cmp::Ordering::Less => ReservationChange::Release(f.reserved - target),
            std::cmp::Ordering::Equal => ReservationChange::Keep,
        }
    }

    /// Records that the tenant's state now holds `change` for this request.
    pub fn reservation_changed(&mut self, change: ReservationChange) {
        if let Some(f) = self.in_flight.as_mut() {
            f.reserved = change.applied_to(f.reserved);
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

    /// The settlement of the response: the usage it is `charged` (see `charge.rs`), whether it
    /// was an upstream error, and the release of what admission took. `status` is `None` when
    /// no response headers came.
    pub fn settlement(
        &self,
        status: Option<u16>,
        summary: &Summary,
        charged: Usage,
        end: ProbeEnd,
        cost_micros: u64,
    ) -> Settlement {
        let completed = end == ProbeEnd::Completed;
        let upstream_error = status.is_some_and(|s| s >= 500 || s == 429) || summary.error;
        let succeeded =
            completed && status.is_some_and(|s| (200..300).contains(&s)) && !summary.error && !summary.malformed;
        Settlement {
            tokens: charged.total(),
            tool_calls: u64::from(summary.tool_calls),
            completed,
            error: completed && upstream_error,
            probe: self.in_flight.filter(|f| f.probe).map(|_| end),
            release: self.in_flight.is_some(),
            cost_micros,
            reserved: self.in_flight.map_or(0, |f| f.reserved),
            // Only what a response reported teaches the estimate, never an estimate.
            output_tokens: summary.usage.filter(|_| succeeded).map(|u| u.output_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Usage;

    fn admitted(allowed: Option<Allowed>, reserved: u64) -> Admitted {
        Admitted::new("acme".into(), None, "/v1/", Limits::unlimited(), allowed, reserved, 0)
    }

    /// What a response whose body reported `summary`'s usage is charged.
    fn reported(summary: &Summary) -> Usage {
        summary.usage.unwrap_or_default()
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
        let s = a.settlement(Some(200), &used(10, 5), reported(&used(10, 5)), ProbeEnd::Completed, 7);
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
                reserved: 30,
                output_tokens: Some(5),
            }
        );
    }

    #[test]
    fn only_a_successful_completed_response_teaches_the_output_estimate() {
        let a = admitted(Some(PLAIN), 0);
        assert_eq!(
            a.settlement(Some(200), &used(1, 9), reported(&used(1, 9)), ProbeEnd::Completed, 0).output_tokens,
            Some(9)
        );
        assert_eq!(
            a.settlement(Some(500), &used(1, 9), reported(&used(1, 9)), ProbeEnd::Completed, 0).output_tokens,
            None
        );
        assert_eq!(
            a.settlement(Some(200), &used(1, 9), reported(&used(1, 9)), ProbeEnd::Abandoned, 0).output_tokens,
            None
        );
        let failed = Summary { error: true, ..used(1, 9) };
        assert_eq!(a.settlement(Some(200), &failed, reported(&failed), ProbeEnd::Completed, 0).output_tokens, None);
    }

    #[test]
    fn server_errors_rate_limits_and_error_events_count_as_upstream_errors_only_when_completed() {
        let a = admitted(Some(PLAIN), 0);
        for status in [500, 503, 429] {
            assert!(
                a.settlement(Some(status), &Summary::default(), Usage::default(), ProbeEnd::Completed, 0).error,
                "{status}"
            );
        }
        assert!(
            !a.settlement(Some(404), &Summary::default(), reported(&Summary::default()), ProbeEnd::Completed, 0).error
        );
        let event = Summary { error: true, ..Summary::default() };
        assert!(a.settlement(Some(200), &event, reported(&event), ProbeEnd::Completed, 0).error);
        assert!(
            !a.settlement(Some(500), &event, reported(&event), ProbeEnd::Abandoned, 0).error,
            "an abandoned stream judges nothing"
        );
        assert!(
            !a.settlement(None, &Summary::default(), reported(&Summary::default()), ProbeEnd::Completed, 0).error,
            "no response headers"
        );
    }

    #[test]
    fn a_probe_reports_how_it_ended_and_a_plain_request_does_not() {
        let probe = admitted(Some(PROBE), 0);
        assert_eq!(
            probe.settlement(Some(200), &used(1, 1), reported(&used(1, 1)), ProbeEnd::Abandoned, 0).probe,
            Some(ProbeEnd::Abandoned)
        );
        assert_eq!(
            probe.settlement(Some(200), &used(1, 1), reported(&used(1, 1)), ProbeEnd::Completed, 0).probe,
            Some(ProbeEnd::Completed)
        );
        assert_eq!(
            admitted(Some(PLAIN), 0)
                .settlement(Some(200), &used(1, 1), reported(&used(1, 1)), ProbeEnd::Completed, 0)
                .probe,
            None
        );
    }

    #[test]
    fn a_request_holding_nothing_counts_its_usage_but_releases_nothing() {
        let a = admitted(None, 40);
        let s = a.settlement(Some(200), &used(3, 4), reported(&used(3, 4)), ProbeEnd::Completed, 0);
        assert_eq!((s.tokens, s.release, s.reserved, s.probe), (7, false, 0, None));
        assert_eq!(a.release(), Settlement::default());
    }

    #[test]
    fn releasing_a_refused_request_gives_back_its_slot_reservation_and_probe() {
        let a = admitted(Some(PROBE), 25);
        assert_eq!(
            a.release(),
            Settlement { release: true, reserved: 25, probe: Some(ProbeEnd::Abandoned), ..Settlement::default() }
        );
    }

    fn with_allowance(prompt: u64, allowance: u64) -> Admitted {
        Admitted::new("acme".into(), None, "/v1/", Limits::unlimited(), Some(PLAIN), prompt, allowance)
    }

    #[test]
    fn admission_reserves_the_prompt_and_the_output_allowance() {
        assert_eq!(with_allowance(10, 700).in_flight.map(|f| f.reserved), Some(710));
    }

    #[test]
    fn a_body_without_max_tokens_keeps_the_learned_allowance() {
        let body = br#"{"messages": [{"role": "user", "content": "hi"}]}"#;
        let mut a = with_allowance(0, 700);
        a.estimate.feed(body);
        let prompt = (body.len() as u64).div_ceil(4);
        assert_eq!(a.target_reservation(), prompt + 700);
        assert_eq!(a.reservation_change(), ReservationChange::Add(prompt));
    }

    #[test]
    fn a_max_tokens_below_the_allowance_lowers_the_reservation_and_one_above_does_not_raise_it() {
        let small = br#"{"max_tokens": 50, "messages": []}"#;
        let mut a = with_allowance((small.len() as u64).div_ceil(4), 700);
        a.estimate.feed(small);
        assert_eq!(a.reservation_change(), ReservationChange::Release(650));
        a.reservation_changed(ReservationChange::Release(650));
        assert_eq!(a.reservation_change(), ReservationChange::Keep);
        let large = br#"{"max_tokens": 32000, "messages": []}"#;
        let mut b = with_allowance((large.len() as u64).div_ceil(4), 700);
        b.estimate.feed(large);
        assert_eq!(b.reservation_change(), ReservationChange::Keep, "32000 is taken as at most 700");
    }

    #[test]
    fn a_request_holding_nothing_has_no_reservation_to_change() {
        let mut a = Admitted::new("acme".into(), None, "/v1/", Limits::unlimited(), None, 0, 700);
        a.estimate.feed(br#"{"max_tokens": 5}"#);
        assert_eq!(a.reservation_change(), ReservationChange::Keep);
    }

    #[test]
    fn an_estimated_charge_is_settled_but_teaches_the_output_estimate_nothing() {
        let a = admitted(Some(PLAIN), 0);
        let estimate = Usage { input_tokens: 40, output_tokens: 60 };
        let s = a.settlement(Some(200), &Summary::default(), estimate, ProbeEnd::Abandoned, 0);
        assert_eq!((s.tokens, s.output_tokens), (100, None));
    }
}
