//! Ending an SSE stream on an event boundary without holding any of it back. A stream fusebox
//! ends early (`terminate_streams`) must end where an event does, whatever sizes the upstream
//! wrote, so the client never holds half an event before the error event. Every chunk passes as
//! it comes; [`EventBoundaries`] only follows where the events in it end. When the stream is to
//! end, the client may hold the start of an event: the ending then waits for the bytes that
//! complete it (in this chunk, or a later one) and cuts right after them.
//!
//! Events end at an empty line; lines end in LF, CRLF or CR. A CR at the end of a chunk may be
//! the first half of a CRLF, so the boundary after it is only known with the next byte.

/// An event larger than this is not waited for: a stream whose client holds this much of an
/// unfinished event ends at once (the client then gets half an event before the error).
pub const MAX_EVENT: usize = 256 << 10;

/// Where the events of what passed so far end.
#[derive(Debug, Clone, Default)]
pub struct EventBoundaries {
    /// Bytes passed since the last event ended.
    since_end: usize,
    /// The current line has no characters yet.
    line_not_empty: bool,
    /// The last byte was a CR (its LF may follow).
    after_cr: bool,
    /// ... and that CR ended an empty line: a boundary, after the CR or after its LF.
    cr_ended_event: bool,
}

impl EventBoundaries {
    /// Follows `chunk`, which passes to the client whole.
    pub fn pass(&mut self, chunk: &[u8]) {
        // Only the state at the chunk's end matters: when an event ends inside the chunk, what
        // came before that ending cannot change it, so following starts there.
        let rest = match last_inner_ending(chunk) {
            Some(at) => {
                // The line-end bytes at `at` follow a byte of text: this is the state after it.
                *self = EventBoundaries { since_end: 0, line_not_empty: true, after_cr: false, cr_ended_event: false };
                chunk.get(at..).unwrap_or_default()
            }
            None => chunk,
        };
        self.follow(rest);
    }

