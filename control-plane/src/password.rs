//! Password hashing with Argon2id (memory-hard), off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::secrets;

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

/// Whether `password` matches `stored` (or, with `None`, spends the same time and says no).
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let found = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && found
    })
    .await
    .unwrap_or(false)
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
}
