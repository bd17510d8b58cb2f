//! Fitting texts to a shape: the same bytes with other values of the same kinds in the holes
//! fit, and give their counts and places; anything else does not. That a fitted text reads as
//! it would be read is checked by the chunk reader's tests (`usage/chunk/tests.rs`).

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const LEARNT: &[u8] = br#"{"a":"x","n":-1.5e3,"t":"hi","c":12,"z":null}"#;

/// The shape of [`LEARNT`], whose `t` is text and `c` a count (slot 1).
fn shape() -> Shape {
    let mut reader = Reader::new(LEARNT).recording(Vec::new());
    reader
        .members(|r, key| match key {
            b"t" => r.optional_text().map(|_| ()),
            b"c" => r.count(1).map(|_| ()),
            _ => r.skip_value(),
        })
        .unwrap();
    let holes = reader.take_holes().unwrap();
    assert_eq!(holes.len(), 4, "{holes:?}");
    let mut shape = Shape::default();
    shape.learn(LEARNT, 1, &holes);
    shape
}

#[test]
fn other_values_in_the_holes_fit_with_their_counts_and_places() {
    let shape = shape();
    let learnt = &LEARNT[1..];
    let z = learnt.windows(3).position(|w| w == b"\"z\"").unwrap();
    let fit = |rest: &str| shape.fit(rest.as_bytes(), [0, z, learnt.len()]);
    let (counts, places) = fit(std::str::from_utf8(learnt).unwrap()).unwrap();
    assert_eq!((counts, places), ([None, Some(12), None], [0, z, learnt.len()]));
    let other = r#""a":"\u00e9 \"q\"","n":0,"t":"你好","c":18446744073709551615,"z":null}"#;
    let (counts, places) = fit(other).unwrap();
    assert_eq!(counts[1], Some(u64::MAX));
    // `"z"` and the end moved with the longer values before them.
    assert_eq!(&other.as_bytes()[places[1]..places[1] + 3], b"\"z\"");
    assert_eq!(places[2], other.len());
}

#[test]
fn other_bytes_or_values_of_another_kind_do_not_fit() {
    let shape = shape();
    for rest in [
        r#""a":"x","n":-1.5e3,"t":"hi","c":12,"z":0}"#, // a fixed word
        r#""a":"x","n":-1.5e3,"t":"hi","c":12,"z":null} "#, // more after the end
        r#""a":"x","n":-1.5e3,"t":"hi","c":12,"z":null"#, // less
        r#""a":"x", "n":-1.5e3,"t":"hi","c":12,"z":null}"#, // whitespace
        r#""b":"x","n":-1.5e3,"t":"hi","c":12,"z":null}"#, // a key
        r#""a":"x","n":"1","t":"hi","c":12,"z":null}"#, // a string for a number
        r#""a":"x","n":01,"t":"hi","c":12,"z":null}"#,  // not JSON's number
        r#""a":"x","n":1,"t":"","c":12,"z":null}"#,     // empty text for text
        r#""a":"x","n":1,"t":"\u0041","c":12,"z":null}"#, // text that needs decoding
        r#""a":"x","n":1,"t":"hi","c":1.5,"z":null}"#,  // a fraction for a count
        r#""a":"x","n":1,"t":"hi","c":null,"z":null}"#, // null for a count
        r#""a":"x","n":1,"t":"hi","c":-1,"z":null}"#,   // a negative count
        r#""a":"x","n":1,"t":"hi","c":18446744073709551616,"z":null}"#, // past u64
        "\"a\":\"\x01\",\"n\":1,\"t\":\"hi\",\"c\":1,\"z\":null}", // a control byte
        r#""a":"\x","n":1,"t":"hi","c":1,"z":null}"#,   // an unknown escape
    ] {
        assert!(shape.fit(rest.as_bytes(), [0]).is_none(), "{rest}");
    }
    assert!(shape.fit(b"\"a\":\"x\",\"n\":1,\"t\":\"\xff\",\"c\":1,\"z\":null}", [0]).is_none());
}

#[test]
fn fixed_values_and_too_many_holes_leave_no_holes() {
    let mut reader = Reader::new(br#"{"o":"error","k":[1,2]}"#).recording(Vec::new());
    reader
        .members(|r, key| if key == b"o" { r.skip_fixed_value() } else { r.skip_value() })
        .unwrap();
    assert_eq!(reader.take_holes().unwrap().len(), 2);
    let many = format!("[{}0]", "0,".repeat(MAX_HOLES));
    let mut reader = Reader::new(many.as_bytes()).recording(Vec::new());
    reader.skip_value().unwrap();
    assert!(reader.take_holes().is_none());
}
