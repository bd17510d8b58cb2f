//! An incremental Server-Sent Events parser that streams each event's `data` as it arrives:
//! [`SseParser::feed`] a chunk, take its [`SsePiece`]s with [`SseChunk::next`] until `None`, and
//! [`SseParser::finish`] at the end of the stream.
//!
//! It accepts any split of the byte stream (mid-event, mid-line, a CRLF cut in two, a multi-byte
//! UTF-8 character cut in two: it works on bytes), LF, CR and CRLF line ends, comment lines, other
//! fields (`event:`, `id:`), several events per chunk and one event over many chunks. Several
//! `data` lines of one event are joined with `\n`, as the SSE specification says. Nothing is held
//! back or copied: a `data` value is handed on piece by piece, borrowed from the chunk it came in,
//! so an event of any size costs no memory here (the consumer decides what to keep); between
//! chunks the parser keeps only where in a line it is. Right after an [`SsePiece::End`] (or a
//! [`SsePiece::NoEvent`]: a blank line after lines that make no event), [`SseChunk::consumed`]
//! says where in the chunk the bytes end (the blank line included), so that one parse of a stream
//! serves both counting an event's data and passing on, or rewriting, its bytes.

/// What the stream carries, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsePiece<'a> {
    /// More bytes of the current event's `data` (borrowed from what was fed).
    Data(&'a [u8]),
    /// The current event ended (only events with a `data` field end; others are not events).
    End,
    /// A blank line ended lines that make no event (comments, fields other than `data`, or
    /// nothing): their bytes are no event's.
    NoEvent,
}

/// Where in a line the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// At the start of a line.
    Start,
    /// In a field name; `matched` is how much of `data` it has matched (`None`: another field).
    Field { matched: Option<usize> },
    /// Just after `data:` (one space may follow).
    DataStart,
    /// In a `data` value.
    Data,
    /// In a comment or another field: skipped to the end of the line.
    Skip,
}

const DATA: &[u8] = b"data";

/// The incremental parser; see the module docs. It holds no bytes: only where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseParser {
    line: Line,
    /// The current event has had a `data` field.
    has_data: bool,
    /// A `data` line began after another one: a `\n` is owed before its value.
    owes_newline: bool,
    /// The last byte parsed was a CR: an LF right after it belongs to it.
    after_cr: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self { line: Line::Start, has_data: false, owes_newline: false, after_cr: false }
    }

    /// Starts reading the next chunk of the stream: take its pieces with [`SseChunk::next`]
    /// until it returns `None` (what is not taken of a chunk is not read).
    pub fn feed<'p, 'c>(&'p mut self, chunk: &'c [u8]) -> SseChunk<'p, 'c> {
        SseChunk { parser: self, chunk, at: 0 }
    }

    /// Ends the stream: an event still open (no closing blank line) ends here.
    pub fn finish(&mut self) -> Option<SsePiece<'static>> {
        let open = self.has_data;
        *self = Self::new();
        open.then_some(SsePiece::End)
    }

    fn after_field_name(&mut self, matched: Option<usize>) -> Line {
        if matched == Some(DATA.len()) {
            self.start_data();
            Line::DataStart
        } else {
            Line::Skip
        }
    }

    fn start_data(&mut self) {
        self.owes_newline = self.has_data;
        self.has_data = true;
    }

    /// A line ended; returns the end of the event when the line was blank.
    fn end_line(&mut self) -> Option<SsePiece<'static>> {
        let line = std::mem::replace(&mut self.line, Line::Start);
        match line {
            Line::Start if self.has_data => {
                self.has_data = false;
                self.owes_newline = false;
                Some(SsePiece::End)
            }
            Line::Start => Some(SsePiece::NoEvent),
            // `data` alone on a line: a data field with an empty value.
            Line::Field { matched: Some(n) } if n == DATA.len() => {
                self.start_data();
                self.owed_newline()
            }
            Line::DataStart => self.owed_newline(),
            _ => None,
        }
    }

    /// An empty `data` value after another one still adds its `\n`.
    fn owed_newline(&mut self) -> Option<SsePiece<'static>> {
        std::mem::take(&mut self.owes_newline).then_some(SsePiece::Data(b"\n"))
    }
}

