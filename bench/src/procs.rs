//! The processes a bench run starts (Envoys, fusebox-control, the mock LLM), where they run
//! (CPU pinning) and how they are measured from outside (RSS, admin stats).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which CPUs each side gets. The Envoy under test gets a core of its own when the machine has
/// two or more, so its throughput is what one worker can do rather than what is left after the
/// load generator and the upstream took their share.
#[derive(Debug, Clone)]
pub struct Cpus {
    /// `taskset -c` lists; `None` runs unpinned.
    pub proxy: Option<String>,
    pub rest: Option<String>,
    pub all: Option<String>,
}

impl Cpus {
    pub fn detect() -> Cpus {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let taskset = Command::new("taskset").arg("--version").output().is_ok_and(|o| o.status.success());
        if n < 2 || !taskset {
            return Cpus { proxy: None, rest: None, all: None };
        }
        Cpus { proxy: Some("0".into()), rest: Some(format!("1-{}", n - 1)), all: Some(format!("0-{}", n - 1)) }
    }

    pub fn describe(&self) -> String {
        match (&self.proxy, &self.rest) {
            (Some(p), Some(r)) => {
                format!("Envoy under test on CPU {p}; load generator, upstream and control on CPU {r}")
            }
            _ => "unpinned (one CPU or no taskset)".into(),
        }
    }
}

/// A command, pinned to `cpus` when given.
pub fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(list) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(list).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Proc, String> {
        let log = |suffix: &str| {
            std::fs::File::create(log_dir.join(format!("{name}.{suffix}"))).map(Stdio::from).map_err(|e| e.to_string())
        };
        cmd.stdin(Stdio::null()).stdout(log("out")?).stderr(log("err")?);
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        Ok(Proc { name: name.to_string(), child })
    }

    /// Nanoseconds this process's threads have run on a CPU (`/proc/<pid>/task/*/schedstat`).
    pub fn cpu_ns(&self) -> Option<u64> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.pid())).ok()?;
        let ns = tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Some(ns)
    }

    /// The pid of the process itself (`taskset` execs it, so the pid carries over).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url` answers 200, failing early if `proc` exits.
pub fn wait_ok(agent: &ureq::Agent, url: &str, proc: &mut Proc, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = proc.exited() {
            return Err(format!("{} exited ({status}) during start-up", proc.name));
        }
        if agent.get(url).call().is_ok_and(|r| r.status() == 200) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} not ready after {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts Envoys for a bench run: where the binary is, where configs and logs go.
pub struct Launcher<'a> {
    pub envoy: &'a Path,
    pub dir: &'a Path,
    pub agent: &'a ureq::Agent,
}

impl Launcher<'_> {
    /// Starts an Envoy with `config` and waits for its admin `/ready`.
    pub fn envoy(
        &self,
        name: &str,
        config: &str,
        admin_port: u16,
        workers: u32,
        cpus: Option<&str>,
    ) -> Result<Proc, String> {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        let log = self.dir.join(format!("{name}.log"));
        let mut cmd = pinned(cpus, self.envoy);
        cmd.arg("-c")
            .arg(&path)
            .arg("--concurrency")
            .arg(workers.to_string())
            .arg("--use-dynamic-base-id")
            .arg("--log-level")
            .arg("warn")
            .arg("--log-path")
            .arg(&log);
        let mut proc = Proc::spawn(name, cmd, self.dir)?;
        let ready = format!("http://127.0.0.1:{admin_port}/ready");
        wait_ok(self.agent, &ready, &mut proc, Duration::from_secs(30))
            .map_err(|e| format!("{e}; see {}", log.display()))?;
        Ok(proc)
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A tool on `PATH`, or an error saying how `make bench` installs it.
pub fn tool(name: &str) -> Result<PathBuf, String> {
    fusebox_integration::on_path(name)
        .ok_or_else(|| format!("{name} not found on PATH (`make bench` installs it with apt-get)"))
}
