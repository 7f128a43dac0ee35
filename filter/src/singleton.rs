//! The background singleton (`envoy.bootstrap.wasm`, same vm_id as the filter): polls the
//! control service for the policy and publishes each new valid policy to shared data, where
//! every worker's filter picks it up. If control is down or answers garbage, nothing is
//! published and the workers keep the last good policy.

use crate::host;
use crate::metrics::{Counter, Metrics};
use crate::store::{self, Keys};
use fusebox_engine::config::SingletonConfig;
use fusebox_engine::policy::Policy;
use std::rc::Rc;
use std::time::Duration;

pub struct SingletonRoot {
    config: SingletonConfig,
    keys: Keys,
    metrics: Rc<Metrics>,
    etag: Option<String>,
    generation: u64,
    in_flight: Option<u32>,
    /// Whether the last poll reached control; failures are logged on change, not every tick.
    reachable: bool,
}

impl SingletonRoot {
    pub fn new(config: SingletonConfig, metrics: Rc<Metrics>) -> SingletonRoot {
        let keys = Keys::new(&config.namespace);
        // Continue the generation after a singleton reload so workers still see a change.
        let generation = store::policy_generation(&keys).unwrap_or(0);
        SingletonRoot { config, keys, metrics, etag: None, generation, in_flight: None, reachable: true }
    }

    pub fn start(&self) -> bool {
        log::info!(
            "fusebox: singleton polling cluster '{}' {} every {} ms",
            self.config.control.cluster,
            self.config.control.policy_path,
            self.config.control.poll_interval_ms
        );
        host::set_tick_period(Duration::from_millis(self.config.control.poll_interval_ms))
    }

    pub fn on_tick(&mut self) {
        if self.in_flight.is_some() {
            return; // the previous call always completes (or times out) with a callback
        }
        let c = &self.config.control;
        let auth = c.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers =
            vec![(":method", "GET"), (":path", c.policy_path.as_str()), (":authority", c.authority.as_str())];
        if let Some(etag) = &self.etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        match host::http_call(&c.cluster, headers, Duration::from_millis(c.timeout_ms)) {
            Ok(token) => self.in_flight = Some(token),
            Err(s) => self.failed(&format!("cannot call cluster '{}': {s:?}", c.cluster)),
        }
    }

    fn failed(&mut self, why: &str) {
        self.metrics.inc(Counter::PolicyPollFailures);
        if self.reachable {
            log::warn!("fusebox: policy poll failed, keeping the last good policy: {why}");
        }
        self.reachable = false;
    }

    pub fn on_http_call_response(&mut self, token: u32, body_size: usize) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        // A failed call (connect error, timeout) arrives without a :status.
        let status = host::http_call_header(":status");
        match status.as_deref() {
            Some("304") => self.recovered(),
            Some("200") => {
                let body = host::http_call_body(body_size).unwrap_or_default();
                match Policy::from_json(&body) {
                    Ok(policy) => {
                        self.recovered();
                        self.publish(&body, policy.version);
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
    }

    fn recovered(&mut self) {
        if !self.reachable {
            log::info!("fusebox: control reachable again");
        }
        self.reachable = true;
    }

    fn publish(&mut self, json: &[u8], version: u64) {
        let generation = self.generation.wrapping_add(1);
        match store::publish_policy(&self.keys, json, generation) {
            Ok(()) => {
                self.generation = generation;
                self.etag = host::http_call_header("etag");
                log::info!("fusebox: published policy version {version} (generation {generation})");
            }
            Err(s) => log::error!("fusebox: publishing the policy failed: {s:?}"),
        }
    }
}
