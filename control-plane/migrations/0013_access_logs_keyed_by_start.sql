-- Access-log rows are unique by (start, request id) instead of by request id alone. Envoy's
-- request ids are random UUIDs: as the table's key they sent every insert to a random page of
-- that index, so each batch dirtied (and wrote to the WAL) about one page per row, which doubled
-- the control plane's CPU per ingested row. Led by the start time, the key is written where the
-- newest rows are, like every other index of the table, and it also serves what
-- `access_logs_started` served (time ranges, retention, the unfiltered listing), which goes.
--
-- A repeated entry is still ignored: Envoy logs a request with one start time however it reaches
-- the control plane (the gRPC stream's `start_time` and the file log's `%START_TIME(%s%3f)%`
-- are the same instant, both cut to the millisecond), and the fallback id of an entry without
-- one embeds its start.
--
-- SQLite cannot drop a table's primary key, so the table is rebuilt (rows keep their rowid,
-- the listings' tie-breaker). The count triggers of 0005 and every index are made again.
-- Never edit once landed.

CREATE TABLE access_logs_rebuilt (
    request_id          TEXT NOT NULL,
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
    upstream_error      TEXT,
    client_request_id   TEXT,
    anomaly             TEXT,
    limited             TEXT,
    cut_off             INTEGER
);

INSERT INTO access_logs_rebuilt (rowid, request_id, started_at_ms, method, path, status,
    duration_ms, upstream_cluster, upstream_host, response_flags, bytes_sent, app_id, key_id,
    user_id, model, stream, prompt_tokens, completion_tokens, total_tokens, usage_source, ttft_ms,
    client_disconnected, gateway_error, upstream_error, client_request_id, anomaly, limited,
    cut_off)
SELECT rowid, request_id, started_at_ms, method, path, status, duration_ms, upstream_cluster,
    upstream_host, response_flags, bytes_sent, app_id, key_id, user_id, model, stream,
    prompt_tokens, completion_tokens, total_tokens, usage_source, ttft_ms, client_disconnected,
    gateway_error, upstream_error, client_request_id, anomaly, limited, cut_off
FROM access_logs;

DROP TABLE access_logs;
ALTER TABLE access_logs_rebuilt RENAME TO access_logs;

-- The key; also the time index (newest first by scanning it backwards).
CREATE UNIQUE INDEX access_logs_request ON access_logs (started_at_ms, request_id);

-- As in 0002, 0006, 0011 and 0012.
CREATE INDEX access_logs_app ON access_logs (app_id, started_at_ms);
CREATE INDEX access_logs_user ON access_logs (user_id, started_at_ms);
CREATE INDEX access_logs_model ON access_logs (model, started_at_ms);
CREATE INDEX access_logs_status ON access_logs (status, started_at_ms);
CREATE INDEX access_logs_stream ON access_logs (stream, started_at_ms);
CREATE INDEX access_logs_daily ON access_logs
    (started_at_ms / 86400000, app_id, model, started_at_ms, prompt_tokens, completion_tokens, total_tokens);
CREATE INDEX access_logs_client_request ON access_logs (client_request_id, started_at_ms)
    WHERE client_request_id IS NOT NULL;
CREATE INDEX access_logs_unauthenticated ON access_logs (started_at_ms)
    WHERE app_id IS NULL AND user_id IS NULL AND IFNULL(prompt_tokens, 0) = 0
      AND IFNULL(completion_tokens, 0) = 0 AND IFNULL(total_tokens, 0) = 0;
CREATE INDEX access_logs_limited ON access_logs (limited, started_at_ms) WHERE limited IS NOT NULL;

-- As in 0005 (the rows copied above were counted there already).
CREATE TRIGGER access_logs_counted_insert AFTER INSERT ON access_logs
BEGIN UPDATE access_log_count SET rows = rows + 1 WHERE id = 1; END;
CREATE TRIGGER access_logs_counted_delete AFTER DELETE ON access_logs
BEGIN UPDATE access_log_count SET rows = rows - 1 WHERE id = 1; END;
