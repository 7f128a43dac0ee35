#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures should fail the test
//! No way around enforcement or counting: a stopped tenant is refused on every spelling of a
//! path (the request target is sent byte for byte, as an attacker would), a path no rule names
//! is enforced, and a response that ends without its usage is charged what is known, never 0.

use fusebox_integration::{demo_policy, free_port, generous, observed, token, Nginx, Stack};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

/// Connects and sends one HTTP/1.1 request with `target` exactly as given, byte for byte.
fn send(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: llm.example\r\ncontent-type: application/json\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s
}

/// Sends one request (see [`send`]); returns the status (0 when the connection closed without
/// one) and the raw response.
fn raw(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let with_close: Vec<(&str, &str)> = headers.iter().copied().chain([("connection", "close")]).collect();
    let mut s = send(port, method, target, &with_close, body);
    // Read the head and a content-length body (Envoy delays closing after a local reply).
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn a_stopped_tenant_is_refused_on_every_spelling_of_a_path_and_unnamed_paths_need_identity() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    every_spelling_is_refused(&stack);
}

#[test]
fn without_envoys_path_normalisation_fusebox_alone_still_refuses_every_spelling() {
    let demo = Stack::demo_bootstrap();
    let bare: String = demo
        .lines()
        .filter(|l| {
            !["normalize_path:", "merge_slashes:", "path_with_escaped_slashes_action:"]
                .iter()
                .any(|k| l.trim().starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(demo.lines().count() - bare.lines().count(), 3, "the demo normalises paths in Envoy");
    let policy = demo_policy(json!({"free": generous()}), json!({}));
    let stack = Stack::start_custom(&policy, 2, |_| (bare.clone(), Vec::new()));
    stack.wait_policy_version(1);
    every_spelling_is_refused(&stack);
}

fn every_spelling_is_refused(stack: &Stack) {
    let r = stack.control(
        "POST",
        "/v1/tenants/stopped/breaker",
        &json!({"action": "open", "reason": "bypass test", "create": true}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let t = token("stopped", None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.chat(Some(&t), &[]).status != 429 {
        assert!(Instant::now() < deadline, "the kill switch never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = stack.ports.listen;
    let bearer = format!("Bearer {t}");
    // What the upstream served so far (before the kill switch arrived).
    let served_before = |tenant: &str| stack.mock_stats()["tenants"][tenant]["requests"].as_u64().unwrap_or(0);
    let (stopped_before, anonymous_before) = (served_before("stopped"), served_before(""));
    let spellings = [
        "/v1/chat/completions",
        "//v1/chat/completions",
        "/v1//chat/completions",
        "/./v1/chat/completions",
        "/healthz/../v1/chat/completions",
        "/%76%31/chat/completions",
        "/v1%2Fchat%2Fcompletions",
        "/v1%2fchat%2fcompletions",
        "/V1/chat/completions",
        "/v1/CHAT/completions",
        "/v1;x=1/chat/completions",
        "/v1/chat/completions;a=b",
        "/v1/chat/completions/",
        "/v1/chat/completions?stream=true",
        "/v1/chat/./completions",
        "/x/../v1/chat/completions",
        "/other/endpoint",
        "http://llm.example/v1/chat/completions",
        "http://llm.example//v1/chat/completions",
    ];
    for target in spellings {
        let (status, text) = raw(port, "POST", target, &[("authorization", &bearer)], CHAT);
        assert!(
            status == 429 || status == 400,
            "{target}: a stopped tenant must not be served (got {status}):\n{text}"
        );
        if status == 429 {
            assert!(text.contains("kill_switch"), "{target}: refused by fusebox:\n{text}");
        }
        let (anonymous, _) = raw(port, "POST", target, &[], CHAT);
        assert!(anonymous == 401 || anonymous == 400, "{target}: no credentials, no service (got {anonymous})");
    }
    for path in H2_SPELLINGS {
        // A :path that is not absolute is a protocol error: Envoy resets the stream (no status).
        let reset = !path.starts_with('/');
        let status = h2(port, path, &[("authorization", &bearer)]);
        let refused = if reset { status == 0 } else { status == 429 || status == 400 };
        assert!(refused, "HTTP/2 :path {path}: a stopped tenant must not be served (got {status})");
        let anonymous = h2(port, path, &[]);
        let refused = if reset { anonymous == 0 } else { anonymous == 401 || anonymous == 400 };
        assert!(refused, "HTTP/2 :path {path}: no credentials, no service (got {anonymous})");
    }
    assert_eq!(served_before("stopped"), stopped_before, "the upstream served the stopped tenant");
    assert_eq!(served_before(""), anonymous_before, "nothing went up unidentified");
    // What the operator marked `pass` still passes, in any spelling (whatever the upstream says).
    let (status, text) = raw(port, "GET", "//healthz", &[], "");
    assert!(status != 0 && status != 401 && !text.to_ascii_lowercase().contains("x-fusebox-reason"), "{text}");
}

/// `:path` values as an HTTP/2 client can send them (no request line to normalise first).
const H2_SPELLINGS: [&str; 9] = [
    "/v1/chat/completions",
    "//v1/chat/completions",
    "/./v1/chat/completions",
    "/%76%31/chat/completions",
    "/v1%2Fchat%2Fcompletions",
    "/V1/chat/completions",
    "/v1;x=1/chat/completions",
    "/v1/chat/completions?x=1",
    "v1/chat/completions",
];

/// One HTTP/2 request (prior knowledge, `nghttp`) with `:path` exactly `path`; its status, or 0
/// when the stream was reset without one.
fn h2(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    let body = std::env::temp_dir().join(format!("fusebox-h2-body-{}", std::process::id()));
    std::fs::write(&body, CHAT).unwrap();
    let mut cmd = std::process::Command::new("nghttp");
    cmd.arg("-v").arg("-d").arg(&body).arg("-H").arg(format!(":path: {path}"));
    cmd.arg("-H").arg("content-type: application/json");
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap_or_else(|e| panic!("nghttp is needed (make proxies installs it): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.split_once(":status: ").and_then(|(_, s)| s.trim().parse().ok())).unwrap_or(0)
}

#[test]
fn through_a_normalising_reverse_proxy_in_front_of_the_model_server_no_spelling_is_served_uncounted() {
    // Envoy -> nginx (`proxy_pass` with a URI: it decodes and normalises paths) -> the mock.
    let nginx_port = free_port();
    let demo = Stack::demo_bootstrap();
    let at = demo.find("cluster_name: llm_upstream").unwrap();
    let (head, tail) = demo.split_at(at);
    let bootstrap = format!("{head}{}", tail.replacen("${MOCK_PORT}", &nginx_port.to_string(), 1));
    let policy = demo_policy(json!({"free": generous()}), json!({}));
    let stack = Stack::start_custom(&policy, 2, |_| (bootstrap.clone(), Vec::new()));
    let _nginx = Nginx::start(&stack.dir, nginx_port, stack.ports.mock);
    stack.wait_policy_version(1);
    // The proxy does serve odd spellings as the real path: what a bypass would exploit.
    let (status, text) = raw(nginx_port, "POST", "//v1/./chat/%63ompletions", &[], CHAT);
    assert_eq!(status, 200, "nginx normalised the path for the model server:\n{text}");
    every_spelling_is_refused(&stack);
    // A tenant that may be served is served on those spellings, and counted for every one.
    let t = token("odd-paths", None);
    let bearer = format!("Bearer {t}");
    let usage = [("authorization", bearer.as_str()), ("x-mock-input-tokens", "10"), ("x-mock-output-tokens", "5")];
    for target in ["//v1/chat/completions", "/%76%31/chat/completions", "/v1/./chat/completions"] {
        let (status, text) = raw(stack.ports.listen, "POST", target, &usage, CHAT);
        assert_eq!(status, 200, "{target}:\n{text}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokens(&stack, &t) < 45 {
        assert!(Instant::now() < deadline, "counted {} of 45 tokens", tokens(&stack, &t));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tokens(&stack, &t), 45, "every request counted once");
    assert_eq!(stack.mock_stats()["tenants"]["odd-paths"]["requests"], 3, "and each served once");
}

/// Reads the response head and some of the body, then drops the connection (a client reset).
fn read_a_little_and_reset(port: u16, target: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut s = send(port, "POST", target, headers, body);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("tok1 ") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn tokens(stack: &Stack, t: &str) -> u64 {
    observed(&stack.status(t), "tokens_60s")
}

fn wait_for_tokens(stack: &Stack, t: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = tokens(stack, t);
        if n > 0 && observed(&stack.status(t), "concurrency") == 0 {
            return n;
        }
        assert!(Instant::now() < deadline, "the reset stream was never settled");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn streams_that_end_before_their_usage_are_charged_an_estimate_never_zero() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let port = stack.ports.listen;
    let slow = [("x-mock-chunks", "40"), ("x-mock-chunk-delay-ms", "50"), ("x-mock-output-tokens", "400")];

    // A client reads the first chunks of a stream and hangs up before the usage chunk.
    let t = token("reader", None);
    let bearer = format!("Bearer {t}");
    let stream = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut h = vec![("authorization", bearer.as_str())];
    h.extend(slow);
    read_a_little_and_reset(port, "/v1/chat/completions", &h, stream);
    let charged = wait_for_tokens(&stack, &t);
    let prompt = (stream.len() as u64).div_ceil(4);
    assert!(charged >= prompt, "the prompt at least: {charged} < {prompt}");

    // A 50 000-token prompt whose stream is reset after its first chunk: the prompt is charged.
    let t = token("big-prompt", None);
    let bearer = format!("Bearer {t}");
    let content = "x".repeat(200_000);
    let big =
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": content}]}).to_string();
    let mut h = vec![("authorization", bearer.as_str())];
    h.extend(slow);
    read_a_little_and_reset(port, "/v1/chat/completions", &h, &big);
    let charged = wait_for_tokens(&stack, &t);
    assert!(charged >= 50_000, "a reset does not make a 50 000-token prompt free: {charged}");

    // The upstream resets a stream before its usage event.
    let t = token("cut-upstream", None);
    let r = stack.post(
        "/v1/responses",
        Some(&t),
        &[("x-mock-abort-after", "3"), ("x-mock-chunks", "10"), ("x-mock-chunk-delay-ms", "20")],
        r#"{"model":"gpt-4.1","input":"hi","stream":true}"#,
    );
    assert!(!r.body.contains("response.completed"), "the stream was cut: {}", r.body);
    assert!(wait_for_tokens(&stack, &t) > 0, "an upstream reset is not free either");

    assert!(stack.envoy_counter("fusebox.usage.estimated_tokens") > 50_000);
    // A complete answer without usage (a model list, say) still costs nothing.
    let t = token("lister", None);
    assert_eq!(stack.post("/v1/chat/completions", Some(&t), &[("x-mock-body", "no-usage")], CHAT).status, 200);
    assert_eq!(tokens(&stack, &t), 0);
}

#[test]
fn usage_is_asked_for_on_every_value_and_path_a_server_streams_on() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    let t = token("lenient", None);
    let h = [("x-mock-input-tokens", "21"), ("x-mock-output-tokens", "13")];
    let cases = [
        ("/v1/chat/completions", r#"{"model":"m","stream":1,"messages":[]}"#),
        ("/v1/chat/completions", r#"{"model":"m","stream":"true","messages":[]}"#),
        ("/v1/chat/completions/", r#"{"model":"m","stream":true,"messages":[]}"#),
        ("/v1/completions", r#"{"model":"m","stream":true,"prompt":"hi"}"#),
    ];
    for (i, (path, body)) in cases.iter().enumerate() {
        let r = stack.post(path, Some(&t), &h, body);
        assert_eq!(r.status, 200, "{path} {body}: {}", r.body);
        assert!(
            r.body.contains("text/event-stream") || r.body.contains("data: "),
            "{path} {body} streamed: {}",
            r.body
        );
        assert_eq!(tokens(&stack, &t), (i as u64 + 1) * 34, "{path} {body}: counted, since usage was asked for");
    }
    let mock: Value = stack.mock_stats();
    assert_eq!(mock["tenants"]["lenient"]["streams_with_usage"], 4);
}

#[test]
fn bodies_in_odd_framings_still_count_the_usage_they_carry() {
    let stack = Stack::start(&demo_policy(json!({"free": generous()}), json!({})));
    stack.wait_policy_version(1);
    for (i, name) in ["bom", "trailing-bytes", "two-documents", "deep-nesting"].iter().enumerate() {
        let t = token(&format!("framing-{i}"), None);
        let r = stack.post("/v1/chat/completions", Some(&t), &[("x-mock-body", name)], CHAT);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(tokens(&stack, &t), 10, "{name}: the 7 + 3 tokens the body reported");
    }
    assert_eq!(stack.envoy_counter("fusebox.usage.estimated_tokens"), 0, "read, not estimated");
}
