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
use crate::json_reader::{once, Reader};
use crate::json_scan::MemberSpan;

/// The facts of one event whose whole data is `data`; `None` when unsure (see the module docs).
pub(super) fn read(data: &[u8]) -> Option<EventFacts> {
    if data.len() > CAPTURE_BYTES {
        return None; // the scanner would skip a member this large
    }
    let mut reader = Reader::new(data);
    let mut found = Found::default();
    reader.members_at(|r, key, start| found.member(data, r, key, start))?;
    reader.end()?;
    Some(found.facts())
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
    /// Reads the member `key` starting at `start` in `data`, the reader's cursor at its value.
    fn member(&mut self, data: &[u8], r: &mut Reader<'_>, key: &[u8], start: usize) -> Option<()> {
        match key {
            b"usage" => {
                let usage = reported::read_at(r)?;
                once(&mut self.usage, (usage, MemberSpan { start, end: r.position() }))
            }
            b"choices" => once(&mut self.choices, choices::read_at(r)?),
            b"object" => {
                let value = r.value_start();
                r.skip_value()?;
                let is_error = data.get(value..r.position()) == Some(&b"\"error\""[..]);
                (!is_error).then_some(())?;
                once(&mut self.object, ())
            }
            // An error, or a Responses API event: left to the scanner.
            b"error" | b"type" | b"response" => None,
            _ => r.skip_value(),
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
