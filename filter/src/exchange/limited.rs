//! The exchange of a limited caller (see [`crate::limits`]): what the request asks of its
//! caller's limits, the grant it gets (its `max_tokens` lowered to the grant when that is less
//! than it asked for), the `x-ratelimit-*` headers of its reply, and the cut-off of a stream that
//! passes its grant: the caller gets the events so far, then an OpenAI-shaped error event and
//! `[DONE]`; what the upstream sends afterwards is dropped and the stream reset, so that vLLM
//! stops generating.

use std::rc::Rc;

use super::{Counting, Endpoint, Exchange, Host};
use crate::error::{GatewayError, LimitError};
use crate::feed::limits::{LimitKind, Limits, Subject};
use crate::limits::{rate_headers, Ask, Grant, LimitRefusal};
use crate::request_body::{BodyEdit, MemberSpans, RequestFacts};
use crate::usage::UsageSource;

/// Bytes of request body per prompt token, for the estimate a grant is made with (corrected by
/// the real usage when the request is settled).
const BYTES_PER_TOKEN: u64 = 4;

/// A limited caller's request, before and after admission.
#[derive(Debug, Default)]
pub(super) struct Limited {
    /// Whose limits, and the limits.
    caller: Option<(Subject, Rc<Limits>)>,
    /// What the request asks for, once its body is read.
    asked: Option<Asked>,
    /// The body, kept while `max_tokens` may have to be lowered.
    body: Option<HeldBody>,
    grant: Option<Grant>,
    /// The headers of every reply.
    headers: Vec<(&'static str, String)>,
    cut: Cut,
    /// A chunk came after the error event (the upstream goes on: reset it).
    dropped: bool,
}

/// What a request asks of its caller's limits.
#[derive(Debug)]
struct Asked {
    model: String,
    /// The prompt's tokens, estimated.
    prompt: u64,
    /// The completion tokens it may generate.
    completion: u64,
    /// Whether the body caps the completion itself (with the member the upstream honours).
    capped: bool,
    /// Choices generated: `n` for each prompt.
    choices: u64,
}

/// Where a stream stands with its grant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Cut {
    #[default]
    Within,
    /// The error event was sent; what comes next is dropped and the stream reset.
    Sent,
    /// The reset was asked for.
    Reset,
}

impl Endpoint {
    /// The body members that cap the completion, the one added first (when none is there).
    fn max_token_members(self) -> &'static [&'static str] {
        match self {
            Endpoint::Chat => &["max_tokens", "max_completion_tokens"],
            Endpoint::Responses => &["max_output_tokens"],
            Endpoint::Embeddings => &[],
            Endpoint::Other => &["max_tokens"],
        }
    }

    /// The same in the upstream's order of preference (vLLM's chat takes
    /// `max_completion_tokens` over `max_tokens`).
    fn honoured_cap_members(self) -> &'static [&'static str] {
        match self {
            Endpoint::Chat => &["max_completion_tokens", "max_tokens"],
            other => other.max_token_members(),
        }
    }

    /// The completion per choice the upstream generates when the body caps none: vLLM's 16 for
    /// `/v1/completions`, else up to the model's context (the configured default stands in).
    fn default_cap(self, configured: u64) -> u64 {
        match self {
            Endpoint::Other => 16,
            _ => configured,
        }
    }
}

/// A request body as the caller sent it, where its members sit and what the gateway changed in
/// it: a later change is made on top, from the one read of the body.
#[derive(Debug)]
pub(super) struct HeldBody {
    body: Vec<u8>,
    members: MemberSpans,
    edit: BodyEdit,
}

impl Exchange {
    /// The caller's limits (after its credential was accepted).
    pub(super) fn limit_caller(&mut self, subject: Subject, limits: Option<Rc<Limits>>) {
        self.limited.caller = limits.map(|l| (subject, l));
    }

