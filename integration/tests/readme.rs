#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! The README's walk-through, run as written: its `sh` blocks go to bash against a stack seeded
//! with the demo policy (only the ports differ: the stack's are free ones), and what they print
//! is what the README says they print.

use fusebox_integration::{workspace_root, Stack};
use std::process::Command;

/// The `sh` blocks of the README's section `title`.
fn shell_blocks(readme: &str, title: &str) -> Vec<String> {
    let start = readme.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("no section {title}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section.split("```sh\n").skip(1).map(|b| b.split("\n```").next().unwrap().to_string()).collect()
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = shell_blocks(&readme, "Walk-through: trip a breaker");
    assert_eq!(blocks.len(), 3, "tokens and requests, the tenant's own view, a live change: {blocks:?}");
    let policy = std::fs::read_to_string(root.join("tests/policies/demo.json")).unwrap();
    let stack = Stack::start(&policy);
    stack.wait_policy_version(1);
    let script = blocks
        .join("\n")
        .replace("localhost:10000", &format!("localhost:{}", stack.ports.listen))
        .replace("localhost:8090", &format!("localhost:{}", stack.ports.control));
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(&root).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    // acme: six answers, then the 429; globex untouched.
    assert_eq!(lines.get(..8), Some(&["200", "200", "200", "200", "200", "200", "429", "200"][..]), "{all}");
    // The tenant's own view says it is open on tokens_60s (curl prints it without a newline).
    let at = stdout.match_indices('\n').nth(7).map(|(i, _)| i + 1).unwrap_or_else(|| panic!("no status: {all}"));
    let mut docs = serde_json::Deserializer::from_str(&stdout[at..]).into_iter::<serde_json::Value>();
    let status = docs.next().unwrap().unwrap();
    assert_eq!((status["tenant"].as_str(), status["breaker"]["state"].as_str()), (Some("acme"), Some("open")));
    // The live change: version 2, the reset, then the refused value naming its field.
    assert!(stdout.contains("policy version 2"), "{all}");
    assert!(stdout.contains("tenant 'acme' breaker reset"), "{all}");
    assert!(stderr.contains("PATCH /v1/tenants/acme: 400: tenants.acme.tokens_60s: must be between 1 and"), "{all}");
    // And Envoy applied the raised limit and the reset (version 3): acme is served again.
    stack.wait_policy_version(3);
    assert_eq!(stack.chat(Some(&fusebox_integration::token("acme", None)), &[]).status, 200);
}
