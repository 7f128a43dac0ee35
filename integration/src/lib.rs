#![allow(clippy::panic)] // test harness: a stack that cannot start must fail the test loudly

//! End-to-end harness: starts the real Envoy (with the real built `.wasm`), the real
//! `fusebox-control` and the mock LLM on free ports, and tears them down on drop.
//! Used by the end-to-end tests and by `make run` (`fusebox-dev`).
//!
//! Nothing here is optional: a missing Envoy binary or `.wasm` is an error with a clear
//! message, never a skipped test.

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const DEMO_SECRET: &str = "fusebox-demo-secret-change-me";
pub const DEMO_ISSUER: &str = "https://auth.fusebox.demo";
pub const DEMO_AUDIENCE: &str = "fusebox";
/// Admin token of the control service the harness starts (writes need it).
pub const DEMO_ADMIN_TOKEN: &str = "fusebox-demo-admin-token";
/// The filter's token for control (reads the policy, posts events), as in `envoy/*.yaml`.
pub const DEMO_FILTER_TOKEN: &str = "fusebox-demo-filter-token";
const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// The workspace root (this crate lives in `<root>/integration`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// `$var` if set, else `<root>/default`; an error naming `hint` when the file is missing.
fn locate(var: &str, default: &str, hint: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| workspace_root().join(default));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} missing: {hint}", path.display()))
    }
}

/// Envoy binary: `$FUSEBOX_ENVOY`, else `<root>/.venv/bin/envoy` (installed by the Makefile).
pub fn envoy_binary() -> Result<PathBuf, String> {
    locate("FUSEBOX_ENVOY", ".venv/bin/envoy", "run `make test` (it installs Envoy) or set FUSEBOX_ENVOY")
}

/// The release filter: `$FUSEBOX_WASM`, else `<root>/target/wasm32-wasip1/release/fusebox_filter.wasm`.
pub fn wasm_path() -> Result<PathBuf, String> {
    locate("FUSEBOX_WASM", "target/wasm32-wasip1/release/fusebox_filter.wasm", "build it with `make wasm`")
}

/// A sibling binary of the running executable (`fusebox-control`, `mock-llm`), built by cargo.
pub fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!("{name} not found next to {} (run `cargo build --workspace`)", exe.display()))
}

/// A program on `PATH`, if there is one.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// One stat from an Envoy admin endpoint, by its full name (`/stats` lists listener copies and
/// the like under longer names; this takes only the exact one).
pub fn envoy_stat(agent: &ureq::Agent, admin_port: u16, name: &str) -> Option<u64> {
    let url = format!("http://127.0.0.1:{admin_port}/stats?filter={name}");
    let body = agent.get(&url).call().ok()?.body_mut().read_to_string().ok()?;
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
}

/// A port that is free now, chosen below Linux's ephemeral range (32768+) so that the outgoing
/// connections of concurrently running tests cannot take it before our child binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 20)
        ^ SEQ.fetch_add(0x9e37_79b9, Ordering::Relaxed);
    let mut x = seed | 1;
    for _ in 0..1000 {
        // xorshift: cheap, and different for every process and call.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20_000 + (x % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    0
}

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A demo bearer token (HS256, demo key) for `tenant`.
pub fn token(tenant: &str, tier: Option<&str>) -> String {
    let mut claims = serde_json::Map::new();
    claims.insert("tenant".into(), tenant.into());
    if let Some(t) = tier {
        claims.insert("tier".into(), t.into());
    }
    fusebox_engine::identity::mint(
        fusebox_engine::identity::MintKey::Hs256(DEMO_SECRET),
        Some("demo"),
        DEMO_ISSUER,
        DEMO_AUDIENCE,
        claims,
        now_s(),
        3600,
    )
    .unwrap_or_default()
}

