//! Prompts as requests send them, and the mock's deterministic prompt-token count.
//!
//! Chat messages and Responses input items count 1 plus the whitespace-separated words of their
//! text (string content, or the `text` of content parts); a completion or embedding prompt
//! counts its words, or the length of a token-id prompt; never less than 1.

use serde::Deserialize;

use crate::generate::{count, prompt_tokens_of_text};

/// A message's `content`: a string or a list of parts (`{"type":"text","text":…}`, images, …).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One content part; only its text counts.
#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(default)]
    text: Option<String>,
}

fn words(text: &str) -> u32 {
    count(text.split_whitespace().count())
}

/// Tokens of one message: 1 plus the words of its text.
pub(crate) fn message_tokens(content: Option<&Content>) -> u32 {
    let text_words = match content {
        Some(Content::Text(text)) => words(text),
        Some(Content::Parts(parts)) => {
            parts.iter().filter_map(|p| p.text.as_deref()).map(words).fold(0, u32::saturating_add)
        }
        None => 0,
    };
    text_words.saturating_add(1)
}

/// The prompt forms `/v1/completions` (`prompt`) and `/v1/embeddings` (`input`) accept: one
/// text, one token list, or a batch of either.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    Text(String),
    Tokens(Vec<i64>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<i64>>),
}

/// One prompt of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnePrompt<'a> {
    Text(&'a str),
    Tokens(&'a [i64]),
}

impl OnePrompt<'_> {
    /// Its prompt tokens: the words of a text, the length of a token list (at least 1).
    pub(crate) fn tokens(self) -> u32 {
        match self {
            Self::Text(text) => prompt_tokens_of_text(text),
            Self::Tokens(ids) => count(ids.len()).max(1),
        }
    }
}

impl Prompt {
    /// Every prompt of the request, in order (a single prompt is a batch of one).
    pub(crate) fn each(&self) -> Vec<OnePrompt<'_>> {
        match self {
            Self::Text(text) => vec![OnePrompt::Text(text)],
            Self::Tokens(ids) => vec![OnePrompt::Tokens(ids)],
            Self::Texts(texts) => texts.iter().map(|t| OnePrompt::Text(t)).collect(),
            Self::TokenLists(lists) => lists.iter().map(|l| OnePrompt::Tokens(l)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_count_one_plus_their_words() {
        let parts: Content = serde_json::from_str(
            r#"[{"type":"text","text":"你好, gateway"},{"type":"image_url","image_url":{"url":"x"}}]"#,
        )
        .unwrap();
        assert_eq!(message_tokens(Some(&parts)), 3);
        assert_eq!(message_tokens(Some(&Content::Text("Be brief.".into()))), 3);
        assert_eq!(message_tokens(None), 1);
    }

    #[test]
    fn every_prompt_form_is_a_batch() {
        let prompt = |json| serde_json::from_str::<Prompt>(json).unwrap();
        let tokens = |p: &Prompt| p.each().into_iter().map(OnePrompt::tokens).collect::<Vec<_>>();
        assert_eq!(tokens(&prompt(r#""two words""#)), [2]);
        assert_eq!(tokens(&prompt("[1,2,3]")), [3]);
        assert_eq!(tokens(&prompt(r#"["a", "b c"]"#)), [1, 2]);
        assert_eq!(tokens(&prompt("[[1],[1,2,3,4]]")), [1, 4]);
        assert_eq!(tokens(&prompt("[]")), [1], "an empty token list still counts 1");
    }
}
