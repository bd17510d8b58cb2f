//! The shape of a JSON text the strict [`Reader`] has read: its bytes, with the values that may
//! vary without changing what was read marked as holes ([`Reader::recording`]). Another text
//! that has the same bytes everywhere but in the holes, and in each hole a value of the same
//! kind, is read exactly as the first was: each value the reader met in the first it meets in
//! the second, where it sits and of the kind it checked, and the other bytes decide nothing
//! else. So it needs no reading, only [`Shape::fit`]: comparing the bytes between the holes and
//! checking each hole's value as the reader checks it (what it says: a count's value).
//!
//! A stream's chunks are one shape with other text and counts in it, so most are fitted.

use super::{Reader, Strict};

/// More holes than this and a text is not worth a shape.
const MAX_HOLES: usize = 64;

/// How many counts a shape reads ([`Reader::count`]'s slots).
pub(crate) const COUNTS: usize = 3;

impl<'a> Reader<'a> {
    /// Also notes where each value that may vary without changing what is read was read (into
    /// `holes`, emptied first): what [`Shape::learn`] needs. Such values are the strings and
    /// numbers [`Self::skip_value`] skips, generated text ([`Self::optional_text`]: only its
    /// being empty is read) and counts ([`Self::count`]); everything else must stay as it is.
    pub(crate) fn recording(mut self, mut holes: Vec<Hole>) -> Self {
        holes.clear();
        self.holes = Some(holes);
        self
    }

    /// The holes noted ([`Self::recording`]); `None` when not recording or when there were too
    /// many.
    pub(crate) fn take_holes(&mut self) -> Option<Vec<Hole>> {
        self.holes.take()
    }

    /// Notes a hole from `start` to `end` of `kind`, when recording.
    pub(super) fn hole(&mut self, start: usize, end: usize, kind: HoleKind) {
        if let Some(holes) = self.holes.as_mut() {
            if holes.len() < MAX_HOLES {
                holes.push(Hole { start, end, kind });
            } else {
                self.holes = None;
            }
        }
    }

    /// [`Self::optional_u64`], noted as the count `slot` (below [`COUNTS`]) when recording.
    pub(crate) fn count(&mut self, slot: usize) -> Option<Option<u64>> {
        let start = self.value_start();
        let count = self.optional_u64()?;
        if count.is_some() {
            self.hole(start, self.at, HoleKind::Count(slot));
        }
        Some(count)
    }

    /// [`Self::skip_value`], for a value whose bytes matter: nothing in it is a hole.
    pub(crate) fn skip_fixed_value(&mut self) -> Option<()> {
        let noted = self.holes.as_ref().map(Vec::len);
        self.skip_value()?;
        if let (Some(holes), Some(noted)) = (self.holes.as_mut(), noted) {
            holes.truncate(noted);
        }
        Some(())
    }
}

/// A value that may vary, from `start` to `end` of the text (a string's content: between its
/// quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hole {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) kind: HoleKind,
}

/// What may stand in a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoleKind {
    /// A skipped string's content.
    Ignored,
    /// A skipped number.
    Number,
    /// Generated text, read only as being empty or not (which must stay as it was).
    Text { empty: bool },
    /// A count, read into its slot.
    Count(usize),
}

/// A text's bytes from some point on, with its holes; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    bytes: Vec<u8>,
    /// In order, at positions in `bytes`.
    holes: Vec<Hole>,
}

impl Shape {
    /// Becomes the shape of `text` from `from` on, whose holes (at positions in `text`, all
    /// past `from`) the reader noted.
    pub(crate) fn learn(&mut self, text: &[u8], from: usize, holes: &[Hole]) {
        self.bytes.clear();
        self.bytes.extend_from_slice(text.get(from..).unwrap_or_default());
        self.holes.clear();
        self.holes.extend(holes.iter().map(|h| Hole {
            start: h.start.saturating_sub(from),
            end: h.end.saturating_sub(from),
            kind: h.kind,
        }));
    }

    /// Whether `text` has this shape (see the module docs): then the counts in it, and where
    /// each of `places` (positions in the shape's bytes) falls in `text`.
    pub(crate) fn fit<const N: usize>(
        &self,
        text: &[u8],
        places: [usize; N],
    ) -> Option<([Option<u64>; COUNTS], [usize; N])> {
        let mut counts = [None; COUNTS];
        let mut found = places;
        let (mut at_shape, mut at_text) = (0, 0);
        for hole in &self.holes {
            let same = self.bytes.get(at_shape..hole.start)?;
            text.get(at_text..)?.starts_with(same).then_some(())?;
            move_places(&places, &mut found, at_shape..=hole.start, at_text);
            at_text += same.len();
            at_text = fit_hole(text, at_text, hole.kind, &mut counts)?;
            at_shape = hole.end;
        }
        let rest = self.bytes.get(at_shape..)?;
        (text.get(at_text..)? == rest).then_some(())?;
        move_places(&places, &mut found, at_shape..=self.bytes.len(), at_text);
        Some((counts, found))
    }
}

/// The places in `span` of the shape (which starts at `at_text` in the text) moved to the text.
fn move_places<const N: usize>(
    places: &[usize; N],
    found: &mut [usize; N],
    span: std::ops::RangeInclusive<usize>,
    at_text: usize,
) {
    for (place, found) in places.iter().zip(found.iter_mut()) {
        if span.contains(place) {
            *found = place - span.start() + at_text;
        }
    }
}

/// Checks the value of a hole of `kind` at `at` in `text` as the reader checks it; where it
/// ends.
fn fit_hole(
    text: &[u8],
    at: usize,
    kind: HoleKind,
    counts: &mut [Option<u64>; COUNTS],
) -> Option<usize> {
    let mut reader = Reader::at(text, at);
    match kind {
        HoleKind::Ignored => {
            reader.string(Strict::Ignored)?;
            Some(reader.at - 1)
        }
        HoleKind::Text { empty } => {
            let content = reader.string(Strict::Decoded)?;
            (content.is_empty() == empty).then_some(reader.at - 1)
        }
        HoleKind::Number => {
            reader.number()?;
            Some(reader.at)
        }
        HoleKind::Count(slot) => {
            text.get(at).filter(|b| b.is_ascii_digit())?;
            *counts.get_mut(slot)? = reader.optional_u64()?;
            Some(reader.at)
        }
    }
}

#[cfg(test)]
mod tests;