    /// Notes what a routed request asks of its caller's limits.
    /// `edit`: what the gateway changed in the body already (a later one is made on top).
    pub(super) fn note_limit_ask(&mut self, body: &[u8], facts: &RequestFacts, edit: &BodyEdit) {
        let Some((_, limits)) = &self.limited.caller else { return };
        let prompt = u64::try_from(body.len()).unwrap_or(u64::MAX) / BYTES_PER_TOKEN + 1;
        let members = self.endpoint.max_token_members();
        let honoured = facts.completion.honoured(self.endpoint.honoured_cap_members());
        let choices = facts.n.max(1).saturating_mul(facts.completion.prompts.max(1));
        let completion = if members.is_empty() {
            0
        } else {
            let per_choice = honoured
                .unwrap_or(self.endpoint.default_cap(self.config.limits.default_max_tokens));
            per_choice.saturating_mul(choices)
        };
        if limits.applying_to(&facts.model).any(|(_, kind, _)| kind.counts_tokens())
            && !members.is_empty()
        {
            let members = facts.members.clone();
            self.limited.body = Some(HeldBody { body: body.to_vec(), members, edit: edit.clone() });
        }
        let capped = honoured.is_some();
        self.limited.asked =
            Some(Asked { model: facts.model.clone(), prompt, completion, capped, choices });
    }

