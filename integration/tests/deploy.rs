#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! The Kubernetes manifest for fusebox-control (`deploy/k8s/fusebox-control.yaml`) runs the
//! real binary as written: its arguments and the environment its Secret provides start a
//! control on a real PostgreSQL and Redis that answers its readiness probe.

use fusebox_integration::{free_port, sibling_binary, wait_until, workspace_root, Postgres, Redis};
use std::process::{Command, Stdio};

fn manifest() -> String {
    std::fs::read_to_string(workspace_root().join("deploy/k8s/fusebox-control.yaml")).unwrap()
}

/// The container's `args: [...]` (flow style, so JSON).
fn container_args(m: &str) -> Vec<String> {
    let line = m.lines().find(|l| l.trim_start().starts_with("args: [")).expect("the container has args");
    serde_json::from_str(line.trim_start().trim_start_matches("args:").trim()).unwrap()
}

/// `(variable, secret key)` of every `env` entry taken from the Secret.
fn secret_env(m: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = m.lines().collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].trim_start().strip_prefix("- name: ")?;
            let key = w[1].split("key: ").nth(1)?.trim_end_matches(['}', ' ']);
            Some((name.to_string(), key.to_string()))
        })
        .collect()
}

/// The Secret's `stringData` keys.
fn secret_keys(m: &str) -> Vec<String> {
    m.lines()
        .skip_while(|l| !l.starts_with("stringData:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn the_control_manifest_starts_a_replica_on_postgres_and_redis_that_is_ready() {
    let m = manifest();
    assert!(m.contains("replicas: 2"), "a fleet runs at least two replicas");
    assert!(m.contains("readinessProbe:") && m.contains("path: /healthz"));
    let env = secret_env(&m);
    let keys = secret_keys(&m);
    for (_, key) in &env {
        assert!(keys.contains(key), "the Secret provides {key}: {keys:?}");
    }
    let (redis, postgres) = (Redis::start(), Postgres::start());
    let values = [
        ("admin-token", "admin-token-from-the-secret".to_string()),
        ("filter-token", "filter-token-from-the-secret".to_string()),
        ("database-url", postgres.create_database("fusebox")),
        ("fleet-redis", redis.url()),
    ];
    let port = free_port();
    // The manifest's arguments, with a local port and the demo policy standing in for the ConfigMap.
    let args: Vec<String> = container_args(&m)
        .into_iter()
        .map(|a| match a.as_str() {
            "0.0.0.0:8090" => format!("127.0.0.1:{port}"),
            "/etc/fusebox/policy.json" => workspace_root().join("tests/policies/demo.json").display().to_string(),
            _ => a,
        })
        .collect();
    let dir = fusebox_integration::work_dir();
    let mut cmd = Command::new(sibling_binary("fusebox-control").unwrap());
    cmd.args(&args).current_dir(&dir).stdout(Stdio::null()).stderr(Stdio::piped());
    for (var, key) in &env {
        let value = &values.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no test value for {key}")).1;
        cmd.env(var, value);
    }
    let mut control = cmd.spawn().unwrap();
    let agent = fusebox_integration::Stack::start_client();
    wait_until("the readiness probe", 20, || {
        agent.get(format!("http://127.0.0.1:{port}/healthz")).call().is_ok_and(|r| r.status() == 200)
    });
    // The Secret's tokens are the ones it enforces, and its data lives in PostgreSQL.
    let policy = |token: &str| {
        let mut r = agent
            .get(format!("http://127.0.0.1:{port}/v1/policy"))
            .header("authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
    };
    assert_eq!(policy("filter-token-from-the-secret").0, 200);
    assert_eq!(policy("some-other-token").0, 401);
    let _ = control.kill();
    let log = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut control.stderr.take().unwrap(), &mut s).unwrap();
        s
    };
    let _ = control.wait();
    assert!(log.contains("fleet counters in redis"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{}/fusebox", postgres.port)), "{log}");
}

#[test]
fn make_install_puts_the_cli_on_a_path_and_the_filter_beside_it() {
    let prefix = fusebox_integration::work_dir();
    // `-o wasm`: the filter is built already (by `make build`); the install step is what is tested.
    let out = Command::new("make")
        .current_dir(workspace_root())
        .args(["-s", "install", "PROFILE=debug", "-o", "wasm"])
        .arg(format!("PREFIX={}", prefix.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let cli = prefix.join("bin/fusebox-control");
    let version = Command::new(&cli).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("fusebox-control "), "{version:?}");
    let installed = std::fs::metadata(prefix.join("share/fusebox/fusebox_filter.wasm")).unwrap().len();
    let built = std::fs::metadata(fusebox_integration::wasm_path().unwrap()).unwrap().len();
    assert_eq!(installed, built, "the filter is the one built");
}
