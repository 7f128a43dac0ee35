//! `fusebox-profile`: what fusebox's own code costs per request, without Envoy. The filter is
//! linked natively into a small proxy-wasm host (`abi.rs`) and driven through the same
//! callbacks Envoy makes for the bench's request (`make bench`'s chat completion, its JSON
//! response, bench/policy.json with every feature on). It prints the time per callback and
//! every hostcall a request makes, by name: exact counts, and a native binary that `perf`
//! can profile by function. Natively the code runs faster than in Envoy's V8; the shares are
//! what to read.
//!
//! `fusebox-profile [requests] [tenants] [--fresh-tokens] [--json-only | --stream-only]`, or
//! `fusebox-profile --instructions` for instruction counts (callgrind) instead of times.

mod abi;
mod heap;

#[global_allocator]
static HEAP: heap::Heap = heap::Heap::new();

use fusebox_engine::identity::{mint, MintKey};
use std::time::{Duration, Instant};

// Linked for its proxy-wasm exports, called below through the C ABI.
use fusebox_filter as _;

extern "C" {
    fn _initialize();
    fn proxy_on_context_create(context_id: u32, root_context_id: u32);
    fn proxy_on_vm_start(context_id: u32, size: usize) -> bool;
    fn proxy_on_configure(context_id: u32, size: usize) -> bool;
    fn proxy_on_tick(context_id: u32);
    fn proxy_on_request_headers(context_id: u32, headers: usize, end_of_stream: bool) -> u32;
    fn proxy_on_request_body(context_id: u32, size: usize, end_of_stream: bool) -> u32;
    fn proxy_on_response_headers(context_id: u32, headers: usize, end_of_stream: bool) -> u32;
    fn proxy_on_response_body(context_id: u32, size: usize, end_of_stream: bool) -> u32;
    fn proxy_on_log(context_id: u32);
    fn proxy_on_done(context_id: u32) -> bool;
    fn proxy_on_delete(context_id: u32);
}

const SECRET: &str = "fusebox-bench-secret-not-for-production";
const ISSUER: &str = "https://auth.fusebox.bench";
const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the plot of Hamlet in one sentence."}],"max_tokens":128}"#;
const COMPLETION: &str = r#"{"id":"chatcmpl-bench0001","object":"chat.completion","created":1763900000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Prince Hamlet feigns madness to avenge his father's murder by his uncle Claudius, and his hesitation ends in a duel that kills nearly everyone, Hamlet included.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":27,"completion_tokens":36,"total_tokens":63,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_bench"}"#;
/// Bytes of filler in each streamed event's content, as `make bench`'s stream (about 355 bytes
/// an event on the wire).
const EVENT_FILLER: usize = 200;
/// Bytes Envoy hands the filter at once while a stream flows.
const STREAM_CHUNK: usize = 16 << 10;
const NOW_S: u64 = 1_800_000_000;

const CALLBACKS: [&str; 6] =
    ["request headers", "request body", "response headers", "response body", "log", "done + delete"];

/// An OpenAI chat stream of `events` content events, then its usage and `[DONE]`.
fn chat_stream(events: usize) -> Vec<u8> {
    let filler = "x".repeat(EVENT_FILLER);
    let mut out = Vec::new();
    for i in 0..events {
        out.extend_from_slice(format!(
            "data: {{\"id\":\"chatcmpl-bench0001\",\"object\":\"chat.completion.chunk\",\"created\":1763900000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} {filler}\"}},\"finish_reason\":null}}]}}\n\n"
        ).as_bytes());
    }
    out.extend_from_slice(b"data: {\"id\":\"chatcmpl-bench0001\",\"object\":\"chat.completion.chunk\",\"created\":1763900000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":27,\"completion_tokens\":36,\"total_tokens\":63}}\n\ndata: [DONE]\n\n");
    out
}

thread_local! {
    /// The next context id: every profile gets a root context of its own, every request one.
    static NEXT_ID: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
}

fn next_id() -> u32 {
    NEXT_ID.with(|n| n.replace(n.get() + 1))
}

fn header(name: &str, value: &str) -> (String, Vec<u8>) {
    (name.to_string(), value.as_bytes().to_vec())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fusebox-profile: {e}");
        std::process::exit(1);
    }
}

const STREAM_EVENTS: usize = 2_000;

/// Requests run to warm up before `requests` are timed.
fn warm_up(requests: u32) -> u32 {
    (requests / 10).max(1)
}

/// Streams profiled beside `requests` JSON requests.
fn streams(requests: u32) -> u32 {
    (requests / 1000).max(5)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let numbers: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (requests, tenants) =
        (numbers.first().copied().unwrap_or(200_000), numbers.get(1).copied().unwrap_or(10).max(1));
    if flag("--instructions") {
        return instructions();
    }
    if !flag("--stream-only") {
        report(&profile(requests, tenants, flag("--fresh-tokens"), None)?);
    }
    if !flag("--json-only") {
        // A long stream: what reading its events costs a byte.
        let stream = profile(streams(requests), 1, false, Some(STREAM_EVENTS))?;
        let bytes = chat_stream(STREAM_EVENTS).len() as f64 * f64::from(stream.requests);
        let body = stream.spent.get(3).copied().unwrap_or_default();
        println!(
            "a stream of {STREAM_EVENTS} chat events: {:.2} ns a byte in the response body callback",
            body.as_secs_f64() * 1e9 / bytes
        );
    }
    Ok(())
}