/// A policy with the demo identity (the key [`token`] signs with) and the given tiers and tenants.
pub fn demo_policy(tiers: Value, tenants: Value) -> String {
    serde_json::json!({
        "identity": {"jwt": {
            "issuer": DEMO_ISSUER,
            "audiences": [DEMO_AUDIENCE],
            "keys": [{"alg": "HS256", "kid": "demo", "secret": DEMO_SECRET}]
        }},
        "default_tier": "free",
        "tiers": tiers,
        "tenants": tenants,
    })
    .to_string()
}

/// Limits so high that only the test's own limits matter.
pub fn generous() -> Value {
    serde_json::json!({"tokens_10s": 100_000_000u64, "tokens_60s": 100_000_000u64, "requests_10s": 100_000})
}

/// A metric's observed value in a status document (`u64::MAX` when absent, so asserts fail).
pub fn observed(status: &Value, metric: &str) -> u64 {
    status
        .pointer("/breaker/metrics")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().find(|m| m.get("metric").and_then(Value::as_str) == Some(metric)))
        .and_then(|m| m.get("observed"))
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX)
}

/// Fills `${NAME}` placeholders.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |acc, (k, v)| acc.replace(&format!("${{{k}}}"), v))
}

#[derive(Debug, Clone)]
pub struct Ports {
    pub listen: u16,
    pub admin: u16,
    pub control: u16,
    pub mock: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports { listen: free_port(), admin: free_port(), control: free_port(), mock: free_port() }
    }

    /// DESIGN.md's fixed ports, each overridable by env.
    pub fn from_env() -> Ports {
        let port = |var: &str, default: u16| std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        Ports {
            listen: port("FUSEBOX_LISTEN_PORT", 10000),
            admin: port("FUSEBOX_ADMIN_PORT", 9901),
            control: port("FUSEBOX_CONTROL_PORT", 8090),
            mock: port("FUSEBOX_MOCK_PORT", 18080),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub ports: Ports,
    /// Policy file control's database is seeded with. Tests get a private copy; `make run` uses the demo file.
    pub policy_file: PathBuf,
    /// Control's SQLite database (kept across [`Stack::restart_control`]).
    pub db: PathBuf,
    pub envoy_config: PathBuf,
    pub workers: u32,
    /// Inherit stdout/stderr instead of logging to files in the work dir.
    pub foreground: bool,
    /// Start fusebox-control (off: Envoy's control cluster points at whatever is on `ports.control`).
    pub start_control: bool,
}

/// A running Envoy + control + mock LLM.
pub struct Stack {
    pub ports: Ports,
    pub dir: PathBuf,
    pub policy_file: PathBuf,
    pub db: PathBuf,
    children: Vec<(String, Child)>,
    agent: ureq::Agent,
    workers: u32,
}

fn spawn(name: &str, cmd: &mut Command, dir: &Path, foreground: bool) -> Result<Child, String> {
    if !foreground {
        let log = |suffix: &str| {
            std::fs::File::create(dir.join(format!("{name}.{suffix}")))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null())
        };
        cmd.stdout(log("out")).stderr(log("err"));
    }
    cmd.stdin(Stdio::null());
    cmd.spawn().map_err(|e| format!("starting {name}: {e}"))
}

impl Stack {
    /// Starts a test stack on free ports with a private copy of `policy_json`.
    pub fn start(policy_json: &str) -> Stack {
        Stack::start_with_envoy(policy_json, "demo.yaml")
    }

    /// Like [`Stack::start`], with another Envoy bootstrap from `envoy/`.
    pub fn start_with_envoy(policy_json: &str, envoy_yaml: &str) -> Stack {
        retry_start(|| {
            let dir = work_dir();
            let policy_file = dir.join("policy.json");
            std::fs::write(&policy_file, policy_json).map_err(|e| format!("writing policy: {e}"))?;
            let options = StackOptions {
                ports: Ports::free(),
                db: dir.join("control.db"),
                policy_file,
                envoy_config: workspace_root().join("envoy").join(envoy_yaml),
                workers: 2,
                foreground: false,
                start_control: true,
            };
            Stack::start_with(options, dir)
        })
    }

