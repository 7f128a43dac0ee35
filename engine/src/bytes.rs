//! Finding the next of two bytes, eight at a time: the scanners spend most of a stream looking
//! for the end of a line or of a string, and Wasm has no `memchr`. Each word of eight bytes is
//! tested at once (SWAR: a byte equal to the needle becomes zero, and a zero byte sets its high
//! bit after subtracting one from every byte); the lowest flagged byte is always a true match.

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of each byte of `word` that equals `needle` (and maybe of later bytes: only the
/// lowest set bit is exact).
fn matches(word: u64, needle: u8) -> u64 {
    let x = word ^ ONES.wrapping_mul(u64::from(needle));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The position of the first byte of `hay` that is `a` or `b`.
pub fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in words.by_ref() {
        if let Ok(bytes) = <[u8; 8]>::try_from(chunk) {
            let word = u64::from_le_bytes(bytes);
            let found = matches(word, a) | matches(word, b);
            if found != 0 {
                return Some(at + (found.trailing_zeros() / 8) as usize);
            }
        }
        at += 8;
    }
    words.remainder().iter().position(|&c| c == a || c == b).map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(hay: &[u8], a: u8, b: u8) -> Option<usize> {
        hay.iter().position(|&c| c == a || c == b)
    }

    #[test]
    fn the_first_of_two_bytes_is_found_wherever_it_is() {
        // Every length up to 40 and every position of one or two needles in it, over bytes that
        // sit next to the needles in value (borrows in the word trick cross such bytes).
        for len in 0..40 {
            for i in 0..=len {
                for j in [i, i + 1, i + 7, i + 8, len] {
                    let mut hay: Vec<u8> = (0..len).map(|k| [b'!', b'#', 0x00, 0xff, b'"' + 0x80][k % 5]).collect();
                    if let Some(c) = hay.get_mut(i) {
                        *c = b'"';
                    }
                    if let Some(c) = hay.get_mut(j) {
                        *c = b'\\';
                    }
                    assert_eq!(find2(&hay, b'"', b'\\'), naive(&hay, b'"', b'\\'), "len {len} at {i} and {j}: {hay:?}");
                }
            }
        }
    }

    #[test]
    fn bytes_around_the_needles_are_not_mistaken_for_them() {
        let mut rng = crate::testkit::Xorshift::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let len = rng.below(64) as usize;
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    [b'\n' - 1, b'\n', b'\n' + 1, b'\r' - 1, b'\r', b'\r' + 1, 0x8a, 0x8d, b'x'][rng.below(9) as usize]
                })
                .collect();
            assert_eq!(find2(&hay, b'\n', b'\r'), naive(&hay, b'\n', b'\r'), "{hay:?}");
        }
    }
}
