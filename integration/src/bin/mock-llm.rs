//! A mock LLM upstream speaking OpenAI chat completions, OpenAI Responses and Anthropic
//! Messages, as JSON or (when the request says `"stream": true`) as SSE, the way the providers
//! do: OpenAI chat streams carry usage only with `stream_options.include_usage`.
//!
//! Per-request knobs (headers): `x-mock-input-tokens`, `x-mock-output-tokens`,
//! `x-mock-cached-tokens` (of the input, read from the prompt cache: OpenAI's `cached_tokens`,
//! Anthropic's `cache_read_input_tokens` beside a smaller `input_tokens`),
//! `x-mock-tool-calls`, `x-mock-latency-ms` (before the first byte), `x-mock-chunks`,
//! `x-mock-chunk-bytes` and `x-mock-chunk-delay-ms` (stream shape and size), `x-mock-status`,
//! `x-mock-body` (a deliberately broken body), `x-mock-abort-after` (reset mid-stream) and
//! `x-mock-binary-header` (a JSON answer whose content-type is not UTF-8). `x-mock-output-tokens`
//! may be a range (`300-700`: each answer draws its own), and an answer never uses more output
//! than the request's `max_tokens` (and kin) allow, as providers do. `x-mock-split-writes: N`
//! writes a stream in pieces of 1 to N bytes at random points (inside keys, inside `data:`,
//! between `\r` and `\n`), as a real network may deliver it. `x-mock-transcript: FILE` answers
//! with a recorded provider response from `tests/responses/` as it was recorded (`.sse` as a
//! stream, split as asked; its usage is in that folder's README, not in `/mock/stats`).
//! It is also the demo's
//! Zipkin collector: `POST /api/v2/spans` keeps what Envoy reports, `GET /mock/spans` returns it. `GET /mock/stats` reports what it
//! answered, per tenant as seen in the `x-fusebox-tenant` header Envoy adds, so tests can compare
//! exact totals; it also records whether chat streams asked for usage.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser, Clone)]
struct Args {
    #[arg(long, env = "FUSEBOX_MOCK_LISTEN", default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 120)]
    input_tokens: u64,
    #[arg(long, default_value_t = 280)]
    output_tokens: u64,
    /// Where `x-mock-transcript` finds recorded provider responses.
    #[arg(long, default_value = "tests/responses")]
    transcripts: std::path::PathBuf,
}

#[derive(Default, Serialize, Clone)]
struct Totals {
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    tool_calls: u64,
    streams: u64,
    /// Chat streams whose request asked for usage (`stream_options.include_usage`).
    streams_with_usage: u64,
    /// Requests that arrived with an `accept-encoding` header (fusebox removes it).
    with_accept_encoding: u64,
    /// The output allowance of the latest request that had one.
    last_max_tokens: Option<u64>,
    /// The first distinct `authorization` and `x-api-key` values that reached the upstream
    /// (as `authorization: ...` / `x-api-key: ...`), so tests can check which credentials did.
    credentials_seen: Vec<String>,
}

#[derive(Default, Serialize)]
struct Stats {
    all: Totals,
    /// Requests to `/healthz` (a pass-through route) that arrived with an `x-fusebox-tenant`.
    healthz_with_tenant_header: u64,
    /// Keyed by the `x-fusebox-tenant` header value ("" when absent).
    tenants: BTreeMap<String, Totals>,
}

#[derive(Clone)]
struct AppState {
    args: Args,
    stats: Arc<Mutex<Stats>>,
    /// Spans Envoy reported (the demo bootstrap uses the mock as its Zipkin collector).
    spans: Arc<Mutex<Vec<Value>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Responses,
    Messages,
    /// OpenAI embeddings: input tokens only, never streamed.
    Embeddings,
}

/// What one answer contains.
struct Answer {
    api: Api,
    model: String,
    input: u64,
    /// Of `input`, read from the prompt cache.
    cached: u64,
    output: u64,
    tool_calls: u64,
    chunks: u64,
    /// Extra text in each content delta (SSE) or in the content (JSON): large bodies on demand.
    filler: String,
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

/// A pseudo-random number for this process (xorshift over a shared counter): answers and
/// write sizes differ per request without any test depending on their exact values.
fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0x2545_f491_4f6c_dd1d);
    let mut x = SEQ.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// `N` or `A-B` (a draw in the closed range).
fn header_count(h: &HeaderMap, name: &str) -> Option<u64> {
    let raw = h.get(name)?.to_str().ok()?;
    match raw.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then(|| a + random() % (b - a + 1))
        }
        None => raw.trim().parse().ok(),
    }
}

