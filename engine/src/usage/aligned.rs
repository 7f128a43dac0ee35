//! Passing an SSE stream to the client in whole events, so that a stream fusebox ends early
//! (`terminate_streams`) ends on an event boundary whatever sizes the upstream wrote: the bytes
//! of an event that has not ended yet are carried into the next chunk instead of being sent, and
//! an ending drops them, so the client never holds half an event before the error event.
//!
//! Events end at an empty line; lines end in LF, CRLF or CR. A CR at the end of a chunk may be
//! the first half of a CRLF, so the boundary after it is only known with the next byte.

/// An event larger than this is passed on as it comes (its stream can then no longer be
/// ended on a boundary): the carry must stay bounded whatever the upstream sends.
pub const MAX_CARRY: usize = 256 << 10;

/// What to send the client for one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// The chunk as it is (nothing carried in, nothing held back).
    AsIs,
    /// These bytes instead of the chunk.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Default)]
pub struct EventAligner {
    /// Bytes of the event in progress, not yet sent.
    carry: Vec<u8>,
    /// The current line has no characters yet.
    line_not_empty: bool,
    /// The last byte was a CR (its LF may follow).
    after_cr: bool,
    /// ... and that CR ended an empty line: a boundary, after the CR or after its LF.
    cr_ended_event: bool,
    /// An event outgrew [`MAX_CARRY`]: everything passes as it comes from then on.
    passing: bool,
}

impl EventAligner {
    /// The part of the carry and `chunk` that is whole events, to send now; the rest is carried.
    pub fn push(&mut self, chunk: &[u8]) -> Forward {
        if self.passing {
            return Forward::AsIs;
        }
        let boundary = self.scan(chunk);
        let carried = self.carry.len();
        match boundary {
            // The chunk ends exactly where an event does and nothing was carried: no rewrite.
            Some(b) if carried == 0 && b == chunk.len() => Forward::AsIs,
            Some(b) => {
                let mut all = std::mem::take(&mut self.carry);
                all.extend_from_slice(chunk);
                self.carry = all.split_off(b);
                self.bound_carry(all)
            }
            None => {
                self.carry.extend_from_slice(chunk);
                self.bound_carry(Vec::new())
            }
        }
    }

    /// The end of the stream: whatever is carried goes out with the last chunk.
    pub fn finish(&mut self, chunk: &[u8]) -> Forward {
        if self.carry.is_empty() {
            return Forward::AsIs;
        }
        let mut all = std::mem::take(&mut self.carry);
        all.extend_from_slice(chunk);
        Forward::Bytes(all)
    }

    /// The stream is being ended: the whole events of the carry and `chunk`; the event in
    /// progress is dropped (the client never saw any of it).
    pub fn cut(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.passing {
            return chunk.to_vec();
        }
        let boundary = self.scan(chunk);
        let mut all = std::mem::take(&mut self.carry);
        all.extend_from_slice(chunk);
        // A CR that ended an event is a boundary even if its LF never comes.
        let end = if self.cr_ended_event { all.len() } else { boundary.unwrap_or(0) };
        all.truncate(end);
        all
    }

    /// Whether the stream is passed as it comes (an event outgrew [`MAX_CARRY`]).
    pub fn is_passing(&self) -> bool {
        self.passing
    }

    fn bound_carry(&mut self, mut send: Vec<u8>) -> Forward {
        if self.carry.len() > MAX_CARRY {
            self.passing = true;
            send.append(&mut self.carry);
        }
        Forward::Bytes(send)
    }

    /// Reads `chunk` (which follows the carry) and returns the end of the last complete event,
    /// as an offset into carry + chunk.
    fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        let offset = self.carry.len();
        let mut boundary = None;
        for (i, &b) in chunk.iter().enumerate() {
            let at = offset + i;
            if self.after_cr {
                self.after_cr = false;
                let ended = std::mem::take(&mut self.cr_ended_event);
                if b == b'\n' {
                    if ended {
                        boundary = Some(at + 1);
                    }
                    continue; // the LF of a CRLF: that line has ended already
                }
                if ended {
                    boundary = Some(at);
                }
            }
            match b {
                b'\n' => {
                    if !self.line_not_empty {
                        boundary = Some(at + 1);
                    }
                    self.line_not_empty = false;
                }
                b'\r' => {
                    self.after_cr = true;
                    self.cr_ended_event = !self.line_not_empty;
                    self.line_not_empty = false;
                }
                _ => self.line_not_empty = true,
            }
        }
        boundary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client receives for `stream` cut into `parts`, ended after `cut_at` parts (or
    /// passed to its end).
    fn relay(parts: &[&[u8]], cut_at: Option<usize>) -> Vec<u8> {
        let mut a = EventAligner::default();
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if Some(i) == cut_at {
                out.extend(a.cut(p));
                out.extend_from_slice(b"<END>");
                return out;
            }
            let forward = if i + 1 == parts.len() { a.finish(p) } else { a.push(p) };
            match forward {
                Forward::AsIs => out.extend_from_slice(p),
                Forward::Bytes(b) => out.extend(b),
            }
        }
        out
    }

