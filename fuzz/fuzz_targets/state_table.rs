//! Any bytes as a bucket of the tenant state table or the run table (what a worker reads back
//! from shared data): reading never panics, and what a bucket that reads is written back as
//! reads again to the same entries; taking an entry out and putting it back, or sweeping, keeps
//! every other entry as it was.
#![no_main]
use fusebox_engine::run::RunRecord;
use fusebox_engine::state::bucket::{Bucket, Keep, Named};
use fusebox_engine::state::entry::StateEntry;
use libfuzzer_sys::fuzz_target;

fn names<E: Named + Clone>(b: &Bucket<E>, of: &[String]) -> Vec<Option<E>> {
    of.iter().map(|n| b.get(n)).collect()
}

fn check<E: Named + Clone + PartialEq + std::fmt::Debug>(data: &[u8], list: impl Fn(&[u8]) -> Vec<String>) {
    let Some(b) = Bucket::<E>::decode(data.to_vec()) else { return };
    let all = list(data);
    let before = names(&b, &all);
    let again = Bucket::<E>::decode(b.encode()).unwrap_or_else(|| panic!("a bucket written back must read"));
    assert_eq!(names(&again, &all), before);
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != all.len() {
        return; // a name twice: never written by the filter, and only the round trip is defined
    }
    if let Some(first) = all.first() {
        let mut taken = again.clone();
        if let Some(e) = taken.take(first) {
            taken.put(e);
        }
        let back = Bucket::<E>::decode(taken.encode()).unwrap_or_else(|| panic!("must read"));
        assert_eq!(names(&back, &all[1..]), before[1..].to_vec(), "the other entries are untouched");
    }
    let mut swept = again;
    swept.sweep(|_| Keep::Whole);
    let back = Bucket::<E>::decode(swept.encode()).unwrap_or_else(|| panic!("must read"));
    for (n, e) in all.iter().zip(&before) {
        if e.is_some() {
            assert_eq!(back.get(n).as_ref(), e.as_ref(), "a readable entry survives a sweep that keeps all");
        }
    }
}

/// The names in a bucket's bytes, read the way the bucket lays them out.
fn listed(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 1;
    while let Some(len) = data.get(at..at + 2) {
        let n = usize::from(u16::from_le_bytes([len[0], len[1]]));
        let Some(name) = data.get(at + 2..at + 2 + n) else { break };
        out.push(String::from_utf8_lossy(name).into_owned());
        let Some(body) = data.get(at + 2 + n..at + 6 + n) else { break };
        at += 6 + n + usize::try_from(u32::from_le_bytes([body[0], body[1], body[2], body[3]])).unwrap_or(usize::MAX / 2);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    check::<StateEntry>(data, listed);
    check::<RunRecord>(data, listed);
});
