//! Counting a streamed (SSE) response as it passes through.
//!
//! Each event's `data` goes straight into a [`JsonScanner`], so an event of any size is read
//! holding at most a few KiB of it. With `n > 1` or batched prompts and `continuous_usage_stats`, vLLM puts on
//! each chunk the usage of *that* choice (verified in vLLM's `serving_chat.py` and
//! `serving_completion.py`): `completion_tokens` so far for choice `index`, and the tokens of its
//! prompt. A stream cut off anywhere therefore counts the sum over choices of their latest
//! `completion_tokens`, and each prompt's tokens once ([`PromptLayout`]). The usage-only chunk
//! (`"choices": []`, the sums) wins when it comes.
//!
//! The same one parse of the stream serves rewriting it for the caller, when usage options were
//! injected into its request ([`StreamAccounting::rewriting`]): each event's end and what its
//! `usage` member is go to a [`StreamRewrite`].

use std::collections::BTreeMap;

use super::event::{EventFacts, EventReader};
use super::{Accounting, UpstreamError, Usage, UsageMember, UsageSource};
use crate::inject::{EventEnd, StreamRewrite};
use crate::json_scan::MemberSpan;
use crate::sse::{SseParser, SsePiece};

/// Distinct choices whose running usage is tracked. Past this, further choices are counted by
/// their content chunks (one token each, prompt tokens unknown) and the result is marked
/// estimated — unless the usage-only chunk arrives, which always wins.
pub const MAX_TRACKED_CHOICES: usize = 4096;

/// How a stream's choices map to prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptLayout {
    /// Every choice answers the one prompt (`/v1/chat/completions`).
    Single,
    /// Choice `index` answers prompt `index / n` (`/v1/completions` with a list of prompts:
    /// vLLM numbers choices `prompt_index * n + output_index`).
    Batched {
        /// Choices per prompt (the request's `n`, at least 1).
        n: u64,
    },
}

impl Default for PromptLayout {
    fn default() -> Self {
        Self::Batched { n: 1 }
    }
}

impl PromptLayout {
    fn prompt_of(self, choice: u64) -> u64 {
        match self {
            Self::Single => 0,
            Self::Batched { n } => choice / n.max(1),
        }
    }
}

/// Counts a streamed response; see the module docs.
#[derive(Debug)]
pub struct StreamAccounting {
    parser: SseParser,
    events: EventReader,
    /// How many bytes of data the event in progress has had.
    event_data_len: usize,
    layout: PromptLayout,
    /// The last usage that covers the whole request.
    total: Option<Usage>,
    /// Choice index → its completion tokens so far.
    completions: BTreeMap<u64, u64>,
    /// Prompt index → its tokens.
    prompts: BTreeMap<u64, u64>,
    /// Content chunks of choices past [`MAX_TRACKED_CHOICES`].
    untracked_chunks: u64,
    /// A running usage whose choice could not be read.
    unattributed: Option<Usage>,
    content_chunks: u64,
    error: Option<UpstreamError>,
    /// What the caller gets, when that is not the stream as it comes.
    rewrite: Option<StreamRewrite>,
}

impl Default for StreamAccounting {
    fn default() -> Self {
        Self::new(PromptLayout::default())
    }
}

impl StreamAccounting {
    /// A fresh count for a stream whose choices map to prompts as `layout` says.
    pub fn new(layout: PromptLayout) -> Self {
        Self {
            parser: SseParser::new(),
            events: EventReader::new(),
            event_data_len: 0,
            layout,
            total: None,
            completions: BTreeMap::new(),
            prompts: BTreeMap::new(),
            untracked_chunks: 0,
            unattributed: None,
            content_chunks: 0,
            error: None,
            rewrite: None,
        }
    }

    /// Reads every event with the scanner, none in one pass: the same counts and rewrite (the
    /// tests and the fuzz target check that).
    pub fn scanner_only(mut self) -> Self {
        self.events.one_pass = false;
        self
    }

    /// Also rewrites the stream for the caller, with the same parse.
    pub fn rewriting(mut self, rewrite: StreamRewrite) -> Self {
        self.rewrite = Some(rewrite);
        self
    }

    /// How many choices' running usage is tracked.
    pub fn tracked_choices(&self) -> usize {
        self.completions.len()
    }

    /// The completion tokens generated so far, as the running usage says (the total when it has
    /// come; else the sum over choices, and a token per content chunk of untracked choices).
    pub fn completion_so_far(&self) -> u64 {
        match self.total {
            Some(total) => total.completion_tokens,
            None => {
                self.completions.values().fold(self.untracked_chunks, |a, b| a.saturating_add(*b))
            }
        }
    }

