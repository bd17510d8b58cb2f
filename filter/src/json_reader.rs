//! A small allocation-free reader for the few JSON shapes read on every request: a streamed
//! chunk's `usage` and `choices` (counted on every event) and the filter's own usage record (read
//! by the control plane for every access-log row), so that the common shapes are read without
//! serde.
//!
//! It reads strictly: every method returns `None` for anything it does not read exactly as
//! `serde_json` would, and the caller then asks `serde_json` itself (the fast path only ever
//! accepts what `serde_json` accepts, with the same meaning). So a key written with escapes or
//! outside printable ASCII, a string with a `\u` escape, a float or a negative number where an
//! integer is read, or nesting deeper than [`MAX_DEPTH`] all go to `serde_json`.

use crate::json_scan::has_byte;
use shape::HoleKind;

pub(crate) use shape::{Hole, Shape, COUNTS};

/// Nesting deeper than this inside a skipped value is left to `serde_json`.
const MAX_DEPTH: usize = 32;

/// A cursor over one JSON value; see the module docs.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Where the values that may vary were read, when recording ([`Self::recording`]); `None`
    /// also once there were too many.
    holes: Option<Vec<Hole>>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0, holes: None }
    }

    /// A reader whose cursor is `at` bytes into `bytes` (where [`Self::remaining_members`]
    /// goes on from).
    pub(crate) fn at(bytes: &'a [u8], at: usize) -> Self {
        Self { bytes, at, holes: None }
    }

    /// The next byte after whitespace (JSON's: space, tab, LF, CR), not taken.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// Takes `b` after whitespace.
    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }

    /// Takes `null` when it comes next.
    pub(crate) fn null(&mut self) -> bool {
        self.peek();
        self.word(b"null")
    }

    fn word(&mut self, word: &[u8]) -> bool {
        let found = self.bytes.get(self.at..).is_some_and(|rest| rest.starts_with(word));
        if found {
            self.at += word.len();
        }
        found
    }

    /// Nothing but whitespace is left.
    pub(crate) fn end(&mut self) -> Option<()> {
        self.peek().is_none().then_some(())
    }

    /// Where the next value starts (whitespace before it is taken).
    pub(crate) fn value_start(&mut self) -> usize {
        self.peek();
        self.at
    }

    /// Where the cursor is: how many bytes of the value have been read.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// An object's members: `member` reads each value, given its key as written (printable
    /// ASCII without escapes: [`Self::plain_key`]; a key it does not know it skips with
    /// [`Self::skip_value`]).
    pub(crate) fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>,
    ) -> Option<()> {
        self.members_at(|r, key, _| member(r, key))
    }

    /// [`Self::members`], also giving where each member starts (its key's opening quote).
    pub(crate) fn members_at(
        &mut self,
        member: impl FnMut(&mut Self, &[u8], usize) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        self.remaining_members(member)
    }

    /// The rest of an object's members, as [`Self::members_at`] reads them, from a cursor at the
    /// next member (after the object's `{` or a `,`).
    pub(crate) fn remaining_members(
        &mut self,
        mut member: impl FnMut(&mut Self, &[u8], usize) -> Option<()>,
    ) -> Option<()> {
        loop {
            self.peek()?;
            let start = self.at;
            self.eat(b'"')?;
            let key = self.plain_key()?;
            self.eat(b':')?;
            member(self, key, start)?;
            if self.next_or_end(b'}')? {
                return Some(());
            }
        }
    }

    /// After a member or an element: takes `,` (`Some(false)`) or `end` (`Some(true)`).
    fn next_or_end(&mut self, end: u8) -> Option<bool> {
        let b = self.peek().filter(|&b| b == b',' || b == end)?;
        self.at += 1;
        Some(b == end)
    }

    /// An array's elements, each read by `element`.
    pub(crate) fn elements(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            element(self)?;
            if self.next_or_end(b']')? {
                return Some(());
            }
        }
    }

    /// A key of printable ASCII without escapes, after its opening quote. Every key the callers
    /// know is one, and for any other such key serde's checks of a key it decodes pass; a key
    /// that is not one is left to serde.
    fn plain_key(&mut self) -> Option<&'a [u8]> {
        self.unescaped(true)
    }

    /// A string's content with nothing to decode (no escape, no control character; when
    /// `ascii`, printable ASCII only), after its opening quote; its closing quote is taken.
    fn unescaped(&mut self, ascii: bool) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let len = run_before(rest, ascii);
        (rest.get(len) == Some(&b'"')).then_some(())?;
        self.at += len + 1;
        rest.get(..len)
    }

    /// `null` (`Some(None)`) or an unsigned integer that fits `u64`, written without fraction or
    /// exponent.
    pub(crate) fn optional_u64(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let start = self.at;
        let mut value = 0u64;
        while let Some(digit) = self.bytes.get(self.at).filter(|b| b.is_ascii_digit()) {
            value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let leading_zero = self.at - start > 1 && self.bytes.get(start) == Some(&b'0');
        let fraction = matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E'));
        (self.at > start && !leading_zero && !fraction).then_some(Some(value))
    }

    /// Generated text: `null` (`Some(None)`), else whether it is non-empty, read as the
    /// accounting's lenient text is (a string, or `true` / `false`).
    pub(crate) fn optional_text(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b'n' if self.word(b"null") => Some(None),
            b't' if self.word(b"true") => Some(Some(true)),
            b'f' if self.word(b"false") => Some(Some(true)),
            b'"' => {
                self.at += 1;
                let start = self.at;
                let empty = self.string(Strict::Decoded)?.is_empty();
                self.hole(start, self.at - 1, HoleKind::Text { empty });
                Some(Some(!empty))
            }
            _ => None,
        }
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&mut self) -> Option<bool> {
        self.peek();
        if self.word(b"true") {
            Some(true)
        } else {
            self.word(b"false").then_some(false)
        }
    }

    /// `null` (`Some(None)`) or a string without escapes or control characters (its text is
    /// then its bytes, which must be UTF-8).
    pub(crate) fn optional_plain_str(&mut self) -> Option<Option<&'a str>> {
        if self.null() {
            return Some(None);
        }
        self.eat(b'"')?;
        std::str::from_utf8(self.unescaped(false)?).ok().map(Some)
    }

    /// The raw bytes of a string, after its opening quote, checked as `serde_json` checks it:
    /// no control characters, only known escapes; when `Decoded`, also valid UTF-8 and no `\u`
    /// escape (whose surrogates serde_json would check).
    fn string(&mut self, strict: Strict) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let mut i = 0;
        loop {
            i += run_before(rest.get(i..)?, false);
            match *rest.get(i)? {
                b'"' => break,
                b'\\' => i += escape_len(rest.get(i + 1..)?, strict)?,
                _ => return None, // a control character
            }
        }
        let raw = rest.get(..i)?;
        if strict == Strict::Decoded && !raw.is_ascii() {
            std::str::from_utf8(raw).ok()?;
        }
        self.at += i + 1;
        Some(raw)
    }

    /// Any value, checked as `serde_json` checks a value it ignores.
    pub(crate) fn skip_value(&mut self) -> Option<()> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => {
                self.eat(b'{')?;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.eat(b'"')?;
                    self.string(Strict::Ignored)?;
                    self.eat(b':')?;
                    self.skip_nested(depth + 1)?;
                    if self.next_or_end(b'}')? {
                        return Some(());
                    }
                }
            }
            b'[' => self.elements(|r| r.skip_nested(depth + 1)),
            b'"' => {
                self.at += 1;
                let start = self.at;
                self.string(Strict::Ignored)?;
                self.hole(start, self.at - 1, HoleKind::Ignored);
                Some(())
            }
            b'n' => self.word(b"null").then_some(()),
            b't' => self.word(b"true").then_some(()),
            b'f' => self.word(b"false").then_some(()),
            _ => {
                let start = self.at;
                self.number()?;
                self.hole(start, self.at, HoleKind::Number);
                Some(())
            }
        }
    }

    /// A number in JSON's grammar: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Option<()> {
        self.word(b"-");
        let leading_zero = self.bytes.get(self.at) == Some(&b'0');
        let int = self.digits();
        if int == 0 || (leading_zero && int > 1) {
            return None;
        }
        if self.word(b".") && self.digits() == 0 {
            return None;
        }
        if self.word(b"e") || self.word(b"E") {
            let _sign = self.word(b"+") || self.word(b"-");
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Takes a run of digits; returns how many.
    fn digits(&mut self) -> usize {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let len = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
        self.at += len;
        len
    }
}

