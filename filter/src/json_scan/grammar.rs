//! The scanner's reading of the levels a path can reach, member by member: the grammar (keys,
//! values, commas, brackets), which keys lead where, and copying values out.

use super::{
    Capture, Captured, Expect, JsonScanner, Path, Skip, Status, Token, MAX_KEY_BYTES, MAX_PATHS,
};

impl JsonScanner {
    pub(super) fn step(&mut self, b: u8) {
        match self.token {
            Token::Str { escape } => return self.string_byte(b, escape),
            Token::Key { escape } => return self.key_byte(b, escape),
            Token::Scalar if !is_delimiter(b) => return self.scalar_byte(b),
            Token::Scalar => {
                self.token = Token::None;
                self.value_done(self.pos);
            }
            Token::None => {}
        }
        self.structural(b);
    }

    fn string_byte(&mut self, b: u8, escape: bool) {
        self.record(b);
        if escape {
            self.token = Token::Str { escape: false };
        } else if b == b'\\' {
            self.token = Token::Str { escape: true };
        } else if b == b'"' {
            self.token = Token::None;
            self.value_done(self.pos + 1);
        }
    }

    fn scalar_byte(&mut self, b: u8) {
        if self.stack.len() == 1 {
            self.top.scalar(std::slice::from_ref(&b));
        }
        self.record(b);
    }

    fn key_byte(&mut self, b: u8, escape: bool) {
        self.record(b);
        if escape || b != b'"' {
            self.token = Token::Key { escape: !escape && b == b'\\' };
            if self.keep_key {
                self.push_key(std::slice::from_ref(&b));
            }
            return;
        }
        self.token = Token::None;
        self.expect = Expect::Colon;
        if !self.keep_key {
            return;
        }
        let level = self.stack.len().saturating_sub(1);
        let text = decode_key(&self.key, &mut self.decoded);
        let matches = text.map_or(0, |text| {
            let at_level =
                |path: &Path| path.get(level).is_some_and(|want| want.as_bytes() == text);
            self.paths
                .iter()
                .take(MAX_PATHS)
                .enumerate()
                .filter(|(_, p)| at_level(p))
                .fold(0, |m, (i, _)| m | 1 << i)
        });
        if let Some(slot) = self.keys.get_mut(level) {
            *slot = matches;
        }
        self.key.clear();
    }

    pub(super) fn push_key(&mut self, bytes: &[u8]) {
        let room = (MAX_KEY_BYTES + 1).saturating_sub(self.key.len());
        self.key.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
    }

