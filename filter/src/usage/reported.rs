//! Reading a reported `usage` object, in either naming: chat/completions/embeddings
//! (`prompt_tokens`, `completion_tokens`) or the Responses API (`input_tokens`,
//! `output_tokens`). A streamed chat with continuous usage carries one on every chunk, so the
//! common shape is read without serde ([`Reader`]); anything else, and anything that reader is
//! unsure of, is read by serde (the reading both must agree with).

use serde::Deserialize;

use super::Usage;
use crate::json_reader::{once, Reader};

#[derive(Deserialize)]
struct ReportedUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// Reads a captured `usage` value; `None` for `null` or anything that is not a usage object.
pub(super) fn parse_usage(bytes: &[u8]) -> Option<Usage> {
    fast(bytes).unwrap_or_else(|| parse_with_serde(bytes))
}

/// The reading that [`fast`] must agree with.
pub(super) fn parse_with_serde(bytes: &[u8]) -> Option<Usage> {
    let reported: Option<ReportedUsage> = serde_json::from_slice(bytes).ok()?;
    let r = reported?;
    Some(usage_of(r.prompt_tokens, r.completion_tokens, r.total_tokens))
}

/// The slots ([`Reader::count`]) of the counts [`read_at`] reads, in [`usage_of`]'s order.
const PROMPT: usize = 0;
const COMPLETION: usize = 1;
const TOTAL: usize = 2;
const _: () = assert!(TOTAL < crate::json_reader::COUNTS);

/// [`parse_usage`] without serde: `None` when unsure, else what serde reads.
pub(super) fn fast(bytes: &[u8]) -> Option<Option<Usage>> {
    let mut reader = Reader::new(bytes);
    let usage = read_at(&mut reader)?;
    reader.end()?;
    Some(usage)
}

/// The usage value at the reader's cursor, as [`fast`] reads a whole one; the cursor ends just
/// past it.
pub(super) fn read_at(reader: &mut Reader<'_>) -> Option<Option<Usage>> {
    if reader.null() {
        return Some(None);
    }
    let (mut prompt, mut completion, mut total) = (None, None, None);
    reader.members(|r, key| {
        let (slot, count) = match key {
            b"prompt_tokens" | b"input_tokens" => (&mut prompt, PROMPT),
            b"completion_tokens" | b"output_tokens" => (&mut completion, COMPLETION),
            b"total_tokens" => (&mut total, TOTAL),
            _ => return r.skip_value(),
        };
        once(slot, r.count(count)?)
    })?;
    Some(Some(usage_of(prompt.flatten(), completion.flatten(), total.flatten())))
}

/// The counts of a usage object's members (a missing total is the sum).
pub(super) fn usage_of(prompt: Option<u64>, completion: Option<u64>, total: Option<u64>) -> Usage {
    let prompt_tokens = prompt.unwrap_or(0);
    let completion_tokens = completion.unwrap_or(0);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: total.unwrap_or(prompt_tokens.saturating_add(completion_tokens)),
    }
}
