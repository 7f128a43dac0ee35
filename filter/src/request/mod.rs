//! One HTTP request through the filter: identify the tenant, admit or refuse, count the
//! response. The callbacks here only move the request along its [`Lifecycle`]; each step
//! lives in its own file (`identify`, `admit`, `rewrite`, `settle`, `status`), and every
//! decision is the engine's.

mod admit;
mod identify;
mod lifecycle;
mod models;
mod report;
mod rewrite;
mod scopes;
mod settle;
mod status;

use crate::active::ActivePolicy;
use crate::claims::Claims;
use crate::events::Reporter;
use crate::fleet_keys::FleetKeys;
use crate::host;
use crate::metrics::{Counter, Metrics};
use crate::store::Keys;
use fusebox_engine::admission::{self, Clamp, ReservationChange};
use fusebox_engine::api_shape;
use fusebox_engine::breaker::ProbeEnd;
use fusebox_engine::config::{FilterConfig, Mode};
use fusebox_engine::path::canonical;
use fusebox_engine::reply::{self, StreamApi};
use fusebox_engine::request::estimate::{RequestEstimate, BYTES_PER_TOKEN};
use fusebox_engine::request::inject;
use fusebox_engine::usage::aligned::EventBoundaries;
use fusebox_engine::usage::BodyScanner;
use identify::RunHeaders;
use lifecycle::{Counting, Flow, Hold, Lifecycle, RequestBody, Response};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::Cell;
use std::rc::Rc;

/// What every request of a worker shares (built once per configuration).
pub struct Worker {
    pub config: FilterConfig,
    pub keys: Keys,
    pub metrics: Rc<Metrics>,
    pub reporter: Reporter,
    /// The state keys used since the last tick, for the singleton's fleet sync.
    pub fleet_keys: FleetKeys,
    pub claims: Claims,
    /// The share of every limit enforced here (1 unless fleet counts are unavailable).
    pub fleet_share: Cell<u32>,
    /// The clock as of the worker's last tick (every 100 ms): what needs a time only to pace
    /// itself reads this rather than make a hostcall.
    pub tick_ms: Cell<u64>,
}

pub struct Request {
    worker: Rc<Worker>,
    /// The policy in force when the request arrived (kept for its whole life).
    active: Rc<ActivePolicy>,
    lifecycle: Lifecycle,
}

impl Request {
    pub fn new(worker: Rc<Worker>, active: Rc<ActivePolicy>) -> Request {
        Request { worker, active, lifecycle: Lifecycle::Untracked }
    }

