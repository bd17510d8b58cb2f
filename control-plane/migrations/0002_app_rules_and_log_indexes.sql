-- Apps gain the models they may use and their rate limits; access logs gain the indexes the
-- admin queries (filters, usage summaries) and retention need at millions of rows.
-- Never edit a migration once it has landed; add a new numbered one instead.

-- JSON array of model names; '[]' means every model.
ALTER TABLE apps ADD COLUMN models TEXT NOT NULL DEFAULT '[]';
-- Rate limits, NULL when unlimited; fed to the filter.
ALTER TABLE apps ADD COLUMN requests_per_minute INTEGER CHECK (requests_per_minute > 0);
ALTER TABLE apps ADD COLUMN tokens_per_minute INTEGER CHECK (tokens_per_minute > 0);

-- `GET /api/logs` filters, each newest first (rowid, the tie-breaker, ends every index entry).
-- The unfiltered listing, time ranges and retention use `access_logs_started` from 0001.
CREATE INDEX access_logs_app ON access_logs (app_id, started_at_ms);
CREATE INDEX access_logs_user ON access_logs (user_id, started_at_ms);
CREATE INDEX access_logs_model ON access_logs (model, started_at_ms);
CREATE INDEX access_logs_status ON access_logs (status, started_at_ms);
CREATE INDEX access_logs_stream ON access_logs (stream, started_at_ms);

-- `GET /api/usage`: grouped by UTC day (the expression must match the query's exactly), app
-- and model in index order, read from the index alone: no sort, no row lookups.
CREATE INDEX access_logs_daily ON access_logs
    (started_at_ms / 86400000, app_id, model, started_at_ms, prompt_tokens, completion_tokens, total_tokens);
