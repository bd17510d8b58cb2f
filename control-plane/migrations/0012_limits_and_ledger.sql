-- Limits and budgets (issue #15): apps and users hold their whole limit set as JSON (the
-- contract's `Limits`: five kinds, a time zone, per-model sets); the ledger counts, per subject,
-- limit and window, the units leased out to Envoys and charged; concurrency slots are held per
-- Envoy instance until they expire; access-log rows say which limit refused a request or cut
-- its stream off. Never edit once landed.

-- The contract's `Limits` as JSON (camelCase, as the admin API shows it); NULL when nothing is
-- limited. Fed to the filter (FeedKey.limits, FeedUser.limits).
ALTER TABLE apps ADD COLUMN limits TEXT;
ALTER TABLE users ADD COLUMN limits TEXT;

-- The two per-minute limits of 0002 move into `limits` (json_patch drops the NULL members).
UPDATE apps SET limits = json_patch('{}', json_object(
        'requestsPerMinute', requests_per_minute, 'tokensPerMinute', tokens_per_minute))
    WHERE requests_per_minute IS NOT NULL OR tokens_per_minute IS NOT NULL;
ALTER TABLE apps DROP COLUMN requests_per_minute;
ALTER TABLE apps DROP COLUMN tokens_per_minute;

-- One row per subject, limit and window: `used` = units leased out to Envoys plus units
-- charged beyond a lease, minus units given back.
--   subject      'app' or 'user'; subject_id its id (ids are never reused: AUTOINCREMENT)
--   model        '' for a subject-wide limit, else the model the limit is scoped to
--   kind         the limit's name (`tokens_per_day`, …; never `concurrent_requests`)
--   window_start the window's start, Unix seconds; window_end its end (exclusive)
CREATE TABLE limit_ledger (
    subject      TEXT    NOT NULL CHECK (subject IN ('app', 'user')),
    subject_id   INTEGER NOT NULL,
    model        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    used         INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (subject, subject_id, model, kind, window_start)
);
-- Pruning of windows that ended long ago.
CREATE INDEX limit_ledger_end ON limit_ledger (window_end);

-- Concurrency slots held by one Envoy instance for one subject (and model), until `expires_at`
-- (Unix seconds) unless renewed. The slots in use are the sum over unexpired rows.
CREATE TABLE limit_holdings (
    subject    TEXT    NOT NULL CHECK (subject IN ('app', 'user')),
    subject_id INTEGER NOT NULL,
    model      TEXT    NOT NULL,
    instance   TEXT    NOT NULL,
    held       INTEGER NOT NULL CHECK (held >= 0),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (subject, subject_id, model, instance)
);
CREATE INDEX limit_holdings_expiry ON limit_holdings (expires_at);

-- The filter's record gained which limit refused a request or cut its stream off
-- (`tokens_per_day`, …) and whether the stream was cut off (0/1).
ALTER TABLE access_logs ADD COLUMN limited TEXT;
ALTER TABLE access_logs ADD COLUMN cut_off INTEGER;
-- `GET /api/logs?limited=` newest first; only limited rows are in it.
CREATE INDEX access_logs_limited ON access_logs (limited, started_at_ms) WHERE limited IS NOT NULL;
