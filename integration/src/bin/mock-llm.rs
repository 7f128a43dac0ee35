//! A mock LLM upstream speaking OpenAI chat completions, OpenAI Responses and Anthropic
//! Messages (JSON). Usage figures, latency and status are set per request by headers
//! (`x-mock-input-tokens`, `x-mock-output-tokens`, `x-mock-latency-ms`, `x-mock-status`) or
//! by defaults on the command line. `GET /mock/stats` reports what it served, per tenant (as
//! seen in the `x-fusebox-tenant` header Envoy adds), so tests can compare exact totals.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
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
}

#[derive(Default, Serialize, Clone, Copy)]
struct Totals {
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
}

impl Totals {
    fn add(&mut self, input: u64, output: u64) {
        self.requests += 1;
        self.input_tokens += input;
        self.output_tokens += output;
    }
}

#[derive(Default, Serialize)]
struct Stats {
    all: Totals,
    /// Keyed by the `x-fusebox-tenant` header value ("" when absent).
    tenants: BTreeMap<String, Totals>,
}

#[derive(Clone)]
struct AppState {
    args: Args,
    stats: Arc<Mutex<Stats>>,
}

#[derive(Clone, Copy)]
enum Api {
    Chat,
    Responses,
    Messages,
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

fn body_for(api: Api, model: &str, input: u64, output: u64) -> Value {
    match api {
        Api::Chat => json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000u64, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output}
        }),
        Api::Responses => json!({
            "id": "resp_mock", "object": "response", "status": "completed", "model": model,
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello from the mock."}]}],
            "usage": {"input_tokens": input, "output_tokens": output, "total_tokens": input + output}
        }),
        Api::Messages => json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "Hello from the mock."}], "stop_reason": "end_turn",
            "usage": {"input_tokens": input, "output_tokens": output}
        }),
    }
}

async fn complete(state: AppState, api: Api, headers: HeaderMap, body: Option<Json<Value>>) -> Response {
    let input = header_u64(&headers, "x-mock-input-tokens").unwrap_or(state.args.input_tokens);
    let output = header_u64(&headers, "x-mock-output-tokens").unwrap_or(state.args.output_tokens);
    if let Some(ms) = header_u64(&headers, "x-mock-latency-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = header_u64(&headers, "x-mock-status")
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let tenant = headers.get("x-fusebox-tenant").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !status.is_success() {
        return (status, Json(json!({"error": {"message": "mock error", "type": "server_error"}}))).into_response();
    }
    {
        let mut stats = state.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.all.add(input, output);
        stats.tenants.entry(tenant).or_default().add(input, output);
    }
    let model = body.as_ref().and_then(|b| b.get("model")).and_then(Value::as_str).unwrap_or("mock-model").to_string();
    Json(body_for(api, &model, input, output)).into_response()
}

async fn stats(State(state): State<AppState>) -> Json<Value> {
    let stats = state.stats.lock().unwrap_or_else(|e| e.into_inner());
    Json(serde_json::to_value(&*stats).unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let state = AppState { args: args.clone(), stats: Arc::default() };
    let app = Router::new()
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
        .route("/mock/stats", get(stats))
        // Lets tests point the filter's control cluster here to see garbage refused.
        .route("/v1/policy", get(|| async { Json(json!({"not": "a policy"})) }))
        .route(
            "/v1/chat/completions",
            post(|State(s): State<AppState>, h: HeaderMap, b: Option<Json<Value>>| complete(s, Api::Chat, h, b)),
        )
        .route(
            "/v1/responses",
            post(|State(s): State<AppState>, h: HeaderMap, b: Option<Json<Value>>| complete(s, Api::Responses, h, b)),
        )
        .route(
            "/v1/messages",
            post(|State(s): State<AppState>, h: HeaderMap, b: Option<Json<Value>>| complete(s, Api::Messages, h, b)),
        )
        .with_state(state);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("bind {}: {e}", args.listen))?;
    eprintln!("mock-llm listening on http://{}", args.listen);
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}