    const STREAM: &[u8] = b"event: a\ndata: {\"x\":1}\n\nevent: b\ndata: {\"x\":2}\n\ndata: [DONE]\n\n";

    #[test]
    fn a_stream_passes_unchanged_whatever_its_chunks() {
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(relay(&[a, b], None), STREAM, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(relay(&bytes, None), STREAM);
    }

    #[test]
    fn chunks_that_end_on_event_boundaries_are_not_rewritten() {
        let mut a = EventAligner::default();
        assert_eq!(a.push(b"data: 1\n\n"), Forward::AsIs);
        assert_eq!(a.push(b"data: 2\r\n\r\n"), Forward::AsIs);
        assert_eq!(a.finish(b"data: [DONE]\n\n"), Forward::AsIs);
    }

    /// Every event the client got is whole, and the ending comes right after the last one.
    fn ends_cleanly(received: &[u8], stream: &[u8]) {
        let body = received.strip_suffix(b"<END>").expect("the ending is last");
        assert!(stream.starts_with(body), "only bytes of the stream, in order");
        assert!(body.is_empty() || body.ends_with(b"\n\n") || body.ends_with(b"\r\n\r\n") || body.ends_with(b"\r\r"));
    }

    #[test]
    fn an_ending_at_any_split_point_starts_on_an_event_boundary() {
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            ends_cleanly(&relay(&[a, b], Some(1)), STREAM);
            let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
            ends_cleanly(&relay(&bytes, Some(cut.min(bytes.len() - 1))), STREAM);
        }
    }

    #[test]
    fn the_client_gets_every_complete_event_before_the_ending() {
        let received = relay(&[b"data: 1\n\ndata: 2\n\nda", b"ta: 3\n\ndata: 4"], Some(1));
        assert_eq!(received, b"data: 1\n\ndata: 2\n\ndata: 3\n\n<END>");
    }

    #[test]
    fn crlf_split_between_its_cr_and_lf_is_one_line_ending() {
        let stream = b"data: 1\r\n\r\ndata: 2\r\n\r\n";
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(relay(&[a, b], None), stream, "split at {cut}");
            ends_cleanly(&relay(&[a, b], Some(1)), stream);
        }
        // The CR of the blank line arrived, its LF not yet: the event is complete.
        assert_eq!(relay(&[b"data: 1\r\n\r", b"\ndata: 2"], Some(1)), b"data: 1\r\n\r\n<END>");
    }

    #[test]
    fn cr_only_line_endings_have_boundaries_too() {
        let stream = b"data: 1\r\rdata: 2\r\r";
        assert_eq!(relay(&[&stream[..8], &stream[8..12], &stream[12..14]], Some(2)), b"data: 1\r\r<END>");
        assert_eq!(relay(&[&stream[..8], &stream[8..12], &stream[12..]], Some(2)), [&stream[..], b"<END>"].concat());
        assert_eq!(relay(&[&stream[..9], &stream[9..]], None), stream);
    }

    #[test]
    fn an_event_larger_than_the_carry_bound_is_passed_as_it_comes() {
        let mut a = EventAligner::default();
        let big = vec![b'x'; MAX_CARRY + 1];
        let mut sent = match a.push(b"data: ") {
            Forward::Bytes(b) => b,
            Forward::AsIs => b"data: ".to_vec(),
        };
        assert!(sent.is_empty(), "an unfinished event is carried");
        match a.push(&big) {
            Forward::Bytes(b) => sent.extend(b),
            Forward::AsIs => sent.extend_from_slice(&big),
        }
        assert_eq!(sent.len(), 6 + big.len(), "the carry is flushed, not grown without bound");
        assert!(a.is_passing());
        assert_eq!(a.push(b"more"), Forward::AsIs);
    }
}