    /// Reads a request body chunk: the estimate, the hold, the rewrite at its end.
    fn read_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let worker = Rc::clone(&self.worker);
        let Some(c) = self.lifecycle.counting() else { return Action::Continue };
        let RequestBody::Held(hold) = c.body else {
            feed_estimate(&worker, c, body_size, end_of_stream);
            return Action::Continue;
        };
        if body_size > inject::MAX_REWRITE_BYTES {
            // Too large to hold: let it through unchanged (and from here on, as it passes).
            c.body = RequestBody::Passing;
            worker.metrics.inc(Counter::InjectSkipped);
            feed_estimate(&worker, c, body_size, end_of_stream);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause; // buffer until the whole (bounded) body is here
        }
        c.body = RequestBody::Passing;
        let Some(body) = host::request_body(body_size) else {
            reserve_rest(&worker, c, Clamp::Off);
            return Action::Continue;
        };
        c.admitted.estimate.feed(&body);
        // The reservation and the clamp are decided together, in one update of the state.
        let clamp = match (hold.clamp, c.admitted.estimate.max_output()) {
            (false, _) => Clamp::Off,
            (true, _) if inject::may_hide_names(&body) => Clamp::Unread,
            (true, Some(_)) => Clamp::Named,
            (true, None) => Clamp::Off, // it names no allowance: nothing to lower
        };
        let clamp_to = reserve_rest(&worker, c, clamp);
        if let Some(new) = rewrite::rewrite(&worker, hold, clamp_to, &body, body_size) {
            // A charge estimated from the request counts what went upstream.
            c.admitted.estimate = RequestEstimate::default();
            c.admitted.estimate.feed(&new);
        }
        Action::Continue
    }

    /// Judges the body's model by the tenant's per-model limits, once; on a refusal the reply
    /// is sent, what admission took is given back, and `true` is returned.
    fn judge_model(&mut self) -> bool {
        let worker = Rc::clone(&self.worker);
        let Some(c) = self.lifecycle.counting() else { return false };
        let Some(mode) = c.judge_model.take() else { return false };
        let now_ms = host::now_ms();
        let refused = match models::admit(&worker, c, now_ms) {
            Ok(shadowed) => {
                if let Some(limit) = shadowed {
                    admit::shadow_refused(&worker, &c.admitted.tenant, limit, now_ms);
                }
                return false;
            }
            Err(_) if mode != Mode::Enforce => {
                worker.metrics.inc(Counter::WouldDeny);
                return false;
            }
            Err(refused) => refused,
        };
        let Some(c) = self.lifecycle.settle() else { return false };
        admit::give_back(&worker, &c.state, &c.admitted, &c.scopes, now_ms);
        worker.metrics.inc(Counter::for_denial(refused.denied.cause));
        let run_id = c.run.as_ref().map(|r| r.run_id.as_str());
        let reply = reply::denial_in(&c.admitted.tenant, Some(&refused.label), &refused.denied, run_id);
        admit::refuse(&worker, &c.admitted.tenant, api_shape::for_api(reply, c.api), now_ms);
        true
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = host::request_headers();
        // Never let a client assert its own tenant, whatever the route.
        if headers.contains("x-fusebox-tenant") {
            host::set_request_header("x-fusebox-tenant", None);
        }
        // Judged by its canonical form: every spelling of a path lands on the same rule.
        let path = canonical(&headers.get(":path").unwrap_or_default());
        let worker = Rc::clone(&self.worker);
        if worker.config.is_status_path(&path) {
            return status::serve(&worker, &self.active, &headers);
        }
        let matched = worker.config.route_for_canonical(&path);
        let mode = matched.mode;
        if mode == Mode::Pass {
            worker.metrics.inc(Counter::RequestsPassed);
            return Action::Continue;
        }
        let now_ms = host::now_ms();
        // Refusals come in the shape of the route's API, so each SDK raises its own error type.
        let api = StreamApi::for_path(&path);
        let identity = match identify::identify(&self.active, &worker.config.credential_headers, &headers, now_ms) {
            Ok(id) => id,
            Err(reply) if mode == Mode::Enforce => {
                worker.metrics.inc(Counter::Unauthenticated);
                host::send_reply(&api_shape::for_api(reply, api));
                return Action::Pause;
            }
            Err(_) => return Action::Continue,
        };
        let run = match RunHeaders::from_headers(&headers) {
            Ok(run) => run,
            Err(reply) if mode == Mode::Enforce => {
                host::send_reply(&api_shape::for_api(reply, api));
                return Action::Pause;
            }
            Err(_) => None,
        };
        // Proxy-Wasm cannot hold the headers while reading the body (the host turns a paused
        // header callback into a pause of the whole stream, body included), so admission happens now
        // and reserves the prompt's size; the output allowance is added once the body is read.
        let prompt = headers
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |bytes| bytes.div_ceil(BYTES_PER_TOKEN));
        let request = admit::Arrival { identity, route: matched, run, now_ms, prompt, api };
        let Some(counting) = admit::admit(&worker, &self.active, request) else {
            return Action::Pause; // refused: the reply is sent
        };
        let mut counting = Box::new(counting);
        // The tenant's credential stops here: the provider's key is Envoy's to add.
        for name in [&worker.config.credential_headers.authorization, &worker.config.credential_headers.api_key] {
            if headers.contains(name) {
                host::set_request_header(name, None);
            }
        }
        // Usage is read from the body as it passes, so ask the upstream for it uncompressed.
        if headers.contains("accept-encoding") {
            host::set_request_header("accept-encoding", None);
        }
        let post = headers.get(":method").is_some_and(|m| m.eq_ignore_ascii_case("POST"));
        if post && !end_of_stream {
            let stream_usage = worker.config.inject_stream_usage && inject::is_chat_completions(&path);
            let clamp = counting.in_flight() && counting.admitted.limits.clamp_max_tokens;
            if let Some(hold) = Hold::needed(stream_usage, clamp) {
                // The body may change; its length is no longer known.
                host::set_request_header("content-length", None);
                counting.body = RequestBody::Held(hold);
            }
            // Per-model limits judge the body's model before any of the body goes upstream.
            let models = counting.in_flight() && !counting.admitted.limits.models.is_empty();
            counting.judge_model = models.then_some(mode);
            if models && matches!(counting.body, RequestBody::Passing) {
                counting.body = RequestBody::Held(Hold::unchanged());
            }
        }
        self.lifecycle = Lifecycle::Counting(counting);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let action = self.read_request_body(body_size, end_of_stream);
        if end_of_stream && matches!(action, Action::Continue) && self.judge_model() {
            return Action::Pause; // refused by its model's limits: the reply is sent
        }
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(c) = self.lifecycle.counting() else { return Action::Continue };
        let headers = host::response_headers();
        let status = headers.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let encoding = headers.get("content-encoding");
        let scanner = if encoding.as_deref().is_none_or(|e| e.eq_ignore_ascii_case("identity")) {
            Some(BodyScanner::for_content_type(headers.get("content-type").as_deref()))
        } else {
            // We asked for identity; an upstream that compresses anyway cannot be counted.
            self.worker.metrics.inc(Counter::UsageEncoded);
            log::warn!("response for tenant '{}' is {encoding:?}-encoded; not counted", c.admitted.tenant);
            None
        };
        // Where the events of a stream that may be ended early end, so an ending lands after a whole one.
        let sse = matches!(scanner, Some(BodyScanner::Sse(_)));
        let events = (sse && c.admitted.limits.terminate_streams).then(EventBoundaries::default);
        c.response =
            Response::Reading { status, scanner, flow: Flow::Passing, events, bytes: 0, checked_tick_ms: None };
        if let Some(w) = &c.warning {
            host::add_response_header("x-fusebox-warning", w);
        }
        if let Some(reason) = c.shadow_denied {
            host::add_response_header("x-fusebox-shadow-denied", reason);
        }
        for (name, value) in c.quota_fields.iter().flatten() {
            host::set_response_header(name, value);
        }
        if end_of_stream {
            self.settle(ProbeEnd::Completed);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Inspect each chunk as it passes; never pause (Envoy would buffer, then fail large bodies).
        let worker = Rc::clone(&self.worker);
        let Some(c) = self.lifecycle.counting() else { return Action::Continue };
        if let Response::Reading { scanner, flow, events, bytes: seen, checked_tick_ms, .. } = &mut c.response {
            *seen = seen.saturating_add(body_size as u64);
            let wanted = body_size > 0 && (scanner.is_some() || events.is_some());
            let chunk = if wanted { host::response_body(body_size) } else { None };
            let bytes = chunk.as_deref().unwrap_or_default();
            // Count everything the upstream sends, even what the client no longer gets.
            if let Some(scanner) = scanner.as_mut() {
                if !bytes.is_empty() {
                    scanner.feed(bytes);
                }
            }
            if let (Flow::Passing, Some(_)) = (*flow, events.as_ref()) {
                // Whether the breaker opened meanwhile, looked at once a worker tick (a state
                // read and a clock read per chunk were most of a long stream's cost); before the
                // first tick, on every chunk.
                let tick = worker.tick_ms.get();
                if body_size > 0 && (tick == 0 || *checked_tick_ms != Some(tick)) {
                    *checked_tick_ms = Some(tick);
                    let state = c.state.read(&worker.keys).ok().flatten();
                    if let Some(denied) = state.and_then(|s| admission::open_denial(&s, host::now_ms())) {
                        *flow = Flow::Ending(denied);
                    }
                }
            }
            match (*flow, events.as_mut()) {
                (Flow::Terminated, _) => host::replace_response_body(body_size, b""),
                (Flow::Ending(denied), Some(events)) => {
                    // The rest of the event the client has begun, then a well-formed final
                    // event; its SDK stops and hangs up. Until that event ends, chunks pass.
                    if let Some(keep) = events.cut(bytes) {
                        let mut out = bytes.get(..keep).unwrap_or(bytes).to_vec();
                        out.extend(reply::stream_termination(c.api, &c.admitted.tenant, &denied));
                        host::replace_response_body(body_size, &out);
                        *flow = Flow::Terminated;
                        worker.metrics.inc(Counter::StreamsTerminated);
                        log::info!("tenant '{}' breaker is open: ending its stream in flight", c.admitted.tenant);
                    }
                }
                (Flow::Passing, Some(events)) => events.pass(bytes),
                (_, None) => {}
            }
        }
        if end_of_stream {
            self.settle(ProbeEnd::Completed);
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.settle(ProbeEnd::Completed);
        Action::Continue
    }

    fn on_log(&mut self) {
        // Runs for every stream, including resets and timeouts: release what is still held.
        self.settle(ProbeEnd::Abandoned);
    }
}