/// Instructions per request and per streamed byte, counted by callgrind: unlike times, the
/// same for the same build whatever else the machine is doing, so two builds compare exactly.
/// Each figure is the difference of two runs (n and 2n), which cancels the fixed start-up.
fn instructions() -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let count = |args: &[String]| -> Result<f64, String> {
        let out = std::process::Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(&me)
            .args(args)
            .output()
            .map_err(|e| format!("valgrind: {e} (Debian package valgrind)"))?;
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines()
            .find_map(|l| l.split("Collected : ").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("no instruction count from callgrind: {}", text.lines().last().unwrap_or_default()))
    };
    // What runs (timed and warm-up) for a request count, so the difference of two counts.
    let run = |r: u32| f64::from(r + warm_up(r));
    let (n, m) = (1000, 2000);
    for (what, extra) in [("tokens cached", None), ("every token new", Some("--fresh-tokens"))] {
        let args = |k: u32| {
            let k = k.to_string();
            let mut a = vec![k, "10".into(), "--json-only".into()];
            a.extend(extra.map(String::from));
            a
        };
        let per = (count(&args(m))? - count(&args(n))?) / (run(m) - run(n));
        println!("fusebox's own code per request ({what}): {per:.0} instructions");
    }
    let (n, m) = (10_000, 20_000);
    let stream_args = |k: u32| vec![k.to_string(), "1".into(), "--stream-only".into()];
    let per_stream = count(&stream_args(m))? - count(&stream_args(n))?;
    let bytes = chat_stream(STREAM_EVENTS).len() as f64 * (run(streams(m)) - run(streams(n)));
    println!("a stream of chat events: {:.1} instructions a byte", per_stream / bytes);
    Ok(())
}

/// What `requests` requests cost, after a tenth as many to warm up.
struct Profile {
    requests: u32,
    tenants: u32,
    fresh: bool,
    /// Time in each callback, in [`CALLBACKS`] order.
    spent: [Duration; 6],
    /// Hostcalls by name over the timed requests.
    calls: std::collections::BTreeMap<&'static str, u64>,
}

