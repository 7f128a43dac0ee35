//! Sliding windows over fixed-width buckets.
//!
//! A ring of `N` buckets of `W` seconds answers "how much in the last `span` seconds" for any
//! `span <= N * W`, with fixed memory. The window covers the current bucket plus the ones before
//! it, so its true length is between `span - W` and `span` seconds. Times below are in bucket
//! units ("slots", unix seconds / `W`) unless named `_s`.

/// Counters for the last `N` buckets of `W` seconds each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring<const N: usize, const W: u64> {
    /// The newest slot the ring has been advanced to.
    head_s: u64,
    buckets: [u32; N],
}

/// One-second buckets: exact enough for `retry-after` on token and request windows.
pub type SecondRing<const N: usize> = Ring<N, 1>;

/// Five-second buckets over a minute: enough for counts that need no exact `retry-after`.
pub type MinuteRing = Ring<12, 5>;

impl<const N: usize, const W: u64> Default for Ring<N, W> {
    fn default() -> Self {
        Self { head_s: 0, buckets: [0; N] }
    }
}

impl<const N: usize, const W: u64> Ring<N, W> {
    /// Serialized size in bytes.
    pub const ENCODED_LEN: usize = 8 + 4 * N;

    fn slot(sec: u64) -> usize {
        // N is a small constant; the remainder always fits in usize.
        (sec % N as u64) as usize
    }

    fn bucket(&self, sec: u64) -> u32 {
        self.buckets.get(Self::slot(sec)).copied().unwrap_or(0)
    }

    /// Moves the head to `now_s`, clearing the buckets that fell out of the ring.
    /// A clock that steps backwards (another worker read it a moment earlier) keeps the head.
    pub fn advance(&mut self, now_s: u64) {
        let now_s = now_s / W;
        if now_s <= self.head_s {
            return;
        }
        if now_s - self.head_s >= N as u64 {
            self.buckets = [0; N];
        } else {
            for sec in self.head_s + 1..=now_s {
                if let Some(b) = self.buckets.get_mut(Self::slot(sec)) {
                    *b = 0;
                }
            }
        }
        self.head_s = now_s;
    }

    /// Adds `amount` to the current second (saturating).
    pub fn add(&mut self, now_s: u64, amount: u64) {
        self.advance(now_s);
        let amount = u32::try_from(amount).unwrap_or(u32::MAX);
        if let Some(b) = self.buckets.get_mut(Self::slot(self.head_s)) {
            *b = b.saturating_add(amount);
        }
    }

    /// The window of `span_s` seconds ending at `now_s`, in buckets: its last bucket (never
    /// before the head) and its length.
    fn window(&self, now_s: u64, span_s: u64) -> (u64, u64) {
        ((now_s / W).max(self.head_s), (span_s / W).min(N as u64))
    }

    /// The buckets of that window the ring holds: from the window's first to the head. (The
    /// ring holds all of them: a window is at most N buckets and never ends before the head.)
    /// `None` when there are none.
    fn held(&self, (now, span): (u64, u64)) -> Option<(u64, u64)> {
        let first = (now + 1).saturating_sub(span);
        (first <= self.head_s).then_some((first, self.head_s))
    }

    /// The buckets of seconds `first..=last` (at most N of them), oldest first: the ring's
    /// array in at most two pieces.
    fn pieces(&self, first: u64, last: u64) -> (&[u32], &[u32]) {
        let (start, count) = (Self::slot(first), (last - first + 1).min(N as u64) as usize);
        let (tail, head) =
            (self.buckets.get(start..).unwrap_or_default(), self.buckets.get(..start).unwrap_or_default());
        match tail.split_at_checked(count) {
            Some((piece, _)) => (piece, &[]),
            None => (tail, head.get(..count - tail.len()).unwrap_or(head)),
        }
    }

    /// Sum over the last `span_s` seconds ending at `now_s` (without mutating).
    pub fn sum(&self, now_s: u64, span_s: u64) -> u64 {
        let Some((first, last)) = self.held(self.window(now_s, span_s)) else { return 0 };
        let (a, b) = self.pieces(first, last);
        a.iter().chain(b).map(|&n| u64::from(n)).sum()
    }

