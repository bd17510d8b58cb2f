//! A chat or completions chunk read in one pass: the common streamed event (vLLM's
//! `{"id":…,"object":"chat.completion.chunk",…,"choices":[…],"usage":{…}}`), whose data comes
//! whole in one piece, is read straight into its [`EventFacts`] by the strict [`Reader`], instead
//! of the scanner copying `choices` and `usage` out to be read a second time.
//!
//! It answers only where it finds what the scanner and [`super::event::read`] find: a JSON
//! object that `serde_json` would accept as it is read (grammar, strings, numbers), with keys
//! written without escapes, no member it reads coming twice, none of the members that make an
//! event something else (`error`, `type`, `response`, or `"object": "error"`), and `choices` and
//! `usage` in the shapes the readers without serde know. For anything else it answers `None`
//! and the scanner reads the event. Tests and the `usage_stream` fuzz target check that both
//! readings agree ([`super::StreamAccounting::scanner_only`]).

use super::choices::{self, Choices};
use super::event::EventFacts;
use super::{reported, Usage, UsageMember, CAPTURE_BYTES};
use crate::json_reader::{once, Hole, Reader, Shape};
use crate::json_scan::MemberSpan;

/// The start of the last event read in one pass, up to its first member that tells something
/// ([`tells`]). The chunks of one stream start alike (`{"id":…,"object":…,"created":…,"model":…,`),
/// so an event that starts with these same bytes is read from there: how those members read
/// depends on their bytes alone, and they were read already. What follows the start is alike
/// too but for the text and the counts, so the last event read on from it is kept as a
/// [`Rest`]: an event whose rest has its shape is not read at all.
#[derive(Debug, Default)]
pub(super) struct Prefix {
    bytes: Vec<u8>,
    /// `object` is among its members (and may not come again).
    object: bool,
    /// The rest of the last event read on from this start.
    rest: Option<Rest>,
    /// The holes of the last reading, kept for the next (no allocation per event).
    holes: Vec<Hole>,
}

/// What follows the start in the last event read on from it: its shape, and what it said with
/// the counts left out.
#[derive(Debug, Default)]
struct Rest {
    shape: Shape,
    facts: EventFacts,
    /// It had a usage object (whose counts are the shape's).
    usage: bool,
    /// Where its `usage` member sat, in the shape's bytes.
    usage_span: Option<MemberSpan>,
}

impl Prefix {
    /// Whether `data` starts with the kept start (and there is one).
    fn starts(&self, data: &[u8]) -> bool {
        !self.bytes.is_empty() && data.starts_with(&self.bytes)
    }

    /// Keeps the start of `data` up to the member at `start`, when at least one member comes
    /// before it (the bytes then end with a `,` and any whitespace: where a member goes on).
    fn remember(&mut self, data: &[u8], start: usize, object: bool) {
        let before = data.get(..start).unwrap_or_default();
        if before.trim_ascii_end().last() == Some(&b',') {
            self.bytes.clear();
            self.bytes.extend_from_slice(before);
            self.object = object;
            self.rest = None;
        }
    }

    /// Keeps the rest of `data`, just read on from this start with `holes` noted and found to
    /// say `facts`, for the next event to fit ([`Rest::fit`]).
    fn learn_rest(&mut self, data: &[u8], holes: Option<Vec<Hole>>, facts: &EventFacts) {
        let Some(holes) = holes else {
            self.rest = None; // too many holes to be worth it
            return;
        };
        let from = self.bytes.len();
        let rest = self.rest.get_or_insert_with(Rest::default);
        rest.shape.learn(data, from, &holes);
        rest.facts = EventFacts { usage: None, ..facts.clone() };
        rest.usage = facts.usage.is_some();
        rest.usage_span = facts.usage_span.map(|span| MemberSpan {
            start: span.start.saturating_sub(from),
            end: span.end.saturating_sub(from),
        });
        self.holes = holes;
    }
}

impl Rest {
    /// What `data`, which starts with `prefix`, says when its rest has this one's shape: what
    /// this one said, with the counts and the place of `usage` as they are in `data`.
    fn fit(&self, data: &[u8], prefix: &Prefix) -> Option<EventFacts> {
        let from = prefix.bytes.len();
        let span = self.usage_span.unwrap_or(MemberSpan { start: 0, end: 0 });
        let (counts, [start, end]) = self.shape.fit(data.get(from..)?, [span.start, span.end])?;
        let [prompt, completion, total] = counts;
        Some(EventFacts {
            usage: self.usage.then(|| reported::usage_of(prompt, completion, total)),
            usage_span: self
                .usage_span
                .map(|_| MemberSpan { start: start + from, end: end + from }),
            ..self.facts.clone()
        })
    }
}

