//! The arithmetic of a reconciliation, with no I/O: vLLM's counter increase over a window from
//! its samples (restarts included), and the likely causes of a difference.

/// One scrape of one model's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// `vllm:prompt_tokens_total`.
    pub prompt: i64,
    /// `vllm:generation_tokens_total`.
    pub generation: i64,
}

/// vLLM's counted tokens between two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increase {
    /// Prompt tokens.
    pub prompt: i64,
    /// Generated tokens.
    pub generation: i64,
    /// Samples used.
    pub samples: u64,
    /// The first sample used.
    pub first_at_ms: i64,
    /// The last sample used.
    pub last_at_ms: i64,
    /// Times a counter went down between two samples (the server restarted).
    pub resets: u64,
}

/// Folds samples, oldest first, into the increase over the window `[from_ms, to_ms)`: from the
/// last sample at or before `from_ms` (else the first after it) to the first sample at or after
/// `to_ms` (else the last before it). A counter lower than the one before means vLLM restarted
/// in between; what it counted since is its new value.
#[derive(Debug, Clone)]
pub struct Fold {
    from_ms: i64,
    to_ms: i64,
    first: Option<Sample>,
    last: Option<Sample>,
    prompt: i64,
    generation: i64,
    samples: u64,
    resets: u64,
    done: bool,
}

impl Fold {
    /// An empty fold for the window.
    pub fn new(from_ms: i64, to_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms,
            first: None,
            last: None,
            prompt: 0,
            generation: 0,
            samples: 0,
            resets: 0,
            done: false,
        }
    }

    /// Adds the next sample (in time order).
    pub fn push(&mut self, s: Sample) {
        if self.done {
            return;
        }
        self.done = s.at_ms >= self.to_ms;
        let Some(prev) = self.last.filter(|_| s.at_ms > self.from_ms) else {
            // At or before the window's start (the latest one wins), or the first one at all.
            (self.first, self.last, self.samples) = (Some(s), Some(s), 1);
            return;
        };
        let step = |now: i64, before: i64| if now >= before { now - before } else { now };
        if s.prompt < prev.prompt || s.generation < prev.generation {
            self.resets += 1;
        }
        self.prompt += step(s.prompt, prev.prompt);
        self.generation += step(s.generation, prev.generation);
        self.samples += 1;
        self.last = Some(s);
    }

    /// The increase, or `None` without any sample.
    pub fn finish(&self) -> Option<Increase> {
        let (first, last) = (self.first?, self.last?);
        Some(Increase {
            prompt: self.prompt,
            generation: self.generation,
            samples: self.samples,
            first_at_ms: first.at_ms,
            last_at_ms: last.at_ms,
            resets: self.resets,
        })
    }
}

/// What the gateway logged for one model over the window, as the causes need it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewaySide {
    /// Prompt tokens.
    pub prompt: i64,
    /// Completion tokens.
    pub completion: i64,
    /// Rows whose usage the filter estimated.
    pub estimated: i64,
    /// Forwarded requests logged without usage.
    pub without_usage: i64,
    /// Requests whose client went away before the end.
    pub client_disconnected: i64,
}

/// Short reasons for the difference between vLLM's counters and the gateway's totals, most
/// likely first; empty when they agree.
pub fn likely_causes(
    gateway: GatewaySide,
    vllm: Option<Increase>,
    window: (i64, i64),
    no_samples_reason: &str,
) -> Vec<String> {
    let Some(v) = vllm else { return vec![no_samples_reason.to_owned()] };
    let mut causes = Vec::new();
    if v.samples < 2 {
        causes
            .push("only one vLLM sample in the window: no increase can be measured yet".to_owned());
    } else if v.first_at_ms > window.0 || v.last_at_ms < window.1 {
        causes.push("vLLM's samples do not cover the whole window (see firstSampleAt and lastSampleAt): tokens outside them are missing from vLLM's side".to_owned());
    }
    let (prompt_diff, completion_diff) =
        (v.prompt - gateway.prompt, v.generation - gateway.completion);
    if prompt_diff > 0 || completion_diff > 0 {
        causes.push("vLLM counted more: traffic that did not pass the gateway (clients calling vLLM directly)".to_owned());
        if gateway.client_disconnected > 0 {
            causes.push(format!("vLLM counted more: {} cut off after the client left; vLLM may have generated tokens after the gateway stopped counting", requests(gateway.client_disconnected)));
        }
        if gateway.without_usage > 0 {
            causes.push(format!(
                "vLLM counted more: {} forwarded and logged without usage",
                requests(gateway.without_usage)
            ));
        }
        if prompt_diff > 0 {
            causes.push("vLLM counted more prompt tokens: requests with n > 1 (vLLM prefills the prompt once per choice; the usage counts it once)".to_owned());
        }
        causes.push("vLLM counted more: requests at the window's edges whose tokens vLLM counted between a sample and the window's start or end".to_owned());
    }
    if prompt_diff < 0 || completion_diff < 0 {
        if gateway.estimated > 0 {
            causes.push(format!(
                "gateway counted more: {} with estimated usage (vLLM reported none to the gateway)",
                requests(gateway.estimated)
            ));
        }
        if v.resets > 0 {
            causes.push(format!("gateway counted more: vLLM restarted between samples ({} counter resets); what it counted after the last sample before a restart is lost on its side", v.resets));
        }
        causes.push("gateway counted more: a vLLM restart the samples did not show, or requests at the window's edges that vLLM counted outside the samples".to_owned());
    }
    causes
}

