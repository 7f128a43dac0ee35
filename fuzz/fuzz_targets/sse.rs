//! Any SSE stream, split anywhere: the same summary as in one piece, never a panic.
#![no_main]
use fusebox_engine::usage::BodyScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let cut = usize::from(split).min(body.len());
    let scan = |parts: &[&[u8]]| {
        let mut s = BodyScanner::for_content_type(Some("text/event-stream"));
        for p in parts {
            s.feed(p);
        }
        s.finish()
    };
    assert_eq!(scan(&[&body[..cut], &body[cut..]]), scan(&[body]));
});