/// The facts of one event whose whole data is `data`, read on its own; `None` when unsure (see
/// the module docs).
#[cfg(test)]
pub(super) fn read(data: &[u8]) -> Option<EventFacts> {
    read_after(data, &mut Prefix::default())
}

/// [`read`], going on after `prefix` when `data` starts with it (or only fitting its rest to
/// the last one's, [`Rest`]); a whole event read from its start leaves its own prefix there.
pub(super) fn read_after(data: &[u8], prefix: &mut Prefix) -> Option<EventFacts> {
    if data.len() > CAPTURE_BYTES {
        return None; // the scanner would skip a member this large
    }
    let resume = prefix.starts(data);
    if resume {
        if let Some(facts) = prefix.rest.as_ref().and_then(|rest| rest.fit(data, prefix)) {
            return Some(facts);
        }
    }
    let mut found = Found::default();
    let mut reader = if resume {
        found.object = prefix.object.then_some(());
        Reader::at(data, prefix.bytes.len()).recording(std::mem::take(&mut prefix.holes))
    } else {
        Reader::new(data)
    };
    let mut telling = None;
    let member = |r: &mut Reader<'_>, key: &[u8], start: usize| {
        let member = Member::of(key);
        if telling.is_none() && member.tells() {
            telling = Some((start, found.object.is_some()));
        }
        found.member(data, r, member, start)
    };
    let read = if resume { reader.remaining_members(member) } else { reader.members_at(member) };
    let holes = reader.take_holes();
    if read.and_then(|()| reader.end()).is_none() {
        prefix.holes = holes.unwrap_or_default();
        return None;
    }
    let facts = found.facts();
    match (resume, telling) {
        (true, _) => prefix.learn_rest(data, holes, &facts),
        (false, Some((start, object))) => prefix.remember(data, start, object),
        (false, None) => {}
    }
    Some(facts)
}

/// What a top-level member of a chunk is to [`Found::member`], by its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Usage,
    Choices,
    /// Only checked (not `"error"`), read once.
    Object,
    /// An error, or a Responses API event: left to the scanner.
    ForTheScanner,
    /// Skipped.
    Other,
}

impl Member {
    fn of(key: &[u8]) -> Self {
        match key {
            b"usage" => Self::Usage,
            b"choices" => Self::Choices,
            b"object" => Self::Object,
            b"error" | b"type" | b"response" => Self::ForTheScanner,
            _ => Self::Other,
        }
    }

    /// Whether it tells something about the event: the members before the first such one are
    /// the part chunks share.
    fn tells(self) -> bool {
        !matches!(self, Self::Object | Self::Other)
    }
}

/// The members read so far.
#[derive(Default)]
struct Found {
    /// `usage` (`None` inside: `null`), and where its member sits.
    usage: Option<(Option<Usage>, MemberSpan)>,
    /// `choices`, and whether it is a list (not `null`).
    choices: Option<(Choices, bool)>,
    /// `object` came (it is read once, to know it is not `"error"`).
    object: Option<()>,
}

impl Found {
    /// Reads `member`, which starts at `start` in `data`, the reader's cursor at its value.
    fn member(
        &mut self,
        data: &[u8],
        r: &mut Reader<'_>,
        member: Member,
        start: usize,
    ) -> Option<()> {
        match member {
            Member::Usage => {
                let usage = reported::read_at(r)?;
                once(&mut self.usage, (usage, MemberSpan { start, end: r.position() }))
            }
            Member::Choices => once(&mut self.choices, choices::read_at(r)?),
            Member::Object => {
                let value = r.value_start();
                r.skip_fixed_value()?;
                let is_error = data.get(value..r.position()) == Some(&b"\"error\""[..]);
                (!is_error).then_some(())?;
                once(&mut self.object, ())
            }
            Member::ForTheScanner => None,
            Member::Other => r.skip_value(),
        }
    }

    /// What the event says, as [`super::event::read`] says it.
    fn facts(self) -> EventFacts {
        let (choices, list) = self.choices.unwrap_or_default();
        let usage = self.usage.and_then(|(usage, _)| usage);
        let usage_member = match self.usage {
            None => UsageMember::Absent,
            Some((None, _)) => UsageMember::Null,
            Some(_) if list && choices.count == 0 => UsageMember::UsageOnly,
            Some(_) => UsageMember::Running,
        };
        EventFacts {
            usage,
            usage_is_total: usage.is_some() && choices.count == 0,
            choice: choices.first,
            has_content: choices.has_content,
            error: None,
            usage_member,
            usage_span: self.usage.map(|(_, span)| span),
        }
    }
}

#[cfg(test)]
mod tests;
