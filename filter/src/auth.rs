//! Checking a caller's credential against what the worker knows: its full state and, over it,
//! the lookups' overlay (newer, so it wins for the credentials it holds).
//!
//! A refusal says whether a newer state could lift it, and so whether the credential is worth one
//! lookup at the control plane ([`Refusal::lookup`]): an unknown API key, a disabled or expired
//! app's key, a JWT whose user is unknown or disabled or whose `ver` is newer than the one known,
//! a JWT signed with a `kid` not known. Also when the refusing fact came from an earlier lookup:
//! an app re-enabled since must work on its next request (the lookups' cap and negative cache
//! bound what this costs the control plane). Never for what no newer state can lift (a malformed
//! or expired token, a bad signature, a `ver` older than the user's: revoked), nor for a `kid`
//! that a lookup's signing keys did not know either. The request that a lookup answers is
//! checked once more against the answer and never looked up again (see the glue).

use crate::error::GatewayError;
use crate::feed::{key_digest, Status};
use crate::jwt::JwtKeys;
use crate::keys::{AppKey, Credentials, User};
use crate::lookup::LookupKey;
use crate::overlay::Overlay;

/// Why a credential is refused, and what to look up before believing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refusal.
    pub error: GatewayError,
    /// The credential to ask the control plane about, when a newer state could lift the refusal.
    pub lookup: Option<LookupKey>,
}

/// What one worker knows about credentials: a full state, and the overlay over it.
#[derive(Debug, Clone, Copy)]
pub struct Authority<'a> {
    state: &'a Credentials,
    overlay: Option<&'a Overlay>,
}

impl<'a> Authority<'a> {
    /// `state`, with `overlay` over it.
    pub fn new(state: &'a Credentials, overlay: Option<&'a Overlay>) -> Self {
        Self { state, overlay }
    }

    /// Checks an API key at `now` (Unix seconds): the key, or why it is refused.
    pub fn authorize_key(&self, api_key: &str, now: i64) -> Result<&'a AppKey, Refusal> {
        let hash = key_digest(api_key);
        let key = self.overlay.and_then(|o| o.key(&hash)).or_else(|| self.state.key(&hash));
        let refuse = |error| Refusal { error, lookup: Some(LookupKey::Key(hash)) };
        let key = key.ok_or_else(|| refuse(GatewayError::InvalidCredential))?;
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(refuse(GatewayError::ExpiredCredential));
        }
        if key.status == Status::Disabled {
            return Err(refuse(GatewayError::AppDisabled));
        }
        Ok(key)
    }

    /// Checks a JWT at `now` (Unix seconds): its user id and user, or why it is refused.
    pub fn authorize_jwt(&self, token: &str, now: i64) -> Result<(i64, &'a User), Refusal> {
        let (jwt_keys, keys_looked_up) = self.jwt_keys();
        let subject = jwt_keys.verify(token, now).map_err(|error| Refusal {
            error,
            lookup: jwt_keys
                .unknown_key_subject(token)
                .filter(|_| !keys_looked_up)
                .map(LookupKey::User),
        })?;
        let user = self.user(subject.user_id);
        let lookup = Some(LookupKey::User(subject.user_id));
        let refuse = |error, lookup| Err(Refusal { error, lookup });
        match user {
            None => refuse(GatewayError::UserDisabled, lookup),
            Some(User { status: Status::Disabled, .. }) => {
                refuse(GatewayError::UserDisabled, lookup)
            }
            // A newer token than the state knows (issued after a revocation it has not seen yet)
            // may be good; an older one has been revoked for good.
            Some(user) if user.token_version < subject.version => {
                refuse(GatewayError::RevokedToken, lookup)
            }
            Some(user) if user.token_version != subject.version => {
                refuse(GatewayError::RevokedToken, None)
            }
            Some(user) => Ok((subject.user_id, user)),
        }
    }

    /// The signing keys in force, and whether they came from a lookup.
    fn jwt_keys(&self) -> (&'a JwtKeys, bool) {
        match self.overlay.and_then(Overlay::jwt_keys) {
            Some(keys) => (keys, true),
            None => (self.state.jwt_keys(), false),
        }
    }

    /// The user with this id: as a lookup last saw it, else as the state has it.
    fn user(&self, id: i64) -> Option<&'a User> {
        self.overlay.and_then(|o| o.user(id)).or_else(|| self.state.user(id))
    }
}

#[cfg(test)]
mod tests;
