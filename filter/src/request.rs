//! One HTTP request through the filter: identify the tenant, admit or deny, count the response.

use crate::active::ActivePolicy;
use crate::events::Reporter;
use crate::host;
use crate::metrics::{Counter, Metrics};
use crate::runs::{self, AdmittedRun, RunRefusal};
use crate::store::{self, Keys, StoreError, UpdateInfo};
use fusebox_engine::admission::{self, Decision, DenyCause, Settlement};
use fusebox_engine::breaker::{Phase, ProbeEnd, Transition};
use fusebox_engine::budget::Budget;
use fusebox_engine::config::{FilterConfig, Mode, RouteMatch};
use fusebox_engine::estimate::{RequestEstimate, BYTES_PER_TOKEN};
use fusebox_engine::event::{minute_of, Event};
use fusebox_engine::identity::{Credentials, EnvoyJwt, Identity};
use fusebox_engine::inject::{self, Injection, Rewrite};
use fusebox_engine::metric::Metric;
use fusebox_engine::policy::Limits;
use fusebox_engine::reply::{self, StreamApi};
use fusebox_engine::run::is_valid_run_id;
use fusebox_engine::state::TenantState;
use fusebox_engine::usage::{BodyScanner, Summary};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

/// A request being counted.
struct Tracked {
    tenant: String,
    key: String,
    /// The route rule's label, for usage reports.
    route: String,
    /// The route tier whose state this request is counted in (`None`: the tenant's own).
    scope: Option<String>,
    limits: Limits,
    probe: bool,
    warning: Option<String>,
    /// `RateLimit-Policy` / `RateLimit` for the response.
    quota_fields: Option<[(&'static str, String); 2]>,
    /// Chosen from the response's content-type; `None` until headers arrive or when the body
    /// is encoded and cannot be read.
    scanner: Option<BodyScanner>,
    status: u16,
    /// Admission counted this request in flight; settlement releases it.
    in_flight: bool,
    /// The agent run step this request is, if any.
    run: Option<AdmittedRun>,
    /// Token estimate reserved so far (released at settlement).
    reserved: u64,
    /// The request body as it passes, for the output allowance (`max_tokens` and kin).
    estimate: RequestEstimate,
    /// Which API's error event ends this stream if the breaker opens mid-way.
    api: StreamApi,
    /// The stream was ended with an error event; what the upstream still sends is dropped.
    terminated: bool,
    settled: bool,
}

/// `x-agent-run-id` and `x-agent-parent-run-id` of a request.
struct RunHeaders {
    run_id: String,
    parent: Option<String>,
}

pub struct Request {
    config: Rc<FilterConfig>,
    keys: Rc<Keys>,
    metrics: Rc<Metrics>,
    active: Rc<ActivePolicy>,
    tracked: Option<Tracked>,
    /// Holding the request body to rewrite it at its end.
    hold: Option<Hold>,
    reporter: Rc<Reporter>,
}

/// Why a request body is held until its end.
#[derive(Debug, Clone, Copy)]
struct Hold {
    /// Add `stream_options.include_usage` (streamed OpenAI chat).
    stream_usage: bool,
    /// Lower the output allowance to what the tenant's token windows have left.
    clamp: bool,
}

impl Request {
    pub fn new(
        config: Rc<FilterConfig>,
        keys: Rc<Keys>,
        metrics: Rc<Metrics>,
        active: Rc<ActivePolicy>,
        reporter: Rc<Reporter>,
    ) -> Request {
        Request { config, keys, metrics, active, tracked: None, hold: None, reporter }
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
        let path = headers.get(":path").unwrap_or_default();
        if self.is_status_request(&path) {
            return self.serve_status(&headers);
        }
        let config = Rc::clone(&self.config);
        let matched = config.route_for(&path);
        let mode = matched.mode;
        if mode == Mode::Pass {
            self.metrics.inc(Counter::RequestsPassed);
            return Action::Continue;
        }
        let now_ms = host::now_ms();
        let identity = match self.identify(&headers, now_ms) {
            Ok(id) => id,
            Err(reply) if mode == Mode::Enforce => {
                self.metrics.inc(Counter::Unauthenticated);
                host::send_reply(&reply);
                return Action::Pause;
            }
            Err(_) => return Action::Continue,
        };
        let run = match run_headers(&headers) {
            Ok(run) => run,
            Err(reply) if mode == Mode::Enforce => {
                host::send_reply(&reply);
                return Action::Pause;
            }
            Err(_) => None,
        };
        // Proxy-Wasm cannot hold the headers while reading the body, so admission happens now
        // and reserves the prompt's size; the output allowance is added once the body is read.
        let prompt = headers
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |bytes| bytes.div_ceil(BYTES_PER_TOKEN));
        let action = self.admit(identity, matched, run, now_ms, prompt);
        if let Some(t) = self.tracked.as_mut() {
            t.api = StreamApi::for_path(&path);
            // Usage is read from the body as it passes, so ask the upstream for it uncompressed.
            if headers.contains("accept-encoding") {
                host::set_request_header("accept-encoding", None);
            }
        }
        let post = headers.get(":method").is_some_and(|m| m.eq_ignore_ascii_case("POST"));
        if action == Action::Continue && post && !end_of_stream {
            let stream_usage = self.config.inject_stream_usage && inject::is_chat_completions(&path);
            let clamp = self.tracked.as_ref().is_some_and(|t| t.in_flight && t.limits.clamp_max_tokens);
            if stream_usage || clamp {
                // The body may change; its length is no longer known.
                host::set_request_header("content-length", None);
                self.hold = Some(Hold { stream_usage, clamp });
            }
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(hold) = self.hold else {
            self.feed_estimate(body_size, end_of_stream);
            return Action::Continue;
        };
        if body_size > inject::MAX_REWRITE_BYTES {
            // Too large to hold: let it through unchanged (and from here on, as it passes).
            self.hold = None;
            self.metrics.inc(Counter::InjectSkipped);
            self.feed_estimate(body_size, end_of_stream);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause; // buffer until the whole (bounded) body is here
        }
        self.hold = None;
        if let Some(body) = host::request_body(body_size) {
            let final_body = self.rewrite_body(hold, &body, body_size).unwrap_or(body);
            if let Some(t) = self.tracked.as_mut() {
                t.estimate.feed(&final_body);
            }
        }
        self.reserve_rest();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(t) = self.tracked.as_mut() {
            let headers = host::response_headers();
            t.status = headers.get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
            let encoding = headers.get("content-encoding");
            if encoding.as_deref().is_none_or(|e| e.eq_ignore_ascii_case("identity")) {
                t.scanner = Some(BodyScanner::for_content_type(headers.get("content-type").as_deref()));
            } else {
                // We asked for identity; an upstream that compresses anyway cannot be counted.
                self.metrics.inc(Counter::UsageEncoded);
                log::warn!("fusebox: response for tenant '{}' is {encoding:?}-encoded; not counted", t.tenant);
            }
            if let Some(w) = &t.warning {
                host::add_response_header("x-fusebox-warning", w);
            }
            for (name, value) in t.quota_fields.iter().flatten() {
                host::set_response_header(name, value);
            }
            if end_of_stream {
                self.settle(ProbeEnd::Completed);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Inspect each chunk as it passes; never pause (Envoy would buffer, then fail large bodies).
        if let Some(t) = self.tracked.as_mut().filter(|t| !t.settled) {
            // Count everything the upstream sends, even what the client no longer gets.
            if body_size > 0 {
                if let (Some(scanner), Some(chunk)) = (t.scanner.as_mut(), host::response_body(body_size)) {
                    scanner.feed(&chunk);
                }
            }
            if t.terminated {
                host::replace_response_body(body_size, b"");
            } else if body_size > 0 && t.limits.terminate_streams && matches!(t.scanner, Some(BodyScanner::Sse(_))) {
                if let Some(denied) = store::read::<TenantState>(&t.key)
                    .ok()
                    .and_then(|state| admission::open_denial(&state, host::now_ms()))
                {
                    // The client gets a well-formed final event; its SDK stops and hangs up.
                    let end = reply::stream_termination(t.api, &t.tenant, &denied);
                    host::replace_response_body(body_size, &end);
                    t.terminated = true;
                    self.metrics.inc(Counter::StreamsTerminated);
                    log::info!("fusebox: tenant '{}' breaker is open: ending its stream in flight", t.tenant);
                }
            }
            if end_of_stream {
                self.settle(ProbeEnd::Completed);
            }
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

/// Reads and checks the agent run headers.
fn run_headers(headers: &host::Headers) -> Result<Option<RunHeaders>, reply::Reply> {
    let Some(run_id) = headers.get("x-agent-run-id").map(|v| v.into_owned()) else { return Ok(None) };
    let parent = headers.get("x-agent-parent-run-id").map(|v| v.into_owned());
    let bad = |name: &str| {
        reply::bad_request("invalid_run_id", &format!("{name} must be 1-128 characters of [A-Za-z0-9-_.:@]"))
    };
    if !is_valid_run_id(&run_id) {
        return Err(bad("x-agent-run-id"));
    }
    if parent.as_deref().is_some_and(|p| !is_valid_run_id(p)) {
        return Err(bad("x-agent-parent-run-id"));
    }
    Ok(Some(RunHeaders { run_id, parent }))
}

impl Request {
    fn is_status_request(&self, path: &str) -> bool {
        let bare = path.split_once('?').map_or(path, |(p, _)| p);
        self.config.status_path.as_deref().is_some_and(|s| s == bare)
    }

    fn identify(&self, headers: &host::Headers, now_ms: u64) -> Result<Identity, reply::Reply> {
        let verifier = &self.active.verifier;
        let authorization = headers.get("authorization");
        let api_key = verifier.accepts_api_keys().then(|| headers.get("x-api-key")).flatten();
        let envoy_jwt = verifier.jwt_authn().and_then(|cfg| {
            let claim = |name: &str| {
                host::property_string(&["metadata", "filter_metadata", &cfg.filter, &cfg.payload_key, name])
            };
            let tenant = claim(&cfg.tenant_claim);
            let tier = cfg.tier_claim.as_deref().and_then(claim);
            // Without a tenant there is no verified payload here (jwt_authn did not run or found no token).
            tenant.is_some().then_some(EnvoyJwt { tenant, tier })
        });
        let credentials =
            Credentials { authorization: authorization.as_deref(), api_key: api_key.as_deref(), envoy_jwt };
        let mut cache = self.active.token_cache.borrow_mut();
        verifier.identify(&credentials, &mut cache, now_ms / 1000).map_err(reply::invalid_identity)
    }

    fn store_failed(&self, e: StoreError) {
        self.metrics.inc(Counter::StoreErrors);
        log::warn!("fusebox: shared-data update failed ({e:?}); request not counted");
    }

    /// Counts and reports what an update of a tenant's state did; `scope` names the route tier
    /// whose breaker it was (`None`: the tenant's own).
    fn note_update(&self, info: UpdateInfo, transitions: &[Transition], tenant: &str, scope: Option<&str>) {
        if info.corrupt {
            self.metrics.inc(Counter::StoreCorrupt);
            log::warn!("fusebox: state of tenant '{tenant}' was unreadable and was reset");
        }
        for t in transitions {
            self.metrics.inc(Counter::BreakerTransitions);
            self.reporter.push(
                Event::Transition {
                    tenant: tenant.to_string(),
                    run_id: None,
                    from: t.from.as_str().to_string(),
                    to: t.to.as_str().to_string(),
                    at_ms: t.at_ms,
                    metric: t.trip.map(|trip| trip.metric.as_str().to_string()),
                    threshold: t.trip.map(|trip| trip.threshold),
                    observed: t.trip.map(|trip| trip.observed),
                    open_until_ms: t.open_until_ms,
                    scope: scope.map(str::to_string),
                },
                t.at_ms,
            );
            let whose = match scope {
                Some(s) => format!("tenant '{tenant}' route tier '{s}'"),
                None => format!("tenant '{tenant}'"),
            };
            match (t.to, t.trip, t.open_until_ms) {
                (Phase::Open, Some(trip), Some(until)) => {
                    self.metrics.inc(Counter::BreakerTrips);
                    log::info!(
                        "fusebox: {whose} breaker {} -> open: {} {} > {}, open for {}s",
                        t.from.as_str(),
                        trip.metric,
                        trip.observed,
                        trip.threshold,
                        until.saturating_sub(t.at_ms).div_ceil(1000)
                    );
                }
                _ => log::info!("fusebox: {whose} breaker {} -> {}", t.from.as_str(), t.to.as_str()),
            }
        }
    }

    /// Rewrites a held request body as `hold` asks; returns the new body if it changed.
    fn rewrite_body(&self, hold: Hold, body: &[u8], body_size: usize) -> Option<Vec<u8>> {
        // Only a body that names an allowance can need clamping: skip the state read otherwise.
        let names_allowance =
            hold.clamp && inject::may_change(body, Rewrite { stream_usage: false, max_output: Some(0) });
        let max_output = self.tracked.as_ref().filter(|_| names_allowance).and_then(|t| {
            let state: TenantState = store::read(&t.key).ok()?;
            admission::output_room(&state, &t.limits, host::now_ms())
        });
        let Injection::Rewritten { body: new, stream_usage_added, clamped } =
            inject::rewrite(body, Rewrite { stream_usage: hold.stream_usage, max_output })
        else {
            return None;
        };
        if !host::replace_request_body(body_size, &new) {
            return None;
        }
        if stream_usage_added {
            self.metrics.inc(Counter::UsageInjected);
        }
        if clamped {
            self.metrics.inc(Counter::MaxTokensClamped);
        }
        Some(new)
    }

    /// Feeds a passing request body chunk to the estimate; reserves the rest at its end.
    fn feed_estimate(&mut self, chunk_size: usize, end_of_stream: bool) {
        let Some(t) = self.tracked.as_mut().filter(|t| t.in_flight) else { return };
        if chunk_size > 0 {
            if let Some(chunk) = host::request_body(chunk_size) {
                t.estimate.feed(&chunk);
            }
        }
        if end_of_stream {
            self.reserve_rest();
        }
    }

    /// Adds to the reservation what the whole body says beyond what admission reserved.
    fn reserve_rest(&mut self) {
        let Some(t) = self.tracked.as_mut().filter(|t| t.in_flight) else { return };
        let extra = t.estimate.tokens().saturating_sub(t.reserved);
        if extra == 0 {
            return;
        }
        match store::update(&self.keys, &t.key, |s: &mut TenantState| {
            s.reserved_tokens = s.reserved_tokens.saturating_add(extra);
        }) {
            Ok(_) => t.reserved += extra,
            Err(e) => {
                self.metrics.inc(Counter::StoreErrors);
                log::warn!("fusebox: reserving the output allowance failed ({e:?})");
            }
        }
    }

    /// Reports a refusal (by its `x-fusebox-reason`) and sends it.
    fn refuse(&self, tenant: &str, reply: &reply::Reply, now_ms: u64) {
        let reason = reply.header("x-fusebox-reason").unwrap_or("denied").to_string();
        self.reporter
            .push(Event::Denial { tenant: tenant.to_string(), reason, minute: minute_of(now_ms), count: 1 }, now_ms);
        host::send_reply(reply);
    }

    fn admit(
        &mut self,
        identity: Identity,
        route: RouteMatch<'_>,
        run: Option<RunHeaders>,
        now_ms: u64,
        reserve: u64,
    ) -> Action {
        let mode = route.mode;
        // A route with a tier of its own is judged by that tier, in a state of its own.
        let route_limits = route.tier.and_then(|t| Some((t, self.active.policy.route_limits(&identity.tenant, t)?)));
        let (tier, limits, key, scope) = match route_limits {
            Some((t, limits)) => {
                (t.to_string(), limits, self.keys.route_tenant(&identity.tenant, t), Some(t.to_string()))
            }
            None => {
                let (t, limits) = self.active.policy.limits_for(&identity.tenant, identity.tier.as_deref());
                (t, limits, self.keys.tenant(&identity.tenant), None)
            }
        };
        // For access logs (`%FILTER_STATE(wasm.fusebox_tenant:PLAIN)%` and kin), allowed or not.
        host::set_filter_state("fusebox_tenant", &identity.tenant);
        host::set_filter_state("fusebox_tier", &tier);
        if let Some(r) = &run {
            host::set_filter_state("fusebox_run_id", &r.run_id);
        }
        let admitted = store::update(&self.keys, &key, |s| {
            let (decision, transitions) = admission::admit(s, &limits, now_ms, reserve);
            (decision, transitions, admission::quotas(s, &limits, now_ms))
        });
        let mut quotas = Vec::new();
        let decision = match admitted {
            Ok(((decision, transitions, q), info)) => {
                self.note_update(info, &transitions, &identity.tenant, scope.as_deref());
                quotas = q;
                Some(decision)
            }
            Err(e) => {
                // Our bookkeeping failing must not take the tenant's traffic down.
                self.store_failed(e);
                None
            }
        };
        let allowed = match decision {
            Some(Decision::Deny(denied)) if mode == Mode::Enforce => {
                self.metrics.inc(match denied.cause {
                    DenyCause::Tripped(t) => Counter::denied(t.metric),
                    DenyCause::ProbesBusy => Counter::DeniedBreakerOpen,
                    DenyCause::Concurrency { .. } => Counter::denied(Metric::Concurrency),
                    DenyCause::Budget { budget: Budget::TokensDay, .. } => Counter::DeniedBudgetTokensDay,
                    DenyCause::Budget { budget: Budget::CostMonth, .. } => Counter::DeniedBudgetCostMonth,
                    DenyCause::Reserved { .. } => Counter::DeniedReserved,
                    DenyCause::KillSwitch => Counter::DeniedKillSwitch,
                });
                let run_id = run.as_ref().map(|r| r.run_id.as_str());
                self.refuse(&identity.tenant, &reply::denial(&identity.tenant, &denied, run_id), now_ms);
                return Action::Pause;
            }
            Some(Decision::Deny(_)) => {
                self.metrics.inc(Counter::WouldDeny);
                None
            }
            Some(Decision::Allow(a)) => Some(a),
            None => None,
        };
        let admitted_run = match run {
            None => None,
            Some(r) => match runs::admit(&self.keys, &identity.tenant, &r.run_id, r.parent.as_deref(), &limits, now_ms)
            {
                Ok(admitted) => Some(admitted),
                Err(RunRefusal::Denied(denied)) if mode == Mode::Enforce => {
                    // Give back what the tenant's admission took for this request.
                    let release = Settlement {
                        release: allowed.is_some(),
                        reserved: reserve,
                        probe: allowed.filter(|a| a.probe).map(|_| ProbeEnd::Abandoned),
                        ..Settlement::default()
                    };
                    if let Err(e) = store::update(&self.keys, &key, |s| admission::settle(s, &limits, release, now_ms))
                    {
                        self.store_failed(e);
                    }
                    self.metrics.inc(Counter::denied_run(denied.limit));
                    let retry = limits.run_ttl_s;
                    self.refuse(
                        &identity.tenant,
                        &reply::run_denial(&identity.tenant, &r.run_id, &denied, retry),
                        now_ms,
                    );
                    return Action::Pause;
                }
                Err(RunRefusal::Denied(_)) => {
                    self.metrics.inc(Counter::WouldDeny);
                    None
                }
                Err(RunRefusal::Store(e)) => {
                    self.store_failed(e);
                    None
                }
            },
        };
        self.metrics.inc(Counter::RequestsAllowed);
        if let Some(w) = allowed.and_then(|a| a.warning) {
            let event = Event::Warning {
                tenant: identity.tenant.clone(),
                metric: w.name.to_string(),
                percent: w.percent,
                minute: minute_of(now_ms),
            };
            self.reporter.push(event, now_ms);
        }
        host::set_request_header("x-fusebox-tenant", Some(&identity.tenant));
        self.tracked = Some(Tracked {
            probe: allowed.is_some_and(|a| a.probe),
            warning: allowed.and_then(|a| a.warning).map(|w| w.to_string()),
            quota_fields: reply::quota_fields(&quotas),
            tenant: identity.tenant,
            key,
            route: route.label.to_string(),
            scope,
            limits,
            scanner: None,
            status: 0,
            in_flight: allowed.is_some(),
            run: admitted_run,
            reserved: if allowed.is_some() { reserve } else { 0 },
            estimate: RequestEstimate::default(),
            api: StreamApi::OpenAiChat,
            terminated: false,
            settled: false,
        });
        Action::Continue
    }

    fn settle(&mut self, end: ProbeEnd) {
        let Some(mut t) = self.tracked.take() else { return };
        if !t.settled {
            t.settled = true;
            let summary = t.scanner.as_mut().map(BodyScanner::finish).unwrap_or_default();
            let status_2xx = (200..300).contains(&t.status);
            let completed = end == ProbeEnd::Completed;
            let cost_micros = summary.usage.map_or(0, |u| self.active.policy.cost_micros(summary.model.as_str(), u));
            self.metrics.add(Counter::CostMicros, cost_micros);
            let outcome = Settlement {
                cost_micros,
                tokens: self.count(&summary, status_2xx, end, &t.tenant),
                tool_calls: u64::from(summary.tool_calls),
                completed,
                error: completed && (t.status >= 500 || t.status == 429 || summary.error),
                probe: t.probe.then_some(end),
                release: t.in_flight,
                reserved: t.reserved,
            };
            let now_ms = host::now_ms();
            match store::update(&self.keys, &t.key, |s| admission::settle(s, &t.limits, outcome, now_ms)) {
                Ok((transitions, info)) => self.note_update(info, &transitions, &t.tenant, t.scope.as_deref()),
                Err(e) => self.store_failed(e),
            }
            let usage = summary.usage.unwrap_or_default();
            self.reporter.push(
                Event::Usage {
                    tenant: t.tenant.clone(),
                    model: summary.model.as_str().unwrap_or_default().to_string(),
                    // Settlement happens once; the label is not needed after it.
                    route: std::mem::take(&mut t.route),
                    run_id: t.run.as_ref().map(|r| r.run_id.clone()),
                    status: t.status,
                    minute: minute_of(now_ms),
                    requests: 1,
                    input_tokens: usage.input_tokens,
                    output_tokens: usage.output_tokens,
                },
                now_ms,
            );
            if let Some(run) = &t.run {
                match runs::settle(&self.keys, run, &t.limits, outcome.tokens, now_ms) {
                    Ok(Some(trip)) => {
                        self.metrics.inc(Counter::RunTrips);
                        self.reporter.push(
                            Event::Transition {
                                tenant: t.tenant.clone(),
                                run_id: Some(run.run_id.clone()),
                                from: "closed".into(),
                                to: "open".into(),
                                at_ms: now_ms,
                                metric: Some(trip.limit.as_str().to_string()),
                                threshold: Some(trip.threshold),
                                observed: Some(trip.observed),
                                open_until_ms: None,
                                scope: None,
                            },
                            now_ms,
                        );
                        log::info!(
                            "fusebox: tenant '{}' run '{}' tripped: {} {} > {}",
                            t.tenant,
                            run.run_id,
                            trip.limit.as_str(),
                            trip.observed,
                            trip.threshold
                        );
                    }
                    Ok(None) => {}
                    Err(e) => self.store_failed(e),
                }
            }
        }
        self.tracked = Some(t);
    }

    /// Records what a response body said in metrics; returns the tokens to account.
    fn count(&self, summary: &Summary, status_2xx: bool, end: ProbeEnd, tenant: &str) -> u64 {
        let m = &self.metrics;
        m.add(Counter::ToolCalls, u64::from(summary.tool_calls));
        m.add(Counter::UsageAnomalies, u64::from(summary.anomalies.total()));
        if summary.error {
            m.inc(Counter::UpstreamErrorEvents);
        }
        if summary.malformed && end == ProbeEnd::Completed {
            m.inc(Counter::UsageMalformed);
            log::warn!("fusebox: response for tenant '{tenant}' is not well-formed; counted what was readable");
        }
        match summary.usage {
            Some(u) => {
                m.add(Counter::TokensInput, u.input_tokens);
                m.add(Counter::TokensOutput, u.output_tokens);
                u.total()
            }
            None => {
                if status_2xx && !summary.malformed {
                    m.inc(Counter::UsageMissing);
                }
                0
            }
        }
    }

    /// `GET <status_path>`: the caller's own breaker state and windows.
    fn serve_status(&mut self, headers: &host::Headers) -> Action {
        let now_ms = host::now_ms();
        let identity = match self.identify(headers, now_ms) {
            Ok(id) => id,
            Err(reply) => {
                host::send_reply(&reply);
                return Action::Pause;
            }
        };
        let (tier, limits) = self.active.policy.limits_for(&identity.tenant, identity.tier.as_deref());
        let state: TenantState = store::read(&self.keys.tenant(&identity.tenant)).unwrap_or_else(|e| {
            self.store_failed(e);
            TenantState::default()
        });
        let snapshot = admission::snapshot(&state, &limits, now_ms);
        let body = serde_json::json!({
            "tenant": identity.tenant,
            "tier": tier,
            "policy_version": self.active.policy.version,
            "breaker": snapshot,
        });
        host::send_reply(&reply::Reply {
            status: 200,
            headers: vec![("content-type", "application/json".to_string()), ("cache-control", "no-store".to_string())],
            body: body.to_string(),
        });
        Action::Pause
    }
}