/// A stream's bytes cut at random points into pieces of 1 to `max` bytes.
fn split_writes(events: Vec<Bytes>, max: u64) -> Vec<Bytes> {
    let all: Vec<u8> = events.iter().flat_map(|e| e.iter().copied()).collect();
    let mut out = Vec::new();
    let mut rest = &all[..];
    while !rest.is_empty() {
        let n = usize::try_from(1 + random() % max.max(1)).unwrap_or(1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(Bytes::copy_from_slice(piece));
        rest = tail;
    }
    out
}

fn json_body(a: &Answer) -> Value {
    let (input, output, cached) = (a.input, a.output, a.cached.min(a.input));
    match a.api {
        Api::Chat => {
            let calls: Vec<Value> = (0..a.tool_calls)
                .map(|i| json!({"id": format!("call_{i}"), "type": "function", "function": {"name": "lookup", "arguments": "{}"}}))
                .collect();
            let message = if calls.is_empty() {
                json!({"role": "assistant", "content": format!("Hello from the mock.{}", a.filler)})
            } else {
                json!({"role": "assistant", "content": null, "tool_calls": calls})
            };
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000u64, "model": a.model,
                "choices": [{"index": 0, "message": message, "finish_reason": if a.tool_calls > 0 { "tool_calls" } else { "stop" }}],
                "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
                          "prompt_tokens_details": {"cached_tokens": cached}}
            })
        }
        Api::Responses => json!({
            "id": "resp_mock", "object": "response", "status": "completed", "model": a.model,
            "output": responses_output(a.tool_calls),
            "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": cached},
                      "output_tokens": output, "total_tokens": input + output}
        }),
        Api::Messages => json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": a.model,
            "content": anthropic_content(a.tool_calls), "stop_reason": "end_turn",
            "usage": {"input_tokens": input - cached, "cache_read_input_tokens": cached, "output_tokens": output}
        }),
        Api::Embeddings => json!({
            "object": "list", "model": a.model,
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0125, -0.0431, 0.0078]}],
            "usage": {"prompt_tokens": input, "total_tokens": input}
        }),
    }
}

fn responses_output(tool_calls: u64) -> Vec<Value> {
    let mut out = vec![json!({"id": "msg_mock", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "Hello from the mock.", "annotations": []}]})];
    out.extend((0..tool_calls).map(|i| json!({"type": "function_call", "id": format!("fc_{i}"), "status": "completed", "call_id": format!("call_{i}"), "name": "lookup", "arguments": "{}"})));
    out
}

fn anthropic_content(tool_calls: u64) -> Vec<Value> {
    let mut out = vec![json!({"type": "text", "text": "Hello from the mock."})];
    out.extend(
        (0..tool_calls).map(|i| json!({"type": "tool_use", "id": format!("toolu_{i}"), "name": "lookup", "input": {}})),
    );
    out
}

