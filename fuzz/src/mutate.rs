//! Mutations of an input: bit flips, interesting bytes, random insertions, deletions and copies of
//! ranges, splices with another input of the pool, tokens of the target's grammar (`data:`, line
//! ends, JSON punctuation, member names, multi-byte UTF-8) and interesting numbers. A few are
//! stacked per input, fewer more often than many.

use crate::rng::Rng;

/// Mutated inputs are cut to this size (64 KiB): big enough for any seed, small enough to keep
/// the runs fast.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// Tokens every target gets: the grammar of SSE and JSON, and text that breaks naive parsers.
const COMMON_TOKENS: &[&[u8]] = &[
    b"data:",
    b"data: ",
    b"data",
    b"\n\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\r",
    b"\n",
    b": keep-alive\n",
    b"event: x\n",
    b"id: 1\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"{}",
    b"[]",
    b"\"",
    b"\\",
    b"\\\"",
    b":",
    b",",
    b"\"usage\"",
    b"\"usage\":null",
    b"\"usage\":{\"prompt_tokens\":1,\"total_tokens\":3,\"completion_tokens\":2}",
    b"\"choices\":[]",
    b"\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"}}]",
    b"null",
    b"true",
    b"false",
    b"[DONE]",
    b"\\u0000",
    b"\\u00e9",
    b"\\ud83d\\ude00",
    b"\\ud83d",
    "é".as_bytes(),
    "€".as_bytes(),
    "😀".as_bytes(),
    b"\xf0\x9f",
    b"\xc3",
    b"\xff",
    b"\x00",
    b" ",
    b"\t",
];

/// Bytes worth setting: delimiters of the grammars and the edges of the byte range.
const INTERESTING_BYTES: &[u8] = b"\x00\x01\x7f\x80\xc3\xff\"\\\n\r:{}[],0-. %+=?&";

/// Numbers worth putting where a number was: zero, signs, the edges of `i64` and `u64`, floats.
const INTERESTING_NUMBERS: &[&[u8]] = &[
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"2",
    b"4096",
    b"4097",
    b"1800000000",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1e309",
    b"1.5",
    b"-1e-7",
    b"00",
];

/// One mutation.
#[derive(Debug, Clone, Copy)]
enum Mutation {
    FlipBit,
    InterestingByte,
    RandomByte,
    InsertRandom,
    Delete,
    Duplicate,
    Splice,
    InsertToken,
    OverwriteToken,
    ReplaceNumber,
    Truncate,
}

const MUTATIONS: [Mutation; 11] = [
    Mutation::FlipBit,
    Mutation::InterestingByte,
    Mutation::RandomByte,
    Mutation::InsertRandom,
    Mutation::Delete,
    Mutation::Duplicate,
    Mutation::Splice,
    Mutation::InsertToken,
    Mutation::OverwriteToken,
    Mutation::ReplaceNumber,
    Mutation::Truncate,
];

/// Mutates inputs with a target's own tokens besides the common ones.
#[derive(Debug, Clone, Copy)]
pub struct Mutator {
    dictionary: &'static [&'static [u8]],
}

