//! vLLM's token counters as scraped (migration 0008), and the increase over a window folded
//! from them (see [`crate::reconcile::report::Fold`]).

use tokio_stream::StreamExt as _;

use crate::reconcile::prom::TokenTotals;
use crate::reconcile::report::{Fold, Increase, Sample};
use crate::reconcile::Upstream;
use crate::Db;

/// Stores one sample (a second one at the same millisecond is ignored).
pub async fn insert(
    db: &Db,
    upstream: &Upstream,
    at_ms: i64,
    totals: TokenTotals,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR IGNORE INTO upstream_samples (model, upstream, at_ms, prompt_total, generation_total) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&upstream.model)
    .bind(&upstream.url)
    .bind(at_ms)
    .bind(totals.prompt)
    .bind(totals.generation)
    .execute(db)
    .await?;
    Ok(())
}

/// When the latest sample of this upstream's model was taken.
pub async fn latest_at(db: &Db, upstream: &Upstream) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MAX(at_ms) FROM upstream_samples WHERE model = ? AND upstream = ?")
        .bind(&upstream.model)
        .bind(&upstream.url)
        .fetch_one(db)
        .await
}

/// vLLM's increase over `[from_ms, to_ms)`, from the samples up to `slack_ms` outside it (see
/// [`Fold`]); `None` without any sample there.
pub async fn increase(
    db: &Db,
    upstream: &Upstream,
    from_ms: i64,
    to_ms: i64,
    slack_ms: i64,
) -> Result<Option<Increase>, sqlx::Error> {
    let mut rows = sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT at_ms, prompt_total, generation_total FROM upstream_samples \
         WHERE model = ? AND upstream = ? AND at_ms BETWEEN ? AND ? ORDER BY at_ms",
    )
    .bind(&upstream.model)
    .bind(&upstream.url)
    .bind(from_ms.saturating_sub(slack_ms))
    .bind(to_ms.saturating_add(slack_ms))
    .fetch(db);
    let mut fold = Fold::new(from_ms, to_ms);
    while let Some(row) = rows.next().await {
        let (at_ms, prompt, generation) = row?;
        fold.push(Sample { at_ms, prompt, generation });
    }
    Ok(fold.finish())
}

/// Deletes up to `batch` samples taken before `cutoff_ms`; returns how many.
pub async fn prune_before(db: &Db, cutoff_ms: i64, batch: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM upstream_samples WHERE (model, upstream, at_ms) IN \
         (SELECT model, upstream, at_ms FROM upstream_samples WHERE at_ms < ? LIMIT ?)",
    )
    .bind(cutoff_ms)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}
