//! The strict reader's own pieces; what it reads is checked against serde by its users' tests
//! (`usage/tests/readers.rs`, `record/tests.rs`).
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The word-at-a-time search for the end of a string's plain run finds, for every byte value at
/// every place in words and tails, what a byte-by-byte search finds, also behind a byte that
/// marks its neighbours falsely (a zero or a control byte borrows from the next).
#[test]
fn the_end_of_a_plain_run_is_found_as_byte_by_byte() {
    let by_byte = |bytes: &[u8], ascii: bool| {
        bytes.iter().position(|&b| super::stops_run(b, ascii)).unwrap_or(bytes.len())
    };
    for len in 0..20 {
        for at in 0..len {
            for b in 0..=255u8 {
                for filler in [b'a', b' ', 0x7e, 0x80, 0x21] {
                    let mut bytes = vec![filler; len];
                    bytes[at] = b;
                    if at + 1 < len {
                        bytes[at + 1] = 0; // a true stop right behind: must not hide `b`
                    }
                    for ascii in [false, true] {
                        let want = by_byte(&bytes, ascii);
                        assert_eq!(super::run_before(&bytes, ascii), want, "{bytes:?} {ascii}");
                    }
                }
            }
        }
    }
}
