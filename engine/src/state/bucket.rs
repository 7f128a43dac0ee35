//! Named entries packed several to one shared-data key, so the number of keys is fixed and small.
//!
//! Envoy's shared data cannot delete a key, and a key costs about 136 bytes of Envoy's memory
//! (map node, hash, key string) even when its value is empty. A key per tenant or per slot leaks
//! that for every key ever written: a table of two million slots ends at 270 MB with nothing in
//! it. Instead every name hashes to one of a fixed number of buckets, and a bucket's value holds
//! all the entries of its names; freeing an entry shrinks the value, which frees its memory. The
//! keys themselves are the only floor (128 Ki buckets: about 18 MB once all are written).
//!
//! Reading a bucket decodes only the entry asked for: the others stay bytes, copied through when
//! the bucket is written back, so a request pays for its own entry and a few bytes per neighbour.

use super::codec::{take_u16, take_u32};

/// Something kept in a bucket under its name.
pub trait Named: Sized {
    fn name(&self) -> &str;
    /// The entry without its name (the bucket stores the name beside it).
    fn encode_body(&self, out: &mut Vec<u8>);
    fn decode_body(name: &str, body: &[u8]) -> Option<Self>;
}

/// The bucket of `name` in a table of `buckets` (a power of two): FNV-1a of the name.
pub fn bucket_of(name: &str, buckets: u64) -> u64 {
    let hash =
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    // The high bits mix better than the low ones for short names that differ in a last digit.
    (hash ^ (hash >> 32)) % buckets.max(1)
}

const FORMAT: u8 = b'K';

/// An entry as it is held between read and write: its bytes as read, or a value to encode.
#[derive(Debug, Clone)]
enum Held<E> {
    Read { name: (usize, usize), body: (usize, usize) },
    Changed(E),
}

/// One bucket's entries.
#[derive(Debug, Clone)]
pub struct Bucket<E> {
    bytes: Vec<u8>,
    entries: Vec<Held<E>>,
    /// Entries dropped because their bytes did not decode.
    unreadable: usize,
}

impl<E> Default for Bucket<E> {
    fn default() -> Self {
        Bucket { bytes: Vec::new(), entries: Vec::new(), unreadable: 0 }
    }
}

/// What [`Bucket::take_or_add`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken<E> {
    /// The name's entry, taken out.
    Found(E),
    /// A new entry for the name (not in the bucket until put).
    Added(E),
}

/// The bucket holds as many entries as it may, none of which may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// What a sweep does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// As it is.
    Whole,
    /// Changed (made smaller) in place.
    Changed,
    /// Removed.
    Drop,
}

impl<E: Named> Bucket<E> {
    /// Reads a bucket's bytes; `None` if they are not a bucket (an empty value is an empty bucket).
    pub fn decode(bytes: Vec<u8>) -> Option<Bucket<E>> {
        if bytes.is_empty() {
            return Some(Bucket::default());
        }
        let mut entries = Vec::new();
        let mut input = bytes.get(1..)?;
        if bytes.first() != Some(&FORMAT) {
            return None;
        }
        let total = bytes.len();
        while !input.is_empty() {
            let name_len = usize::from(take_u16(&mut input)?);
            let name_at = total - input.len();
            std::str::from_utf8(input.get(..name_len)?).ok()?;
            input = input.get(name_len..)?;
            let body_len = usize::try_from(take_u32(&mut input)?).ok()?;
            let body_at = total - input.len();
            input = input.get(body_len..)?;
            entries.push(Held::Read { name: (name_at, name_len), body: (body_at, body_len) });
        }
        Some(Bucket { bytes, entries, unreadable: 0 })
    }

