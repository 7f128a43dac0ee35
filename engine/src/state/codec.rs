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
    fn a_short_input_reads_as_none_and_is_left_untouched() {
        let bytes = [1u8, 2, 3];
        let mut input = &bytes[..];
        assert_eq!(take_u32(&mut input), None);
        assert_eq!(input, &[1, 2, 3]);
    }
}
