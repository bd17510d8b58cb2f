//! Reading a document that is whole in one slice, at once: the common case of a streamed event's
//! data, or a small body, arriving in one piece (or held until it ends: [`WHOLE_BYTES`]). Each
//! byte is read at most twice (a first piece that was not the whole document, read again).
//!
//! It finds exactly what the incremental reading finds, in one tight pass over the slice and
//! without copying anything until the document is known to be whole. Whatever it is unsure of —
//! a key with escapes, a grammar error, a scalar that does not start like one — it leaves to the
//! incremental reading, which then reads the same bytes from the start.

use super::grammar::is_delimiter;
use super::spans::TopLevel;
use super::{Captured, JsonScanner, Path, Status, MAX_KEY_BYTES, MAX_PATHS};

/// A document that comes in pieces is held, to be read whole when it ends, up to this many bytes
/// (8 KiB); a larger one is read as it comes.
pub(super) const WHOLE_BYTES: usize = 8 * 1024;

/// Strings in an event are mostly short: their end is looked for this many bytes at a time
/// before a vectorised search (whose setup costs more than a short string).
const SHORT_STRING: usize = 32;

/// Why a slice was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The slice ends before the document does.
    Short,
    /// The incremental reading must decide.
    Unsure,
}

/// A value found at a path, by where it is in the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Find {
    Value { start: usize, end: usize },
    TooLarge,
}

impl JsonScanner {
    /// Reads `chunk`, the next piece of a document none of which has been read incrementally:
    /// at once if the document is whole in it; else holds it (read at [`Self::finish_held`]), or
    /// reads it all incrementally when that is too much to hold or the reading was unsure.
    pub(super) fn feed_whole(&mut self, chunk: &[u8]) {
        if self.held.is_empty() {
            let read = if may_end(chunk) { self.read_whole(chunk) } else { Err(Stop::Short) };
            match read {
                Ok(()) => return,
                Err(Stop::Unsure) => return self.feed_incremental(chunk),
                Err(Stop::Short) => {}
            }
        }
        if self.held.len() + chunk.len() <= self.whole_bytes {
            self.held.extend_from_slice(chunk);
        } else {
            self.finish_held();
            self.feed_incremental(chunk);
        }
    }

    /// What is held is read: at once if it is a whole document, else incrementally (it is cut
    /// off, or more is coming than can be held).
    pub(super) fn finish_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        if !may_end(&held) || self.read_whole(&held).is_err() {
            self.feed_incremental(&held);
        }
        self.held = held;
        self.held.clear();
    }

    /// Reads `doc` as one whole document; on success what it holds is found and the scanner is
    /// done with it, else nothing has changed.
    fn read_whole(&mut self, doc: &[u8]) -> Result<(), Stop> {
        self.finds.iter_mut().for_each(|f| *f = None);
        let mut reader =
            Reader { doc, at: 0, paths: self.paths, cap: self.cap, finds: &mut self.finds };
        let read = reader.document(&mut self.top);
        let end = match read {
            Ok(end) => end,
            Err(stop) => {
                self.top.clear();
                return Err(stop);
            }
        };
        for (slot, find) in self.found.iter_mut().zip(&self.finds) {
            *slot = match *find {
                None => None,
                Some(Find::TooLarge) => Some(Captured::TooLarge),
                Some(Find::Value { start, end }) => {
                    let mut bytes = self.spare.pop().unwrap_or_default();
                    bytes.extend_from_slice(doc.get(start..end).unwrap_or_default());
                    Some(Captured::Value(bytes))
                }
            };
        }
        self.status = Status::Done;
        self.opened = true;
        self.pos = end;
        Ok(())
    }
}

/// One pass over a slice; see the module docs.
struct Reader<'a> {
    doc: &'a [u8],
    at: usize,
    paths: &'static [Path],
    cap: usize,
    /// Per path: what was found (all `None` at the start).
    finds: &'a mut [Option<Find>],
}

impl<'a> Reader<'a> {
    /// The document: returns where it ends.
    fn document(&mut self, top: &mut TopLevel) -> Result<usize, Stop> {
        if self.peek()? != b'{' {
            return Err(Stop::Unsure); // not an object: the incremental reading stops on it
        }
        self.object(0, u64::MAX, top)?;
        Ok(self.at)
    }