fn event(name: Option<&str>, data: &Value) -> Bytes {
    let mut s = String::new();
    if let Some(n) = name {
        s.push_str("event: ");
        s.push_str(n);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(&data.to_string());
    s.push_str("\n\n");
    Bytes::from(s)
}

/// The SSE events of a streamed answer, in order.
fn sse_events(a: &Answer, include_usage: bool) -> Vec<Bytes> {
    let (input, output) = (a.input, a.output);
    let output_tokens = output;
    let mut out = Vec::new();
    match a.api {
        // Embeddings never stream (`complete` answers them as JSON).
        Api::Embeddings => {}
        Api::Chat => {
            let chunk = |choices: Value, usage: Value| {
                event(
                    None,
                    &json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": a.model, "choices": choices, "usage": usage}),
                )
            };
            out.push(chunk(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
                Value::Null,
            ));
            for i in 0..a.chunks {
                out.push(chunk(
                    json!([{"index": 0, "delta": {"content": format!("tok{i} {}", a.filler)}, "finish_reason": null}]),
                    Value::Null,
                ));
            }
            for i in 0..a.tool_calls {
                let first = json!([{"index": 0, "delta": {"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": "lookup", "arguments": ""}}]}, "finish_reason": null}]);
                out.push(chunk(first, Value::Null));
                let args = json!([{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": "{}"}}]}, "finish_reason": null}]);
                out.push(chunk(args, Value::Null));
            }
            out.push(chunk(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]), Value::Null));
            if include_usage {
                out.push(chunk(
                    json!([]),
                    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}),
                ));
            }
            out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        Api::Responses => {
            // The event sequence OpenAI sends (and SDKs' stream helpers check): every event
            // numbered, each output item and content part opened before its deltas and closed
            // after them, the deltas naming their item, output and content index.
            let mut seq = 0u64;
            let mut push = |name: &str, mut data: Value| {
                if let Some(fields) = data.as_object_mut() {
                    fields.insert("type".into(), json!(name));
                    fields.insert("sequence_number".into(), json!(seq));
                }
                seq += 1;
                out.push(event(Some(name), &data));
            };
            let base = json!({"id": "resp_mock", "object": "response", "created_at": 1_700_000_000u64, "status": "in_progress",
                "model": a.model, "output": [], "usage": null});
            push("response.created", json!({"response": base}));
            push("response.in_progress", json!({"response": base}));
            let item = "msg_mock";
            let mut text = String::new();
            push(
                "response.output_item.added",
                json!({"output_index": 0, "item": {"id": item, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
            );
            push(
                "response.content_part.added",
                json!({"item_id": item, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            for i in 0..a.chunks {
                let delta = format!("tok{i} {}", a.filler);
                text.push_str(&delta);
                push(
                    "response.output_text.delta",
                    json!({"item_id": item, "output_index": 0, "content_index": 0, "delta": delta, "logprobs": []}),
                );
            }
            push(
                "response.output_text.done",
                json!({"item_id": item, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
            );
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            push(
                "response.content_part.done",
                json!({"item_id": item, "output_index": 0, "content_index": 0, "part": part}),
            );
            let message =
                json!({"id": item, "type": "message", "status": "completed", "role": "assistant", "content": [part]});
            push("response.output_item.done", json!({"output_index": 0, "item": message}));
            let mut output = vec![message];
            for i in 0..a.tool_calls {
                let index = i + 1;
                let id = format!("fc_{i}");
                let call = |status: &str, arguments: &str| {
                    json!({"id": id, "type": "function_call", "status": status,
                    "call_id": format!("call_{i}"), "name": "lookup", "arguments": arguments})
                };
                push("response.output_item.added", json!({"output_index": index, "item": call("in_progress", "")}));
                push(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": index, "delta": "{}"}),
                );
                push(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": "{}"}),
                );
                push("response.output_item.done", json!({"output_index": index, "item": call("completed", "{}")}));
                output.push(call("completed", "{}"));
            }
            let done = json!({"id": "resp_mock", "object": "response", "created_at": 1_700_000_000u64, "status": "completed",
                "model": a.model, "output": output,
                "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output_tokens,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output_tokens}});
            push("response.completed", json!({"response": done}));
        }
        Api::Messages => {
            out.push(event(Some("message_start"), &json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "content": [], "model": a.model, "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1}}})));
            out.push(event(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for i in 0..a.chunks {
                out.push(event(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("tok{i} {}", a.filler)}})));
            }
            out.push(event(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0})));
            for i in 0..a.tool_calls {
                let idx = i + 1;
                out.push(event(Some("content_block_start"), &json!({"type": "content_block_start", "index": idx, "content_block": {"type": "tool_use", "id": format!("toolu_{i}"), "name": "lookup", "input": {}}})));
                out.push(event(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": idx})));
            }
            // Output is cumulative: report half first, then the total.
            out.push(event(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": null}, "usage": {"output_tokens": output / 2}})));
            out.push(event(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output}})));
            out.push(event(Some("message_stop"), &json!({"type": "message_stop"})));
        }
    }
    out
}

/// Deliberately broken answers, chosen with `x-mock-body`, for the bad-body tests. Each is sent
/// with status 200 and the content-type of what it pretends to be.
fn broken_body(name: &str) -> Option<(&'static str, Vec<u8>)> {
    const JSON: &str = "application/json";
    const SSE: &str = "text/event-stream";
    let usage = r#"{"id":"x","usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
    Some(match name {
        "truncated-json" => (JSON, usage.as_bytes().get(..usage.len() - 5).unwrap_or_default().to_vec()),
        "non-utf8" => (JSON, [&br#"{"text":""#[..], &[0xff, 0xfe, 0xc3, 0x28], &br#"","usage":{"prompt_tokens":7,"completion_tokens":3}}"#[..]].concat()),
        "negative-usage" => (JSON, br#"{"usage":{"prompt_tokens":-500,"completion_tokens":3}}"#.to_vec()),
        "absurd-usage" => (JSON, br#"{"usage":{"prompt_tokens":99999999999999999999999,"completion_tokens":3}}"#.to_vec()),
        "html" => (JSON, b"<html><body>502 Bad Gateway</body></html>".to_vec()),
        // Usage (7/3) in framings a careless server produces: a byte order mark, bytes after the
        // document, two documents back to back, content nested deeper than 64 levels.
        "bom" => (JSON, [&[0xEF, 0xBB, 0xBF][..], usage.as_bytes()].concat()),
        "trailing-bytes" => (JSON, [usage.as_bytes(), b"\n\0garbage"].concat()),
        "two-documents" => (JSON, [usage.as_bytes(), usage.as_bytes()].concat()),
        "deep-nesting" => (JSON, format!(r#"{{"choices":[{{"message":{{"content":{}1{}}}}}],"usage":{{"prompt_tokens":7,"completion_tokens":3}}}}"#, "[".repeat(200), "]".repeat(200)).into_bytes()),
        // A complete answer that names no usage (like a model list).
        "no-usage" => (JSON, br#"{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}"#.to_vec()),
        "sse-crlf" => (SSE, b"data: {\"choices\":[]}\r\n\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\r\n\r\ndata: [DONE]\r\n\r\n".to_vec()),
        "sse-no-blank-lines" => (SSE, b"data: {\"choices\":[]}\ndata: {\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\ndata: [DONE]\n".to_vec()),
        _ => return None,
    })
}

/// A recorded provider response, by plain file name.
fn transcript(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let name = headers.get("x-mock-transcript")?.to_str().ok()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Some((StatusCode::BAD_REQUEST, "x-mock-transcript: a file name in tests/responses").into_response());
    }
    let Ok(bytes) = std::fs::read(state.args.transcripts.join(name)) else {
        return Some((StatusCode::NOT_FOUND, format!("no transcript {name}")).into_response());
    };
    if !name.ends_with(".sse") {
        return Some(([(header::CONTENT_TYPE, "application/json")], bytes).into_response());
    }
    let pieces = match header_u64(headers, "x-mock-split-writes") {
        Some(max) => split_writes(vec![Bytes::from(bytes)], max),
        None => vec![Bytes::from(bytes)],
    };
    let delay = Duration::from_millis(header_u64(headers, "x-mock-chunk-delay-ms").unwrap_or(0));
    let body = futures_util::stream::unfold(pieces.into_iter(), move |mut it| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        it.next().map(|piece| (Ok::<Bytes, std::io::Error>(piece), it))
    });
    Some(([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(body)).into_response())
}

async fn complete(state: AppState, api: Api, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(recorded) = transcript(&state, &headers) {
        return recorded;
    }
    if let Some((content_type, bytes)) = headers.get("x-mock-body").and_then(|v| v.to_str().ok()).and_then(broken_body)
    {
        return ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let allowance = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| request.get(*k).and_then(Value::as_u64));
    let answer = Answer {
        api,
        model: request.get("model").and_then(Value::as_str).unwrap_or("mock-model").to_string(),
        input: header_u64(&headers, "x-mock-input-tokens").unwrap_or(state.args.input_tokens),
        cached: header_u64(&headers, "x-mock-cached-tokens").unwrap_or(0),
        output: if api == Api::Embeddings {
            0
        } else {
            let output = header_count(&headers, "x-mock-output-tokens").unwrap_or(state.args.output_tokens);
            allowance.map_or(output, |a| output.min(a))
        },
        tool_calls: header_u64(&headers, "x-mock-tool-calls").unwrap_or(0),
        chunks: header_u64(&headers, "x-mock-chunks").unwrap_or(3),
        filler: "x".repeat(
            header_u64(&headers, "x-mock-chunk-bytes").and_then(|n| usize::try_from(n).ok()).unwrap_or(0).min(64 << 20),
        ),
    };
    // Lenient like a real model server (pydantic's lax booleans): `1` and `"true"` stream too.
    let truthy = |v: &Value| match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() == Some(1.0),
        Value::String(t) => ["1", "true", "yes", "on"].iter().any(|x| t.eq_ignore_ascii_case(x)),
        _ => false,
    };
    let stream = api != Api::Embeddings && request.get("stream").is_some_and(truthy);
    let include_usage =
        api != Api::Chat || request.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    if let Some(ms) = header_u64(&headers, "x-mock-latency-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = header_u64(&headers, "x-mock-status")
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if !status.is_success() {
        return (status, Json(json!({"error": {"message": "mock error", "type": "server_error"}}))).into_response();
    }
    let tenant = headers.get("x-fusebox-tenant").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    {
        let mut guard = state.stats.lock().unwrap_or_else(|e| e.into_inner());
        let stats = &mut *guard;
        for t in [&mut stats.all, stats.tenants.entry(tenant).or_default()] {
            t.requests += 1;
            t.tool_calls += answer.tool_calls;
            t.with_accept_encoding += u64::from(headers.contains_key(header::ACCEPT_ENCODING));
            for name in ["authorization", "x-api-key"] {
                if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                    let seen = format!("{name}: {v}");
                    if t.credentials_seen.len() < 8 && !t.credentials_seen.contains(&seen) {
                        t.credentials_seen.push(seen);
                    }
                }
            }
            t.last_max_tokens = allowance.or(t.last_max_tokens);
            if stream {
                t.streams += 1;
                t.streams_with_usage += u64::from(api == Api::Chat && include_usage);
            }
            // A chat stream without include_usage reports no usage: nothing to count.
            if !stream || include_usage {
                t.input_tokens += answer.input;
                t.output_tokens += answer.output;
            }
        }
    }
    if !stream {
        let mut response = Json(json_body(&answer)).into_response();
        if headers.contains_key("x-mock-binary-header") {
            // A header value that is not UTF-8 (obs-text), as a careless upstream may send.
            if let Ok(v) = header::HeaderValue::from_bytes(b"application/json; note=\xff\xfe") {
                response.headers_mut().insert(header::CONTENT_TYPE, v);
            }
        }
        return response;
    }
    let delay = Duration::from_millis(header_u64(&headers, "x-mock-chunk-delay-ms").unwrap_or(0));
    let mut events = sse_events(&answer, include_usage);
    // `x-mock-abort-after: N`: send N events, then fail the body (the connection is reset).
    let abort_after = header_u64(&headers, "x-mock-abort-after").and_then(|n| usize::try_from(n).ok());
    if let Some(n) = abort_after {
        events.truncate(n);
    }
    if let Some(max) = header_u64(&headers, "x-mock-split-writes") {
        events = split_writes(events, max);
    }
    let body =
        futures_util::stream::unfold((events.into_iter(), abort_after.is_some()), move |(mut it, abort)| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match it.next() {
                Some(next) => Some((Ok(next), (it, abort))),
                None if abort => Some((Err(std::io::Error::other("mock abort")), (it, false))),
                None => None,
            }
        });
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(body))
        .into_response()
}

async fn stats(State(state): State<AppState>) -> Json<Value> {
    let stats = state.stats.lock().unwrap_or_else(|e| e.into_inner());
    Json(serde_json::to_value(&*stats).unwrap_or(Value::Null))
}

/// `POST` handler answering as `api`.
fn answers(api: Api) -> axum::routing::MethodRouter<AppState> {
    post(move |State(s): State<AppState>, h: HeaderMap, b: Bytes| complete(s, api, h, b))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let state = AppState { args: args.clone(), stats: Arc::default(), spans: Arc::default() };
    let app = Router::new()
        .route(
            "/healthz",
            get(|State(s): State<AppState>, h: HeaderMap| async move {
                if h.contains_key("x-fusebox-tenant") {
                    s.stats.lock().unwrap_or_else(|e| e.into_inner()).healthz_with_tenant_header += 1;
                }
                Json(json!({"ok": true}))
            }),
        )
        .route("/mock/stats", get(stats))
        // A Zipkin v2 collector (JSON): Envoy's spans, kept for the tests (`GET /mock/spans`).
        .route(
            "/api/v2/spans",
            post(|State(s): State<AppState>, Json(spans): Json<Vec<Value>>| async move {
                let mut kept = s.spans.lock().unwrap_or_else(|e| e.into_inner());
                kept.extend(spans);
                let excess = kept.len().saturating_sub(10_000);
                kept.drain(..excess);
                StatusCode::ACCEPTED
            }),
        )
        .route(
            "/mock/spans",
            get(|State(s): State<AppState>| async move {
                Json(Value::Array(s.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()))
            }),
        )
        // Lets tests point the filter's control cluster here to see garbage refused.
        .route("/v1/policy", get(|| async { Json(json!({"not": "a policy"})) }))
        .route("/v1/chat/completions", answers(Api::Chat))
        // Legacy completions stream like chat does (usage only with `include_usage`).
        .route("/v1/completions", answers(Api::Chat))
        // A server that reads a trailing slash as the same endpoint.
        .route("/v1/chat/completions/", answers(Api::Chat))
        .route("/v1/responses", answers(Api::Responses))
        .route("/v1/messages", answers(Api::Messages))
        .route("/v1/embeddings", answers(Api::Embeddings))
        .with_state(state);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("bind {}: {e}", args.listen))?;
    eprintln!("mock-llm listening on http://{}", args.listen);
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}
