-- Users who log in at /user/user_login and call the gateway with a JWT, and the Ed25519 keys
-- that sign those JWTs. Never edit once landed.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,  -- Argon2id, PHC string
    status        TEXT    NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    token_version INTEGER NOT NULL DEFAULT 1,  -- bumped to revoke every JWT issued before
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- The newest key without retired_at signs; a retired key stays published until the tokens it
-- signed have expired.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    secret_key_hex TEXT    NOT NULL,
    public_key_hex TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER
);