    /// The byte at the cursor after whitespace (not taken).
    fn peek(&mut self) -> Result<u8, Stop> {
        while let Some(&b) = self.doc.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(b);
            }
            self.at += 1;
        }
        Err(Stop::Short)
    }

    /// An object read member by member at `level` (its `{` at the cursor); `prefix`: the paths
    /// whose keys so far lead here.
    fn object(&mut self, level: usize, prefix: u64, top: &mut TopLevel) -> Result<(), Stop> {
        self.at += 1;
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(());
        }
        loop {
            if self.peek()? != b'"' {
                return Err(Stop::Unsure);
            }
            let key_start = self.at;
            let key = self.key()?;
            let here = prefix & self.matches(level, key);
            if level == 0 {
                top.key(key_start);
            }
            if self.peek()? != b':' {
                return Err(Stop::Unsure);
            }
            self.at += 1;
            self.peek()?;
            self.value(level + 1, here, top)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(Stop::Unsure),
            }
        }
    }

    /// A key (its opening quote at the cursor), as written; one with escapes is left to the
    /// incremental reading, which decodes it.
    fn key(&mut self) -> Result<&'a [u8], Stop> {
        let start = self.at + 1;
        let rest = self.doc.get(start..).ok_or(Stop::Short)?;
        let len = quote_or_backslash(rest).ok_or(Stop::Short)?;
        if rest.get(len) != Some(&b'"') {
            return Err(Stop::Unsure);
        }
        self.at = start + len + 1;
        rest.get(..len).ok_or(Stop::Short)
    }

    /// The paths whose key at `level` is `key` (a bit per path).
    fn matches(&self, level: usize, key: &[u8]) -> u64 {
        if key.len() > MAX_KEY_BYTES {
            return 0;
        }
        let first = key.first();
        let at_level = |path: &Path| {
            path.get(level)
                .is_some_and(|want| want.as_bytes().first() == first && want.as_bytes() == key)
        };
        let paths = self.paths.iter().take(MAX_PATHS).enumerate();
        paths.filter(|(_, p)| at_level(p)).fold(0, |m, (i, _)| m | 1 << i)
    }

    /// A value at `depth` (open containers around it) at the cursor; `here`: the paths whose
    /// keys lead to it.
    fn value(&mut self, depth: usize, here: u64, top: &mut TopLevel) -> Result<(), Stop> {
        if here == 0 {
            return self.skip(depth, top).map(drop);
        }
        let mut capture = None;
        for (index, path) in self.paths.iter().take(MAX_PATHS).enumerate() {
            if here & 1 << index == 0 {
                continue;
            }
            if path.len() == depth {
                capture = Some(index);
            } else if let Some(slot) = self.finds.get_mut(index) {
                *slot = None; // a later value replaces the object an earlier find sat in
            }
        }
        let Some(path) = capture else {
            let deeper = |(i, p): (usize, &Path)| here & 1 << i != 0 && p.len() > depth;
            if self.doc.get(self.at) == Some(&b'{')
                && self.paths.iter().take(MAX_PATHS).enumerate().any(deeper)
            {
                return self.object(depth, here, top);
            }
            return self.skip(depth, top).map(drop);
        };
        let member = (depth == 1).then(|| top.value_begins(path));
        let start = self.at;
        let end = self.skip(depth, top)?;
        let find = if end - start > self.cap {
            Find::TooLarge
        } else {
            if let Some(member) = member {
                top.captured(path, member, end);
            }
            Find::Value { start, end }
        };
        if let Some(slot) = self.finds.get_mut(path) {
            *slot = Some(find);
        }
        Ok(())
    }

    /// Skips the value at the cursor; returns where it ends.
    fn skip(&mut self, depth: usize, top: &mut TopLevel) -> Result<usize, Stop> {
        match self.doc.get(self.at).copied().ok_or(Stop::Short)? {
            b'"' => self.string_end(),
            b'{' | b'[' => self.container_end(),
            b'}' | b']' | b',' | b':' => Err(Stop::Unsure),
            _ => {
                let rest = self.doc.get(self.at..).unwrap_or_default();
                let len = rest.iter().position(|&b| is_delimiter(b)).ok_or(Stop::Short)?;
                if depth == 1 {
                    top.scalar(rest.get(..len).unwrap_or_default());
                }
                self.at += len;
                Ok(self.at)
            }
        }
    }

    /// Just past the string whose opening quote is at the cursor.
    fn string_end(&mut self) -> Result<usize, Stop> {
        self.at = string_end(self.doc, self.at + 1).ok_or(Stop::Short)?;
        Ok(self.at)
    }

    /// Just past the container opening at the cursor.
    fn container_end(&mut self) -> Result<usize, Stop> {
        self.at = container_end(self.doc, self.at).ok_or(Stop::Short)?;
        Ok(self.at)
    }
}

/// Whether `bytes` may hold a whole document: only what ends with a closing bracket (and
/// whitespace) is tried (anything else is held, and read incrementally if it does not come to
/// that: the same finds either way).
fn may_end(bytes: &[u8]) -> bool {
    let last = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    last.and_then(|i| bytes.get(i)) == Some(&b'}')
}

/// Just past the string whose contents start at `at` in `doc`; `None` when it does not end
/// there.
pub(crate) fn string_end(doc: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let rest = doc.get(at..).unwrap_or_default();
        let i = quote_or_backslash(rest)?;
        if rest.get(i) == Some(&b'"') {
            return Some(at + i + 1);
        }
        at += i + 2; // a backslash and the byte it escapes
    }
}

/// Just past the container whose opening bracket is at `at` in `doc`, by counting brackets
/// outside strings; `None` when it does not end there.
pub(crate) fn container_end(doc: &[u8], mut at: usize) -> Option<usize> {
    let mut open = 0usize;
    loop {
        let b = doc.get(at).copied()?;
        at += 1;
        match b {
            b'"' => at = string_end(doc, at)?,
            b'{' | b'[' => open += 1,
            b'}' | b']' => {
                open = open.saturating_sub(1);
                if open == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
}

/// Where the first `"` or `\` in `bytes` is: eight bytes at a time at first (most strings in an
/// event are short, and a vectorised search costs more to set up), then with `memchr`.
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    let head = bytes.get(..SHORT_STRING).unwrap_or(bytes);
    let mut words = head.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or_default());
        let found = has_byte(word, b'"') | has_byte(word, b'\\');
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    if let Some(i) = words.remainder().iter().position(|&b| b == b'"' || b == b'\\') {
        return Some(at + i);
    }
    let tail = bytes.get(SHORT_STRING..)?;
    memchr::memchr2(b'"', b'\\', tail).map(|i| i + SHORT_STRING)
}

/// The high bit of each byte of `word` that is `b` (exact for the lowest such byte; one above it
/// may be marked falsely, so only the lowest is used).
pub(crate) fn has_byte(word: u64, b: u8) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & (ONES << 7)
}
