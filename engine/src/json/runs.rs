//! The scanner's steps taken a span at a time. Each run consumes what one lexer state can of a
//! chunk and returns the rest; together they end in exactly the state [`JsonScanner::step`]
//! reaches byte by byte (a test in `tests` holds them to it on every split of every document).

use super::{JsonScanner, Key, Lex, Visitor, STRING_CAP};
use crate::bytes::find2;

impl JsonScanner {
    /// Structural bytes and whitespace, up to and including the first byte of a string, number
    /// or literal.
    pub(super) fn structural_run<'c, V: Visitor>(&mut self, chunk: &'c [u8], v: &mut V) -> &'c [u8] {
        let mut rest = chunk;
        while let Some((&b, tail)) = rest.split_first() {
            rest = tail;
            self.structural(b, v);
            if self.failed || !matches!(self.lex, Lex::Between) {
                break;
            }
        }
        rest
    }

    /// A string's bytes up to its closing quote (consumed) or its next escape (consumed, the
    /// escaped byte is stepped). A string that ends in the chunk it began in is read in place.
    pub(super) fn string_run<'c, V: Visitor>(
        &mut self,
        chunk: &'c [u8],
        key: bool,
        collect: bool,
        v: &mut V,
    ) -> &'c [u8] {
        let wanted = key || collect;
        let Some(n) = find2(chunk, b'"', b'\\') else {
            if wanted {
                self.collect_bytes(chunk);
            }
            return &[];
        };
        let (span, stop) = chunk.split_at(n);
        let rest = stop.get(1..).unwrap_or_default();
        if stop.first() == Some(&b'\\') {
            if wanted {
                self.collect_bytes(span);
            }
            self.lex = Lex::Str { key, escaped: true, collect };
            return rest;
        }
        self.lex = Lex::Between;
        // Nothing buffered yet (no earlier chunk, no escape): the whole string is `span`.
        let in_place = self.buf_len == 0 && !self.buf_overflow;
        if key {
            if in_place {
                // A key longer than the buffer is `Other` either way: no known key is that long.
                self.set_key(Key::from_bytes(span));
            } else {
                self.collect_bytes(span);
                self.end_key();
            }
            return rest;
        }
        if collect {
            if in_place {
                if let Some(path) = self.current_path() {
                    v.string(path, span.get(..STRING_CAP).unwrap_or(span), span.len() > STRING_CAP);
                }
            } else {
                self.collect_bytes(span);
                self.end_string(v);
            }
        }
        self.after_value();
        rest
    }

    /// A number's bytes; the byte that ends it is left for the structural run.
    pub(super) fn number_run<'c, V: Visitor>(&mut self, chunk: &'c [u8], v: &mut V) -> &'c [u8] {
        let n = chunk.iter().position(|&b| !is_number_byte(b)).unwrap_or(chunk.len());
        let (number, rest) = chunk.split_at(n);
        for &b in number {
            self.number_byte(b);
        }
        if !rest.is_empty() {
            self.end_number(v);
        }
        rest
    }

    /// One byte, stepped.
    pub(super) fn byte_run<'c, V: Visitor>(&mut self, chunk: &'c [u8], v: &mut V) -> &'c [u8] {
        match chunk.split_first() {
            Some((&b, rest)) => {
                self.step(b, v);
                rest
            }
            None => chunk,
        }
    }
}

/// Whether `b` continues a number (its syntax is left to the visitor: `1e5` is not an integer).
pub(super) fn is_number_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
}