impl Request {
    fn settle(&mut self, end: ProbeEnd) {
        if let Some(c) = self.lifecycle.settle() {
            settle::settle(&self.worker, &self.active, *c, end);
        }
    }
}

/// Feeds a passing request body chunk to the estimate; reserves the rest at its end.
fn feed_estimate(worker: &Worker, c: &mut Counting, chunk_size: usize, end_of_stream: bool) {
    if !c.in_flight() {
        return;
    }
    if chunk_size > 0 {
        if let Some(chunk) = host::request_body(chunk_size) {
            c.admitted.estimate.feed(&chunk);
        }
    }
    if end_of_stream {
        reserve_rest(worker, c, Clamp::Off);
    }
}

/// Brings the reservation to what the whole body says: its real prompt size, its own
/// `max_tokens` where that is below the tenant's output allowance, and when clamped, at most
/// what its token windows have left; returns the allowance the body must be lowered to.
fn reserve_rest(worker: &Worker, c: &mut Counting, clamp: Clamp) -> Option<u64> {
    if !c.in_flight() || (clamp == Clamp::Off && c.admitted.reservation_change() == ReservationChange::Keep) {
        return None;
    }
    let now_ms = host::now_ms();
    let admitted = &c.admitted;
    match c
        .state
        .update(&worker.keys, &admitted.limits, now_ms, |s| admission::reserve_body(s, admitted, now_ms, clamp))
    {
        Ok(Some(u)) => {
            c.admitted.reservation_changed(u.result.change);
            u.result.clamp_to
        }
        Ok(None) => None,
        Err(e) => {
            worker.metrics.inc(Counter::StoreErrors);
            log::warn!("adjusting the reservation to the request body failed ({e:?})");
            None
        }
    }
}
