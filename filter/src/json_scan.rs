//! An incremental scanner for one JSON document that keeps only a few values.
//!
//! [`JsonScanner::feed`] takes the document in pieces split anywhere (inside a string, between a
//! backslash and the character it escapes, inside a multi-byte UTF-8 character: it works on bytes,
//! and no byte of a string is ever `"` or `\` except those that mean it). It tracks nesting and
//! strings, and copies out only the values found at the configured [`Path`]s (`usage`,
//! `response.usage`, …), each bounded by a cap; everything else is skipped without being kept.
//! [`JsonScanner::finish`] hands over what was found and resets the scanner for the next document.
//!
//! Only the levels a path can reach are read member by member; a container inside which nothing
//! can match (an array, `logprobs`, a value being copied out) is skipped by counting brackets
//! outside strings, a few bytes at a time, however deep it nests. So a 20 MiB reply whose `usage`
//! comes after megabytes of `logprobs` costs one fast pass and a few hundred bytes. Values are
//! found by object keys only (a value inside an array has no path), keys are compared decoded
//! (`"us\u0061ge"` is `usage`), and when a key appears twice the last value wins. Paths must not
//! overlap (one must not be a prefix of another). The scanner checks the grammar only where it
//! reads member by member; a broken document stops the scan, and what was captured until then is
//! kept.

mod grammar;

use grammar::is_delimiter;

/// Where a value sits: the object keys from the top-level object down to it.
pub type Path = &'static [&'static str];

/// Keys longer than this never match a path, so they are not kept.
const MAX_KEY_BYTES: usize = 64;

/// A value found at one of the scanner's paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Captured {
    /// The whole value, byte for byte as it was written.
    Value(Vec<u8>),
    /// The value was there but larger than the cap; it was skipped.
    TooLarge,
}

/// What one document held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The document started as a JSON object.
    pub is_object: bool,
    /// The top-level object was closed (the document is whole).
    pub complete: bool,
    /// Per path (in the order the scanner was given them): what was found.
    pub values: Vec<Option<Captured>>,
}

impl Scan {
    /// The whole value found at the `index`-th path, if any.
    pub fn value(&self, index: usize) -> Option<&[u8]> {
        match self.values.get(index)? {
            Some(Captured::Value(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// What was found at the `index`-th path.
    pub fn captured(&self, index: usize) -> Option<&Captured> {
        self.values.get(index)?.as_ref()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Nothing but whitespace yet.
    Start,
    /// Inside the top-level object.
    Open,
    /// The top-level object has closed; the rest is ignored.
    Done,
    /// Not a JSON object, or broken: the rest is ignored.
    Stopped,
}

/// What the grammar allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (after `:` or `,` in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrEnd,
    /// A key (after `,` in an object).
    Key,
    /// A key or `}` (just after `{`).
    KeyOrEnd,
    /// `:` after a key.
    Colon,
    /// `,` or the container's end, after a value.
    CommaOrEnd,
}

/// The token being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// Between tokens.
    None,
    /// Inside a string value; `escape` after a backslash.
    Str { escape: bool },
    /// Inside a key.
    Key { escape: bool },
    /// Inside a number, `true`, `false` or `null`.
    Scalar,
}

/// A value being copied out.
#[derive(Debug)]
struct Capture {
    path: usize,
    /// Open containers around the value.
    depth: usize,
    bytes: Vec<u8>,
}

/// A container being skipped.
#[derive(Debug, Clone, Copy)]
struct Skip {
    /// Brackets open inside it (itself included).
    depth: usize,
    in_string: bool,
    escape: bool,
}

/// Paths past this many are never matched (a bit each in a mask).
const MAX_PATHS: usize = 64;

/// Buffers given back with [`JsonScanner::recycle`] are kept for reuse up to this size.
const REUSE_BYTES: usize = 4096;

/// The scanner; see the module docs.
#[derive(Debug)]
pub struct JsonScanner {
    paths: &'static [Path],
    cap: usize,
    status: Status,
    /// The top-level `{` was seen.
    opened: bool,
    /// Open containers, innermost last: true for an object.
    stack: Vec<bool>,
    /// Per level a path can reach: the paths whose key at that level is the key of the member
    /// being read there (a bit per path; none inside arrays).
    keys: Vec<u64>,
    expect: Expect,
    token: Token,
    /// The raw bytes of the key being read, when its level is one a path can reach.
    key: Vec<u8>,
    keep_key: bool,
    /// Scratch room for decoding a key with escapes.
    decoded: Vec<u8>,
    skip: Option<Skip>,
    capture: Option<Capture>,
    found: Vec<Option<Captured>>,
    /// Buffers of recycled scans, reused instead of allocating.
    spare: Vec<Vec<u8>>,
    spare_found: Option<Vec<Option<Captured>>>,
}

impl JsonScanner {
    /// A scanner that keeps the values at `paths`, each of at most `cap` bytes.
    pub fn new(paths: &'static [Path], cap: usize) -> Self {
        let levels = paths.iter().map(|p| p.len()).max().unwrap_or(0);
        Self {
            paths,
            cap,
            status: Status::Start,
            opened: false,
            stack: Vec::new(),
            keys: vec![0; levels],
            expect: Expect::Value,
            token: Token::None,
            key: Vec::new(),
            keep_key: false,
            decoded: Vec::new(),
            skip: None,
            capture: None,
            found: vec![None; paths.len()],
            spare: Vec::new(),
            spare_found: None,
        }
    }

    /// Whether a value was copied out completely at the `index`-th path already.
    pub fn has_value(&self, index: usize) -> bool {
        matches!(self.found.get(index), Some(Some(Captured::Value(_))))
    }

    /// Reads the next piece of the document.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if matches!(self.status, Status::Done | Status::Stopped) {
                return;
            }
            if self.skip.is_some() {
                chunk = chunk.get(self.skip_run(chunk)..).unwrap_or_default();
                continue;
            }
            // The bulk of a reply is inside strings and numbers: take those in runs.
            let run = match self.token {
                Token::Str { escape: false } | Token::Key { escape: false } => {
                    memchr::memchr2(b'"', b'\\', chunk).unwrap_or(chunk.len())
                }
                Token::Scalar => chunk.iter().position(|&b| is_delimiter(b)).unwrap_or(chunk.len()),
                _ => 0,
            };
            if let Some((bytes, rest)) = chunk.split_at_checked(run).filter(|_| run > 0) {
                if self.keep_key && matches!(self.token, Token::Key { .. }) {
                    self.push_key(bytes);
                }
                self.record_run(bytes);
                chunk = rest;
            }
            if let Some((&b, rest)) = chunk.split_first() {
                self.step(b);
                chunk = rest;
            }
        }
    }

