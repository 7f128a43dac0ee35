//! The reservation of an admitted request once its whole body is read, decided in one update
//! of its tenant's state: its real prompt size, its own `max_tokens`, and the clamp of that
//! allowance to what the token windows have left. (Proxy-Wasm cannot hold request headers
//! while it reads the body, so admission itself happens on the headers, before the body.)

use super::record::{Admitted, ReservationChange};
use super::status::output_room;
use crate::state::TenantState;

/// Whether a body's output allowance is lowered to the room its token windows have left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    Off,
    /// Lowered where it is above the room (the estimate read what the body names).
    Named,
    /// The body may name an allowance the estimate cannot read (a name behind a `\u`
    /// escape): whatever it names is lowered to the room, and the room is what is reserved.
    Unread,
}

/// What the body changed, applied to the tenant's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReservation {
    pub change: ReservationChange,
    /// The output allowance the body must be lowered to (the clamp applies and bites, or the
    /// body's allowance could not be read).
    pub clamp_to: Option<u64>,
}

/// Brings what `admitted` holds in `state` to what its whole body (read into its estimate)
/// asks: the prompt it really has plus its output, where the output is the tenant's allowance,
/// the body's own `max_tokens` if smaller, and when clamped, at most the room its token windows
/// have left (never below 1). A request that holds nothing in flight changes nothing.
pub fn reserve_body(state: &mut TenantState, admitted: &Admitted, now_ms: u64, clamp: Clamp) -> BodyReservation {
    if admitted.in_flight.is_none() {
        return BodyReservation { change: ReservationChange::Keep, clamp_to: None };
    }
    let asked = admitted.estimate.max_output();
    let room = || output_room(state, &admitted.limits, now_ms, admitted.output_allowance).map(|room| room.max(1));
    let clamp_to = match (clamp, asked) {
        (Clamp::Off, _) => None,
        (Clamp::Named, Some(asked)) => room().filter(|room| asked > *room),
        (Clamp::Named, None) => None,
        (Clamp::Unread, _) => room(),
    };
    let output = clamp_to.map_or(admitted.output_cap(), |m| m.min(admitted.output_allowance));
    let change = admitted.change_to(admitted.estimate.prompt_tokens().saturating_add(output));
    state.reserved_tokens = change.applied_to(state.reserved_tokens);
    BodyReservation { change, clamp_to }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::decision::Allowed;
    use crate::policy::Limits;

    const T0: u64 = 1_700_000_000_000;
    const PLAIN: Allowed = Allowed { probe: false, warning: None };

    /// A request admitted with a 40-token prompt (from `content-length`) and `allowance`
    /// reserved, whose body is `body`; the state holds its reservation plus `others`.
    fn admitted(tokens_60s: u64, allowance: u64, body: &str, others: u64) -> (Admitted, TenantState) {
        let limits = Limits { tokens_60s: Some(tokens_60s), ..Limits::unlimited() };
        let mut a = Admitted::new("acme".into(), None, "/v1/", limits, Some(PLAIN), 40, allowance);
        a.estimate.feed(body.as_bytes());
        let state = TenantState { reserved_tokens: others + 40 + allowance, in_flight: 1, ..TenantState::default() };
        (a, state)
    }

    /// A body of exactly 160 bytes (40 tokens) naming `max_tokens`.
    fn body(max_tokens: u64) -> String {
        let head = format!(r#"{{"model":"m","max_tokens":{max_tokens},"messages":[{{"role":"user","content":""#);
        format!("{head}{}\"}}]}}", "x".repeat(160 - head.len() - 4))
    }

    #[test]
    fn a_body_asking_less_than_the_allowance_gives_the_difference_back_and_is_not_rewritten() {
        let (a, mut s) = admitted(100_000, 1_000, &body(128), 0);
        let r = reserve_body(&mut s, &a, T0, Clamp::Named);
        assert_eq!(r, BodyReservation { change: ReservationChange::Release(872), clamp_to: None });
        assert_eq!(s.reserved_tokens, 40 + 128);
    }

    #[test]
    fn a_body_asking_more_than_its_windows_have_left_is_clamped_to_the_room() {
        // 10 000 in the window: 8 000 held by others, its own 40-token prompt, so 1 960 left.
        let (a, mut s) = admitted(10_000, 4_000, &body(3_000), 8_000);
        let r = reserve_body(&mut s, &a, T0, Clamp::Named);
        assert_eq!(r.clamp_to, Some(1_960));
        assert_eq!(r.change, ReservationChange::Release(4_000 - 1_960));
        assert_eq!(s.reserved_tokens, 8_000 + 40 + 1_960, "it holds exactly what it may now use");
    }

    #[test]
    fn without_the_clamp_the_body_keeps_its_allowance_and_reserves_up_to_the_tenants() {
        let (a, mut s) = admitted(10_000, 4_000, &body(3_000), 8_000);
        let r = reserve_body(&mut s, &a, T0, Clamp::Off);
        assert_eq!(r, BodyReservation { change: ReservationChange::Release(1_000), clamp_to: None });
    }

    #[test]
    fn a_body_with_no_room_left_is_clamped_to_one_token_not_zero() {
        let (a, mut s) = admitted(10_000, 500, &body(64), 20_000);
        assert_eq!(reserve_body(&mut s, &a, T0, Clamp::Named).clamp_to, Some(1));
    }

    #[test]
    fn a_body_naming_no_allowance_reserves_the_tenants_allowance_and_is_never_clamped() {
        let (a, mut s) = admitted(1_000, 700, r#"{"model":"m","messages":[]}"#, 900);
        let r = reserve_body(&mut s, &a, T0, Clamp::Named);
        assert_eq!(r.clamp_to, None);
        assert_eq!(r.change, ReservationChange::Release(40 - 7), "its prompt is 7 tokens, not 40");
    }

    #[test]
    fn a_body_whose_allowance_cannot_be_read_is_lowered_to_the_room_and_reserves_it() {
        let (a, mut s) = admitted(10_000, 4_000, r#"{"max_\u0074okens":9000,"messages":[]}"#, 8_000);
        let r = reserve_body(&mut s, &a, T0, Clamp::Unread);
        assert_eq!(r.clamp_to, Some(1_960));
        assert_eq!(s.reserved_tokens, 8_000 + 10 + 1_960, "its 10-token prompt and the room");
    }

    #[test]
    fn a_request_holding_nothing_changes_nothing() {
        let (mut a, mut s) = admitted(10_000, 4_000, &body(3_000), 8_000);
        a.in_flight = None;
        let before = s.reserved_tokens;
        assert_eq!(reserve_body(&mut s, &a, T0, Clamp::Named).change, ReservationChange::Keep);
        assert_eq!(s.reserved_tokens, before);
    }
}
