-- vllm-gateway control plane: the first schema. Never edit a migration once it has landed;
-- add a new numbered one instead.

-- Control-plane settings (the admin token's hash, the state feed's shared secret).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Apps own API keys (the "GatewayApp" of the replaced Spring gateway).
CREATE TABLE apps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_name    TEXT    NOT NULL,
    remark      TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    expire_time TEXT,             -- as the admin gave it (RFC 3339 with offset)
    expires_at  INTEGER,          -- the same instant in Unix seconds
    created_at  INTEGER NOT NULL, -- Unix seconds
    updated_at  INTEGER NOT NULL
);

-- API keys: only the SHA-256 of the plaintext and a short display prefix are kept.
CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id     INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hash       TEXT    NOT NULL UNIQUE,
    prefix     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);
CREATE INDEX api_keys_app ON api_keys (app_id);

-- One row per request, keyed by Envoy's request id: a repeated entry is ignored.
CREATE TABLE access_logs (
    request_id          TEXT PRIMARY KEY,
    started_at_ms       INTEGER NOT NULL,
    method              TEXT,
    path                TEXT,
    status              INTEGER,
    duration_ms         INTEGER,
    upstream_cluster    TEXT,
    upstream_host       TEXT,
    response_flags      TEXT,
    bytes_sent          INTEGER,
    app_id              INTEGER,
    key_id              INTEGER,
    user_id             INTEGER,
    model               TEXT,
    stream              INTEGER,
    prompt_tokens       INTEGER,
    completion_tokens   INTEGER,
    total_tokens        INTEGER,
    usage_source        TEXT,
    ttft_ms             INTEGER,
    client_disconnected INTEGER,
    gateway_error       TEXT,
    upstream_error      TEXT
);
CREATE INDEX access_logs_started ON access_logs (started_at_ms DESC);
