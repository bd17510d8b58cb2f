//! The layout of the credentials in Envoy's shared data: the whole state (the *base*), the ring of
//! changes after it, and the *head* that says which change is the newest. Every record carries a
//! [`Mark`] (ring sequence number, epoch, version, ETag) in a short text header, so that a reader
//! decides from a few bytes whether the record is of use before reading or parsing more.
//!
//! - [`BASE_KEY`]: the mark of the whole state in [`WHOLE_KEY`] (written after it, so the whole
//!   state a reader finds is at least as new as the base mark it read first).
//! - [`change_key`]`(seq)`: one slot of [`RING`]; `<mark> <kind>\n<body>`, kind `d` for a delta
//!   (its body the control plane's [`crate::feed::FeedDelta`]) or `w` for "the whole state was
//!   replaced; read the base" (no body).
//! - [`HEAD_KEY`]: the mark of the newest change, written after its slot (compare-and-swap on
//!   the head, so two writers never publish the same sequence number).

use super::SharedData;

/// Shared-data key of the whole state document (as the control plane sent it).
pub const WHOLE_KEY: &str = "vllm_gateway.state.whole";
/// Shared-data key of the whole state's [`Mark`].
pub const BASE_KEY: &str = "vllm_gateway.state.base";
/// Shared-data key of the newest change's [`Mark`].
pub const HEAD_KEY: &str = "vllm_gateway.state.head";
/// How many changes the ring keeps: a worker further behind reads the base, or catches up.
pub const RING: u64 = 64;

/// Where a shared record stands: its place in the ring and the state version it brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Ring sequence number (the base's: the change it is at least as new as).
    pub seq: u64,
    /// The database the version counts in.
    pub epoch: String,
    /// The state version.
    pub version: i64,
    /// The control plane's ETag of that version (for `If-None-Match`).
    pub etag: String,
}

impl Mark {
    fn write(&self) -> String {
        // The ETag goes last: it is the only part that may hold spaces.
        format!("{} {} {} {}", self.seq, self.epoch, self.version, self.etag)
    }

    fn read(text: &str) -> Option<Self> {
        let mut parts = text.splitn(4, ' ');
        let seq = parts.next()?.parse().ok()?;
        let epoch = parts.next()?.to_owned();
        let version = parts.next()?.parse().ok()?;
        let etag = parts.next().unwrap_or_default().to_owned();
        Some(Self { seq, epoch, version, etag })
    }

    /// Whether a state at this mark is newer than one at `epoch`/`version` (another epoch
    /// always is: the database was replaced).
    pub fn is_newer_than(&self, epoch: &str, version: i64) -> bool {
        self.epoch != epoch || self.version > version
    }
}

/// What one ring slot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A delta document.
    Delta(Vec<u8>),
    /// The whole state was replaced: the base has it.
    Whole,
}

/// Shared-data key of ring slot `seq`.
pub fn change_key(seq: u64) -> String {
    format!("vllm_gateway.state.change.{}", seq % RING)
}

/// The mark under `key` (the head or the base).
pub fn read_mark(shared: &dyn SharedData, key: &str) -> Option<Mark> {
    let (value, _) = shared.get(key);
    Mark::read(std::str::from_utf8(&value?).ok()?)
}

/// The change at `seq`, when its slot still holds it (not yet overwritten by `seq + RING`).
pub fn read_change(shared: &dyn SharedData, seq: u64) -> Option<(Mark, Change)> {
    let (Some(value), _) = shared.get(&change_key(seq)) else { return None };
    let line_end = memchr::memchr(b'\n', &value)?;
    let header = std::str::from_utf8(value.get(..line_end)?).ok()?;
    let (mark, kind) = header.rsplit_once(' ')?;
    let mark = Mark::read(mark).filter(|m| m.seq == seq)?;
    let change = match kind {
        "d" => Change::Delta(value.get(line_end + 1..)?.to_vec()),
        "w" => Change::Whole,
        _ => return None,
    };
    Some((mark, change))
}

/// Publishes a change after the current head: its slot, then the head. The sequence number it
/// got, or `None` when the head kept moving under this writer.
pub fn push_change(shared: &mut dyn SharedData, mut mark: Mark, change: &Change) -> Option<u64> {
    for _ in 0..3 {
        let (head, cas) = shared.get(HEAD_KEY);
        let head = head.and_then(|h| Mark::read(std::str::from_utf8(&h).ok()?));
        mark.seq = head.map_or(1, |h| h.seq + 1);
        let mut value = format!(
            "{} {}\n",
            mark.write(),
            if matches!(change, Change::Whole) { "w" } else { "d" }
        )
        .into_bytes();
        if let Change::Delta(body) = change {
            value.extend_from_slice(body);
        }
        if shared.set(&change_key(mark.seq), &value, None)
            && shared.set(HEAD_KEY, mark.write().as_bytes(), cas)
        {
            return Some(mark.seq);
        }
    }
    None
}

/// Publishes a whole state as the base: the document, then its mark.
pub fn share_base(shared: &mut dyn SharedData, mark: &Mark, document: &[u8]) -> bool {
    shared.set(WHOLE_KEY, document, None) && shared.set(BASE_KEY, mark.write().as_bytes(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_sync::testing::FakeShared;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn mark(version: i64) -> Mark {
        Mark { seq: 0, epoch: "e".into(), version, etag: format!("\"v{version} x\"") }
    }

    #[test]
    fn marks_read_back_with_spaces_in_the_etag() {
        let m = Mark { seq: 3, ..mark(7) };
        assert_eq!(Mark::read(&m.write()), Some(m.clone()));
        assert!(m.is_newer_than("e", 6) && !m.is_newer_than("e", 7) && m.is_newer_than("other", 9));
        for bad in ["", "x e 1 t", "1 e x t", "1"] {
            assert_eq!(Mark::read(bad), None, "{bad}");
        }
    }

    #[test]
    fn changes_go_after_the_head_and_wrap_around_the_ring() {
        let mut shared = FakeShared::default();
        assert_eq!(push_change(&mut shared, mark(2), &Change::Whole), Some(1));
        assert_eq!(
            push_change(&mut shared, mark(3), &Change::Delta(b"{\"a\":1}\n".to_vec())),
            Some(2)
        );
        assert_eq!(read_mark(&shared, HEAD_KEY).unwrap(), Mark { seq: 2, ..mark(3) });
        assert_eq!(read_change(&shared, 1), Some((Mark { seq: 1, ..mark(2) }, Change::Whole)));
        assert_eq!(read_change(&shared, 2).unwrap().1, Change::Delta(b"{\"a\":1}\n".to_vec()));
        for version in 4..4 + i64::try_from(RING).unwrap() {
            push_change(&mut shared, mark(version), &Change::Whole).unwrap();
        }
        assert_eq!(read_change(&shared, 2), None, "overwritten by {}", 2 + RING);
        assert_eq!(read_change(&shared, 2 + RING).unwrap().0.seq, 2 + RING);
    }

    #[test]
    fn the_base_mark_follows_its_document() {
        let mut shared = FakeShared::default();
        assert!(share_base(&mut shared, &Mark { seq: 4, ..mark(9) }, b"whole"));
        assert_eq!(read_mark(&shared, BASE_KEY).unwrap().seq, 4);
        assert_eq!(shared.get(WHOLE_KEY).0.as_deref(), Some(&b"whole"[..]));
    }
}
