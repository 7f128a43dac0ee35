//! The app-layer peer (`BENCH_PEERS=litellm`): the LiteLLM proxy from PyPI, installed into a
//! venv of its own under `target/`, in front of the same fast upstream, under the same load.
//!
//! It runs with its master key and one deployment whose `rpm`/`tpm` are set, which is the limit
//! LiteLLM enforces from its config alone. Its per-key limits need its database, set up through
//! Prisma, whose engines are downloaded from binaries.prisma.sh at first use. That host is not a
//! package registry, and this machine cannot reach it, so the peer here has no per-key limits.

use crate::procs::{self, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The key every request of the peer's scenario carries.
pub(crate) const MASTER_KEY: &str = "sk-bench-litellm-master";
/// The version measured (pinned, so runs compare).
const VERSION: &str = "1.108.7";

/// The `litellm` executable of the peer's venv, installing it on first use.
fn installed(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("target/litellm-venv");
    let exe = venv.join("bin/litellm");
    if exe.exists() {
        return Ok(exe);
    }
    println!("installing litellm[proxy]=={VERSION} into {} (once)", venv.display());
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
        status.success().then_some(()).ok_or_else(|| format!("{what} failed ({status})"))
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv")?;
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("litellm[proxy]=={VERSION}")),
        "pip install litellm[proxy]",
    )?;
    Ok(exe)
}

/// Starts the peer on `port` in front of the upstream on `upstream`, pinned to `cpus`.
pub(crate) fn start(
    root: &Path,
    dir: &Path,
    agent: &ureq::Agent,
    port: u16,
    upstream: u16,
    cpus: Option<&str>,
) -> Result<Proc, String> {
    let exe = installed(root)?;
    let config = dir.join("litellm.yaml");
    let yaml = format!(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      \
         api_base: http://127.0.0.1:{upstream}/v1\n      api_key: sk-upstream\n      rpm: 100000000\n      \
         tpm: 100000000000\ngeneral_settings:\n  master_key: {MASTER_KEY}\n"
    );
    std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut cmd = procs::pinned(cpus, &exe);
    cmd.arg("--config").arg(&config).args(["--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "1"]);
    // No fetch of the model price map from the internet.
    cmd.env("LITELLM_LOCAL_MODEL_COST_MAP", "True");
    let mut proc = Proc::spawn("litellm", cmd, dir)?;
    let ready = format!("http://127.0.0.1:{port}/health/liveliness");
    procs::wait_ok(agent, &ready, &mut proc, Duration::from_secs(120))
        .map_err(|e| format!("{e}; see {}", dir.join("litellm.err").display()))?;
    Ok(proc)
}