    /// Ends the document: what was found (values still open are dropped); the scanner is then
    /// ready for the next document.
    pub fn finish(&mut self) -> Scan {
        let scan = Scan {
            is_object: self.opened,
            complete: self.status == Status::Done,
            values: std::mem::replace(
                &mut self.found,
                self.spare_found.take().unwrap_or_else(|| vec![None; self.paths.len()]),
            ),
        };
        self.status = Status::Start;
        self.opened = false;
        self.stack.clear();
        self.keys.iter_mut().for_each(|k| *k = 0);
        self.expect = Expect::Value;
        self.token = Token::None;
        self.key.clear();
        self.keep_key = false;
        self.skip = None;
        self.capture = None;
        scan
    }

    /// Gives back a finished scan, whose buffers the next documents then reuse instead of
    /// allocating (a few small ones are kept).
    pub fn recycle(&mut self, mut scan: Scan) {
        for value in &mut scan.values {
            if let Some(Captured::Value(mut bytes)) = value.take() {
                if bytes.capacity() <= REUSE_BYTES && self.spare.len() < self.paths.len() {
                    bytes.clear();
                    self.spare.push(bytes);
                }
            }
        }
        if scan.values.len() == self.paths.len() {
            self.spare_found = Some(scan.values);
        }
    }

    /// Skips through a container; returns how much of `chunk` it took.
    fn skip_run(&mut self, chunk: &[u8]) -> usize {
        let Some(mut skip) = self.skip else { return 0 };
        let mut at = 0;
        let mut closed = false;
        while at < chunk.len() {
            let rest = chunk.get(at..).unwrap_or_default();
            if skip.escape {
                skip.escape = false;
                at += 1;
            } else if skip.in_string {
                match memchr::memchr2(b'"', b'\\', rest) {
                    Some(i) => {
                        skip.escape = rest.get(i) == Some(&b'\\');
                        skip.in_string = skip.escape;
                        at += i + 1;
                    }
                    None => at = chunk.len(),
                }
            } else {
                let Some(i) =
                    rest.iter().position(|&b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']'))
                else {
                    at = chunk.len();
                    break;
                };
                at += i + 1;
                match rest.get(i) {
                    Some(b'"') => skip.in_string = true,
                    Some(b'{' | b'[') => skip.depth = skip.depth.saturating_add(1),
                    _ => {
                        skip.depth = skip.depth.saturating_sub(1);
                        if skip.depth == 0 {
                            closed = true;
                            break;
                        }
                    }
                }
            }
        }
        self.record_run(chunk.get(..at).unwrap_or_default());
        if closed {
            self.skip = None;
            self.value_done();
        } else {
            self.skip = Some(skip);
        }
        at
    }
}

#[cfg(test)]
mod tests;
