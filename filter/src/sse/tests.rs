//! The parser over hand-written streams split at every byte boundary.

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The events of a stream fed in `chunks`, each assembled from its pieces.
fn parse_in(chunks: &[&[u8]]) -> Vec<String> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut data = Vec::new();
    let mut take = |piece: SsePiece, data: &mut Vec<u8>| match piece {
        SsePiece::Data(bytes) => {
            assert!(!bytes.is_empty(), "no empty pieces");
            data.extend_from_slice(bytes);
        }
        SsePiece::End => events.push(String::from_utf8(std::mem::take(data)).unwrap()),
        SsePiece::NoEvent => {
            assert!(data.is_empty(), "no data before a blank line ending no event")
        }
    };
    for chunk in chunks {
        let mut pieces = parser.feed(chunk);
        while let Some(piece) = pieces.next() {
            take(piece, &mut data);
        }
        assert_eq!(pieces.consumed(), chunk.len(), "everything fed is parsed");
    }
    if let Some(piece) = parser.finish() {
        take(piece, &mut data);
    }
    assert!(data.is_empty(), "data without an end: {data:?}");
    events
}

fn at_every_split(stream: &[u8]) -> Vec<String> {
    let whole = parse_in(&[stream]);
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(parse_in(&[a, b]), whole, "split at {cut}");
        for cut2 in cut..=stream.len() {
            let (b1, b2) = b.split_at(cut2 - cut);
            assert_eq!(parse_in(&[a, b1, b2]), whole, "split at {cut} and {cut2}");
        }
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(parse_in(&bytes), whole, "byte by byte");
    whole
}

#[test]
fn reads_data_events_and_skips_comments_and_other_fields() {
    let events = at_every_split(b": keep-alive\n\ndata: {\"a\":1}\n\nevent: x\nid: 3\ndata: two\ndata: lines\n\nretry: 10\n\ndata: [DONE]\n\n");
    assert_eq!(events, vec!["{\"a\":1}", "two\nlines", "[DONE]"]);
}

#[test]
fn accepts_crlf_and_cr_line_ends() {
    let events = at_every_split(b"data: a\r\n\r\ndata: b\r\rdata:c\n\ndata:  d\r\n\r\n");
    assert_eq!(events, vec!["a", "b", "c", " d"]);
}

#[test]
fn field_names_must_be_exactly_data() {
    let events = at_every_split(b"dat: no\ndatas: no\nDATA: no\ndata\n\ndata:\ndata: x\ndata:\n\n");
    assert_eq!(events, vec!["", "\nx\n"]);
}

#[test]
fn multibyte_characters_survive_any_split() {
    let events = at_every_split("data: {\"t\":\"你好🚀é\"}\n\n".as_bytes());
    assert_eq!(events, vec!["{\"t\":\"你好🚀é\"}"]);
}

#[test]
fn finish_ends_an_unterminated_event() {
    assert_eq!(parse_in(&[b"data: tail"]), vec!["tail"]);
    assert_eq!(parse_in(&[b"data: tail\n"]), vec!["tail"]);
    assert!(parse_in(&[b": only a comment"]).is_empty());
    assert!(parse_in(&[b"event: x\n\n"]).is_empty(), "an event without data is no event");
}

#[test]
fn a_huge_event_streams_through_without_being_held() {
    let mut parser = SseParser::new();
    let mut pieces = parser.feed(b"data: small\n\ndata: ");
    let mut total = 0;
    let mut ends = 0;
    while let Some(piece) = pieces.next() {
        match piece {
            SsePiece::Data(d) => total += d.len(),
            SsePiece::End => ends += 1,
            SsePiece::NoEvent => panic!("no blank line without data here"),
        }
    }
    let chunk = [b'x'; 1000];
    for _ in 0..10_000 {
        let mut pieces = parser.feed(&chunk);
        while let Some(piece) = pieces.next() {
            match piece {
                SsePiece::Data(d) => total += d.len(),
                SsePiece::End => ends += 1,
                SsePiece::NoEvent => panic!("no blank line without data here"),
            }
        }
        assert_eq!(pieces.consumed(), chunk.len());
    }
    let mut pieces = parser.feed(b"\n\ndata: after\n\n");
    while let Some(piece) = pieces.next() {
        if piece == SsePiece::End {
            ends += 1;
        }
    }
    assert_eq!((total, ends), ("small".len() + 10_000_000, 3));
}

/// The bytes of each event (true) and of each run of lines that make no event (false), as
/// [`SseChunk::consumed`] and [`SseChunk::owes_lf`] mark them, of a stream fed in `chunks`;
/// and the bytes after the last.
fn raw_blocks_in(chunks: &[&[u8]]) -> (Vec<(bool, Vec<u8>)>, Vec<u8>) {
    let mut parser = SseParser::new();
    let (mut blocks, mut held): (Vec<(bool, Vec<u8>)>, Vec<u8>) = (Vec::new(), Vec::new());
    let mut lf_owed = false;
    for chunk in chunks {
        let mut start = 0;
        if chunk.is_empty() {
            continue;
        }
        if std::mem::take(&mut lf_owed) && chunk.first() == Some(&b'\n') {
            blocks.last_mut().unwrap().1.push(b'\n');
            start = 1;
        }
        let mut pieces = parser.feed(chunk);
        while let Some(piece) = pieces.next() {
            if matches!(piece, SsePiece::End | SsePiece::NoEvent) {
                let is_event = piece == SsePiece::End;
                let end = pieces.consumed();
                held.extend_from_slice(&chunk[start..end]);
                blocks.push((is_event, std::mem::take(&mut held)));
                start = end;
                lf_owed = pieces.owes_lf() && end == chunk.len();
            }
        }
        held.extend_from_slice(&chunk[start..]);
    }
    (blocks, held)
}

#[test]
fn the_bytes_of_each_event_are_marked_whole_at_every_split() {
    let stream: &[u8] = b": hi\n\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: b\r\rid: 1\r\n\ndata: c\n\ndata: d\r\n\r\ndata: tail";
    let expected: Vec<(bool, &[u8])> = vec![
        (false, b": hi\n\n"),
        (true, b"data: {\"a\":1}\r\n\r\n"),
        (true, b"event: x\ndata: b\r\r"),
        (false, b"id: 1\r\n\n"),
        (true, b"data: c\n\n"),
        (true, b"data: d\r\n\r\n"),
    ];
    let expected: Vec<(bool, Vec<u8>)> =
        expected.into_iter().map(|(e, b)| (e, b.to_vec())).collect();
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        for cut2 in cut..=stream.len() {
            let (b1, b2) = b.split_at(cut2 - cut);
            let (blocks, rest) = raw_blocks_in(&[a, b1, b2]);
            assert_eq!(blocks, expected, "split at {cut} and {cut2}");
            assert_eq!(rest, b"data: tail", "split at {cut} and {cut2}");
        }
    }
}