    fn follow(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            // Fast path: the rest of a line that has begun cannot end an event before its end.
            if self.line_not_empty && !self.after_cr {
                let n = crate::bytes::find2(rest, b'\n', b'\r').unwrap_or(rest.len());
                if n > 0 {
                    self.since_end = self.since_end.saturating_add(n);
                    rest = rest.get(n..).unwrap_or_default();
                    continue;
                }
            }
            self.step(b);
            rest = tail;
        }
    }

    /// The stream is to end with this chunk: how much of it to pass first, so the client's last
    /// event is whole (0 when it holds no unfinished event). `None`: the event in progress does
    /// not end in this chunk, which passes whole; ask again with the next one.
    pub fn cut(&mut self, chunk: &[u8]) -> Option<usize> {
        if self.after_cr && self.cr_ended_event {
            // A blank line's CR came last: the event has ended (a LF completing its CRLF goes too).
            return Some(usize::from(chunk.first() == Some(&b'\n')));
        }
        if self.since_end == 0 || self.since_end > MAX_EVENT {
            return Some(0);
        }
        for (i, &b) in chunk.iter().enumerate() {
            if let Some(after) = self.step(b) {
                return Some(i + after);
            }
        }
        // A blank line's CR ends the chunk: the event has ended with it.
        (self.after_cr && self.cr_ended_event).then_some(chunk.len())
    }

    /// Takes one byte; returns where an event ended: `Some(0)` just before it, `Some(1)` just
    /// after it.
    fn step(&mut self, b: u8) -> Option<usize> {
        self.since_end = self.since_end.saturating_add(1);
        let mut ended = None;
        if self.after_cr {
            self.after_cr = false;
            let cr_ended = std::mem::take(&mut self.cr_ended_event);
            if b == b'\n' {
                // The LF of a CRLF: that line has ended already.
                if cr_ended {
                    self.since_end = 0;
                    return Some(1);
                }
                return None;
            }
            if cr_ended {
                self.since_end = 1;
                ended = Some(0);
            }
        }
        match b {
            b'\n' => {
                if !self.line_not_empty {
                    self.since_end = 0;
                    ended = Some(1);
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
        ended
    }
}

fn is_line_end(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// Where the last run of line-end bytes in `chunk` that ends an event begins, if it has text on
/// both sides within the chunk (so the state before it and the ending's place are both known).
/// A run ends an event unless it is a single line ending: LF, CR or CRLF.
fn last_inner_ending(chunk: &[u8]) -> Option<usize> {
    let mut before = chunk.len();
    loop {
        let end = chunk.get(..before)?.iter().rposition(|&b| is_line_end(b))? + 1;
        let head = chunk.get(..end)?;
        let start = head.iter().rposition(|&b| !is_line_end(b))? + 1;
        let run = head.get(start..)?;
        if end < chunk.len() && !matches!(run, b"\n" | b"\r" | b"\r\n") {
            return Some(start);
        }
        before = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client receives for `stream` cut into `parts`, to be ended from part `end_at`
    /// on (or passed to its end).
    fn relay(parts: &[&[u8]], end_at: Option<usize>) -> Vec<u8> {
        let mut e = EventBoundaries::default();
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if end_at.is_some_and(|at| i >= at) {
                if let Some(n) = e.cut(p) {
                    out.extend_from_slice(&p[..n]);
                    out.extend_from_slice(b"<END>");
                    return out;
                }
            } else {
                e.pass(p);
            }
            out.extend_from_slice(p);
        }
        out
    }

    const STREAM: &[u8] = b"event: a\ndata: {\"x\":1}\n\nevent: b\ndata: {\"x\":2}\n\ndata: [DONE]\n\n";

    /// Every event the client got is whole, and the ending comes right after the last one.
    fn ends_cleanly(received: &[u8], stream: &[u8]) {
        let body = received.strip_suffix(b"<END>").expect("the ending is last");
        assert!(stream.starts_with(body), "only bytes of the stream, in order");
        assert!(body.is_empty() || body.ends_with(b"\n\n") || body.ends_with(b"\r\n\r\n") || body.ends_with(b"\r\r"));
    }

    #[test]
    fn an_ending_at_any_split_point_comes_right_after_a_whole_event() {
        for cut in 0..STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            ends_cleanly(&relay(&[a, b], Some(1)), STREAM);
            let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
            ends_cleanly(&relay(&bytes, Some(cut)), STREAM);
        }
    }

    #[test]
    fn the_event_the_client_has_begun_is_completed_before_the_ending() {
        let received = relay(&[b"data: 1\n\ndata: 2\n\nda", b"ta: 3\n\ndata: 4"], Some(1));
        assert_eq!(received, b"data: 1\n\ndata: 2\n\ndata: 3\n\n<END>");
        let at_a_boundary = relay(&[b"data: 1\n\n", b"data: 2\n\n"], Some(1));
        assert_eq!(at_a_boundary, b"data: 1\n\n<END>", "nothing of the next event");
    }

    #[test]
    fn an_ending_waits_through_chunks_without_a_boundary() {
        let received = relay(&[b"data: 1\n\ndata: ", b"2222", b"22\n", b"\ndata: 3\n\n"], Some(1));
        assert_eq!(received, b"data: 1\n\ndata: 222222\n\n<END>");
    }

    #[test]
    fn crlf_split_between_its_cr_and_lf_is_one_line_ending() {
        let stream = b"data: 1\r\n\r\ndata: 2\r\n\r\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            ends_cleanly(&relay(&[a, b], Some(1)), stream);
        }
        // The CR of the blank line arrived, its LF not yet: the event is complete, the LF goes too.
        assert_eq!(relay(&[b"data: 1\r\n\r", b"\ndata: 2"], Some(1)), b"data: 1\r\n\r\n<END>");
    }

    #[test]
    fn cr_only_line_endings_have_boundaries_too() {
        let stream = b"data: 1\r\rdata: 2\r\r";
        assert_eq!(relay(&[&stream[..9], &stream[9..12], &stream[12..]], Some(1)), b"data: 1\r\r<END>");
        assert_eq!(relay(&[&stream[..8], &stream[8..12], &stream[12..]], Some(1)), b"data: 1\r\r<END>");
        assert_eq!(relay(&[&stream[..12], &stream[12..]], Some(1)), [&stream[..], b"<END>"].concat());
    }

    #[test]
    fn following_a_stream_in_pieces_ends_in_the_state_of_following_it_byte_by_byte() {
        let stream: &[u8] = b"event: a\r\ndata: {\"x\":1}\r\n\r\ndata: 2\n\ndata: 3\r\rdata: 4";
        for cut in 0..stream.len() {
            let (mut whole, mut bytes) = (EventBoundaries::default(), EventBoundaries::default());
            whole.pass(&stream[..cut]);
            whole.pass(&stream[cut..]);
            stream.iter().for_each(|b| bytes.pass(&[*b]));
            let state = |e: &EventBoundaries| (e.since_end, e.line_not_empty, e.after_cr, e.cr_ended_event);
            assert_eq!(state(&whole), state(&bytes), "split at {cut}");
        }
    }

    #[test]
    fn following_any_mix_of_line_endings_in_any_pieces_ends_in_the_byte_by_byte_state() {
        const PIECES: [&[u8]; 8] = [b"\n", b"\r", b"\r\n", b"data: x", b"y", b"\n\n", b"\r\r", b"\r\n\r\n"];
        let mut rng = crate::testkit::Xorshift::new(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.next();
        let state = |e: &EventBoundaries| (e.since_end, e.line_not_empty, e.after_cr, e.cr_ended_event);
        for _ in 0..2_000 {
            let stream: Vec<u8> = (0..next() % 16).flat_map(|_| PIECES[(next() % 8) as usize].to_vec()).collect();
            let mut bytes = EventBoundaries::default();
            stream.iter().for_each(|b| bytes.pass(&[*b]));
            let (cut_a, cut_b) = ((next() as usize) % (stream.len() + 1), (next() as usize) % (stream.len() + 1));
            let (a, b) = (cut_a.min(cut_b), cut_a.max(cut_b));
            let mut pieces = EventBoundaries::default();
            for part in [&stream[..a], &stream[a..b], &stream[b..]] {
                pieces.pass(part);
            }
            assert_eq!(state(&pieces), state(&bytes), "{:?} cut at {a} and {b}", String::from_utf8_lossy(&stream));
        }
    }

    #[test]
    fn an_event_larger_than_the_bound_is_not_waited_for() {
        let mut e = EventBoundaries::default();
        e.pass(b"data: ");
        assert_eq!(e.cut(b"xxxx"), None, "an unfinished event is waited for");
        e.pass(&vec![b'x'; MAX_EVENT]);
        assert_eq!(e.cut(b"more"), Some(0), "past the bound the stream ends at once");
    }
}