/// `stream`: the response is an SSE stream of this many events (JSON otherwise).
fn profile(requests: u32, tenants: u32, fresh: bool, stream: Option<usize>) -> Result<Profile, String> {
    let response = match stream {
        Some(events) => Response { body: chat_stream(events), content_type: "text/event-stream" },
        None => Response { body: COMPLETION.as_bytes().to_vec(), content_type: "application/json" },
    };
    let policy = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../policy.json"))
        .map_err(|e| format!("bench/policy.json: {e}"))?;
    let config =
        format!(r#"{{"routes": [{{"prefix": "/v1/", "mode": "enforce"}}], "unmatched": "pass", "policy": {policy}}}"#);
    let token_count = if fresh { requests } else { tenants };
    let tokens: Vec<String> = (0..token_count)
        .map(|i| {
            let mut claims = serde_json::Map::new();
            claims.insert("tenant".into(), format!("bench-{}", i % tenants).into());
            if fresh {
                claims.insert("jti".into(), format!("bench-token-{i}").into());
            }
            mint(MintKey::Hs256(SECRET), Some("bench-hs"), ISSUER, "fusebox", claims, NOW_S - 60, 4 * 3600)
        })
        .collect::<Result<_, _>>()?;

    abi::HOST.with(|h| {
        let mut h = h.borrow_mut();
        h.plugin_configuration = config.into_bytes();
        h.now_ns = NOW_S * 1_000_000_000;
    });
    let root = next_id();
    // SAFETY: the filter's proxy-wasm exports, called as Envoy calls them, on this one thread.
    let configured = unsafe {
        if root == 1 {
            _initialize();
        }
        proxy_on_context_create(root, 0);
        let size = abi::HOST.with(|h| h.borrow().plugin_configuration.len());
        proxy_on_vm_start(root, 0) && proxy_on_configure(root, size)
    };
    if !configured {
        return Err("the filter refused its configuration".into());
    }
    unsafe { proxy_on_tick(root) };

    let warm = warm_up(requests);
    let mut spent = [Duration::ZERO; 6];
    let mut calls_before = Default::default();
    for i in 0..warm + requests {
        if i == warm {
            spent = [Duration::ZERO; 6];
            calls_before = abi::HOST.with(|h| h.borrow().calls.clone());
        }
        let token = tokens.get(i as usize % tokens.len()).map_or("", String::as_str);
        one_request(root, next_id(), token, &response, &mut spent);
        // A millisecond a request, and the worker's tick every 100 ms, as in Envoy.
        abi::HOST.with(|h| h.borrow_mut().now_ns += 1_000_000);
        if i % 100 == 0 {
            unsafe { proxy_on_tick(root) };
        }
    }
    let (calls, replies) = abi::HOST.with(|h| {
        let h = h.borrow();
        (h.calls.clone(), h.local_replies.clone())
    });
    if let Some(status) = replies.first() {
        return Err(format!(
            "{} requests were answered by the filter ({status} first): not the bench's path",
            replies.len()
        ));
    }
    let calls = calls.into_iter().map(|(k, v)| (k, v - calls_before.get(k).copied().unwrap_or(0))).collect();
    Ok(Profile { requests, tenants, fresh, spent, calls })
}

struct Response {
    body: Vec<u8>,
    content_type: &'static str,
}

fn one_request(root: u32, id: u32, token: &str, response: &Response, spent: &mut [Duration; 6]) {
    let body_len = CHAT_BODY.len().to_string();
    abi::HOST.with(|h| {
        let mut h = h.borrow_mut();
        h.request_headers = vec![
            header(":authority", "bench"),
            header(":path", "/v1/chat/completions"),
            header(":method", "POST"),
            header(":scheme", "http"),
            header("content-type", "application/json"),
            header("content-length", &body_len),
            header("authorization", &format!("Bearer {token}")),
            header("user-agent", "wrk"),
            header("x-forwarded-proto", "http"),
            header("x-request-id", "5a1b2c3d-0000-4000-8000-000000000000"),
        ];
        h.request_body = CHAT_BODY.as_bytes().to_vec();
        h.response_headers = vec![
            header(":status", "200"),
            header("content-type", response.content_type),
            header("content-length", &response.body.len().to_string()),
            header("date", "Mon, 07 Dec 2026 12:00:00 GMT"),
            header("x-envoy-upstream-service-time", "0"),
        ];
    });
    let (req_headers, resp_headers) = abi::HOST.with(|h| {
        let h = h.borrow();
        (h.request_headers.len(), h.response_headers.len())
    });
    let mut timed = |slot: usize, f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        if let Some(s) = spent.get_mut(slot) {
            *s += start.elapsed();
        }
    };
    // SAFETY: as in `run`.
    unsafe {
        timed(0, &mut || {
            proxy_on_context_create(id, root);
            proxy_on_request_headers(id, req_headers, false);
        });
        timed(1, &mut || {
            proxy_on_request_body(id, CHAT_BODY.len(), true);
        });
        timed(2, &mut || {
            proxy_on_response_headers(id, resp_headers, false);
        });
        // The body in the chunks Envoy would hand over (a JSON answer is one).
        let chunks: Vec<&[u8]> = response.body.chunks(STREAM_CHUNK).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            abi::HOST.with(|h| h.borrow_mut().response_body = chunk.to_vec());
            timed(3, &mut || {
                proxy_on_response_body(id, chunk.len(), n + 1 == chunks.len());
            });
        }
        timed(4, &mut || proxy_on_log(id));
        timed(5, &mut || {
            proxy_on_done(id);
            proxy_on_delete(id);
        });
    }
}

fn report(p: &Profile) {
    let n = f64::from(p.requests);
    let tokens = if p.fresh { "every token new" } else { "tokens cached" };
    println!("fusebox's own code per request, natively ({} requests, {} tenants, {tokens}):", p.requests, p.tenants);
    for (name, d) in CALLBACKS.iter().zip(&p.spent) {
        println!("  {name:<18} {:>7.2} us", d.as_secs_f64() * 1e6 / n);
    }
    let total: Duration = p.spent.iter().sum();
    println!("  {:<18} {:>7.2} us", "all", total.as_secs_f64() * 1e6 / n);
    println!("hostcalls per request:");
    let per: Vec<(&str, f64)> =
        p.calls.iter().map(|(name, count)| (*name, *count as f64 / n)).filter(|(_, per)| *per > 0.0005).collect();
    for (name, per) in &per {
        println!("  {name:<22} {per:>6.3}");
    }
    println!("  {:<22} {:>6.3}", "all", per.iter().map(|(_, p)| p).sum::<f64>());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_request_is_admitted_counted_and_its_hostcalls_are_known() {
        let p = profile(200, 10, false, None).unwrap();
        let per = |name: &str| p.calls.get(name).copied().unwrap_or(0) as f64 / 200.0;
        // Admission, the body's reservation and settlement: a read and a write of state each
        // (and the worker's tick, every 100 requests here, reads the policy's generation).
        let reads = per("get_shared_data");
        assert!((3.0..3.1).contains(&reads), "{reads} state reads a request");
        assert_eq!(per("set_shared_data"), 3.0);
        // Both header maps in one call each; `profile` has checked no request was refused.
        assert_eq!(per("get_header_map"), 2.0);
        assert!(p.spent.iter().sum::<Duration>() > Duration::ZERO);
    }
}
