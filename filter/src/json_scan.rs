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
//!
//! Most documents are small and come whole (a streamed event's data): those are read at once,
//! without the byte-by-byte state machine, and a small one that comes in pieces (at most 8 KiB)
//! is held until it ends (`whole.rs`); whatever that reading is unsure of goes to the incremental
//! one, and both find the same. The scan also says where each top-level member it captured sits
//! ([`MemberSpan`]), so that the stream rewrite cuts `usage` out without searching for it again.

mod grammar;
mod spans;
mod whole;

use grammar::is_delimiter;
pub use spans::MemberSpan;
use spans::TopLevel;
pub(crate) use whole::{container_end, has_byte, string_end};
use whole::{Find, WHOLE_BYTES};

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
    /// Per path: where its member sits in the document, for a top-level member whose value was
    /// found whole (when every reader must agree on that place: see [`MemberSpan`]'s module).
    pub spans: Vec<Option<MemberSpan>>,
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

    /// Where the member at the `index`-th path sits in the document, when that is known.
    pub fn span(&self, index: usize) -> Option<MemberSpan> {
        *self.spans.get(index)?
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
    /// Where its member starts in the document (a top-level one's).
    start: usize,
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
    /// Where in the document the next byte read is.
    pos: usize,
    /// The top-level members' places.
    top: TopLevel,
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
    /// The beginning of a document none of which has been read yet, held to be read whole.
    held: Vec<u8>,
    /// How much is held at most (0: every byte is read as it comes).
    whole_bytes: usize,
    /// Scratch room for what a whole reading finds.
    finds: Vec<Option<Find>>,
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
            pos: 0,
            top: TopLevel::new(paths.len()),
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
            held: Vec::new(),
            whole_bytes: WHOLE_BYTES,
            finds: vec![None; paths.len()],
        }
    }

    /// A scanner that reads every byte as it comes, never a document at once: it finds the
    /// same (the tests check that).
    pub fn incremental(paths: &'static [Path], cap: usize) -> Self {
        Self { whole_bytes: 0, ..Self::new(paths, cap) }
    }

    /// Whether a value was copied out completely at the `index`-th path already (a document's
    /// beginning held to be read whole has not been read yet).
    pub fn has_value(&self, index: usize) -> bool {
        matches!(self.found.get(index), Some(Some(Captured::Value(_))))
    }

    /// Reads the next piece of the document: at once when the document is whole in it (a small
    /// document's pieces are held until it ends), else as it comes.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.whole_bytes > 0 && self.status == Status::Start && self.pos == 0 {
            self.feed_whole(chunk);
        } else {
            self.feed_incremental(chunk);
        }
    }

    /// Reads the next piece of the document byte by byte, as it comes.
    fn feed_incremental(&mut self, mut chunk: &[u8]) {
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
                match self.token {
                    Token::Key { .. } if self.keep_key => self.push_key(bytes),
                    Token::Scalar if self.stack.len() == 1 => self.top.scalar(bytes),
                    _ => {}
                }
                self.record_run(bytes);
                self.pos += run;
                chunk = rest;
            }
            if let Some((&b, rest)) = chunk.split_first() {
                self.step(b);
                self.pos += 1;
                chunk = rest;
            }
        }
    }

    /// Ends the document: what was found (values still open are dropped); the scanner is then
    /// ready for the next document.
    pub fn finish(&mut self) -> Scan {
        if !self.held.is_empty() {
            self.finish_held();
        }
        let complete = self.status == Status::Done;
        let scan = Scan {
            is_object: self.opened,
            complete,
            values: std::mem::replace(
                &mut self.found,
                self.spare_found.take().unwrap_or_else(|| vec![None; self.paths.len()]),
            ),
            spans: self.top.finish(complete),
        };
        self.status = Status::Start;
        self.pos = 0;
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
        self.top.recycle(scan.spans);
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
        self.pos += at;
        if closed {
            self.skip = None;
            self.value_done(self.pos);
        } else {
            self.skip = Some(skip);
        }
        at
    }
}

#[cfg(test)]
mod tests;
