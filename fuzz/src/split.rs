//! The ways a target feeds one input to an incremental parser: whole, cut in two, and in small
//! chunks. The cut and the chunk size come from the input's own hash, so a saved input
//! reproduces its splits without the run that found it.

use crate::rng::hash_bytes;

/// The splittings of `input` that an incremental target compares, the whole input first.
pub fn splittings(input: &[u8]) -> [Vec<&[u8]>; 3] {
    let hash = hash_bytes(input);
    let cut = usize::try_from(hash % (input.len() as u64 + 1)).unwrap_or(0);
    let (head, tail) = input.split_at(cut);
    let chunk = 1 + usize::try_from((hash >> 32) % 7).unwrap_or(0);
    [vec![input], vec![head, tail], input.chunks(chunk).collect()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_splitting_holds_the_whole_input() {
        for input in [&b""[..], b"a", b"data: {}\n\n"] {
            for pieces in splittings(input) {
                assert_eq!(pieces.concat(), input);
            }
        }
    }
}
