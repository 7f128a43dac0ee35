//! Rewriting a held request body: `stream_options.include_usage` for streamed OpenAI chat, and
//! the output allowance clamped to what the tenant's token windows have left.

use super::lifecycle::{Counting, Hold};
use super::Worker;
use crate::host;
use crate::metrics::Counter;
use fusebox_engine::admission;
use fusebox_engine::request::inject::{self, Injection, Rewrite};

/// Rewrites a held request body as `hold` asks; returns the new body if it changed.
pub fn rewrite(worker: &Worker, c: &Counting, hold: Hold, body: &[u8], body_size: usize) -> Option<Vec<u8>> {
    // Only a body that names an allowance can need clamping: skip the state read otherwise.
    let names_allowance = hold.clamp && inject::may_change(body, Rewrite { stream_usage: false, max_output: Some(0) });
    // This request's own output allowance is room for itself, not a reservation against it.
    let own_allowance = if c.in_flight() { c.admitted.output_allowance } else { 0 };
    let max_output = names_allowance
        .then(|| {
            let state = c.state.read(&worker.keys).ok()??;
            admission::output_room(&state, &c.admitted.limits, host::now_ms(), own_allowance)
        })
        .flatten();
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