    /// Seconds until the `span_s` window ending at `now_s` falls to `threshold` or below,
    /// assuming nothing more is added (rounded up to whole buckets). 0 when it already is.
    pub fn seconds_until_at_most(&self, now_s: u64, span_s: u64, threshold: u64) -> u64 {
        let (now, span) = self.window(now_s, span_s);
        let Some((first, last)) = self.held((now, span)) else { return 0 };
        let (a, b) = self.pieces(first, last);
        let mut total: u64 = a.iter().chain(b).map(|&n| u64::from(n)).sum();
        if total <= threshold {
            return 0;
        }
        // The held buckets leave the window oldest first: bucket `b` when `span - now + b` more
        // have passed.
        for (bucket, &n) in (first..).zip(a.iter().chain(b)) {
            total = total.saturating_sub(u64::from(n));
            if total <= threshold {
                return (bucket + span - now) * W;
            }
        }
        span * W
    }

    /// Adds `amount` to the bucket holding `at_s`, moving the head forward if `at_s` is newer;
    /// a time older than the ring reaches is dropped (it has left every window).
    pub fn add_at(&mut self, at_s: u64, amount: u64) {
        if at_s / W > self.head_s {
            self.advance(at_s);
        }
        let slot = at_s / W;
        if self.head_s - slot >= N as u64 {
            return;
        }
        let amount = u32::try_from(amount).unwrap_or(u32::MAX);
        if let Some(b) = self.buckets.get_mut(Self::slot(slot)) {
            *b = b.saturating_add(amount);
        }
    }