/// How many bytes at the start of `bytes` are plain string content: none of them `"`, `\\` or a
/// control character, nor, when `ascii`, outside printable ASCII. Eight bytes at a time.
pub(crate) fn run_before(bytes: &[u8], ascii: bool) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or_default());
        let mut special =
            has_byte(w, b'"') | has_byte(w, b'\\') | (w.wrapping_sub(ONES * 0x20) & !w & HIGH); // below 0x20
        if ascii {
            special |= (w & HIGH) | has_byte(w, 0x7f); // from 0x80, and DEL
        }
        // Only the lowest marked byte is used: the marks are exact up to it.
        if special != 0 {
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = words.remainder();
    at + tail.iter().position(|&b| stops_run(b, ascii)).unwrap_or(tail.len())
}

/// Whether `b` ends a [`run_before`].
pub(crate) fn stops_run(b: u8, ascii: bool) -> bool {
    matches!(b, b'"' | b'\\' | 0..=0x1f) || (ascii && b >= 0x7f)
}

/// Sets a struct member's value; `None` when it came before (serde refuses a repeated field).
pub(crate) fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    slot.is_none().then(|| *slot = Some(value))
}

/// How a string is checked: as `serde_json` checks one it ignores, or one it decodes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strict {
    Ignored,
    Decoded,
}

/// The length of the escape starting at the backslash before `rest` (backslash included).
fn escape_len(rest: &[u8], strict: Strict) -> Option<usize> {
    match rest.first()? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' if strict == Strict::Ignored => {
            let hex = rest.get(1..5)?;
            hex.iter().all(u8::is_ascii_hexdigit).then_some(6)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod mutations;
mod shape;
#[cfg(test)]
mod tests;
