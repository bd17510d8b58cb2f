//! `sse`: the SSE parser against a reference model of the specification's line rules, fed whole,
//! cut in two and in small chunks: the same events (each event's `data` put together from its
//! pieces) every time, no empty piece, and nothing left buffered after each feed.

use vllm_gateway_filter::sse::{SseParser, SsePiece};

use super::{outcome, Target};
use crate::split::splittings;

pub const TARGET: Target = Target {
    name: "sse",
    about: "SSE parser: any split gives the reference model's events",
    run,
    dictionary: &[
        b"data:",
        b"data: ",
        b"data",
        b"dat",
        b"DATA:",
        b":",
        b"\r",
        b"\n",
        b"\r\n",
        b"\n\n",
        b"event:",
        b"id:",
        b"retry: 1",
    ],
};

fn run(input: &[u8]) -> u64 {
    let expected = reference_events(input);
    for pieces in splittings(input) {
        assert_eq!(parse(&pieces), expected, "fed in {} pieces", pieces.len());
    }
    let multi_line = expected.iter().any(|e| e.contains(&b'\n'));
    let empty = expected.iter().any(Vec::is_empty);
    outcome(&[
        expected.len().min(16) as u64,
        u64::from(multi_line),
        u64::from(empty),
        u64::from(input.contains(&b'\r')),
    ])
}

/// The events the parser hands on for a stream fed in `pieces`.
fn parse(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut parser = SseParser::new();
    let (mut events, mut data) = (Vec::new(), Vec::new());
    let mut take = |piece: SsePiece<'_>, data: &mut Vec<u8>| match piece {
        SsePiece::Data(bytes) => {
            assert!(!bytes.is_empty(), "an empty data piece");
            data.extend_from_slice(bytes);
        }
        SsePiece::End => events.push(std::mem::take(data)),
        SsePiece::NoEvent => {
            assert!(data.is_empty(), "data before a blank line that ends no event")
        }
    };
    for piece in pieces {
        let mut chunk = parser.feed(piece);
        while let Some(next) = chunk.next() {
            take(next, &mut data);
        }
        assert_eq!(chunk.consumed(), piece.len(), "bytes of a chunk left unread");
    }
    if let Some(end) = parser.finish() {
        take(end, &mut data);
    }
    assert!(data.is_empty(), "data handed on without an event end");
    events
}

/// The events of a whole stream by the SSE specification's rules: lines end at CRLF, LF or CR; a
/// blank line ends an event that has had a `data` field; a field's name runs to its first `:`
/// and one space after it is dropped; a line without `:` is a field with an empty value; the
/// values of one event's `data` fields are joined with `\n`. Where the stream is cut off, the
/// parser's documented rule: an open event still ends, with what its unfinished last line had
/// already handed on (a `data:` line's value so far; a bare `data` without its line end is no
/// field yet).
pub fn reference_events(stream: &[u8]) -> Vec<Vec<u8>> {
    let (lines, unfinished) = lines(stream);
    let mut events = Vec::new();
    let mut event: Option<Vec<u8>> = None;
    for line in lines {
        if line.is_empty() {
            events.extend(event.take());
        } else if let Some(value) = data_value(line) {
            add_data(&mut event, value);
        }
    }
    if unfinished.starts_with(b"data:") {
        match (&mut event, data_value(unfinished)) {
            (Some(_), Some([])) => {}
            (_, Some(value)) => add_data(&mut event, value),
            (_, None) => {}
        }
    }
    events.extend(event);
    events
}

fn add_data(event: &mut Option<Vec<u8>>, value: &[u8]) {
    match event {
        Some(data) => {
            data.push(b'\n');
            data.extend_from_slice(value);
        }
        None => *event = Some(value.to_vec()),
    }
}

/// The value of a `data` field line; `None` for any other line.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(&[]);
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The stream's finished lines, and what follows the last line end.
fn lines(stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
        let (line, tail) = rest.split_at(end);
        lines.push(line);
        let crlf = tail.starts_with(b"\r\n");
        rest = tail.get(if crlf { 2 } else { 1 }..).unwrap_or_default();
    }
    (lines, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_reads_the_parsers_own_examples() {
        let stream = b": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\nid: 3\ndata: two\ndata: lines\n\ndata: a\r\n\r\ndata:  d\rdata\r\r";
        let events: Vec<&[u8]> = vec![b"{\"a\":1}", b"two\nlines", b"a", b" d\n"];
        assert_eq!(reference_events(stream), events);
        assert_eq!(reference_events(b"data: a\ndata: b"), vec![b"a\nb".to_vec()]);
        assert_eq!(reference_events(b"data: a\ndata: "), vec![b"a".to_vec()]);
        assert_eq!(reference_events(b"data: a\n\ndata"), vec![b"a".to_vec()]);
        run(stream);
    }
}