    /// The non-empty buckets still in the ring, as (first second of the bucket, count).
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        let first = (self.head_s + 1).saturating_sub(N as u64);
        (first..=self.head_s).map(move |slot| (slot * W, self.bucket(slot))).filter(|&(_, n)| n > 0)
    }

    /// Adds every bucket of `other` into this ring, aligned by time.
    pub fn merge(&mut self, other: &Self) {
        for (at_s, n) in other.entries() {
            self.add_at(at_s, u64::from(n));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|&b| b == 0)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head_s.to_le_bytes());
        // Sized once and filled in place: a ring is written three times a request.
        let at = out.len();
        out.resize(at + 4 * N, 0);
        for (slot, b) in out.get_mut(at..).unwrap_or_default().chunks_exact_mut(4).zip(&self.buckets) {
            slot.copy_from_slice(&b.to_le_bytes());
        }
    }

    pub(crate) fn decode(input: &mut &[u8]) -> Option<Self> {
        // (bucket width is part of the type, not of the encoding)
        let head_s = crate::state::codec::take_u64(input)?;
        let (bytes, rest) = input.split_at_checked(4 * N)?;
        let mut buckets = [0u32; N];
        for (b, slot) in buckets.iter_mut().zip(bytes.chunks_exact(4)) {
            *b = u32::from_le_bytes(slot.try_into().ok()?);
        }
        *input = rest;
        Some(Self { head_s, buckets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_only_the_requested_span() {
        let mut r = SecondRing::<60>::default();
        r.add(1000, 5);
        r.add(1005, 7);
        r.add(1009, 11);
        assert_eq!(r.sum(1009, 10), 23);
        assert_eq!(r.sum(1009, 5), 18);
        assert_eq!(r.sum(1010, 10), 18);
        assert_eq!(r.sum(1069, 60), 0);
        assert_eq!(r.sum(1060, 60), 18);
    }

    #[test]
    fn advancing_clears_old_buckets_when_they_are_reused() {
        let mut r = SecondRing::<10>::default();
        r.add(100, 3);
        r.add(110, 4); // same slot as 100
        assert_eq!(r.sum(110, 10), 4);
        r.add(200, 1);
        assert_eq!(r.sum(200, 10), 1);
    }

    #[test]
    fn clock_stepping_back_adds_to_the_head_second() {
        let mut r = SecondRing::<10>::default();
        r.add(50, 1);
        r.add(49, 2);
        assert_eq!(r.sum(50, 1), 3);
    }

    #[test]
    fn drain_time_counts_seconds_until_under_threshold() {
        let mut r = SecondRing::<60>::default();
        r.add(1000, 600);
        r.add(1003, 600);
        // window 10s at 1003 holds 1200; bucket 1000 leaves at 1010, bucket 1003 at 1013
        assert_eq!(r.seconds_until_at_most(1003, 10, 1000), 7);
        assert_eq!(r.seconds_until_at_most(1003, 10, 500), 10);
        assert_eq!(r.seconds_until_at_most(1003, 10, 1200), 0);
    }

    #[test]
    fn huge_amounts_saturate_instead_of_wrapping() {
        let mut r = SecondRing::<10>::default();
        r.add(1, u64::MAX);
        r.add(1, 5);
        assert_eq!(r.sum(1, 10), u64::from(u32::MAX));
    }

    #[test]
    fn wide_buckets_cover_the_span_in_bucket_steps() {
        let mut r = Ring::<12, 5>::default();
        r.add(1000, 3); // slot 200
        r.add(1004, 4); // slot 200
        r.add(1005, 5); // slot 201
        assert_eq!(r.sum(1005, 60), 12);
        assert_eq!(r.sum(1059, 60), 12);
        assert_eq!(r.sum(1060, 60), 5, "slot 200 left the 12-slot window");
        assert_eq!(r.seconds_until_at_most(1005, 60, 5), 55);
    }

    #[test]
    fn merging_aligns_buckets_by_time_and_drops_what_left_the_ring() {
        let mut a = SecondRing::<10>::default();
        a.add(100, 1);
        a.add(105, 2);
        let mut b = SecondRing::<10>::default();
        b.add(96, 50); // left a's window once a moves to 106
        b.add(105, 3);
        b.add(106, 4);
        a.merge(&b);
        assert_eq!(a.sum(106, 10), 1 + 2 + 3 + 4);
        assert_eq!(a.entries().collect::<Vec<_>>(), vec![(100, 1), (105, 5), (106, 4)]);
    }

    #[test]
    fn entries_of_wide_buckets_start_at_the_bucket_boundary() {
        let mut r = Ring::<12, 5>::default();
        r.add(1003, 7);
        assert_eq!(r.entries().collect::<Vec<_>>(), vec![(1000, 7)]);
        let mut copy = Ring::<12, 5>::default();
        copy.add_at(1000, 7);
        assert_eq!(copy, r);
    }

    /// The windows as first defined, a second at a time: what the sliced forms must equal.
    fn sum_by_seconds<const N: usize, const W: u64>(r: &Ring<N, W>, now_s: u64, span_s: u64) -> u64 {
        let (now_s, span) = (now_s / W, (span_s / W).min(N as u64));
        let now_s = now_s.max(r.head_s);
        ((now_s + 1).saturating_sub(span)..=now_s)
            .filter(|&sec| sec <= r.head_s && r.head_s - sec < N as u64)
            .map(|sec| u64::from(r.bucket(sec)))
            .sum()
    }

    fn drain_by_seconds<const N: usize, const W: u64>(r: &Ring<N, W>, now_s: u64, span_s: u64, at_most: u64) -> u64 {
        let mut total = sum_by_seconds(r, now_s, span_s);
        let (now_s, span) = (now_s / W, (span_s / W).min(N as u64));
        let now_s = now_s.max(r.head_s);
        if total <= at_most {
            return 0;
        }
        for d in 1..=span {
            if let Some(sec) = (now_s + d).checked_sub(span) {
                if sec <= r.head_s && r.head_s - sec < N as u64 {
                    total = total.saturating_sub(u64::from(r.bucket(sec)));
                }
            }
            if total <= at_most {
                return d * W;
            }
        }
        span * W
    }

    fn sums_and_drains_agree_with_seconds<const N: usize, const W: u64>(seed: u64) {
        let mut rng = crate::testkit::Xorshift::new(seed);
        let mut next = move |m: u64| rng.below(m);
        for _ in 0..400 {
            let mut r = Ring::<N, W>::default();
            let start = next(3) * next(200); // near zero too: windows reaching before the epoch
            let mut t = start;
            for _ in 0..next(40) {
                t += next(8);
                r.add(t, next(1000));
            }
            for _ in 0..20 {
                let (now, span, at_most) = (t + next(N as u64 * W * 2), next(N as u64 * W + 20), next(20_000));
                assert_eq!(r.sum(now, span), sum_by_seconds(&r, now, span), "{r:?} sum at {now} over {span}");
                assert_eq!(
                    r.seconds_until_at_most(now, span, at_most),
                    drain_by_seconds(&r, now, span, at_most),
                    "{r:?} drain at {now} over {span} to {at_most}"
                );
            }
        }
    }

    #[test]
    fn sums_and_drain_times_read_in_slices_equal_reading_second_by_second() {
        sums_and_drains_agree_with_seconds::<60, 1>(0x2545_f491_4f6c_dd1d);
        sums_and_drains_agree_with_seconds::<10, 1>(0x9e37_79b9_7f4a_7c15);
        sums_and_drains_agree_with_seconds::<12, 5>(0xd1b5_4a32_d192_ed03);
    }

    #[test]
    fn encoding_round_trips() {
        let mut r = SecondRing::<10>::default();
        r.add(77, 9);
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(buf.len(), SecondRing::<10>::ENCODED_LEN);
        let mut slice = buf.as_slice();
        assert_eq!(SecondRing::<10>::decode(&mut slice), Some(r));
        assert!(slice.is_empty());
    }
}