/// One chunk of the stream being read; see [`SseParser::feed`].
#[derive(Debug)]
pub struct SseChunk<'p, 'c> {
    parser: &'p mut SseParser,
    chunk: &'c [u8],
    /// How much of `chunk` is read.
    at: usize,
}

impl<'c> SseChunk<'_, 'c> {
    /// How many bytes of the chunk have been read. Right after an [`SsePiece::End`] or
    /// [`SsePiece::NoEvent`]: where those bytes end in the chunk, the blank line included (the
    /// LF of a CRLF too, unless the chunk ended between the two: see [`SseChunk::owes_lf`]).
    pub fn consumed(&self) -> usize {
        self.at
    }

    /// Whether the last byte read was a CR, so that an LF starting the next chunk belongs to it.
    pub fn owes_lf(&self) -> bool {
        self.parser.after_cr
    }

    /// The next piece of the chunk, or `None` once it is all read.
    // The project's feed/next/finish parser convention: `None` means "feed me more", not "done",
    // so this is deliberately not an `Iterator`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<SsePiece<'c>> {
        while let Some(&b) = self.chunk.get(self.at) {
            let parser = &mut *self.parser;
            if std::mem::take(&mut parser.after_cr) && b == b'\n' {
                self.at += 1;
                continue;
            }
            if parser.line == Line::Data {
                if std::mem::take(&mut parser.owes_newline) {
                    return Some(SsePiece::Data(b"\n"));
                }
                let run = self.data_run();
                if !run.is_empty() {
                    return Some(SsePiece::Data(run));
                }
                continue;
            }
            if parser.line == Line::Start && self.data_line_starts() {
                continue;
            }
            let parser = &mut *self.parser;
            self.at += 1;
            if b == b'\r' || b == b'\n' {
                parser.after_cr = b == b'\r';
                if let Some(piece) = parser.end_line() {
                    if matches!(piece, SsePiece::End | SsePiece::NoEvent) {
                        self.take_crlf_tail();
                    }
                    return Some(piece);
                }
                continue;
            }
            parser.line = match parser.line {
                Line::Start if b == b':' => Line::Skip,
                Line::Start => Line::Field { matched: advance(Some(0), b) },
                Line::Field { matched } if b == b':' => parser.after_field_name(matched),
                Line::Field { matched } => Line::Field { matched: advance(matched, b) },
                Line::DataStart if b == b' ' => Line::Data,
                Line::DataStart => {
                    self.at -= 1;
                    Line::Data
                }
                other => other,
            };
        }
        None
    }

    /// At the start of a line: when the chunk holds the whole of `data: ` there, reads it at once
    /// (as the byte-by-byte path would: a data field, its one space) and says so. Nearly every
    /// line of a model's stream starts so.
    fn data_line_starts(&mut self) -> bool {
        let starts = self.chunk.get(self.at..).is_some_and(|rest| rest.starts_with(b"data: "));
        if starts {
            self.at += DATA.len() + 2;
            self.parser.start_data();
            self.parser.line = Line::Data;
        }
        starts
    }

    /// An event ended on a CR: the LF of a CRLF, when it is there, is read with it.
    fn take_crlf_tail(&mut self) {
        if self.parser.after_cr && self.chunk.get(self.at) == Some(&b'\n') {
            self.parser.after_cr = false;
            self.at += 1;
        }
    }

    /// The value bytes of a `data` line, up to its end (or the end of the chunk).
    fn data_run(&mut self) -> &'c [u8] {
        let rest = self.chunk.get(self.at..).unwrap_or_default();
        let len = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
        self.at += len;
        if len < rest.len() {
            self.parser.line = Line::Skip; // the line end itself is read by `next`
        }
        rest.get(..len).unwrap_or_default()
    }
}

/// How much of `data` a field name matches after one more byte.
fn advance(matched: Option<usize>, b: u8) -> Option<usize> {
    let matched = matched?;
    (DATA.get(matched) == Some(&b)).then_some(matched + 1)
}

#[cfg(test)]
mod tests;
