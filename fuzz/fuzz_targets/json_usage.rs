//! Any response body, split anywhere: the same summary, never a panic, never absurd counts.
#![no_main]
use fusebox_engine::usage::{BodyScanner, MAX_TOKENS_PER_FIGURE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let cut = usize::from(split).min(body.len());
    let mut whole = BodyScanner::for_content_type(Some("application/json"));
    whole.feed(body);
    let whole = whole.finish();
    let mut parts = BodyScanner::for_content_type(Some("application/json"));
    parts.feed(&body[..cut]);
    parts.feed(&body[cut..]);
    assert_eq!(parts.finish(), whole);
    if let Some(u) = whole.usage {
        assert!(u.input_tokens <= 4 * MAX_TOKENS_PER_FIGURE && u.output_tokens <= 2 * MAX_TOKENS_PER_FIGURE);
    }
});
