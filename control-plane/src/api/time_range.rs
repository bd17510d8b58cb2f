//! Instants in query strings (`from`, `to`): RFC 3339 (`2026-01-31T00:00:00Z`, any offset) or
//! Unix milliseconds (`1769817600000`), turned into Unix milliseconds.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::ApiError;

/// One instant as Unix milliseconds; `field` names it in the error.
pub fn parse_instant(field: &'static str, text: &str) -> Result<i64, ApiError> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|at| i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok())
        .ok_or_else(|| {
            ApiError::invalid(field, "must be RFC 3339 (2026-01-31T00:00:00Z) or Unix milliseconds")
        })
}

/// Optional `from`/`to` as milliseconds; an empty value counts as absent. `to` must be after
/// `from` when both are given.
pub fn parse_range(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let from =
        from.filter(|s| !s.trim().is_empty()).map(|s| parse_instant("from", s)).transpose()?;
    let to = to.filter(|s| !s.trim().is_empty()).map(|s| parse_instant("to", s)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            return Err(ApiError::invalid("to", "must be after from"));
        }
    }
    Ok((from, to))
}

/// Unix milliseconds as RFC 3339 (UTC), for replies.
pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc3339_and_milliseconds() {
        assert_eq!(parse_instant("from", "1769817600000").unwrap(), 1_769_817_600_000);
        assert_eq!(parse_instant("from", "2026-01-31T00:00:00Z").unwrap(), 1_769_817_600_000);
        assert_eq!(
            parse_instant("from", "2026-01-31T08:00:00.5+08:00").unwrap(),
            1_769_817_600_500
        );
        assert!(parse_instant("from", "yesterday").is_err());
        assert_eq!(parse_range(Some(""), None).unwrap(), (None, None));
        assert!(
            matches!(parse_range(Some("10"), Some("10")), Err(ApiError::Invalid { field, .. }) if field == "to")
        );
        assert_eq!(format_ms(1_769_817_600_000), "2026-01-31T00:00:00Z");
    }
}
