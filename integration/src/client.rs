//! Talking to a running stack: requests through Envoy, control's API, the mock's and Envoy's
//! counters, and the response type tests assert on.

use crate::fixtures::{token, CHAT_BODY, DEMO_ADMIN_TOKEN};
use crate::stack::Stack;
use serde_json::Value;
use std::time::{Duration, Instant};

/// One stat from an Envoy admin endpoint, by its full name (`/stats` lists listener copies and
/// the like under longer names; this takes only the exact one).
pub fn envoy_stat(agent: &ureq::Agent, admin_port: u16, name: &str) -> Option<u64> {
    let url = format!("http://127.0.0.1:{admin_port}/stats?filter={name}");
    let body = agent.get(&url).call().ok()?.body_mut().read_to_string().ok()?;
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
}

impl Stack {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.listen)
    }

    /// A new HTTP client with its own connection pool.
    pub fn start_client() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    /// POSTs an OpenAI chat completion through Envoy.
    pub fn chat(&self, token: Option<&str>, extra: &[(&str, &str)]) -> Resp {
        self.chat_with(&self.agent, token, extra)
    }

    pub fn chat_with(&self, agent: &ureq::Agent, token: Option<&str>, extra: &[(&str, &str)]) -> Resp {
        self.post_with(agent, "/v1/chat/completions", token, extra, CHAT_BODY)
    }

    pub fn post(&self, path: &str, token: Option<&str>, extra: &[(&str, &str)], body: &str) -> Resp {
        self.post_with(&self.agent, path, token, extra, body)
    }

    pub fn post_with(
        &self,
        agent: &ureq::Agent,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Resp {
        let mut req = agent.post(self.url(path)).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        Resp::from(req.send(body.as_bytes()))
    }

    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Resp::from(req.call())
    }

    /// The caller's own state as the filter reports it (`GET /fusebox/status`).
    pub fn status(&self, token: &str) -> Value {
        self.get(&self.url("/fusebox/status"), &[("authorization", &format!("Bearer {token}"))]).json()
    }

    /// Replaces the policy control serves (`PUT /v1/policy`); panics if control refuses it.
    pub fn set_policy(&self, json: &str) {
        let r = self.control("PUT", "/v1/policy", json);
        assert_eq!(r.status, 200, "control refused the policy: {}", r.body);
    }

    pub fn control_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.control)
    }

    /// A request to fusebox-control with the admin token.
    pub fn control(&self, method: &str, path: &str, body: &str) -> Resp {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(self.control_url(path))
            .header("authorization", format!("Bearer {DEMO_ADMIN_TOKEN}"))
            .header("content-type", "application/json")
            .body(body.to_string());
        match req {
            Ok(req) => Resp::from(self.agent.run(req)),
            Err(e) => Resp { status: 0, headers: Vec::new(), body: e.to_string() },
        }
    }

    /// `GET` from fusebox-control as JSON.
    pub fn control_get(&self, path: &str) -> Value {
        self.control("GET", path, "").json()
    }

    /// Waits until Envoy enforces the control policy with version >= `version`.
    pub fn wait_policy_version(&self, version: u64) {
        self.wait_policy_version_at("/fusebox/status", version);
    }

    /// [`Stack::wait_policy_version`] for a stack whose status endpoint is at `status_path`.
    pub fn wait_policy_version_at(&self, status_path: &str, version: u64) {
        let probe = token("fusebox-harness-probe", None);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.get(&self.url(status_path), &[("authorization", &format!("Bearer {probe}"))]).json();
            let v = status.get("policy_version").and_then(Value::as_u64).unwrap_or(0);
            if v >= version {
                return;
            }
            assert!(Instant::now() < deadline, "policy version {version} not active after 15s (at {v})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn mock_stats(&self) -> Value {
        self.get(&format!("http://127.0.0.1:{}/mock/stats", self.ports.mock), &[]).json()
    }

    /// A counter from Envoy's admin stats (0 when absent).
    pub fn envoy_counter(&self, name: &str) -> u64 {
        let body = self.get(&format!("http://127.0.0.1:{}/stats?filter={name}", self.ports.admin), &[]).body;
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| k.ends_with(name))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    }

    /// One Envoy stat by its exact name (see [`envoy_stat`]).
    pub fn envoy_stat(&self, name: &str) -> Option<u64> {
        envoy_stat(&self.agent, self.ports.admin, name)
    }

    /// A per-request counter (requests allowed/passed, tokens, cost, tool calls) once the
    /// workers have flushed it: they add those up locally and hand them to Envoy every second.
    pub fn flushed_counter(&self, name: &str) -> u64 {
        std::thread::sleep(Duration::from_millis(1200));
        self.envoy_counter(name)
    }

    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }
}

/// A response, whatever its status.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub(crate) fn from(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
        match r {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                // Bytes, not a string: tests send deliberately broken (non-UTF-8) bodies too.
                let bytes = resp.body_mut().with_config().limit(256 << 20).read_to_vec().unwrap_or_default();
                let body = String::from_utf8_lossy(&bytes).into_owned();
                Resp { status, headers, body }
            }
            Err(e) => Resp { status: 0, headers: Vec::new(), body: format!("transport error: {e}") },
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}
