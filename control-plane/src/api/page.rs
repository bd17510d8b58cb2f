//! Paging parameters (`page` from 1, `size` up to 500) and the paged reply shape.

use serde::{Deserialize, Serialize};

use super::ApiError;

/// Largest page size.
pub const MAX_SIZE: i64 = 500;

/// `?page=&size=` as sent.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page: Option<i64>,
    size: Option<i64>,
}

impl PageQuery {
    /// Validated `(page, size)`; defaults 1 and 20.
    pub fn resolve(&self) -> Result<(i64, i64), ApiError> {
        let page = self.page.unwrap_or(1);
        let size = self.size.unwrap_or(20);
        if page < 1 {
            return Err(ApiError::invalid("page", "must be 1 or more"));
        }
        if !(1..=MAX_SIZE).contains(&size) {
            return Err(ApiError::invalid("size", format!("must be between 1 and {MAX_SIZE}")));
        }
        Ok((page, size))
    }
}

/// One page of results.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The rows of this page.
    pub records: Vec<T>,
    /// Rows in all pages.
    pub total: i64,
    /// This page's number, from 1.
    pub page: i64,
    /// Rows per page.
    pub size: i64,
}
