//! The `limits` column of apps and users (migration 0012): the contract's
//! [`Limits`](vllm_gateway_filter::feed::Limits) as JSON, `NULL` when nothing is limited. The
//! admin API shows it, the state feed sends it, and the ledger reads the limit values from it.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteExecutor};
use vllm_gateway_filter::feed::limits::Subject;
use vllm_gateway_filter::feed::Limits;

/// The `limits` column of a row; `None` when nothing is limited.
pub fn from_row(row: &SqliteRow) -> Result<Option<Limits>, sqlx::Error> {
    let text: Option<String> = row.try_get("limits")?;
    from_text(text.as_deref())
        .map_err(|e| sqlx::Error::ColumnDecode { index: "limits".into(), source: e.into() })
}

/// Stored text as limits; `None` for `NULL` or a set that limits nothing.
pub fn from_text(text: Option<&str>) -> Result<Option<Limits>, serde_json::Error> {
    let Some(text) = text else { return Ok(None) };
    let limits: Limits = serde_json::from_str(text)?;
    Ok((!limits.is_empty()).then_some(limits))
}

/// Limits as stored: `NULL` when nothing is limited.
pub fn to_text(limits: &Limits) -> Option<String> {
    if limits.is_empty() {
        return None;
    }
    serde_json::to_string(limits).ok()
}

/// The subject's table column values: `('app' | 'user', id)`.
pub fn subject_parts(subject: Subject) -> (&'static str, i64) {
    match subject {
        Subject::App(id) => ("app", id),
        Subject::User(id) => ("user", id),
    }
}

/// The current limits of an app or a user; `None` when it has none or does not exist.
pub async fn of_subject<'c>(
    db: impl SqliteExecutor<'c>,
    subject: Subject,
) -> Result<Option<Limits>, sqlx::Error> {
    let sql = match subject {
        Subject::App(_) => "SELECT limits FROM apps WHERE id = ?",
        Subject::User(_) => "SELECT limits FROM users WHERE id = ?",
    };
    let text: Option<Option<String>> =
        sqlx::query_scalar(sql).bind(subject_parts(subject).1).fetch_optional(db).await?;
    from_text(text.flatten().as_deref())
        .map_err(|e| sqlx::Error::ColumnDecode { index: "limits".into(), source: e.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_limited_is_null_both_ways() {
        assert_eq!(to_text(&Limits::default()), None);
        assert_eq!(from_text(None).unwrap(), None);
        assert_eq!(from_text(Some("{}")).unwrap(), None);
        assert_eq!(
            from_text(Some(r#"{"timeZone":"Asia/Shanghai"}"#)).unwrap(),
            None,
            "a zone alone limits nothing"
        );
        let limits: Limits =
            serde_json::from_str(r#"{"tokensPerDay":5,"models":{"m":{"concurrentRequests":1}}}"#)
                .unwrap();
        let text = to_text(&limits).unwrap();
        assert_eq!(from_text(Some(&text)).unwrap(), Some(limits));
    }

    #[tokio::test]
    async fn migration_0012_moves_the_two_per_minute_limits_into_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let old = crate::db::migrated_before(&url, 12).await;
        for (rpm, tpm) in [(Some(60), Some(1000)), (None, Some(5)), (None, None)] {
            sqlx::query("INSERT INTO apps (org_name, requests_per_minute, tokens_per_minute, created_at, updated_at) VALUES ('o', ?, ?, 0, 0)")
                .bind(rpm)
                .bind(tpm)
                .execute(&old)
                .await
                .unwrap();
        }
        old.close().await;
        let db = crate::db::open(&url).await.unwrap();
        let stored: Vec<Option<String>> =
            sqlx::query_scalar("SELECT limits FROM apps ORDER BY id").fetch_all(&db).await.unwrap();
        let expected = [
            Some(r#"{"requestsPerMinute":60,"tokensPerMinute":1000}"#),
            Some(r#"{"tokensPerMinute":5}"#),
            None,
        ];
        assert_eq!(stored, expected.map(|s| s.map(str::to_owned)));
        let limits = of_subject(&db, Subject::App(1)).await.unwrap().unwrap();
        assert_eq!(
            (limits.all.requests_per_minute, limits.all.tokens_per_minute),
            (Some(60), Some(1000))
        );
        assert_eq!(of_subject(&db, Subject::User(1)).await.unwrap(), None);
    }
}
