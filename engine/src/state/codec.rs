//! The little-endian byte reader shared by the records kept in Envoy shared data (tenant
//! state, windows, run records). Every reader returns `None` on short input, so a truncated
//! or foreign value decodes to "unreadable", never to a panic.

fn take<const L: usize>(input: &mut &[u8]) -> Option<[u8; L]> {
    let (head, rest) = input.split_first_chunk::<L>()?;
    *input = rest;
    Some(*head)
}

pub(crate) fn take_u8(input: &mut &[u8]) -> Option<u8> {
    take::<1>(input).map(|[b]| b)
}

pub(crate) fn take_u16(input: &mut &[u8]) -> Option<u16> {
    take::<2>(input).map(u16::from_le_bytes)
}

pub(crate) fn take_u32(input: &mut &[u8]) -> Option<u32> {
    take::<4>(input).map(u32::from_le_bytes)
}

pub(crate) fn take_u64(input: &mut &[u8]) -> Option<u64> {
    take::<8>(input).map(u64::from_le_bytes)
}

/// Appends `v` as LEB128 (7 bits a byte, low first): small counts take a byte or three.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(u8::try_from(v & 0x7f).unwrap_or(0) | 0x80);
        v >>= 7;
    }
    out.push(u8::try_from(v).unwrap_or(0));
}

/// Reads a value [`put_varint`] wrote; `None` if it is cut short or longer than a u64.
pub(crate) fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take_u8(input)?;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_consume_little_endian_values_in_order() {
        let bytes = [7u8, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        let mut input = &bytes[..];
        assert_eq!(take_u8(&mut input), Some(7));
        assert_eq!(take_u32(&mut input), Some(1));
        assert_eq!(take_u64(&mut input), Some(2));
        assert!(input.is_empty());
    }

    #[test]
    fn varints_round_trip_small_values_in_few_bytes_and_reject_overlong_ones() {
        for v in [0, 1, 127, 128, 20_426, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut input = &out[..];
            assert_eq!((take_varint(&mut input), input.is_empty()), (Some(v), true), "{v}");
        }
        let mut out = Vec::new();
        put_varint(&mut out, 20_426);
        assert_eq!(out.len(), 3);
        assert_eq!(take_varint(&mut &[0x80u8, 0x80][..]), None, "cut short");
        assert_eq!(take_varint(&mut &[0xffu8; 11][..]), None, "past 64 bits");
    }

    #[test]
    fn a_short_input_reads_as_none_and_is_left_untouched() {
        let bytes = [1u8, 2, 3];
        let mut input = &bytes[..];
        assert_eq!(take_u32(&mut input), None);
        assert_eq!(input, &[1, 2, 3]);
    }
}
