//! An incremental Server-Sent Events parser: [`SseParser::feed`] bytes as they arrive, take
//! complete events with [`SseParser::next`], and [`SseParser::finish`] at the end of the stream.
//!
//! It accepts any split of the byte stream (mid-event, mid-line, a CRLF cut in two, a multi-byte
//! UTF-8 character cut in two: it works on bytes and only hands out whole events), LF, CRLF and CR
//! line ends, comment lines, several events per chunk and one event over many chunks. Memory is
//! bounded: an event larger than the limit is dropped (and counted), never buffered whole.

/// Events larger than this are dropped by default (1 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The incremental parser; see the module docs.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes not yet split into lines.
    pending: Vec<u8>,
    /// `data` of the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    /// The current event went over the limit; skip it up to its blank line.
    oversized: bool,
    /// The current line went over the limit; skip it up to its end.
    skipping_line: bool,
    /// The previous chunk ended in `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    max_event_bytes: usize,
    dropped: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser that drops events over `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            pending: Vec::new(),
            data: Vec::new(),
            has_data: false,
            oversized: false,
            skipping_line: false,
            after_cr: false,
            max_event_bytes: max_event_bytes.max(1),
            dropped: 0,
        }
    }

    /// How many events were dropped for being over the size limit.
    pub fn dropped_events(&self) -> u64 {
        self.dropped
    }

    /// Bytes currently held (bounded by about twice the event limit).
    pub fn buffered_bytes(&self) -> usize {
        self.pending.len() + self.data.len()
    }

    /// Adds bytes from the stream. Call [`SseParser::next`] until it returns `None` after each
    /// feed: that is what keeps memory bounded.
    pub fn feed(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let mut bytes = chunk;
        if std::mem::take(&mut self.after_cr) && bytes.first() == Some(&b'\n') {
            bytes = bytes.get(1..).unwrap_or_default();
        }
        if self.skipping_line {
            let Some((line_len, term_len)) = find_line(bytes) else {
                return;
            };
            self.skipping_line = false;
            self.after_cr = is_trailing_cr(bytes, line_len, term_len);
            bytes = bytes.get(line_len + term_len..).unwrap_or_default();
        }
        self.pending.extend_from_slice(bytes);
    }

    /// The `data` of the next complete event, if one has arrived.
    // The project's feed/next/finish parser convention: `None` means "feed me more", not "done",
    // so this is deliberately not an `Iterator`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Vec<u8>> {
        let mut consumed = 0;
        let mut event = None;
        while let Some((line_len, term_len)) =
            find_line(self.pending.get(consumed..).unwrap_or_default())
        {
            let start = consumed;
            consumed += line_len + term_len;
            self.after_cr = is_trailing_cr(&self.pending, consumed - term_len, term_len)
                && consumed == self.pending.len();
            let line = self.pending.get(start..start + line_len).unwrap_or_default().to_vec();
            if let Some(data) = self.take_line(&line) {
                event = Some(data);
                break;
            }
        }
        self.pending.drain(..consumed.min(self.pending.len()));
        if event.is_none() && self.pending.len() > self.max_event_bytes {
            // An unterminated line over the limit: drop it and skip to its end.
            self.pending.clear();
            self.skipping_line = true;
            self.mark_oversized();
        }
        event
    }

    /// Ends the stream: the last event if it lacked its closing blank line.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if !self.pending.is_empty() && !self.skipping_line {
            let line = std::mem::take(&mut self.pending);
            self.take_line(&line);
        }
        self.pending.clear();
        self.skipping_line = false;
        self.after_cr = false;
        self.dispatch()
    }

    fn mark_oversized(&mut self) {
        if !self.oversized {
            self.dropped += 1;
        }
        self.oversized = true;
        self.data.clear();
        self.has_data = false;
    }

    /// Handles one line; returns an event when the line is the blank one that ends it.
    fn take_line(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.first() == Some(&b':') || self.oversized {
            return None;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = line.get(colon + 1..).unwrap_or_default();
                (line.get(..colon).unwrap_or_default(), value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.data.len() + value.len() + 1 > self.max_event_bytes {
                self.mark_oversized();
                return None;
            }
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        None
    }

    fn dispatch(&mut self) -> Option<Vec<u8>> {
        self.oversized = false;
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(std::mem::take(&mut self.data))
    }
}

/// Whether the terminator at `at` is a CR that may still be followed by an LF in the next chunk.
fn is_trailing_cr(bytes: &[u8], at: usize, term_len: usize) -> bool {
    term_len == 1 && bytes.get(at) == Some(&b'\r') && bytes.get(at + 1).is_none()
}

/// Length of the first line and of its terminator, if a whole line is there. A CR as the last
/// byte counts as a terminator of length one (the caller remembers it, to skip a following LF).
fn find_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let end = bytes.iter().position(|&b| b == b'\n' || b == b'\r')?;
    let term = match (bytes.get(end), bytes.get(end + 1)) {
        (Some(b'\r'), Some(b'\n')) => 2,
        _ => 1,
    };
    Some((end, term))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(chunks: &[&[u8]]) -> Vec<String> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk);
            while let Some(event) = parser.next() {
                out.push(String::from_utf8(event).unwrap());
            }
        }
        if let Some(event) = parser.finish() {
            out.push(String::from_utf8(event).unwrap());
        }
        out
    }

    fn at_every_split(stream: &[u8]) -> Vec<String> {
        let whole = parse_in(&[stream]);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(parse_in(&[a, b]), whole, "split at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_in(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn reads_data_events_and_skips_comments() {
        let events = at_every_split(b": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\ndata: two\ndata: lines\n\ndata: [DONE]\n\n");
        assert_eq!(events, vec!["{\"a\":1}", "two\nlines", "[DONE]"]);
    }

    #[test]
    fn accepts_crlf_and_cr_line_ends() {
        let events = at_every_split(b"data: a\r\n\r\ndata: b\r\rdata:c\n\ndata:  d\r\n\r\n");
        assert_eq!(events, vec!["a", "b", "c", " d"]);
    }

    #[test]
    fn multibyte_characters_survive_any_split() {
        let events = at_every_split("data: {\"t\":\"你好🚀é\"}\n\n".as_bytes());
        assert_eq!(events, vec!["{\"t\":\"你好🚀é\"}"]);
    }

    #[test]
    fn finish_flushes_an_unterminated_event() {
        assert_eq!(parse_in(&[b"data: tail"]), vec!["tail"]);
        assert_eq!(parse_in(&[b"data: tail\n"]), vec!["tail"]);
        assert!(parse_in(&[b": only a comment"]).is_empty());
    }

    #[test]
    fn oversized_events_are_dropped_with_bounded_memory() {
        let mut parser = SseParser::new(64);
        parser.feed(b"data: small\n\ndata: ");
        for _ in 0..1000 {
            parser.feed(&[b'x'; 50]);
            assert!(parser.buffered_bytes() <= 2 * 64 + 50);
            while parser.next().is_some() {}
        }
        parser.feed(b"\n\ndata: after\n\n");
        let mut events = Vec::new();
        while let Some(e) = parser.next() {
            events.push(e);
        }
        assert_eq!(events.last().map(Vec::as_slice), Some(&b"after"[..]));
        assert_eq!(parser.dropped_events(), 1);
    }

    #[test]
    fn many_data_lines_over_the_limit_drop_the_event() {
        let mut stream = Vec::new();
        for _ in 0..20 {
            stream.extend_from_slice(b"data: 0123456789\n");
        }
        stream.extend_from_slice(b"\ndata: ok\n\n");
        let mut parser = SseParser::new(100);
        parser.feed(&stream);
        assert_eq!(parser.next(), Some(b"ok".to_vec()));
        assert_eq!(parser.dropped_events(), 1);
    }
}
