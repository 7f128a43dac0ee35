//! Test helpers shared by the scanners' tests: recorded fixtures and split invariance.

use super::findings::{Summary, Usage};

pub(crate) fn usage(input: u64, output: u64) -> Option<Usage> {
    Some(Usage { input_tokens: input, output_tokens: output })
}

/// Reads a recorded provider response from `tests/responses/`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/responses").join(name)).unwrap()
}

/// Scans `body` split at every point (and byte by byte) with a fresh scanner each time, and
/// checks all answers agree.
pub(crate) fn scan_every_split<S>(
    body: &[u8],
    new: impl Fn() -> S,
    feed: fn(&mut S, &[u8]),
    finish: fn(&mut S) -> Summary,
) -> Summary {
    let scan = |parts: &[&[u8]]| {
        let mut s = new();
        for p in parts {
            feed(&mut s, p);
        }
        finish(&mut s)
    };
    let whole = scan(&[body]);
    for cut in 0..=body.len() {
        assert_eq!(scan(&[&body[..cut], &body[cut..]]), whole, "split at {cut}");
    }
    let bytes: Vec<&[u8]> = body.iter().map(std::slice::from_ref).collect();
    assert_eq!(scan(&bytes), whole, "byte by byte");
    whole
}
