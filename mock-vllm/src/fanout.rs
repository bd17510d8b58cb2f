//! Several choices in one reply: `n` samples of each prompt, and the prompts of a batch.
//!
//! vLLM fans a request with `n > 1` out into `n` engine requests (`ParentRequest`,
//! `vllm/v1/engine/async_llm.py` and `parallel_sampling.py`), and a completion batch into one
//! generator per prompt merged as outputs arrive (`merge_async_iterators`,
//! `entrypoints/openai/completion/serving.py`). A completion choice's index is
//! `prompt_index * n + output_index`; a stream carries one choice per chunk, in the order the
//! outputs arrive. The mock interleaves them round-robin: in round `t` every unfinished choice
//! sends its token `t`, and a choice's finish chunk comes in the round after its last token.

use crate::generate::{count, Plan};

/// One choice of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    /// Its `index` in the reply.
    pub index: u32,
    /// Which prompt of the batch it answers.
    pub prompt: usize,
    /// What it generates.
    pub plan: Plan,
}

/// The choices of a reply to `plans` (one per prompt) with `n` samples each, in index order.
pub(crate) fn fan_out(plans: &[Plan], n: u32) -> Vec<Choice> {
    plans
        .iter()
        .enumerate()
        .flat_map(|(prompt, plan)| {
            (0..n).map(move |output| Choice {
                index: count(prompt).saturating_mul(n).saturating_add(output),
                prompt,
                plan: plan.choice(output),
            })
        })
        .collect()
}

/// One step of a stream of several choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Choice `choice` (a position in the choices) generates one token; `so_far` counts it.
    Token { choice: usize, piece: &'static str, so_far: u32 },
    /// Choice `choice` finishes.
    Finish { choice: usize },
}

/// The order in which the choices' tokens and finishes are streamed (round-robin).
pub(crate) fn schedule(choices: &[Choice]) -> Vec<Step> {
    let pieces: Vec<Vec<&'static str>> =
        choices.iter().map(|c| c.plan.pieces().collect()).collect();
    let rounds = pieces.iter().map(Vec::len).max().unwrap_or(0);
    let mut steps = Vec::new();
    for round in 0..=rounds {
        for (choice, pieces) in pieces.iter().enumerate() {
            if let Some(piece) = pieces.get(round) {
                let so_far = count(round + 1);
                steps.push(Step::Token { choice, piece, so_far });
            } else if round == pieces.len() {
                steps.push(Step::Finish { choice });
            }
        }
    }
    steps
}

/// The usage of a whole reply, as vLLM sums it: prompt tokens once per prompt, completion
/// tokens of every choice.
pub(crate) fn totals(plans: &[Plan], choices: &[Choice]) -> (u32, u32) {
    let prompt = plans.iter().map(|p| p.prompt_tokens).fold(0, u32::saturating_add);
    let completion = choices.iter().map(|c| c.plan.completion_tokens).fold(0, u32::saturating_add);
    (prompt, completion)
}

/// Prompt tokens the engine prefills for these choices: each of the `n` engine requests of a
/// prompt prefills it (`IterationStats.update_from_output` adds `prompt_len` per request), so
/// `vllm:prompt_tokens_total` grows by `n` times the prompt while `usage` counts it once.
pub(crate) fn prefilled(choices: &[Choice]) -> u64 {
    choices.iter().map(|c| u64::from(c.plan.prompt_tokens)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MockConfig;

    fn plan(prompt: u32, tokens: i64) -> Plan {
        Plan::new(prompt, Some(tokens), &MockConfig::default()).unwrap()
    }

    #[test]
    fn indexes_run_over_prompts_then_samples() {
        let choices = fan_out(&[plan(2, 3), plan(5, 3)], 2);
        let got: Vec<(u32, usize, u32)> =
            choices.iter().map(|c| (c.index, c.prompt, c.plan.completion_tokens)).collect();
        assert_eq!(got, [(0, 0, 3), (1, 0, 2), (2, 1, 3), (3, 1, 2)]);
        assert_eq!(totals(&[plan(2, 3), plan(5, 3)], &choices), (7, 10));
        assert_eq!(prefilled(&choices), 2 + 2 + 5 + 5);
    }

    #[test]
    fn the_schedule_is_round_robin_and_finishes_after_the_last_token() {
        let choices = fan_out(&[plan(1, 2)], 2);
        let steps: Vec<String> = schedule(&choices)
            .into_iter()
            .map(|s| match s {
                Step::Token { choice, so_far, .. } => format!("t{choice}.{so_far}"),
                Step::Finish { choice } => format!("f{choice}"),
            })
            .collect();
        assert_eq!(steps, ["t0.1", "t1.1", "t0.2", "f1", "f0"]);
    }
}
