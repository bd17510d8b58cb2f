-- Usage per UTC minute, app and model, kept beside the access log: the log writer adds the
-- rows it inserted, once per write (`store::usage::add_written`), and a trigger takes deleted
-- rows off. `GET /api/usage` reads these sums for the whole minutes of its range and only the
-- rows of the two partial minutes at its ends, instead of every request of the range.
--
-- It replaces the covering index `access_logs_daily` (0002), ordered by day, app and model:
-- every write put its rows at as many places in that index as it had apps and models, which
-- was a quarter of SQLite's work per ingested row. Never edit once landed.

CREATE TABLE usage_minutes (
    -- started_at_ms / 60000, as SQLite divides.
    minute INTEGER NOT NULL,
    -- As in the access log: NULL for requests without an app (or without a model).
    app_id INTEGER,
    model TEXT,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL
);

-- One row per minute, app and model; no app and no model are keys of their own (the empty
-- blob, which no app id or model name is).
CREATE UNIQUE INDEX usage_minutes_key ON usage_minutes
    (minute, IFNULL(app_id, x''), IFNULL(model, x''));

INSERT INTO usage_minutes
    (minute, app_id, model, requests, prompt_tokens, completion_tokens, total_tokens)
SELECT started_at_ms / 60000, app_id, model, COUNT(*), CAST(TOTAL(prompt_tokens) AS INTEGER),
       CAST(TOTAL(completion_tokens) AS INTEGER), CAST(TOTAL(total_tokens) AS INTEGER)
FROM access_logs
WHERE 1
GROUP BY started_at_ms / 60000, app_id, model;

-- A deleted row (retention) leaves its minute's sums; a minute left without requests goes.
CREATE TRIGGER access_logs_usage_delete AFTER DELETE ON access_logs
BEGIN
    UPDATE usage_minutes
    SET requests = requests - 1,
        prompt_tokens = prompt_tokens - IFNULL(old.prompt_tokens, 0),
        completion_tokens = completion_tokens - IFNULL(old.completion_tokens, 0),
        total_tokens = total_tokens - IFNULL(old.total_tokens, 0)
    WHERE minute = old.started_at_ms / 60000
      AND IFNULL(app_id, x'') = IFNULL(old.app_id, x'')
      AND IFNULL(model, x'') = IFNULL(old.model, x'');
    DELETE FROM usage_minutes
    WHERE minute = old.started_at_ms / 60000
      AND IFNULL(app_id, x'') = IFNULL(old.app_id, x'')
      AND IFNULL(model, x'') = IFNULL(old.model, x'')
      AND requests <= 0;
END;

DROP INDEX access_logs_daily;
