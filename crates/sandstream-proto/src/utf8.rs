//! Incremental UTF-8 decoding of byte streams: a character split across two chunks is
//! carried over instead of being replaced. Used by the agent for the seed's text `line`
//! field and by the server for socket.io text.

/// Holds the incomplete trailing sequence of the previous chunk.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// How many bytes of earlier chunks are held back and will lead the next text.
    pub fn carried(&self) -> usize {
        self.pending.len()
    }

    /// Decodes `data` after the carried bytes; invalid sequences become U+FFFD, an
    /// incomplete sequence at the very end is kept for the next call.
    pub fn decode(&mut self, data: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let cut = incomplete_tail_start(&buf);
        self.pending = buf.split_off(cut);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Decodes whatever is still carried (at the end of the stream).
    pub fn flush(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// The index where an incomplete (but so far valid) multi-byte sequence starts at the
/// end of `b`, or `b.len()` when there is none.
fn incomplete_tail_start(b: &[u8]) -> usize {
    let len = b.len();
    for back in 1..=len.min(3) {
        let byte = b[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: look further back for the lead byte
        }
        let needed = match byte {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return len, // ASCII or an invalid lead: nothing to carry
        };
        return if needed > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_character_is_carried() {
        let snowman = "a☃b".as_bytes(); // ☃ is E2 98 83
        let mut c = Utf8Carry::default();
        assert_eq!(c.decode(&snowman[..2]), "a");
        assert_eq!(c.carried(), 1);
        assert_eq!(c.decode(&snowman[2..3]), "");
        assert_eq!(c.decode(&snowman[3..]), "☃b");
        assert_eq!(c.flush(), "");
    }

    #[test]
    fn invalid_bytes_are_replaced_not_carried() {
        let mut c = Utf8Carry::default();
        assert_eq!(c.decode(b"x\xffy\r"), "x\u{FFFD}y\r");
        assert_eq!(c.carried(), 0);
        assert_eq!(c.decode(b"\xf0\x9f"), "");
        assert_eq!(c.flush(), "\u{FFFD}");
    }
}