    /// The prompt tokens as the usage says so far (0 before the first usage): the total's when
    /// it has come, else each prompt's once.
    pub fn prompt_so_far(&self) -> u64 {
        match (self.total, self.unattributed) {
            (Some(total), _) => total.prompt_tokens,
            (None, _) if !self.prompts.is_empty() => {
                self.prompts.values().fold(0u64, |a, b| a.saturating_add(*b))
            }
            (None, Some(usage)) => usage.prompt_tokens,
            (None, None) => 0,
        }
    }

    /// Reads the next piece of the stream. When rewriting: the bytes the caller gets instead of
    /// `chunk` (whole events only), or `None` when that is `chunk` itself.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        if let Some(rewrite) = self.rewrite.as_mut() {
            rewrite.begin(chunk);
        }
        // The parser is a few bytes of state: it is read out while the chunk is, so that each
        // event's end can be taken by `self` as it comes.
        let mut parser = self.parser;
        let mut pieces = parser.feed(chunk);
        while let Some(piece) = pieces.next() {
            let (usage, span) = match piece {
                SsePiece::Data(bytes) => {
                    self.event_data_len += bytes.len();
                    self.events.data(bytes);
                    continue;
                }
                SsePiece::End => self.end_event(),
                // Lines that make no event pass as they are.
                SsePiece::NoEvent => (UsageMember::Absent, None),
            };
            let data_len = std::mem::take(&mut self.event_data_len);
            if let Some(rewrite) = self.rewrite.as_mut() {
                let (end, owes_lf) = (pieces.consumed(), pieces.owes_lf());
                rewrite.event(chunk, EventEnd { end, usage, span, data_len, owes_lf });
            }
        }
        self.parser = parser;
        self.rewrite.as_mut()?.end_chunk(chunk)
    }

    /// Whether the stream is rewritten for the caller ([`Self::rewriting`]).
    pub fn rewrites(&self) -> bool {
        self.rewrite.is_some()
    }

    /// The end of the stream, when rewriting: what is held goes on as it is.
    pub fn finish_rewrite(&mut self) -> Vec<u8> {
        self.rewrite.as_mut().map(StreamRewrite::finish).unwrap_or_default()
    }

    /// An event ended: it is counted; returns what its `usage` member is, and where it sits.
    fn end_event(&mut self) -> (UsageMember, Option<MemberSpan>) {
        let facts = self.events.end();
        let usage = (facts.usage_member, facts.usage_span);
        self.take_event(facts);
        usage
    }

    fn take_event(&mut self, facts: EventFacts) {
        if facts.has_content {
            self.content_chunks += 1;
        }
        if facts.error.is_some() {
            self.error = facts.error;
        }
        match (facts.usage, facts.choice) {
            (Some(usage), _) if facts.usage_is_total => self.total = Some(usage),
            (Some(usage), Some(choice)) => self.running(choice, usage, facts.has_content),
            (Some(usage), None) => self.unattributed = Some(usage),
            (None, _) => {}
        }
    }

    /// A chunk's running usage of one choice.
    fn running(&mut self, choice: u64, usage: Usage, has_content: bool) {
        if self.completions.len() >= MAX_TRACKED_CHOICES && !self.completions.contains_key(&choice)
        {
            self.untracked_chunks += u64::from(has_content);
            return;
        }
        self.completions.insert(choice, usage.completion_tokens);
        self.prompts.insert(self.layout.prompt_of(choice), usage.prompt_tokens);
    }

    /// The counts so far; call at the end of the stream (or when it was cut off).
    pub fn finish(&mut self) -> Accounting {
        if self.parser.finish() == Some(SsePiece::End) {
            self.end_event();
        }
        let error = self.error.clone();
        if let Some(total) = self.total {
            return Accounting::reported(total, error);
        }
        if !self.completions.is_empty() {
            let prompt = self.prompts.values().fold(0u64, |a, b| a.saturating_add(*b));
            let generated = self.completions.values().fold(0u64, |a, b| a.saturating_add(*b));
            let completion = generated.saturating_add(self.untracked_chunks);
            let total = prompt.saturating_add(completion);
            let usage =
                Usage { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total };
            let source = if self.untracked_chunks > 0 {
                UsageSource::Estimated
            } else {
                UsageSource::Reported
            };
            return Accounting { usage, source, error };
        }
        if let Some(usage) = self.unattributed {
            return Accounting::reported(usage, error);
        }
        match self.content_chunks {
            0 => Accounting { error, ..Default::default() },
            n => Accounting {
                usage: Usage { prompt_tokens: 0, completion_tokens: n, total_tokens: n },
                source: UsageSource::Estimated,
                error,
            },
        }
    }
}
