//! Token usage, tool calls and upstream errors from LLM response bodies, scanned as they pass.
//!
//! One visitor understands all three APIs, because their paths do not collide:
//! - OpenAI chat completions: `usage.prompt_tokens` / `usage.completion_tokens`; tool calls are the
//!   elements of `choices[].message.tool_calls` (JSON) or the first delta of each call in
//!   `choices[].delta.tool_calls` (SSE; only the first carries an `id`).
//! - OpenAI Responses: `usage.input_tokens` / `usage.output_tokens` (JSON) or
//!   `response.usage.*` of the `response.completed` / `incomplete` / `failed` event (SSE); tool
//!   calls are `output[]` (or `response.output[]`) items of type `function_call`.
//! - Anthropic Messages: `usage.*` (JSON, and the cumulative `message_delta`), `message.usage.*`
//!   of `message_start`; `cache_creation_input_tokens` and `cache_read_input_tokens` are input
//!   on top of `input_tokens`; tool calls are `content[]` / `content_block` of type `tool_use`.
//!
//! Within a stream the latest value of each figure wins (Anthropic's `message_delta` is
//! cumulative; OpenAI sends usage once).

pub mod aligned;
mod body;
mod findings;
mod sse;
#[cfg(test)]
mod testkit;

pub use body::{scan_json, BodyScanner, JsonBodyScanner};
pub use findings::{Anomalies, CacheTokens, Findings, ModelName, Summary, Usage, MAX_TOKENS_PER_FIGURE};
pub use sse::SseScanner;
