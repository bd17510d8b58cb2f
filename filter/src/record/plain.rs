//! Reading a record without serde when it is written plainly, as the filter writes it: the
//! control plane reads one for every access-log row, and serde's derived reader was most of that
//! cost. Anything else (an escape, a negative or fractional count, a repeated member, a value of
//! another type) is left to serde, so a record always reads exactly as `serde_json` reads it.

use super::UsageRecord;
use crate::json_reader::Reader;
use crate::usage::UsageSource;

/// How one member's value is read into a record.
type ReadMember = fn(&mut UsageRecord, &mut Reader<'_>) -> Option<()>;

/// The record's members as serde names them, in the order the filter writes them (a test holds
/// this to what it writes), each with how its value is read.
const MEMBERS: [(&str, ReadMember); 18] = [
    ("app_id", |m, r| set(&mut m.app_id, id(r))),
    ("key_id", |m, r| set(&mut m.key_id, id(r))),
    ("user_id", |m, r| set(&mut m.user_id, id(r))),
    ("model", |m, r| set(&mut m.model, text(r))),
    ("cluster", |m, r| set(&mut m.cluster, text(r))),
    ("stream", |m, r| set(&mut m.stream, r.boolean())),
    ("status", |m, r| set(&mut m.status, r.optional_u64()?.and_then(|s| s.try_into().ok()))),
    ("prompt_tokens", |m, r| set(&mut m.usage.prompt_tokens, r.optional_u64()?)),
    ("completion_tokens", |m, r| set(&mut m.usage.completion_tokens, r.optional_u64()?)),
    ("total_tokens", |m, r| set(&mut m.usage.total_tokens, r.optional_u64()?)),
    ("usage_source", |m, r| set(&mut m.usage_source, source(r))),
    ("ttft_ms", |m, r| set(&mut m.ttft_ms, r.optional_u64())),
    ("duration_ms", |m, r| set(&mut m.duration_ms, r.optional_u64())),
    ("client_disconnected", |m, r| set(&mut m.client_disconnected, r.boolean())),
    ("gateway_error", |m, r| set(&mut m.gateway_error, text(r))),
    ("upstream_error", |m, r| set(&mut m.upstream_error, text(r))),
    ("limited", |m, r| set(&mut m.limited, text(r))),
    ("cut_off", |m, r| set(&mut m.cut_off, r.boolean())),
];

/// The record in `bytes` when it is written plainly (see the module docs); `None` when serde
/// must read it.
pub(super) fn read(bytes: &[u8]) -> Option<UsageRecord> {
    let mut record = UsageRecord::default();
    let mut seen = 0u32;
    // Where a key is looked for first: after the last one found, as the filter writes them.
    let mut next = 0;
    let mut reader = Reader::new(bytes);
    reader.members(|r, key| {
        let (before, from_next) = MEMBERS.split_at(next);
        let found = from_next.iter().chain(before).position(|(name, _)| name.as_bytes() == key);
        let Some(i) = found.map(|at| (next + at) % MEMBERS.len()) else {
            return r.skip_value();
        };
        // serde refuses a member that comes twice.
        (seen & 1 << i == 0).then(|| seen |= 1 << i)?;
        next = i + 1;
        let (_, read_value) = MEMBERS.get(i)?;
        read_value(&mut record, r)
    })?;
    reader.end()?;
    Some(record)
}

/// Sets `slot` to the value read, if one was.
fn set<T>(slot: &mut T, value: Option<T>) -> Option<()> {
    *slot = value?;
    Some(())
}

/// An id: `null` or an integer from 0 to `i64::MAX` (a negative one is left to serde).
fn id(r: &mut Reader<'_>) -> Option<Option<i64>> {
    r.optional_u64()?.map(i64::try_from).transpose().ok()
}

fn text(r: &mut Reader<'_>) -> Option<Option<String>> {
    Some(r.optional_plain_str()?.map(str::to_owned))
}

fn source(r: &mut Reader<'_>) -> Option<UsageSource> {
    match r.optional_plain_str()?? {
        "reported" => Some(UsageSource::Reported),
        "estimated" => Some(UsageSource::Estimated),
        "none" => Some(UsageSource::None),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