    /// What the request asks of its caller's limits; `None` when the caller is not limited (or
    /// the request was not routed).
    pub fn limit_ask(&self) -> Option<Ask<'_>> {
        let (subject, limits) = self.limited.caller.as_ref()?;
        let asked = self.limited.asked.as_ref()?;
        Some(Ask {
            subject: *subject,
            limits,
            model: &asked.model,
            prompt_tokens: asked.prompt,
            completion_tokens: asked.completion,
            choices: asked.choices,
        })
    }

    /// The request was granted `grant`: its `max_tokens` is lowered to the grant when that is less
    /// than it asked for (or it asked for none).
    pub fn admitted(&mut self, host: &mut dyn Host, grant: Grant) {
        self.limited.headers = rate_headers::headers(&grant.standing);
        let held = self.limited.body.take();
        if let (Some(mut held), Some(completion)) = (held, grant.completion_tokens()) {
            let (asked, capped, choices) = self
                .limited
                .asked
                .as_ref()
                .map_or((0, false, 1), |a| (a.completion, a.capped, a.choices));
            let per_choice = (completion / choices.max(1)).max(1);
            if completion < asked || !capped {
                let members = self.endpoint.max_token_members();
                held.edit.set_number(members, per_choice, &held.members);
                let body = held.edit.apply(&held.body, &held.members);
                host.set_request_body(&body);
                host.set_request_header("content-length", Some(&body.len().to_string()));
            }
        }
        self.limited.grant = Some(grant);
    }

    /// A limit refused the request: the error to answer with (the record says which limit).
    pub fn limit_refused(&mut self, refusal: LimitRefusal) -> GatewayError {
        self.limited.body = None;
        self.limited.headers = rate_headers::headers(&refusal.standing);
        self.record.limited = Some(refusal.key.kind.name().to_owned());
        let error = GatewayError::Limited(Box::new(LimitError {
            kind: refusal.key.kind,
            subject: refusal.key.subject,
            model: refusal.key.model,
            limit: refusal.limit,
            remaining: refusal.remaining,
            needed: refusal.needed,
            retry_after_secs: refusal.retry_after_secs,
            cut_off: false,
        }));
        self.note_refusal(&error);
        error
    }

    /// The `x-ratelimit-*` headers for the caller's reply (none when it is not limited).
    pub fn rate_headers(&self) -> &[(&'static str, String)] {
        &self.limited.headers
    }

    /// The grant, to settle when the exchange has finished, with the tokens to settle it with
    /// (`None`: unknown, the grant stays spent) and whether the request failed (no reply, or an
    /// error without usage: its request units are given back too).
    pub fn take_grant(&mut self) -> Option<(Grant, Option<u64>, bool)> {
        let grant = self.limited.grant.take()?;
        let record = &self.record;
        let failed = record.usage_source == UsageSource::None
            && (record.status == 0 || record.status >= 400);
        let used = match record.usage_source {
            UsageSource::Reported | UsageSource::Estimated => Some(record.usage.total_tokens),
            UsageSource::None if failed => Some(0),
            UsageSource::None => None,
        };
        Some((grant, used, failed))
    }

    /// Whether the stream must be reset now (once).
    pub fn take_reset(&mut self) -> bool {
        let due = self.limited.cut == Cut::Sent && self.limited.dropped;
        if due {
            self.limited.cut = Cut::Reset;
        }
        due
    }

    /// Whether a limited stream needs its events whole (to end it between two events).
    pub(super) fn cut_may_come(&self, is_sse: bool) -> bool {
        is_sse && self.limited.grant.as_ref().is_some_and(|g| g.completion_tokens().is_some())
    }

    /// Whether [`Self::check_grant`] may change what the caller gets: the stream was cut off
    /// already, or it has a grant of completion tokens to pass.
    pub(super) fn grant_watches(&self) -> bool {
        self.limited.cut != Cut::Within
            || self.limited.grant.as_ref().is_some_and(|g| g.completion_tokens().is_some())
    }

    /// After a chunk was counted: when the stream passed its grant, `out` (the events so far)
    /// gets the error event and `[DONE]`, and the rest is dropped. Whether `out` is still
    /// what the caller gets (false: drop it all).
    pub(super) fn check_grant(&mut self, out: &mut Vec<u8>) -> bool {
        match self.limited.cut {
            Cut::Sent | Cut::Reset => {
                self.limited.dropped = true;
                return false;
            }
            Cut::Within => {}
        }
        let (Some(Counting::Stream(acc)), Some(grant)) = (&self.counting, &self.limited.grant)
        else {
            return true;
        };
        let Some(granted) = grant.completion_tokens() else { return true };
        if acc.completion_so_far() > granted {
            self.cut_off(out);
        }
        true
    }

    /// When the real prompt of a stream (its first usage) is larger than the estimate its grant
    /// was made with: the tokens its grant lacks (to take, see [`Self::prompt_corrected`], or
    /// else cut the stream off).
    pub fn grant_overrun(&self) -> Option<u64> {
        let (Some(Counting::Stream(acc)), Some(grant)) = (&self.counting, &self.limited.grant)
        else {
            return None;
        };
        if self.limited.cut != Cut::Within || grant.tokens.is_none() {
            return None;
        }
        acc.prompt_so_far().checked_sub(grant.prompt_tokens).filter(|extra| *extra > 0)
    }

    /// The grant, for [`crate::limits::extend`].
    pub fn grant_mut(&mut self) -> Option<&mut Grant> {
        self.limited.grant.as_mut()
    }

    /// The grant was extended by `extra` tokens for the prompt: its completion stays as granted.
    pub fn prompt_corrected(&mut self, extra: u64) {
        if let Some(grant) = &mut self.limited.grant {
            grant.prompt_tokens = grant.prompt_tokens.saturating_add(extra);
        }
    }

    /// Ends the stream where it is: `out` (whole events) gets the error event and `[DONE]`, the
    /// record says so, and whatever comes next is dropped (and the stream reset).
    pub fn cut_off(&mut self, out: &mut Vec<u8>) {
        let Some(grant) = &self.limited.grant else { return };
        if self.limited.cut != Cut::Within {
            return;
        }
        let kind = token_limit(grant);
        self.limited.cut = Cut::Sent;
        self.record.cut_off = true;
        self.record.limited = Some(kind.name().to_owned());
        let held = grant.holds.iter().find(|h| h.key.kind == kind);
        let (subject, model) =
            held.map_or((Subject::App(0), None), |h| (h.key.subject, h.key.model.clone()));
        let limit = grant.standing.iter().find(|s| s.kind == kind).map_or(0, |s| s.limit);
        let error = GatewayError::Limited(Box::new(LimitError {
            kind,
            subject,
            model,
            limit,
            remaining: 0,
            needed: 0,
            retry_after_secs: 0,
            cut_off: true,
        }));
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.body());
        out.extend_from_slice(b"\n\ndata: [DONE]\n\n");
        self.error = Some(error);
    }
}

/// The token limit a grant was cut by: the tightest it holds.
fn token_limit(grant: &Grant) -> LimitKind {
    grant
        .standing
        .iter()
        .filter(|s| s.kind.counts_tokens())
        .min_by_key(|s| s.remaining)
        .map_or(LimitKind::TokensPerMinute, |s| s.kind)
}
