//! Mutated inputs for the tests that hold a reader against its reference (the readers without
//! serde against serde, the one-pass chunk reading against the scanner): real inputs with a few
//! bytes replaced, inserted or removed, from a set that makes JSON tricky. The same seed gives
//! the same inputs.

/// Bytes that make JSON tricky: structure, escapes, digits, words, whitespace, a control byte,
/// UTF-8 and a byte that is never UTF-8.
const BYTES: &[u8] = b"\"\\{}[],: 0123456789-+.eEnulltruefalsx\n\t\x01\xc3\xa9\xff";

/// `count` inputs, each one of `bases` with one to three mutations.
pub(crate) fn mutations(bases: &[&[u8]], count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed;
    let mut next = |below: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % below
    };
    (0..count)
        .map(|_| {
            let mut input = bases[next(bases.len())].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(input.len() + 1);
                let b = BYTES[next(BYTES.len())];
                match next(3) {
                    0 if at < input.len() => input[at] = b,
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.insert(at, b),
                }
            }
            input
        })
        .collect()
}
