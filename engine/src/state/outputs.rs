//! What a tenant's recent responses actually produced, so that a request which names no output
//! allowance (or a far too large one) reserves what this tenant really uses.
//!
//! The estimate is the largest output of the last [`RECENT`] completed responses: a response
//! larger than all of those is the only way to exceed the reservation, and one such response
//! raises the estimate at once. Talking the estimate down takes [`RECENT`] small responses in a
//! row; what a burst after that can overshoot by is bounded by the tier's concurrency cap times
//! the difference (and is settled to the real usage, which the windows then hold against it).

use super::codec::{take_u32, take_u8};

/// Responses remembered per tenant.
pub const RECENT: usize = 16;

/// The output tokens of a tenant's last [`RECENT`] completed responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentOutputs {
    outputs: [u32; RECENT],
    /// How many of `outputs` hold a response (at most [`RECENT`]).
    len: u8,
    /// Where the next response goes.
    next: u8,
}

impl RecentOutputs {
    pub const ENCODED_LEN: usize = 2 + 4 * RECENT;

    /// Remembers one completed response's output tokens (saturating at `u32::MAX`).
    pub fn record(&mut self, output_tokens: u64) {
        let i = usize::from(self.next) % RECENT;
        if let Some(slot) = self.outputs.get_mut(i) {
            *slot = u32::try_from(output_tokens).unwrap_or(u32::MAX);
        }
        self.next = u8::try_from((i + 1) % RECENT).unwrap_or(0);
        self.len = self.len.saturating_add(1).min(RECENT as u8);
    }

    /// The largest recent output, or `None` before the first response.
    pub fn estimate(&self) -> Option<u64> {
        let seen = self.outputs.get(..usize::from(self.len))?;
        seen.iter().max().map(|m| u64::from(*m))
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        out.push(self.next);
        for o in self.outputs {
            out.extend_from_slice(&o.to_le_bytes());
        }
    }

    pub fn decode(input: &mut &[u8]) -> Option<RecentOutputs> {
        let len = take_u8(input)?;
        let next = take_u8(input)?;
        if usize::from(len) > RECENT || usize::from(next) >= RECENT {
            return None;
        }
        let mut outputs = [0u32; RECENT];
        for o in outputs.iter_mut() {
            *o = take_u32(input)?;
        }
        Some(RecentOutputs { outputs, len, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_is_no_estimate_before_the_first_response() {
        assert_eq!(RecentOutputs::default().estimate(), None);
    }

    #[test]
    fn the_estimate_is_the_largest_recent_output() {
        let mut r = RecentOutputs::default();
        for o in [300, 700, 450] {
            r.record(o);
        }
        assert_eq!(r.estimate(), Some(700));
    }

    #[test]
    fn one_large_response_raises_the_estimate_at_once_and_it_takes_a_full_window_to_fall() {
        let mut r = RecentOutputs::default();
        r.record(5000);
        for i in 0..RECENT - 1 {
            r.record(100);
            assert_eq!(r.estimate(), Some(5000), "still remembered after {} small ones", i + 1);
        }
        r.record(100);
        assert_eq!(r.estimate(), Some(100), "forgotten once {RECENT} newer responses came");
    }

    #[test]
    fn it_round_trips_through_its_bytes_and_refuses_impossible_ones() {
        let mut r = RecentOutputs::default();
        for o in 0..20u64 {
            r.record(o * 10);
        }
        let mut bytes = Vec::new();
        r.encode(&mut bytes);
        assert_eq!(bytes.len(), RecentOutputs::ENCODED_LEN);
        assert_eq!(RecentOutputs::decode(&mut bytes.as_slice()), Some(r));
        let mut bad = bytes.clone();
        bad[0] = RECENT as u8 + 1;
        assert_eq!(RecentOutputs::decode(&mut bad.as_slice()), None);
        assert_eq!(RecentOutputs::decode(&mut &bytes[..5]), None);
    }

    #[test]
    fn a_huge_output_saturates_instead_of_wrapping() {
        let mut r = RecentOutputs::default();
        r.record(u64::MAX);
        assert_eq!(r.estimate(), Some(u64::from(u32::MAX)));
    }
}
