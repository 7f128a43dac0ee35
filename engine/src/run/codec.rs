//! A run record's bytes in shared data. Format 4: ids are `tenant/run` (up to 257 bytes, so a
//! two-byte length), then the counts, the trip, the ttl and the fleet's part. Records of earlier
//! formats lived under per-tenant keys that are no longer read.

use super::{RunDenied, RunLimit, RunRecord};
use crate::fleet::RunPart;
use crate::state::codec::{take_u32, take_u64, take_u8};

const FORMAT: u8 = 4;

impl RunRecord {
    pub fn encode(&self) -> Vec<u8> {
        let root = self.root.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(128 + self.id.len() + root.len());
        out.push(FORMAT);
        for text in [self.id.as_str(), root] {
            let bytes = text.as_bytes().get(..text.len().min(usize::from(u16::MAX))).unwrap_or(&[]);
            out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out.extend_from_slice(&self.depth.to_le_bytes());
        for v in [self.started_ms, self.last_seen_ms, self.steps, self.tokens] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let (code, threshold, observed) = self.tripped.map_or((0, 0, 0), |t| (t.limit.code(), t.threshold, t.observed));
        out.push(code);
        out.extend_from_slice(&threshold.to_le_bytes());
        out.extend_from_slice(&observed.to_le_bytes());
        let f = &self.fleet;
        for v in [self.ttl_s, f.steps, f.tokens, f.started_ms, f.last_seen_ms, f.ttl_s] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<RunRecord> {
        let mut input = bytes;
        if take_u8(&mut input)? != FORMAT {
            return None;
        }
        let id = take_text(&mut input)?;
        let root = Some(take_text(&mut input)?).filter(|r| !r.is_empty());
        let depth = take_u32(&mut input)?;
        let started_ms = take_u64(&mut input)?;
        let last_seen_ms = take_u64(&mut input)?;
        let steps = take_u64(&mut input)?;
        let tokens = take_u64(&mut input)?;
        let code = take_u8(&mut input)?;
        let threshold = take_u64(&mut input)?;
        let observed = take_u64(&mut input)?;
        let tripped = match code {
            0 => None,
            c => Some(RunDenied { limit: RunLimit::from_code(c)?, threshold, observed }),
        };
        let ttl_s = take_u64(&mut input)?;
        let fleet = RunPart {
            steps: take_u64(&mut input)?,
            tokens: take_u64(&mut input)?,
            started_ms: take_u64(&mut input)?,
            last_seen_ms: take_u64(&mut input)?,
            ttl_s: take_u64(&mut input)?,
        };
        let record = RunRecord { id, root, depth, started_ms, last_seen_ms, steps, tokens, tripped, ttl_s, fleet };
        input.is_empty().then_some(record)
    }
}

fn take_text(input: &mut &[u8]) -> Option<String> {
    let len = usize::from(u16::from_le_bytes([take_u8(input)?, take_u8(input)?]));
    let (text, rest) = (input.get(..len)?, input.get(len..)?);
    *input = rest;
    std::str::from_utf8(text).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000;

    #[test]
    fn records_round_trip_and_garbage_does_not_decode() {
        let mut r = RunRecord::new("c", Some(("root-run", None)), T0);
        r.steps = 5;
        r.tokens = 77;
        r.tripped = Some(RunDenied { limit: RunLimit::Duration, threshold: 60, observed: 61 });
        r.ttl_s = 600;
        r.fleet = RunPart { steps: 2, tokens: 30, started_ms: T0 - 5, last_seen_ms: T0 + 9, ttl_s: 600 };
        assert_eq!(RunRecord::decode(&r.encode()), Some(r));
        let root = RunRecord::new("r", None, T0);
        assert_eq!(RunRecord::decode(&root.encode()), Some(root));
        assert_eq!(RunRecord::decode(b""), None);
        assert_eq!(RunRecord::decode(b"\x01\x05ab"), None);
    }

    #[test]
    fn the_longest_tenant_qualified_ids_round_trip_whole() {
        let id = format!("{}/{}", "t".repeat(128), "r".repeat(128));
        let r = RunRecord::new(&id, None, T0);
        assert_eq!(RunRecord::decode(&r.encode()).map(|d| d.id), Some(id));
    }
}