    fn structural(&mut self, b: u8) {
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => self.open(b),
            b'}' | b']' => self.close(b),
            b'"' => match self.expect {
                Expect::Key | Expect::KeyOrEnd => {
                    if self.stack.len() == 1 {
                        self.top.key(self.pos);
                    }
                    self.record(b);
                    self.token = Token::Key { escape: false };
                    self.key.clear();
                    self.keep_key = self.stack.len() <= self.keys.len();
                }
                Expect::Value | Expect::ValueOrEnd if self.status == Status::Open => {
                    self.begin_value();
                    self.record(b);
                    self.token = Token::Str { escape: false };
                }
                _ => self.stop(),
            },
            b':' if self.expect == Expect::Colon => {
                self.record(b);
                self.expect = Expect::Value;
            }
            b',' if self.expect == Expect::CommaOrEnd => {
                self.record(b);
                self.expect = if self.in_object() { Expect::Key } else { Expect::Value };
            }
            _ if matches!(self.expect, Expect::Value | Expect::ValueOrEnd)
                && self.status == Status::Open =>
            {
                self.begin_value();
                self.scalar_byte(b);
                self.token = Token::Scalar;
            }
            _ => self.stop(),
        }
    }

    fn open(&mut self, b: u8) {
        let is_object = b == b'{';
        match (self.status, self.expect) {
            (Status::Start, _) if is_object => {
                self.status = Status::Open;
                self.opened = true;
            }
            (Status::Open, Expect::Value | Expect::ValueOrEnd) => {
                self.begin_value();
                self.record(b);
                if self.capture.is_some() || !is_object || !self.members_may_match() {
                    self.skip = Some(Skip { depth: 1, in_string: false, escape: false });
                    return;
                }
            }
            _ => return self.stop(),
        }
        if let Some(slot) = self.keys.get_mut(self.stack.len()) {
            *slot = 0;
        }
        self.stack.push(is_object);
        self.expect = if is_object { Expect::KeyOrEnd } else { Expect::ValueOrEnd };
    }

    fn close(&mut self, b: u8) {
        let in_object = self.in_object();
        let allowed = match self.expect {
            Expect::CommaOrEnd => true,
            Expect::KeyOrEnd => in_object,
            Expect::ValueOrEnd => !in_object,
            _ => false,
        };
        if !allowed || self.stack.is_empty() || in_object != (b == b'}') {
            return self.stop();
        }
        self.record(b);
        self.stack.pop();
        self.value_done(self.pos + 1);
    }

    /// The paths whose keys so far are those of the value starting here (a bit per path).
    fn paths_here(&self) -> u64 {
        let depth = self.stack.len();
        match self.keys.get(..depth) {
            Some(keys) if depth > 0 => keys.iter().fold(u64::MAX, |m, k| m & k),
            _ => 0,
        }
    }

    /// Whether a member of the object opening here could sit at one of the paths.
    fn members_may_match(&self) -> bool {
        let (depth, here) = (self.stack.len(), self.paths_here());
        self.paths
            .iter()
            .take(MAX_PATHS)
            .enumerate()
            .any(|(i, p)| here & 1 << i != 0 && p.len() > depth)
    }

    fn in_object(&self) -> bool {
        self.stack.last().copied().unwrap_or(false)
    }

    /// A value starts: copy it out if it sits at one of the paths.
    fn begin_value(&mut self) {
        let here = self.paths_here();
        if self.capture.is_some() || here == 0 {
            return;
        }
        let depth = self.stack.len();
        for (index, path) in self.paths.iter().take(MAX_PATHS).enumerate() {
            if here & 1 << index == 0 {
                continue;
            }
            if path.len() == depth {
                let bytes = self.spare.pop().unwrap_or_else(|| Vec::with_capacity(128));
                let start = if depth == 1 { self.top.value_begins(index) } else { 0 };
                self.capture = Some(Capture { path: index, depth, start, bytes });
            } else if let Some(slot) = self.found.get_mut(index) {
                // A later value replaces the object an earlier find sat in.
                *slot = None;
            }
        }
    }

    /// A value ended at the current depth, just before `end` in the document.
    pub(super) fn value_done(&mut self, end: usize) {
        if let Some(capture) = self.capture.take_if(|c| c.depth == self.stack.len()) {
            if capture.depth == 1 {
                self.top.captured(capture.path, capture.start, end);
            }
            if let Some(slot) = self.found.get_mut(capture.path) {
                *slot = Some(Captured::Value(capture.bytes));
            }
        }
        if self.stack.is_empty() {
            self.status = Status::Done;
        } else {
            self.expect = Expect::CommaOrEnd;
        }
    }

    fn record(&mut self, b: u8) {
        if self.capture.is_some() {
            self.record_run(std::slice::from_ref(&b));
        }
    }

    pub(super) fn record_run(&mut self, run: &[u8]) {
        let Some(capture) = self.capture.as_mut() else { return };
        if capture.bytes.len() + run.len() <= self.cap {
            capture.bytes.extend_from_slice(run);
            return;
        }
        if let Some(slot) = self.found.get_mut(capture.path) {
            *slot = Some(Captured::TooLarge);
        }
        self.capture = None;
    }

    fn stop(&mut self) {
        self.status = Status::Stopped;
        self.capture = None;
    }
}

/// Bytes that end a number, `true`, `false` or `null`.
pub(super) fn is_delimiter(b: u8) -> bool {
    matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b':' | b'{' | b'[')
}

/// A key's text: as written, or decoded into `scratch` when it has escapes; `None` when it is
/// too long to match a path or is not a valid string.
fn decode_key<'a>(raw: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    if raw.len() > MAX_KEY_BYTES {
        return None;
    }
    if !raw.contains(&b'\\') {
        return Some(raw);
    }
    scratch.clear();
    scratch.push(b'"');
    scratch.extend_from_slice(raw);
    scratch.push(b'"');
    let decoded: String = serde_json::from_slice(scratch).ok()?;
    scratch.clear();
    scratch.extend_from_slice(decoded.as_bytes());
    Some(scratch)
}
