//! Any bytes as a worker's event list (what the singleton dequeues): an error or events that
//! merge in a bounded backlog without losing or inventing usage.
#![no_main]
use fusebox_engine::event::{Backlog, Event};
use libfuzzer_sys::fuzz_target;

fn usage_totals(events: &[Event]) -> (u128, u128, u128) {
    events.iter().fold((0, 0, 0), |acc, e| match e {
        Event::Usage { requests, input_tokens, output_tokens, .. } => {
            (acc.0 + u128::from(*requests), acc.1 + u128::from(*input_tokens), acc.2 + u128::from(*output_tokens))
        }
        _ => acc,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(events) = serde_json::from_slice::<Vec<Event>>(data) else { return };
    let text = serde_json::to_vec(&events).unwrap();
    assert_eq!(serde_json::from_slice::<Vec<Event>>(&text).unwrap(), events);
    // A backlog large enough to drop nothing keeps every token (saturating at u64::MAX).
    let mut backlog = Backlog::new(events.len() + 1);
    for e in events.iter().cloned() {
        backlog.push(e);
    }
    assert_eq!(backlog.dropped(), 0);
    let merged = backlog.take(usize::MAX);
    assert!(merged.len() <= events.len());
    let (before, after) = (usage_totals(&events), usage_totals(&merged));
    let cap = u128::from(u64::MAX);
    if before.0 <= cap && before.1 <= cap && before.2 <= cap {
        assert_eq!(before, after);
    }
    // A tiny backlog stays tiny.
    let mut small = Backlog::new(2);
    for e in events {
        small.push(e);
    }
    assert!(small.len() <= 2);
});
