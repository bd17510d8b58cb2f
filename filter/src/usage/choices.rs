//! What a chunk's `choices` say: how many there are, the first one's `index`, and whether any
//! carries generated content. The common shapes are read without serde ([`Reader`]); anything
//! else, and anything that reader is unsure of, is read by serde (the reading both must agree
//! with).

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::json_reader::{once, Reader};

/// What a chunk's `choices` say, read one choice at a time without keeping them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Choices {
    /// How many choices there are.
    pub count: usize,
    /// The first choice's `index`.
    pub first: Option<u64>,
    /// Whether any choice carries generated content.
    pub has_content: bool,
}

impl Choices {
    /// Reads a captured `choices` value (nothing, for anything that is not a list of choices).
    pub(super) fn read(bytes: &[u8]) -> Self {
        fast(bytes).unwrap_or_else(|| Self::read_with_serde(bytes))
    }

    /// The reading that [`fast`] must agree with.
    pub(super) fn read_with_serde(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }
}

/// [`Choices::read`] without serde, for the shapes vLLM writes; `None` when unsure.
pub(super) fn fast(bytes: &[u8]) -> Option<Choices> {
    let mut reader = Reader::new(bytes);
    let (choices, _) = read_at(&mut reader)?;
    reader.end()?;
    Some(choices)
}

/// The `choices` value at the reader's cursor, as [`fast`] reads a whole one, and whether it is
/// a list (not `null`); the cursor ends just past it.
pub(super) fn read_at(reader: &mut Reader<'_>) -> Option<(Choices, bool)> {
    let mut choices = Choices::default();
    let list = !reader.null();
    if list {
        reader.elements(|r| {
            let (index, has_content) = fast_choice(r)?;
            if choices.count == 0 {
                choices.first = index;
            }
            choices.count += 1;
            choices.has_content |= has_content;
            Some(())
        })?;
    }
    Some((choices, list))
}

/// One choice: its `index` and whether it carries content (as [`Choice::has_content`]).
fn fast_choice(reader: &mut Reader<'_>) -> Option<(Option<u64>, bool)> {
    let (mut index, mut text, mut delta) = (None, None, None);
    reader.members(|r, key| match key {
        b"index" => once(&mut index, r.optional_u64()?),
        b"text" => once(&mut text, r.optional_text()?),
        b"delta" => once(&mut delta, if r.null() { None } else { Some(fast_delta(r)?) }),
        _ => r.skip_value(),
    })?;
    let has_content = text.flatten() == Some(true) || delta.flatten() == Some(true);
    Some((index.flatten(), has_content))
}

/// A choice's `delta`: whether it carries content (as [`Choice::has_content`]).
fn fast_delta(reader: &mut Reader<'_>) -> Option<bool> {
    let (mut content, mut reasoning_content, mut reasoning, mut tool_calls) =
        (None, None, None, None);
    reader.members(|r, key| match key {
        b"content" => once(&mut content, r.optional_text()?),
        b"reasoning_content" => once(&mut reasoning_content, r.optional_text()?),
        b"reasoning" => once(&mut reasoning, r.optional_text()?),
        b"tool_calls" => {
            let present = !r.null();
            if present {
                r.skip_value()?;
            }
            once(&mut tool_calls, present)
        }
        _ => r.skip_value(),
    })?;
    let text = |t: Option<Option<bool>>| t.flatten() == Some(true);
    Some(text(content) || text(reasoning_content) || text(reasoning) || tool_calls == Some(true))
}

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoicesVisitor;
        impl<'de> Visitor<'de> for ChoicesVisitor {
            type Value = Choices;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Choices, E> {
                Ok(Choices::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut choices = Choices::default();
                while let Some(choice) = seq.next_element::<Choice>()? {
                    if choices.count == 0 {
                        choices.first = choice.index;
                    }
                    choices.count += 1;
                    choices.has_content |= choice.has_content();
                }
                Ok(choices)
            }
        }
        deserializer.deserialize_any(ChoicesVisitor)
    }
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Option<Text>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<Text>,
    #[serde(default)]
    reasoning_content: Option<Text>,
    #[serde(default)]
    reasoning: Option<Text>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

/// Generated text, of which only whether it is empty is kept (nothing is copied). It is a string,
/// but read leniently: anything that is neither `null` nor `""` counts as content.
struct Text {
    empty: bool,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text { empty: v.is_empty() })
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Text, E> {
                Ok(Text { empty: true })
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Text, E> {
                Ok(Text { empty: false })
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Text, E> {
                Ok(Text { empty: false })
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Text, E> {
                Ok(Text { empty: false })
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Text, E> {
                Ok(Text { empty: false })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                let mut empty = true;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    empty = false;
                }
                Ok(Text { empty })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                let mut empty = true;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    empty = false;
                }
                Ok(Text { empty })
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

impl Choice {
    fn has_content(&self) -> bool {
        let non_empty = |t: &Option<Text>| t.as_ref().is_some_and(|t| !t.empty);
        let delta = |d: &Delta| {
            non_empty(&d.content)
                || non_empty(&d.reasoning_content)
                || non_empty(&d.reasoning)
                || d.tool_calls.is_some()
        };
        non_empty(&self.text) || self.delta.as_ref().is_some_and(delta)
    }
}