impl Mutator {
    /// A mutator that also inserts the tokens of `dictionary`.
    pub fn new(dictionary: &'static [&'static [u8]]) -> Self {
        Self { dictionary }
    }

    /// A mutated copy of `base`; `pool` holds the inputs a splice may take from.
    pub fn mutate(&self, base: &[u8], pool: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
        let mut input = base.to_vec();
        let most = 1 << rng.below(4);
        let stacked = 1 + rng.below(most);
        for _ in 0..stacked {
            let mutation = rng.pick(&MUTATIONS).copied().unwrap_or(Mutation::FlipBit);
            self.apply(mutation, &mut input, pool, rng);
        }
        input.truncate(MAX_INPUT_BYTES);
        input
    }

    fn apply(&self, mutation: Mutation, input: &mut Vec<u8>, pool: &[Vec<u8>], rng: &mut Rng) {
        match mutation {
            Mutation::FlipBit => {
                let at = rng.below(input.len());
                if let Some(b) = input.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
            Mutation::InterestingByte => {
                set_byte(input, rng.pick(INTERESTING_BYTES).copied().unwrap_or(0), rng)
            }
            Mutation::RandomByte => set_byte(input, rng.next_u64() as u8, rng),
            Mutation::InsertRandom => {
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next_u64() as u8).collect();
                insert(input, &bytes, rng);
            }
            Mutation::Delete => {
                let (start, end) = range(input.len(), rng);
                input.drain(start..end);
            }
            Mutation::Duplicate => {
                let (start, end) = range(input.len(), rng);
                let copy = input.get(start..end).unwrap_or_default().to_vec();
                insert(input, &copy, rng);
            }
            Mutation::Splice => splice(input, rng.pick(pool).map_or(&[][..], Vec::as_slice), rng),
            Mutation::InsertToken => insert(input, self.token(rng), rng),
            Mutation::OverwriteToken => {
                let token = self.token(rng);
                let at = rng.below(input.len() + 1);
                let end = (at + token.len()).min(input.len());
                input.splice(at..end, token.iter().copied());
            }
            Mutation::ReplaceNumber => replace_number(input, rng),
            Mutation::Truncate => input.truncate(rng.below(input.len() + 1)),
        }
    }

    /// A token of the target's dictionary or a common one.
    fn token(&self, rng: &mut Rng) -> &'static [u8] {
        let own = !self.dictionary.is_empty() && rng.one_in(2);
        let tokens = if own { self.dictionary } else { COMMON_TOKENS };
        rng.pick(tokens).copied().unwrap_or_default()
    }
}

fn set_byte(input: &mut [u8], value: u8, rng: &mut Rng) {
    let at = rng.below(input.len());
    if let Some(b) = input.get_mut(at) {
        *b = value;
    }
}

fn insert(input: &mut Vec<u8>, bytes: &[u8], rng: &mut Rng) {
    let at = rng.below(input.len() + 1);
    input.splice(at..at, bytes.iter().copied());
}

/// A random range of an input of `len` bytes, short ones more often.
fn range(len: usize, rng: &mut Rng) -> (usize, usize) {
    let start = rng.below(len + 1);
    let longest = (len - start).min(1 << rng.below(12));
    (start, start + rng.below(longest + 1))
}

/// This input's head and the tail of `other`, or `other`'s range dropped into this input.
fn splice(input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    if rng.one_in(2) {
        input.truncate(rng.below(input.len() + 1));
        input.extend_from_slice(other.get(rng.below(other.len() + 1)..).unwrap_or_default());
    } else {
        let (start, end) = range(other.len(), rng);
        insert(input, other.get(start..end).unwrap_or_default(), rng);
    }
}

/// Replaces the run of digits around a random position (or inserts where there is none).
fn replace_number(input: &mut Vec<u8>, rng: &mut Rng) {
    let number = rng.pick(INTERESTING_NUMBERS).copied().unwrap_or(b"0");
    let at = rng.below(input.len());
    let digits = |i: usize| input.get(i).is_some_and(u8::is_ascii_digit);
    let Some(first) = (at..input.len()).find(|&i| digits(i)) else {
        insert(input, number, rng);
        return;
    };
    let end = (first..input.len()).find(|&i| !digits(i)).unwrap_or(input.len());
    input.splice(first..end, number.iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_repeatable_and_bounded() {
        let mutator = Mutator::new(&[b"token"]);
        let pool = vec![b"data: {\"a\":12}\n\n".to_vec(), Vec::new()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..2000).map(|i| mutator.mutate(&pool[i % 2], &pool, &mut rng)).collect::<Vec<_>>()
        };
        let first = run(3);
        assert_eq!(first, run(3));
        assert!(first.iter().all(|m| m.len() <= MAX_INPUT_BYTES));
        assert!(
            first.iter().filter(|m| **m != pool[0] && **m != pool[1]).count() > 1000,
            "most inputs change"
        );
    }
}
