//! Password hashing with Argon2id (memory-hard), off the async threads, and [`PasswordChecks`]:
//! the bound on how many logins check a password at once (each check takes about 19 MiB and a
//! core for tens of milliseconds), with a short queue and a refusal past it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::secrets;

/// Checks waiting for a permit at most before the next is refused at once.
pub const MAX_WAITING_CHECKS: usize = 64;

/// A hash that no password matches, verified when the e-mail is unknown so that a wrong e-mail
/// and a wrong password take the same time.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Y5DxC+gR0gJ3p3GmWbR4mP4LN5rH2Qk2z0n3c8HqLJk";

/// The PHC string of a new hash of `password`.
pub async fn hash(password: String) -> Result<String, argon2::password_hash::Error> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&secrets::random_bytes::<16>())?;
        Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
    })
    .await
    .unwrap_or(Err(argon2::password_hash::Error::Crypto))
}

/// Whether `password` matches `stored` (or, with `None`, spends the same time and says no),
/// unbounded: logins go through [`PasswordChecks::verify`].
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify_now(&password, stored)).await.unwrap_or(false)
}

/// The check itself, on the calling thread.
fn verify_now(password: &str, stored: Option<String>) -> bool {
    let found = stored.is_some();
    let phc = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
    let Ok(parsed) = PasswordHash::new(&phc) else { return false };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && found
}

/// Every permit is taken and the queue is full: the check was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once")]
pub struct Busy;

/// At most `permits` password checks run at once; at most [`MAX_WAITING_CHECKS`] more wait
/// for one, and the next is refused at once ([`Busy`]).
#[derive(Debug)]
pub struct PasswordChecks {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Default for PasswordChecks {
    /// One check per CPU (at least 2) and [`MAX_WAITING_CHECKS`] waiting.
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self::new(cpus.max(2), MAX_WAITING_CHECKS)
    }
}

/// Counts one waiting check until dropped (also when its login is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl PasswordChecks {
    /// `permits` checks at once (at least one), `max_waiting` waiting.
    pub fn new(permits: usize, max_waiting: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// A permit to check one password: at once when one is free, after a wait when fewer than
    /// the most allowed are waiting, else [`Busy`]. The check runs while the permit is held.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, Busy> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Relaxed);
            return Err(Busy);
        }
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.permits).acquire_owned().await.map_err(|_| Busy)
    }

    /// Checks waiting for a permit now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// [`verify`] within the bound. The permit goes with the check onto its blocking thread,
    /// so it is held until the check ends even when the login is cancelled meanwhile.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        let permit = self.acquire().await?;
        let check = tokio::task::spawn_blocking(move || {
            let matches = verify_now(&password, stored);
            drop(permit);
            matches
        });
        Ok(check.await.unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hash = hash("correct horse".to_owned()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse".to_owned(), Some(hash.clone())).await);
        assert!(!verify("wrong horse".to_owned(), Some(hash)).await);
        assert!(PasswordHash::new(DUMMY_HASH).is_ok(), "the dummy hash is really verified");
        assert!(!verify("anything".to_owned(), None).await);
    }

    #[tokio::test]
    async fn checks_past_the_permits_wait_and_past_the_queue_are_refused() {
        let checks = Arc::new(PasswordChecks::new(1, 2));
        let held = checks.acquire().await.unwrap();
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let checks = Arc::clone(&checks);
                tokio::spawn(async move { checks.verify("pw".to_owned(), None).await })
            })
            .collect();
        while checks.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(checks.verify("pw".to_owned(), None).await, Err(Busy), "the queue is full");
        drop(held);
        for check in queued {
            assert_eq!(check.await.unwrap(), Ok(false), "an unknown user's check runs and says no");
        }
        assert_eq!(checks.waiting(), 0);
        assert!(checks.acquire().await.is_ok());
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_the_queue() {
        let checks = PasswordChecks::new(1, 1);
        let _held = checks.acquire().await.unwrap();
        {
            let wait = checks.acquire();
            tokio::pin!(wait);
            assert!(futures_poll_once(wait.as_mut()).await.is_none(), "it waits");
            assert_eq!(checks.waiting(), 1);
        }
        assert_eq!(checks.waiting(), 0, "dropped with its login");
    }

    /// Polls a future once: `Some` when it is ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
