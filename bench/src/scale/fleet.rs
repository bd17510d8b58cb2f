//! The scale scenario's fleet: its size ([`Sizes`]), the apps and users seeded straight into the
//! control plane's SQLite file (a mixed fleet, the way `control-plane/tests/feed_scale.rs` seeds
//! it), which seeded apps carry requests and which are changed, and the changes made through the
//! admin API while Envoys hold the fleet ([`Churn`]).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gateway_stack::Stack;
use reqwest::Method;
use serde_json::json;
use sqlx::{Sqlite, Transaction};
use vllm_gateway_filter::feed::hash_key;

/// How big the fleet is and how long each part runs.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Apps, one live key each.
    pub keys: u32,
    /// Users.
    pub users: u32,
    /// Changes made before memory is read again.
    pub changes: u32,
    /// Pause between those changes.
    pub change_pace: Duration,
    /// Length of each load run, quiet or changing.
    pub run_time: Duration,
    /// Quiet-changing pairs, alternated.
    pub rounds: u32,
    /// New keys timed to their first 200.
    pub first_uses: u32,
    /// Apps disabled and timed until every worker refuses them.
    pub revocations: u32,
    /// How long an Envoy must take no new state to count as settled.
    pub settle: Duration,
}

impl Sizes {
    /// The fleet for a full run; a small one, briefly, for `--quick`.
    pub fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                keys: 2_000,
                users: 200,
                changes: 30,
                change_pace: Duration::ZERO,
                run_time: Duration::from_secs(1),
                rounds: 1,
                first_uses: 5,
                revocations: 3,
                settle: Duration::from_millis(300),
            }
        } else {
            Sizes {
                keys: 100_000,
                users: 10_000,
                changes: 1_000,
                change_pace: Duration::from_millis(25),
                run_time: Duration::from_secs(15),
                rounds: 2,
                first_uses: 20,
                revocations: 20,
                settle: Duration::from_secs(1),
            }
        }
    }

    /// How the figures' notes name the fleet.
    pub fn fleet(&self) -> String {
        let full = self.keys == 100_000 && self.users == 10_000;
        format!(
            "{} apps/keys, {} users{}",
            thousands(self.keys),
            thousands(self.users),
            if full { "" } else { " (quick run)" }
        )
    }
}

/// The plaintext of the key of seeded app `n` (apps are numbered from 1), shaped like a real one.
pub fn seeded_key(n: u32) -> String {
    format!("sk-live-{n:08x}-5ca1-4e00-8000-{n:012x}")
}

/// The `k`-th seeded app whose key may call any model, without limits, never expires and is
/// enabled (see [`seed`]: every app whose number is 1 modulo 60). App 1 carries the load.
pub fn serving_app(k: u32) -> u32 {
    1 + 60 * k
}

/// The `k`-th app the changes disable and enable again (2 modulo 60: like the serving apps, and
/// never used for requests).
fn churned_app(k: u32, keys: u32) -> u32 {
    2 + 60 * (k % (keys / 60).max(1))
}

/// Seeds the fleet in one transaction (the control plane is stopped): `sizes.keys` apps with a
/// live key each and `sizes.users` users. A third of the apps list models, a quarter have
/// limits, a tenth expire (one in fifty has expired), one in twenty is disabled; one user in ten
/// is disabled. Returns the seconds it took.
pub async fn seed(db_url: &str, sizes: &Sizes) -> Result<f64> {
    let db = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(db_url).await?;
    let started = Instant::now();
    let now = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
    )?;
    let mut tx = db.begin().await?;
    seed_apps(&mut tx, sizes.keys, now).await.context("seeding apps")?;
    seed_keys(&mut tx, sizes.keys, now).await.context("seeding keys")?;
    seed_users(&mut tx, sizes.users, now).await.context("seeding users")?;
    tx.commit().await?;
    db.close().await;
    Ok(started.elapsed().as_secs_f64())
}