fn requests(n: i64) -> String {
    if n == 1 {
        "1 request".to_owned()
    } else {
        format!("{n} requests")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: i64, prompt: i64, generation: i64) -> Sample {
        Sample { at_ms, prompt, generation }
    }

    fn fold(from: i64, to: i64, samples: &[Sample]) -> Option<Increase> {
        let mut f = Fold::new(from, to);
        samples.iter().for_each(|x| f.push(*x));
        f.finish()
    }

    #[test]
    fn the_increase_runs_from_the_sample_before_the_window_to_the_one_after() {
        let samples = [
            s(0, 1, 1),
            s(90, 10, 5),
            s(100, 20, 8),
            s(150, 50, 9),
            s(200, 70, 10),
            s(210, 90, 11),
            s(300, 500, 500),
        ];
        let inc = fold(100, 205, &samples).unwrap();
        assert_eq!(
            (inc.prompt, inc.generation, inc.samples, inc.first_at_ms, inc.last_at_ms),
            (70, 3, 4, 100, 210)
        );
        let inside = fold(95, 250, &samples[2..5]).unwrap();
        assert_eq!(
            (inside.first_at_ms, inside.last_at_ms, inside.prompt),
            (100, 200, 50),
            "window only partly sampled"
        );
        assert_eq!(fold(0, 10, &[]), None);
        let one = fold(500, 600, &samples).unwrap();
        assert_eq!(
            (one.samples, one.prompt, one.first_at_ms),
            (1, 0, 300),
            "only samples before the window"
        );
    }

    #[test]
    fn a_lower_counter_is_a_restart_and_its_new_value_is_added() {
        let inc =
            fold(0, 100, &[s(0, 100, 50), s(10, 120, 60), s(20, 15, 4), s(30, 40, 10)]).unwrap();
        assert_eq!((inc.prompt, inc.generation, inc.resets), (20 + 15 + 25, 10 + 4 + 6, 1));
    }

    #[test]
    fn causes_follow_the_numbers() {
        let window = (0, 100);
        let full = Increase {
            prompt: 100,
            generation: 50,
            samples: 3,
            first_at_ms: 0,
            last_at_ms: 100,
            resets: 0,
        };
        let gw = GatewaySide { prompt: 100, completion: 50, ..GatewaySide::default() };
        assert!(likely_causes(gw, Some(full), window, "x").is_empty(), "they agree");
        assert_eq!(likely_causes(gw, None, window, "unreachable"), ["unreachable"]);
        let more = likely_causes(
            GatewaySide { client_disconnected: 2, ..gw },
            Some(Increase { prompt: 130, ..full }),
            window,
            "",
        );
        assert!(
            more[0].contains("did not pass the gateway") && more[1].contains("2 requests cut off"),
            "{more:?}"
        );
        let less = likely_causes(
            GatewaySide { estimated: 3, ..gw },
            Some(Increase { generation: 40, resets: 1, ..full }),
            window,
            "",
        );
        assert!(
            less[0].contains("3 requests with estimated usage") && less[1].contains("restarted"),
            "{less:?}"
        );
        let partial = likely_causes(gw, Some(Increase { first_at_ms: 10, ..full }), window, "");
        assert!(partial[0].contains("do not cover"), "{partial:?}");
    }
}