    pub fn encode(&self) -> Vec<u8> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.bytes.len() + 1024);
        out.push(FORMAT);
        for held in &self.entries {
            // Names are ids of at most a few hundred bytes and bodies are bounded records, so
            // neither length can overflow; an entry that somehow would is left out, not garbled.
            let at = out.len();
            let name = match held {
                Held::Read { name, .. } => self.slice(*name),
                Held::Changed(e) => e.name().as_bytes(),
            };
            let Ok(name_len) = u16::try_from(name.len()) else { continue };
            out.extend_from_slice(&name_len.to_le_bytes());
            out.extend_from_slice(name);
            let len_at = out.len();
            out.extend_from_slice(&[0; 4]);
            match held {
                Held::Read { body, .. } => out.extend_from_slice(self.slice(*body)),
                Held::Changed(e) => e.encode_body(&mut out),
            }
            let Ok(body_len) = u32::try_from(out.len() - len_at - 4) else {
                out.truncate(at);
                continue;
            };
            if let Some(len) = out.get_mut(len_at..len_at + 4) {
                len.copy_from_slice(&body_len.to_le_bytes());
            }
        }
        out
    }

    fn slice(&self, (at, len): (usize, usize)) -> &[u8] {
        self.bytes.get(at..at + len).unwrap_or(&[])
    }

    fn name_of<'a>(&'a self, held: &'a Held<E>) -> &'a str {
        match held {
            // Names were checked to be UTF-8 when the bucket was read.
            Held::Read { name, .. } => std::str::from_utf8(self.slice(*name)).unwrap_or(""),
            Held::Changed(e) => e.name(),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        // Compared as bytes: a name read was checked to be UTF-8 once, when the bucket was read.
        self.entries.iter().position(|h| match h {
            Held::Read { name: at, .. } => self.slice(*at) == name.as_bytes(),
            Held::Changed(e) => e.name() == name,
        })
    }

    /// An entry as read (`None` for one that does not decode); an entry changed since is `None`
    /// too: it is a value already, not bytes.
    fn decode_read(&self, held: &Held<E>) -> Option<E> {
        match held {
            Held::Read { body, .. } => E::decode_body(self.name_of(held), self.slice(*body)),
            Held::Changed(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries dropped so far because their bytes did not decode.
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// The entry named `name`, taken out of the bucket (put it back with [`Bucket::put`]). An
    /// entry whose bytes do not decode is dropped (and counted in [`Bucket::unreadable`]).
    pub fn take(&mut self, name: &str) -> Option<E> {
        let i = self.position(name)?;
        let taken = match self.entries.swap_remove(i) {
            Held::Changed(e) => Some(e),
            read @ Held::Read { .. } => self.decode_read(&read),
        };
        self.unreadable += usize::from(taken.is_none());
        taken
    }

    /// `name`'s entry taken out, or else a new one from `new` if the bucket has room for it:
    /// fewer than `room` entries, once those `may_go` says no longer matter are removed.
    pub fn take_or_add(
        &mut self,
        name: &str,
        room: usize,
        may_go: impl Fn(&E) -> bool,
        new: impl FnOnce() -> E,
    ) -> Result<Taken<E>, Full> {
        if let Some(e) = self.take(name) {
            return Ok(Taken::Found(e));
        }
        if self.len() >= room {
            self.sweep(|e| if may_go(e) { Keep::Drop } else { Keep::Whole });
        }
        if self.len() >= room {
            return Err(Full);
        }
        Ok(Taken::Added(new()))
    }

    /// Reads the entry named `name` without taking it out.
    pub fn get(&self, name: &str) -> Option<E>
    where
        E: Clone,
    {
        match self.entries.get(self.position(name)?)? {
            Held::Changed(e) => Some(e.clone()),
            read @ Held::Read { .. } => self.decode_read(read),
        }
    }

    /// Adds `entry` (its name must not be in the bucket: take it first).
    pub fn put(&mut self, entry: E) {
        self.entries.push(Held::Changed(entry));
    }

    /// Judges every entry with `judge`: kept, changed or dropped (also dropped: entries that do
    /// not decode). Returns how many were changed and how many dropped.
    pub fn sweep(&mut self, mut judge: impl FnMut(&mut E) -> Keep) -> (usize, usize) {
        let (mut changed, mut dropped) = (0, 0);
        for held in std::mem::take(&mut self.entries) {
            let (mut value, as_read) = match held {
                Held::Changed(e) => (e, None),
                read @ Held::Read { .. } => {
                    let Some(e) = self.decode_read(&read) else {
                        dropped += 1;
                        self.unreadable += 1;
                        continue;
                    };
                    (e, Some(read))
                }
            };
            match judge(&mut value) {
                Keep::Drop => dropped += 1,
                Keep::Changed => {
                    changed += 1;
                    self.entries.push(Held::Changed(value));
                }
                // Kept as read: its bytes are copied through, not encoded again.
                Keep::Whole => self.entries.push(as_read.unwrap_or(Held::Changed(value))),
            }
        }
        (changed, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Count {
        name: String,
        n: u64,
    }

    impl Named for Count {
        fn name(&self) -> &str {
            &self.name
        }
        fn encode_body(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.n.to_le_bytes());
        }
        fn decode_body(name: &str, body: &[u8]) -> Option<Self> {
            Some(Count { name: name.to_string(), n: u64::from_le_bytes(body.try_into().ok()?) })
        }
    }

    fn count(name: &str, n: u64) -> Count {
        Count { name: name.to_string(), n }
    }

    fn stored(entries: &[Count]) -> Bucket<Count> {
        let mut b = Bucket::default();
        for e in entries {
            b.put(e.clone());
        }
        Bucket::decode(b.encode()).unwrap()
    }

    #[test]
    fn a_bucket_round_trips_its_entries_and_an_empty_one_is_an_empty_value() {
        let mut b = stored(&[count("acme", 1), count("globex", 2)]);
        assert_eq!(b.len(), 2);
        assert_eq!(b.get("globex"), Some(count("globex", 2)));
        assert_eq!(b.take("acme"), Some(count("acme", 1)));
        assert_eq!(b.take("acme"), None, "taken out");
        assert_eq!(b.take("globex"), Some(count("globex", 2)));
        assert!(b.is_empty() && b.encode().is_empty());
        assert!(Bucket::<Count>::decode(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn changing_one_entry_keeps_the_others_bytes_as_they_were() {
        let mut b = stored(&[count("a", 1), count("b", 2), count("c", 3)]);
        let mut e = b.take("b").unwrap();
        e.n += 40;
        b.put(e);
        let back = Bucket::<Count>::decode(b.encode()).unwrap();
        assert_eq!(["a", "b", "c"].map(|n| back.get(n).map(|e| e.n)), [Some(1), Some(42), Some(3)]);
    }

    #[test]
    fn garbage_does_not_decode_and_a_bad_entry_is_reported_and_dropped() {
        assert!(Bucket::<Count>::decode(b"nonsense".to_vec()).is_none());
        let mut bytes = stored(&[count("a", 1)]).encode();
        bytes.truncate(bytes.len() - 1);
        assert!(Bucket::<Count>::decode(bytes).is_none(), "a truncated entry");
        // A body of the wrong size: the bucket reads, the entry does not.
        let mut bad = vec![FORMAT];
        bad.extend_from_slice(&1u16.to_le_bytes());
        bad.push(b'a');
        bad.extend_from_slice(&2u32.to_le_bytes());
        bad.extend_from_slice(&[0, 0]);
        let mut b = Bucket::<Count>::decode(bad).unwrap();
        assert_eq!((b.take("a"), b.unreadable()), (None, 1));
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_bucket_makes_room_from_entries_that_may_go_and_refuses_when_none_may() {
        let mut b = stored(&[count("old", 0), count("live-1", 1), count("live-2", 2)]);
        let may_go = |e: &Count| e.n == 0;
        assert_eq!(b.take_or_add("live-1", 3, may_go, || count("x", 9)), Ok(Taken::Found(count("live-1", 1))));
        b.put(count("live-1", 1));
        assert_eq!(b.take_or_add("new", 3, may_go, || count("new", 5)), Ok(Taken::Added(count("new", 5))));
        assert_eq!((b.len(), b.get("old")), (2, None), "the entry that may go made room");
        b.put(count("new", 5));
        assert_eq!(b.take_or_add("another", 3, may_go, || count("another", 7)), Err(Full));
        assert_eq!(b.len(), 3, "a refusal changes nothing");
        assert_eq!(b.take_or_add("small", 4, may_go, || count("small", 1)), Ok(Taken::Added(count("small", 1))));
    }

    #[test]
    fn a_sweep_keeps_changes_and_drops_entries_by_judgement() {
        let mut b = stored(&[count("keep", 1), count("shrink", 20), count("go", 3)]);
        let (changed, dropped) = b.sweep(|e| match e.name.as_str() {
            "keep" => Keep::Whole,
            "shrink" => {
                e.n = 2;
                Keep::Changed
            }
            _ => Keep::Drop,
        });
        assert_eq!((changed, dropped), (1, 1));
        let back = Bucket::<Count>::decode(b.encode()).unwrap();
        assert_eq!((back.len(), back.get("keep").map(|e| e.n), back.get("shrink").map(|e| e.n)), (2, Some(1), Some(2)));
        assert_eq!(back.get("go"), None);
    }

    #[test]
    fn names_spread_over_the_buckets() {
        let buckets = 1 << 10;
        let mut seen = vec![0u32; buckets as usize];
        for i in 0..10_240 {
            seen[bucket_of(&format!("tenant-{i}"), buckets) as usize] += 1;
        }
        // Ten a bucket on average: none empty, none more than three times as full.
        assert!(seen.iter().all(|n| (1..=30).contains(n)), "{:?}", seen.iter().max());
        assert_eq!(bucket_of("acme", buckets), bucket_of("acme", buckets));
    }
}
