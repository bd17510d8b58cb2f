//! Cutting a member where the counting's scan found it against searching the members again:
//! the same cut whenever the scan gives a place, on documents of every kind.

use super::*;
use crate::json_scan::JsonScanner;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The cut the search of the members finds.
fn searched(json: &[u8]) -> Option<(usize, usize)> {
    let members = top_level_members(json)?;
    member_span(&members, members.iter().position(|m| key_is(json, m, "usage"))?)
}

/// The cut from the scan's place, when it gives one.
fn from_scan(json: &[u8]) -> Option<(usize, usize)> {
    let mut scanner = JsonScanner::new(&[&["usage"]], 1 << 16);
    scanner.feed(json);
    let span = scanner.finish().span(0)?;
    Some(member_cut(json, span).expect("a scanned member has a comma or a bracket beside it"))
}

#[test]
fn the_scanned_place_cuts_as_the_search_does() {
    let found = [
        r#"{"id":"x","choices":[],"usage":{"prompt_tokens":1}}"#,
        r#"{"usage":{"prompt_tokens":1},"id":"x"}"#,
        r#"{"a":1,"usage":null,"b":[{"usage":2}]}"#,
        r#"{ "usage" : 3 }"#,
        r#" {"a" : "}" ,	"usage":"u\"" } "#,
        r#"{"a":true , "us\u0061ge" : {"x":"]"} ,"b":-1.5e3}"#,
        r#"{"a":{"usage":1},"usage":2}"#,
    ];
    for json in found {
        let cut = from_scan(json.as_bytes());
        assert!(cut.is_some(), "{json}");
        assert_eq!(cut, searched(json.as_bytes()), "{json}");
    }
}

#[test]
fn where_the_search_could_cut_elsewhere_the_scan_gives_no_place() {
    for json in [
        "{\"a\":1\u{c},\"usage\":2}", // a form feed ends the scalar for the search only
        "{\"a\":\u{c},\"usage\":2}",  // and is no value to it
        r#"{"usage":1,"usage":2}"#,   // the search cuts the first
        r#"{"a":,,"usage":2}"#,       // no value to the search either
        r#"{"a":1 "usage":2}"#,       // the search reads on without a comma
        r#"{,"usage":2}"#,            // as it does past a leading comma
        r#"{"usage":2,"a":[}]}"#,     // brackets that do not match
        r#"{"usage":2"#,              // cut off
    ] {
        assert_eq!(from_scan(json.as_bytes()), None, "{json}");
    }
}

#[test]
fn generated_objects_cut_alike() {
    const VALUES: [&str; 8] =
        ["1", "null", r#""s,}""#, "[1,{}]", r#"{"usage":0}"#, "-2e5", "true", r#""\"""#];
    const KEYS: [&str; 4] = ["usage", "a", "us\\u0061ge", "b"];
    const SPACES: [&str; 3] = ["", " ", "\t "];
    let mut state = 7u64;
    let mut next = |below: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % below
    };
    let mut cut = 0;
    for _ in 0..3000 {
        let members: Vec<String> = (0..next(4))
            .map(|_| {
                let space = SPACES[next(3)];
                format!("{space}\"{}\"{space}:{space}{}{space}", KEYS[next(4)], VALUES[next(8)])
            })
            .collect();
        let json = format!("{{{}}}", members.join(","));
        if let Some(scanned) = from_scan(json.as_bytes()) {
            assert_eq!(Some(scanned), searched(json.as_bytes()), "{json}");
            cut += 1;
        }
    }
    assert!(cut > 500, "only {cut} cut");
}
