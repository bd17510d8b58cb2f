//! Counting a whole (non-streamed) JSON body as it passes through: one scan, only the top-level
//! `usage`, `error`, `object` and `type` are kept (each at most [`CAPTURE_BYTES`]), so a reply of
//! any size — megabytes of `logprobs` before its `usage` — is counted exactly.

use super::{parse_error, parse_str, parse_usage, Accounting, UpstreamError, CAPTURE_BYTES};
use crate::json_scan::{Captured, JsonScanner, Path, Scan};

const USAGE: usize = 0;
const ERROR: usize = 1;
const OBJECT: usize = 2;
const TYPE: usize = 3;
const PATHS: &[Path] = &[&["usage"], &["error"], &["object"], &["type"]];

/// Counts a non-streamed JSON body; see the module docs.
#[derive(Debug)]
pub struct BodyAccounting {
    scanner: JsonScanner,
}

impl Default for BodyAccounting {
    fn default() -> Self {
        Self::new()
    }
}

impl BodyAccounting {
    /// A fresh count.
    pub fn new() -> Self {
        Self { scanner: JsonScanner::new(PATHS, CAPTURE_BYTES) }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.scanner.feed(chunk);
    }

    /// The counts. Also for a body cut off before its end (the client went away): a `usage` that
    /// was read whole before the cut still counts.
    pub fn finish(&mut self) -> Accounting {
        let scan = self.scanner.finish();
        let error = error_of(&scan);
        match scan.value(USAGE).and_then(parse_usage) {
            Some(usage) => Accounting::reported(usage, error),
            None => Accounting { error, ..Default::default() },
        }
    }
}

/// The body's error: vLLM's `{"error":{"type":…}}`, or the older flat
/// `{"object":"error","type":…}`.
fn error_of(scan: &Scan) -> Option<UpstreamError> {
    match scan.captured(ERROR) {
        Some(Captured::Value(bytes)) => return parse_error(bytes),
        Some(Captured::TooLarge) => return Some(UpstreamError { kind: "error".to_owned() }),
        None => {}
    }
    let object = scan.value(OBJECT).and_then(parse_str)?;
    (object == "error").then(|| UpstreamError {
        kind: scan.value(TYPE).and_then(parse_str).unwrap_or_else(|| "error".to_owned()),
    })
}
