#![allow(clippy::panic)] // test harness: a stack that cannot start must fail the test loudly

//! Starting and stopping a stack: Envoy with the built filter, fusebox-control and the mock
//! LLM as child processes, restarts and hot restarts, and teardown on drop.

use crate::fixtures::{render, DEMO_ADMIN_TOKEN, DEMO_FILTER_TOKEN};
use crate::paths::{envoy_binary, sibling_binary, wasm_path, work_dir, workspace_root, WorkDir};
use crate::ports::{free_port, Ports};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    /// Start the mock LLM (off: Envoy's upstream is whatever is on `ports.mock`).
    pub start_mock: bool,
    /// More arguments for `fusebox-control serve`.
    pub control_args: Vec<String>,
}

/// A running Envoy + control + mock LLM.
pub struct Stack {
    pub ports: Ports,
    pub dir: WorkDir,
    pub policy_file: PathBuf,
    pub db: PathBuf,
    children: Vec<(String, Child)>,
    pub(crate) agent: ureq::Agent,
    workers: u32,
    control_args: Vec<String>,
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
        let path = workspace_root().join("envoy").join(envoy_yaml);
        let bootstrap = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Stack::start_custom(policy_json, 2, |_| (bootstrap.clone(), Vec::new()))
    }

    /// Starts a test stack with a bootstrap of the test's own. `prepare` gets the stack's work
    /// folder (to write files the bootstrap names) and returns the bootstrap (a template, with
    /// the placeholders of `envoy/demo.yaml`) and extra arguments for `fusebox-control serve`.
    pub fn start_custom(policy_json: &str, workers: u32, prepare: impl Fn(&Path) -> (String, Vec<String>)) -> Stack {
        retry_start(|| {
            let dir = work_dir();
            let (bootstrap, control_args) = prepare(&dir);
            let envoy_config = dir.join("custom-envoy.yaml");
            std::fs::write(&envoy_config, bootstrap).map_err(|e| format!("writing the bootstrap: {e}"))?;
            let policy_file = dir.join("policy.json");
            std::fs::write(&policy_file, policy_json).map_err(|e| format!("writing policy: {e}"))?;
            let options = StackOptions {
                ports: Ports::free(),
                db: dir.join("control.db"),
                policy_file,
                envoy_config,
                workers,
                foreground: false,
                start_control: true,
                start_mock: true,
                control_args,
            };
            Stack::start_with(options, dir)
        })
    }

    /// Another Envoy (`bootstrap`, a template like `envoy/demo.yaml`) on ports of its own,
    /// sharing this stack's control and mock LLM: a fleet of Envoys in front of one control.
    pub fn start_envoy_beside(&self, bootstrap: &str, workers: u32) -> Stack {
        retry_start(|| self.try_envoy_beside(bootstrap, workers, (free_port(), free_port())))
    }

    /// [`Stack::start_envoy_beside`] on given `(listen, admin)` ports (`make fleet`).
    pub fn try_envoy_beside(
        &self,
        bootstrap: &str,
        workers: u32,
        (listen, admin): (u16, u16),
    ) -> Result<Stack, String> {
        let dir = work_dir();
        let envoy_config = dir.join("custom-envoy.yaml");
        std::fs::write(&envoy_config, bootstrap).map_err(|e| format!("writing the bootstrap: {e}"))?;
        let ports = Ports { listen, admin, ..self.ports.clone() };
        let options = StackOptions {
            ports,
            db: self.db.clone(),
            policy_file: self.policy_file.clone(),
            envoy_config,
            workers,
            foreground: false,
            start_control: false,
            start_mock: false,
            control_args: Vec::new(),
        };
        Stack::start_with(options, dir)
    }

    /// The demo bootstrap (`envoy/demo.yaml`), to build a custom one from.
    pub fn demo_bootstrap() -> String {
        std::fs::read_to_string(workspace_root().join("envoy/demo.yaml")).unwrap_or_default()
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
                start_mock: true,
                control_args: Vec::new(),
            };
            Stack::start_with(options, dir)
        })
    }

    fn spawn_control(&self, control_bin: &Path, foreground: bool) -> Result<Child, String> {
        self.spawn_control_on(control_bin, foreground, self.ports.control, "control")
    }

    fn spawn_control_on(&self, control_bin: &Path, foreground: bool, port: u16, log: &str) -> Result<Child, String> {
        spawn(
            log,
            Command::new(control_bin)
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--policy")
                .arg(&self.policy_file)
                .arg("--db")
                .arg(&self.db)
                .arg("--admin-token")
                .arg(DEMO_ADMIN_TOKEN)
                .arg("--filter-token")
                .arg(DEMO_FILTER_TOKEN)
                .args(&self.control_args),
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
        self.wait_control(self.ports.control);
    }

    /// Starts a second fusebox-control replica on `port`, with the same database, policy and
    /// arguments (killed as `fusebox-control-2`), and waits until it answers.
    pub fn start_control_replica(&mut self, port: u16) {
        let bin = sibling_binary("fusebox-control").unwrap_or_else(|e| panic!("{e}"));
        let child = self.spawn_control_on(&bin, false, port, "control-2").unwrap_or_else(|e| panic!("{e}"));
        self.children.push(("fusebox-control-2".into(), child));
        self.wait_control(port);
    }

    /// Whether control answers on `port`. Over TLS the harness has no certificate to ask with:
    /// control binds its port once its certificates are loaded, so a connection is the sign.
    fn control_up(&self, port: u16) -> bool {
        if self.control_args.iter().any(|a| a == "--tls-cert") {
            return std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        }
        let url = format!("http://127.0.0.1:{port}/healthz");
        self.agent.get(&url).call().is_ok_and(|r| r.status() == 200)
    }

    fn wait_control(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.control_up(port) {
            assert!(Instant::now() < deadline, "fusebox-control on port {port} did not answer");
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

    /// Starts a stack in `dir`; when it cannot start, `dir` is kept for its logs.
    pub fn start_with(o: StackOptions, dir: WorkDir) -> Result<Stack, String> {
        let envoy = envoy_binary()?;
        let wasm = wasm_path()?;
        let control_bin = sibling_binary("fusebox-control")?;
        let mock_bin = sibling_binary("mock-llm")?;
        let agent = Stack::start_client();
        let mut stack = Stack {
            ports: o.ports.clone(),
            dir,
            policy_file: o.policy_file.clone(),
            db: o.db.clone(),
            children: Vec::new(),
            agent,
            workers: o.workers,
            control_args: o.control_args.clone(),
        };
        if let Err(e) = stack.launch(&o, &envoy, &wasm, &control_bin, &mock_bin) {
            stack.dir.keep();
            return Err(e);
        }
        Ok(stack)
    }

    fn launch(
        &mut self,
        o: &StackOptions,
        envoy: &Path,
        wasm: &Path,
        control_bin: &Path,
        mock_bin: &Path,
    ) -> Result<(), String> {
        let p = &o.ports;
        if o.start_mock {
            let mock = spawn(
                "mock",
                Command::new(mock_bin)
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{}", p.mock))
                    .arg("--transcripts")
                    .arg(workspace_root().join("tests/responses")),
                &self.dir,
                o.foreground,
            )?;
            self.children.push(("mock-llm".into(), mock));
        }
        if o.start_control {
            let control = self.spawn_control(control_bin, o.foreground)?;
            self.children.push(("fusebox-control".into(), control));
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
        let config_path = self.dir.join("envoy.yaml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let mut cmd = self.envoy_command(envoy);
        // The base id is written down for a hot restart (`Stack::hot_restart_envoy`).
        cmd.arg("--use-dynamic-base-id").arg("--base-id-path").arg(self.dir.join("base-id"));
        if !o.foreground {
            cmd.arg("--log-path").arg(self.dir.join("envoy.log"));
        }
        let envoy_child = spawn("envoy", &mut cmd, &self.dir, o.foreground)?;
        self.children.push(("envoy".into(), envoy_child));
        self.wait_ready()
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
            (format!("http://127.0.0.1:{}/healthz", self.ports.mock), false),
            (format!("control on port {}", self.ports.control), true),
            (format!("http://127.0.0.1:{}/ready", self.ports.admin), false),
        ];
        for (url, control) in &checks {
            loop {
                if let Some((name, status)) = self.exited() {
                    return Err(format!("{name} exited ({status}) during start-up; logs in {}", self.dir.display()));
                }
                let up = match control {
                    true => self.control_up(self.ports.control),
                    false => self.agent.get(url).call().is_ok_and(|r| r.status() == 200),
                };
                if up {
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
