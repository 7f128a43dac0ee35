//! Where one request is in its life, as types: untracked, counting (with the request body's
//! and the response's own progress), or settled. A settled request cannot be settled twice and
//! a response's status exists only once its headers came, so neither needs a flag or a sentinel.

use crate::runs::AdmittedRun;
use crate::states::StateAt;
use fusebox_engine::admission::Admitted;
use fusebox_engine::admission::Denied;
use fusebox_engine::config::Mode;
use fusebox_engine::reply::StreamApi;
use fusebox_engine::usage::aligned::EventBoundaries;
use fusebox_engine::usage::BodyScanner;

/// Why a request body is held until its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// Add `stream_options.include_usage` (streamed OpenAI chat).
    pub stream_usage: bool,
    /// Lower the output allowance to what the tenant's token windows have left.
    pub clamp: bool,
}

impl Hold {
    /// The hold a request body needs to be rewritten, if any.
    pub fn needed(stream_usage: bool, clamp: bool) -> Option<Hold> {
        (stream_usage || clamp).then_some(Hold { stream_usage, clamp })
    }

    /// A hold that rewrites nothing: the body only waits to be judged (by its model's limits).
    pub fn unchanged() -> Hold {
        Hold { stream_usage: false, clamp: false }
    }
}

/// The request body, as far as fusebox is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// Passing chunk by chunk (read only for the estimate, while the request holds a reservation).
    Passing,
    /// Held until its end, to be rewritten.
    Held(Hold),
}

/// The response, as far as counting is concerned.
// One per request, inside the boxed `Counting`: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Response {
    /// No response headers yet (a reset now settles with no status).
    Awaiting,
    /// Headers came: the status, the scanner reading the body (`None` when the upstream
    /// compressed it anyway and it cannot be counted), and, for an SSE stream that may be ended
    /// early, where the events that passed end (so it ends right after a whole one).
    Reading {
        status: u16,
        scanner: Option<BodyScanner>,
        flow: Flow,
        events: Option<EventBoundaries>,
        bytes: u64,
        /// The worker tick at which the breaker was last looked at mid-stream.
        checked_tick_ms: Option<u64>,
    },
}

/// Whether the client still gets the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Passing,
    /// The tenant's breaker opened: the stream ends once the event the client has begun is whole.
    Ending(Denied),
    /// The stream was ended with an error event; what the upstream still sends is counted but
    /// dropped for the client.
    Terminated,
}

impl Response {
    /// The status, once the headers came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Response::Awaiting => None,
            Response::Reading { status, .. } => Some(*status),
        }
    }
}

/// An admitted request, counted until it settles.
#[derive(Debug)]
pub struct Counting {
    pub admitted: Admitted,
    /// The state it is counted in (the tenant's, or its route tier's).
    pub state: StateAt,
    /// The agent run step this request is, if any.
    pub run: Option<AdmittedRun>,
    /// Which API's error event ends this stream if the breaker opens mid-way.
    pub api: StreamApi,
    pub body: RequestBody,
    pub response: Response,
    /// `x-fusebox-warning` for the response.
    pub warning: Option<String>,
    /// The scopes (org, team, ...) that admitted the request and settle with it.
    pub scopes: Vec<super::scopes::Held>,
    /// The body's model is still to be judged by the tenant's per-model limits: `Enforce`, or
    /// `Observe` (a would-be refusal is only counted).
    pub judge_model: Option<Mode>,
    /// Every scope the request belongs to, limited or not (its usage is metered by them).
    pub memberships: Vec<fusebox_engine::identity::Membership>,
    /// `x-fusebox-shadow-denied` for the response: the reason a shadowed limit would have refused.
    pub shadow_denied: Option<&'static str>,
    /// `RateLimit-Policy` / `RateLimit` for the response.
    pub quota_fields: Option<[(&'static str, String); 2]>,
}

impl Counting {
    pub fn new(admitted: Admitted, state: StateAt, run: Option<AdmittedRun>, api: StreamApi) -> Counting {
        Counting {
            admitted,
            state,
            run,
            api,
            body: RequestBody::Passing,
            response: Response::Awaiting,
            warning: None,
            shadow_denied: None,
            scopes: Vec::new(),
            memberships: Vec::new(),
            judge_model: None,
            quota_fields: None,
        }
    }

    /// Whether the request holds a slot and a reservation in its tenant's state.
    pub fn in_flight(&self) -> bool {
        self.admitted.in_flight.is_some()
    }
}

#[derive(Debug, Default)]
pub enum Lifecycle {
    /// Nothing is counted: before the request headers, on a pass route, on an observe route
    /// without identity, or refused.
    #[default]
    Untracked,
    Counting(Box<Counting>),
    /// Released, counted and reported; later callbacks change nothing.
    Settled,
}

impl Lifecycle {
    /// The request being counted, unless untracked or settled.
    pub fn counting(&mut self) -> Option<&mut Counting> {
        match self {
            Lifecycle::Counting(c) => Some(c),
            _ => None,
        }
    }

    /// Takes a counting request out to settle it, leaving it settled; `None` otherwise.
    pub fn settle(&mut self) -> Option<Box<Counting>> {
        match std::mem::take(self) {
            Lifecycle::Counting(c) => {
                *self = Lifecycle::Settled;
                Some(c)
            }
            other => {
                *self = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fusebox_engine::policy::Limits;

    fn counting() -> Lifecycle {
        let admitted = Admitted::new("acme".into(), None, "/v1/", Limits::unlimited(), None, 0, 0);
        Lifecycle::Counting(Box::new(Counting::new(
            admitted,
            StateAt { name: "t".into(), key: "k".into() },
            None,
            StreamApi::OpenAiChat,
        )))
    }

    #[test]
    fn a_counting_request_settles_once_and_then_stays_settled() {
        let mut l = counting();
        assert!(l.counting().is_some());
        let taken = l.settle().expect("the first settlement takes the request");
        assert_eq!(taken.admitted.tenant, "acme");
        assert!(matches!(l, Lifecycle::Settled));
        assert!(l.settle().is_none(), "a second end of stream settles nothing");
        assert!(l.counting().is_none());
    }

    #[test]
    fn an_untracked_request_has_nothing_to_settle_and_stays_untracked() {
        let mut l = Lifecycle::default();
        assert!(l.settle().is_none());
        assert!(matches!(l, Lifecycle::Untracked));
    }

    #[test]
    fn a_response_has_a_status_only_once_its_headers_came() {
        assert_eq!(Response::Awaiting.status(), None);
        let reading = Response::Reading {
            status: 503,
            scanner: None,
            flow: Flow::Passing,
            events: None,
            bytes: 0,
            checked_tick_ms: None,
        };
        assert_eq!(reading.status(), Some(503));
    }

    #[test]
    fn a_body_is_held_only_when_a_rewrite_needs_it() {
        assert_eq!(Hold::needed(false, false), None);
        assert_eq!(Hold::needed(true, false), Some(Hold { stream_usage: true, clamp: false }));
        assert_eq!(Hold::needed(false, true), Some(Hold { stream_usage: false, clamp: true }));
    }
}
