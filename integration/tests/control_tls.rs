#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! End to end over an encrypted control channel: fusebox-control serves TLS and requires client
//! certificates; the real Envoy, with the shipped mTLS control cluster, polls the policy and
//! posts its events over it; the CLI works with a certificate from the CA and is refused with
//! none, with one from another CA, or in plain HTTP.

use fusebox_integration::{
    demo_policy, generous, render, sibling_binary, token, wait_until, with_control_cluster, Pki, Stack,
    DEMO_ADMIN_TOKEN,
};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// The CLI against control at `url`, with `tls` arguments; success and what it printed.
fn cli(url: &str, tls: &[&Path], flags: &[&str], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(sibling_binary("fusebox-control").unwrap());
    cmd.args(args).env("FUSEBOX_CONTROL_URL", url).env("FUSEBOX_ADMIN_TOKEN", DEMO_ADMIN_TOKEN);
    for (flag, path) in flags.iter().zip(tls) {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn envoy_and_the_cli_talk_to_control_over_mutual_tls_and_a_wrong_certificate_is_refused() {
    let policy = demo_policy(json!({"free": generous()}), json!({}));
    let pki = std::sync::OnceLock::new();
    let stack = Stack::start_custom(&policy, 2, |dir| {
        let made = Pki::create(dir).unwrap();
        let bootstrap =
            render(&with_control_cluster(&Stack::demo_bootstrap(), "control-cluster-mtls.yaml"), &made.envoy_vars());
        let args = made.serve_args();
        let _ = pki.set(made.clone());
        (bootstrap, args)
    });
    let pki: &Pki = pki.get().unwrap();
    // The policy reached Envoy over the channel, and the channel was TLS.
    stack.wait_policy_version(1);
    assert!(stack.envoy_stat("cluster.fusebox_control.ssl.handshake").unwrap_or(0) >= 1, "Envoy spoke TLS to control");
    let https = format!("https://127.0.0.1:{}", stack.ports.control);
    let (ca, cert, key) = (pki.ca.as_path(), pki.client.cert.as_path(), pki.client.key.as_path());
    let with_cert =
        |args: &[&str]| cli(&https, &[ca, cert, key], &["--ca-cert", "--client-cert", "--client-key"], args);
    // Events: usage made through Envoy reaches control over mTLS.
    let t = token("initech", None);
    for _ in 0..3 {
        assert_eq!(stack.chat(Some(&t), &[("x-mock-input-tokens", "11"), ("x-mock-output-tokens", "22")]).status, 200);
    }
    wait_until("usage to reach control over mTLS", 20, || {
        let (ok, out) = with_cert(&["usage", "--tenant", "initech"]);
        ok && out.lines().any(|l| l.starts_with("initech") && l.split_whitespace().nth(2) == Some("3"))
    });
    // A policy change over mTLS: the long poll carries the kill switch to Envoy.
    let (ok, out) = with_cert(&["breaker", "open", "initech", "--reason", "mtls"]);
    assert!(ok, "{out}");
    wait_until("the kill switch over mTLS", 10, || stack.chat(Some(&t), &[]).status == 429);
    // Without a certificate, with one from another CA, or in plain HTTP: refused.
    let (ok, out) = cli(&https, &[ca], &["--ca-cert"], &["whoami"]);
    assert!(!ok && out.contains("CertificateRequired"), "no client certificate: {out}");
    let (rogue_cert, rogue_key) = (pki.rogue.cert.as_path(), pki.rogue.key.as_path());
    let (ok, out) =
        cli(&https, &[ca, rogue_cert, rogue_key], &["--ca-cert", "--client-cert", "--client-key"], &["whoami"]);
    assert!(!ok && out.contains("UnknownCA"), "a certificate from another CA: {out}");
    let plain = format!("http://127.0.0.1:{}", stack.ports.control);
    let (ok, out) = cli(&plain, &[], &[], &["whoami"]);
    assert!(!ok && !out.contains("admin"), "plain HTTP: {out}");
    // Control's certificate is checked too: a CLI trusting only the public roots refuses it.
    let (ok, out) = cli(&https, &[cert, key], &["--client-cert", "--client-key"], &["whoami"]);
    assert!(!ok && out.contains("UnknownIssuer"), "control's certificate is not from a public CA: {out}");
    let (ok, out) = with_cert(&["whoami"]);
    assert!(ok && out.trim() == "admin (admin)", "{out}");
    let log = std::fs::read_to_string(stack.dir.join("control.err")).unwrap_or_default();
    assert!(log.contains("TLS handshake with"), "refused handshakes are logged: {log}");
}
