//! The parser over hand-written streams split at every byte boundary.

use super::*;

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
    };
    for chunk in chunks {
        parser.feed(chunk);
        while let Some(piece) = parser.next() {
            take(piece, &mut data);
        }
        assert_eq!(parser.buffered_bytes(), 0, "everything fed is parsed");
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
    parser.feed(b"data: small\n\ndata: ");
    let mut total = 0;
    let mut ends = 0;
    for _ in 0..10_000 {
        parser.feed(&[b'x'; 1000]);
        while let Some(piece) = parser.next() {
            match piece {
                SsePiece::Data(d) => total += d.len(),
                SsePiece::End => ends += 1,
            }
        }
        assert_eq!(parser.buffered_bytes(), 0);
    }
    parser.feed(b"\n\ndata: after\n\n");
    while let Some(piece) = parser.next() {
        if piece == SsePiece::End {
            ends += 1;
        }
    }
    assert_eq!((total, ends), ("small".len() + 10_000_000, 3));
}
