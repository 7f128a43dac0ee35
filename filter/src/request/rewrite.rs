//! Rewriting a held request body: `stream_options.include_usage` for streamed OpenAI chat, and
//! the output allowance lowered to what the tenant's token windows have left (decided with the
//! body's reservation, see `fusebox_engine::admission::reserve_body`).

use super::lifecycle::Hold;
use super::Worker;
use crate::host;
use crate::metrics::Counter;
use fusebox_engine::request::inject::{self, Injection, Rewrite};

/// Rewrites a held request body as `hold` asks, its allowance lowered to `clamp_to` if set;
/// returns the new body if it changed.
pub fn rewrite(worker: &Worker, hold: Hold, clamp_to: Option<u64>, body: &[u8], body_size: usize) -> Option<Vec<u8>> {
    let max_output = clamp_to.filter(|_| hold.clamp);
    let Injection::Rewritten { body: new, stream_usage_added, clamped } =
        inject::rewrite(body, Rewrite { stream_usage: hold.stream_usage, max_output })
    else {
        return None;
    };
    if !host::replace_request_body(body_size, &new) {
        return None;
    }
    if stream_usage_added {
        worker.metrics.inc(Counter::UsageInjected);
    }
    if clamped {
        worker.metrics.inc(Counter::MaxTokensClamped);
    }
    Some(new)
}
