//! Paging parameters (`page` from 1, `size` up to 500) and the paged reply shape.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiError;

/// Largest page size.
pub const MAX_SIZE: i64 = 500;

/// `?page=&size=` as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<i64>,
    /// Rows per page, 1 to 500 (default 20).
    #[param(minimum = 1, maximum = 500)]
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

    /// Validated `(page, size, offset)`.
    pub fn resolve_offset(&self) -> Result<(i64, i64, i64), ApiError> {
        let (page, size) = self.resolve()?;
        let offset = (page - 1)
            .checked_mul(size)
            .ok_or_else(|| ApiError::invalid("page", "is too large"))?;
        Ok((page, size, offset))
    }
}

/// One page of results.
#[derive(Debug, Serialize, ToSchema)]
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