    /// Starts a test stack whose control cluster points at the mock LLM, which answers
    /// `GET /v1/policy` with a document that is not a valid policy.
    pub fn start_with_garbage_control() -> Stack {
        retry_start(|| {
            let dir = work_dir();
            let mut ports = Ports::free();
            ports.control = ports.mock;
            let options = StackOptions {
                ports,
                db: dir.join("unused.db"),
                policy_file: dir.join("unused-policy.json"),
                envoy_config: workspace_root().join("envoy/demo.yaml"),
                workers: 2,
                foreground: false,
                start_control: false,
            };
            Stack::start_with(options, dir)
        })
    }

    fn spawn_control(&self, control_bin: &Path, foreground: bool) -> Result<Child, String> {
        spawn(
            "control",
            Command::new(control_bin)
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.ports.control))
                .arg("--policy")
                .arg(&self.policy_file)
                .arg("--db")
                .arg(&self.db)
                .arg("--admin-token")
                .arg(DEMO_ADMIN_TOKEN)
                .arg("--filter-token")
                .arg(DEMO_FILTER_TOKEN),
            &self.dir,
            foreground,
        )
    }

    /// Starts fusebox-control again (after [`Stack::kill`]) on the same port and database,
    /// and waits until it answers.
    pub fn restart_control(&mut self) {
        self.kill("fusebox-control");
        self.children.retain(|(n, _)| n != "fusebox-control");
        let bin = sibling_binary("fusebox-control").unwrap_or_else(|e| panic!("{e}"));
        let child = self.spawn_control(&bin, false).unwrap_or_else(|e| panic!("{e}"));
        self.children.push(("fusebox-control".into(), child));
        let url = format!("http://127.0.0.1:{}/healthz", self.ports.control);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "fusebox-control did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of the running Envoy.
    pub fn envoy_pid(&self) -> Option<u32> {
        self.children.iter().find(|(n, _)| n == "envoy").map(|(_, c)| c.id())
    }

    /// Kills one component (`mock-llm`, `fusebox-control`, `envoy`) and waits for it to exit.
    pub fn kill(&mut self, name: &str) {
        for (n, child) in self.children.iter_mut() {
            if n == name {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    pub fn start_with(o: StackOptions, dir: PathBuf) -> Result<Stack, String> {
        let envoy = envoy_binary()?;
        let wasm = wasm_path()?;
        let control_bin = sibling_binary("fusebox-control")?;
        let mock_bin = sibling_binary("mock-llm")?;
        let agent = Stack::start_client();
        let mut stack = Stack {
            ports: o.ports.clone(),
            dir: dir.clone(),
            policy_file: o.policy_file.clone(),
            db: o.db.clone(),
            children: Vec::new(),
            agent,
            workers: o.workers,
        };
        let p = &o.ports;
        let mock = spawn(
            "mock",
            Command::new(&mock_bin).arg("--listen").arg(format!("127.0.0.1:{}", p.mock)),
            &dir,
            o.foreground,
        )?;
        stack.children.push(("mock-llm".into(), mock));
        if o.start_control {
            let control = stack.spawn_control(&control_bin, o.foreground)?;
            stack.children.push(("fusebox-control".into(), control));
        }
        let template =
            std::fs::read_to_string(&o.envoy_config).map_err(|e| format!("{}: {e}", o.envoy_config.display()))?;
        let config = render(
            &template,
            &[
                ("LISTEN_PORT", p.listen.to_string()),
                ("ADMIN_PORT", p.admin.to_string()),
                ("CONTROL_PORT", p.control.to_string()),
                ("MOCK_PORT", p.mock.to_string()),
                ("WASM", wasm.display().to_string()),
            ],
        );
        let config_path = dir.join("envoy.yaml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let mut cmd = stack.envoy_command(&envoy);
        // The base id is written down for a hot restart (`Stack::hot_restart_envoy`).
        cmd.arg("--use-dynamic-base-id").arg("--base-id-path").arg(dir.join("base-id"));
        if !o.foreground {
            cmd.arg("--log-path").arg(dir.join("envoy.log"));
        }
        let envoy_child = spawn("envoy", &mut cmd, &dir, o.foreground)?;
        stack.children.push(("envoy".into(), envoy_child));
        stack.wait_ready()?;
        Ok(stack)
    }

    fn envoy_command(&self, envoy: &Path) -> Command {
        let mut cmd = Command::new(envoy);
        cmd.arg("-c")
            .arg(self.dir.join("envoy.yaml"))
            .arg("--concurrency")
            .arg(self.workers.to_string())
            .arg("--log-level")
            .arg("info")
            .arg("--component-log-level")
            .arg("wasm:info")
            // Tests read the logs (and the access log on stdout): flush them often.
            .arg("--file-flush-interval-msec")
            .arg("200");
        cmd
    }

    /// Hot-restarts Envoy (`--restart-epoch 1`, same base id and config): the new process
    /// takes over the listeners and the old one drains and exits. Returns once the old one has
    /// exited and the new one is ready.
    pub fn hot_restart_envoy(&mut self) {
        let base_id = std::fs::read_to_string(self.dir.join("base-id")).unwrap_or_default();
        let envoy = envoy_binary().unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = self.envoy_command(&envoy);
        cmd.arg("--base-id")
            .arg(base_id.trim())
            .arg("--restart-epoch")
            .arg("1")
            .arg("--drain-time-s")
            .arg("1")
            .arg("--parent-shutdown-time-s")
            .arg("3")
            .arg("--log-path")
            .arg(self.dir.join("envoy-1.log"));
        let child = spawn("envoy-1", &mut cmd, &self.dir, false).unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let old_exited = self.children.iter_mut().any(|(n, c)| n == "envoy" && !matches!(c.try_wait(), Ok(None)));
            if old_exited {
                break;
            }
            assert!(Instant::now() < deadline, "the old Envoy did not hand over; logs in {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.children.retain(|(n, _)| n != "envoy");
        self.children.push(("envoy".into(), child));
        let ready = format!("http://127.0.0.1:{}/ready", self.ports.admin);
        while !self.agent.get(&ready).call().is_ok_and(|r| r.status() == 200) {
            assert!(Instant::now() < deadline, "the new Envoy is not ready; logs in {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let checks = [
            format!("http://127.0.0.1:{}/healthz", self.ports.mock),
            format!("http://127.0.0.1:{}/healthz", self.ports.control),
            format!("http://127.0.0.1:{}/ready", self.ports.admin),
        ];
        for url in &checks {
            loop {
                if let Some((name, status)) = self.exited() {
                    return Err(format!("{name} exited ({status}) during start-up; logs in {}", self.dir.display()));
                }
                if self.agent.get(url).call().is_ok_and(|r| r.status() == 200) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("{url} not ready after 30s; logs in {}", self.dir.display()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The first child that has exited, if any.
    pub fn exited(&mut self) -> Option<(String, String)> {
        self.children.iter_mut().find_map(|(name, c)| match c.try_wait() {
            Ok(Some(status)) => Some((name.clone(), status.to_string())),
            _ => None,
        })
    }

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
            .header("x-fusebox-actor", "e2e")
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

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a stack, trying again on other free ports if a port was taken between choosing it
/// and the child binding it.
fn retry_start(start: impl Fn() -> Result<Stack, String>) -> Stack {
    let mut last = String::new();
    for _ in 0..3 {
        match start() {
            Ok(stack) => return stack,
            Err(e) => last = e,
        }
    }
    panic!("{last}")
}

/// A fresh directory under the system temp dir for one stack's files and logs.
pub fn work_dir() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("fusebox-e2e-{}-{nanos}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A response, whatever its status.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    fn from(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
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