/// Apps 1 to `keys`, mixed as [`seed`] says.
async fn seed_apps(tx: &mut Transaction<'_, Sqlite>, keys: u32, now: i64) -> Result<()> {
    sqlx::query(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
         INSERT INTO apps (id, org_name, remark, status, expire_time, expires_at, created_at, updated_at,
             models, limits)
         SELECT n, 'scale-org-' || n, 'seeded by cargo xtask bench',
             CASE WHEN n % 20 = 0 THEN 'disabled' ELSE 'enabled' END,
             CASE WHEN n % 50 = 0 THEN '2020-09-13T12:26:40Z' WHEN n % 10 = 0 THEN '2100-01-01T00:00:00Z' END,
             CASE WHEN n % 50 = 0 THEN 1600000000 WHEN n % 10 = 0 THEN 4102444800 END,
             ?2, ?2,
             CASE WHEN n % 3 = 0 THEN '[\"Qwen3-32B\",\"Qwen3-235B\"]' ELSE '[]' END,
             CASE WHEN n % 4 = 0 THEN '{\"requestsPerMinute\":1000000000,\"tokensPerMinute\":1000000000}' END
         FROM seq",
    )
    .bind(i64::from(keys))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One live key for each of apps 1 to `keys` ([`seeded_key`]).
async fn seed_keys(tx: &mut Transaction<'_, Sqlite>, keys: u32, now: i64) -> Result<()> {
    let apps: Vec<u32> = (1..=keys).collect();
    // 4 values a row, well under SQLite's 32,766 variables a statement.
    for chunk in apps.chunks(2_000) {
        let mut insert =
            sqlx::QueryBuilder::new("INSERT INTO api_keys (app_id, hash, prefix, created_at) ");
        insert.push_values(chunk, |mut row, &n| {
            let key = seeded_key(n);
            row.push_bind(i64::from(n))
                .push_bind(hash_key(&key))
                .push_bind(key[..12].to_owned())
                .push_bind(now);
        });
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// `users` users, one in ten disabled.
async fn seed_users(tx: &mut Transaction<'_, Sqlite>, users: u32, now: i64) -> Result<()> {
    sqlx::query(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
         INSERT INTO users (email, password_hash, status, token_version, created_at, updated_at)
         SELECT 'scale-user-' || n || '@example.com', 'not-a-password-hash',
             CASE WHEN n % 10 = 0 THEN 'disabled' ELSE 'enabled' END, 1 + n % 3, ?2, ?2
         FROM seq",
    )
    .bind(i64::from(users))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Changes through the admin API, in turn: an app created, a seeded app disabled, the same app
/// enabled again.
pub struct Churn {
    keys: u32,
    /// Changes made so far.
    pub made: u32,
    /// How long each admin call took, ms.
    pub call_ms: Vec<f64>,
}

impl Churn {
    /// No changes yet, over a fleet of `keys` apps.
    pub fn new(keys: u32) -> Self {
        Churn { keys, made: 0, call_ms: Vec::new() }
    }

    /// The next change, through the stack's admin API (its time is kept in `call_ms`).
    pub async fn change(&mut self, stack: &Stack) -> Result<()> {
        let started = Instant::now();
        let app = churned_app(self.made / 3, self.keys);
        match self.made % 3 {
            0 => drop(stack.create_app(&format!("scale-churn-{}", self.made)).await?),
            1 => set_status(stack, app, "disabled").await?,
            _ => set_status(stack, app, "enabled").await?,
        }
        self.call_ms.push(started.elapsed().as_secs_f64() * 1e3);
        self.made += 1;
        Ok(())
    }
}

/// Sets seeded app `app` `enabled` or `disabled` through the admin API.
pub async fn set_status(stack: &Stack, app: u32, status: &str) -> Result<()> {
    let (code, body) = stack
        .admin(Method::PATCH, &format!("/api/apps/{app}/status"), Some(json!({"status": status})))
        .await?;
    if code != 200 {
        bail!("setting app {app} {status} answered {code}: {body}");
    }
    Ok(())
}

/// `100000` as `100,000`.
pub fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_keys_look_like_real_ones_and_the_chosen_apps_are_plain() {
        let key = seeded_key(100_000);
        let rest = key.strip_prefix("sk-live-").unwrap();
        assert_eq!(rest.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert_ne!(seeded_key(1), seeded_key(2));
        // The seeding's CASEs: models every 3rd, limits every 4th, expiry every 10th, disabled
        // every 20th; the apps that carry requests or get churned have none of these.
        for n in (0..20).map(serving_app).chain((0..40).map(|k| churned_app(k, 2_000))) {
            assert!(n % 3 != 0 && n % 4 != 0 && n % 10 != 0 && n % 20 != 0, "{n}");
            assert!(n <= 2_000);
        }
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(200), "200");
    }
}
