//! The request bytes one worker buffers at once. The filter holds each request body until it is
//! complete (to read its `model`), so every body in flight costs memory; many large or slow
//! uploads at once could exhaust Envoy's. Each request takes its share as its bytes arrive and
//! gives it back when its body has been read (or the request ends); a body that would take the
//! worker past its budget is refused, and memory stays bounded while small requests go on.

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyBudget {
    limit: usize,
    held: usize,
}

impl BodyBudget {
    /// No bytes held, at most `limit`.
    pub fn new(limit: usize) -> Self {
        Self { limit, held: 0 }
    }

    /// Grows a request's share from `had` to `now` bytes; `false` (nothing taken) when that
    /// would pass the limit.
    pub fn grow(&mut self, had: usize, now: usize) -> bool {
        let more = now.saturating_sub(had);
        if self.held.saturating_add(more) > self.limit {
            return false;
        }
        self.held += more;
        true
    }

    /// Gives a request's share of `had` bytes back.
    pub fn release(&mut self, had: usize) {
        self.held = self.held.saturating_sub(had);
    }

    /// The bytes held now.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn shares_grow_until_the_limit_and_come_back() {
        let mut budget = BodyBudget::new(100);
        assert!(budget.grow(0, 60));
        assert!(budget.grow(0, 30));
        assert!(!budget.grow(60, 71), "61 + 30 + 11 > 100");
        assert_eq!(budget.held(), 90, "a refused growth takes nothing");
        assert!(budget.grow(30, 40));
        budget.release(60);
        budget.release(40);
        assert_eq!(budget.held(), 0);
        budget.release(5);
        assert_eq!(budget.held(), 0, "never below zero");
        assert!(budget.grow(0, 100) && !budget.grow(0, 1));
    }
}
