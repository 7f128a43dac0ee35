//! The policy poller: asks control for the policy (`If-None-Match`), validates each new one
//! with the engine and publishes it to shared data, where every worker picks it up. If control
//! is down or answers garbage, nothing is published and the workers keep the last good policy.

use super::call::ControlCalls;
use crate::host;
use crate::metrics::{Counter, Metrics};
use crate::store::{self, Keys};
use fusebox_engine::policy::Policy;
use std::rc::Rc;
use std::time::Duration;

pub struct PolicyPoller {
    keys: Keys,
    metrics: Rc<Metrics>,
    etag: Option<String>,
    generation: u64,
    /// The poll on its way (its callback always comes, answered or timed out).
    in_flight: Option<u32>,
    /// Whether the last poll reached control; failures are logged on change, not every tick.
    reachable: bool,
}

/// What a poll's answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// A new policy is in shared data: poll again at once (a long poll waits for the next).
    Published,
    /// Unchanged, failed or refused: the next poll waits for the tick.
    Unchanged,
}

impl PolicyPoller {
    pub fn new(keys: Keys, metrics: Rc<Metrics>) -> PolicyPoller {
        // Continue the generation after a singleton reload so workers still see a change.
        let generation = store::policy_generation(&keys).unwrap_or(0);
        PolicyPoller { keys, metrics, etag: None, generation, in_flight: None, reachable: true }
    }

    /// Whether `token` is this poller's call.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    pub fn poll(&mut self, calls: &ControlCalls) {
        if self.in_flight.is_some() {
            return; // the previous call always completes (or times out) with a callback
        }
        let c = &calls.config;
        // With a policy in hand, ask control to answer only when it changes (a long poll).
        let long_poll = self.etag.is_some() && c.long_poll_s > 0;
        let path = if long_poll {
            let join = if c.policy_path.contains('?') { '&' } else { '?' };
            format!("{}{join}wait={}", c.policy_path, c.long_poll_s)
        } else {
            c.policy_path.clone()
        };
        let mut headers = calls.headers("GET", &path);
        if let Some(etag) = &self.etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        let wait_ms = if long_poll { c.long_poll_s.saturating_mul(1000) } else { 0 };
        match host::http_call(&c.cluster, headers, Duration::from_millis(c.timeout_ms.saturating_add(wait_ms))) {
            Ok(token) => self.in_flight = Some(token),
            Err(s) => {
                let why = format!("cannot call cluster '{}': {s:?}", c.cluster);
                self.failed(&why);
            }
        }
    }

    /// Handles control's answer to the poll.
    pub fn on_response(&mut self, body_size: usize) -> Polled {
        self.in_flight = None;
        // A failed call (connect error, timeout) arrives without a :status.
        match host::http_call_header(":status").as_deref() {
            Some("304") => self.recovered(),
            Some("200") => {
                let body = host::http_call_body(body_size).unwrap_or_default();
                match Policy::from_json(&body) {
                    Ok(policy) => {
                        self.recovered();
                        return self.publish(&body, policy.version);
                    }
                    Err(e) => {
                        self.metrics.inc(Counter::PolicyRejected);
                        self.failed(&format!("control returned an invalid policy: {e}"));
                    }
                }
            }
            Some(other) => self.failed(&format!("control answered {other}")),
            None => self.failed("control unreachable or timed out"),
        }
        Polled::Unchanged
    }

    fn failed(&mut self, why: &str) {
        self.metrics.inc(Counter::PolicyPollFailures);
        if self.reachable {
            log::warn!("policy poll failed, keeping the last good policy: {why}");
        }
        self.reachable = false;
    }

    fn recovered(&mut self) {
        if !self.reachable {
            log::info!("control reachable again");
        }
        self.reachable = true;
    }

    fn publish(&mut self, json: &[u8], version: u64) -> Polled {
        let generation = self.generation.wrapping_add(1);
        match store::publish_policy(&self.keys, json, generation) {
            Ok(()) => {
                self.generation = generation;
                self.etag = host::http_call_header("etag");
                log::info!("published policy version {version} (generation {generation})");
                Polled::Published
            }
            Err(s) => {
                log::error!("publishing the policy failed: {s:?}");
                Polled::Unchanged
            }
        }
    }
}
