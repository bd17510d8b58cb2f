-- The indexes that find a user's, an app's or a model's requests hold only the rows that have
-- one. Most requests are made with an API key and have no user, so every one of them was written
-- into the user index (at its NULL end) for no query: a listing filters by `user_id = ?`, which
-- SQLite serves from the partial index (`=` implies `IS NOT NULL`). That was one of the six
-- index writes per ingested row. Never edit once landed.

DROP INDEX access_logs_user;
CREATE INDEX access_logs_user ON access_logs (user_id, started_at_ms) WHERE user_id IS NOT NULL;

DROP INDEX access_logs_app;
CREATE INDEX access_logs_app ON access_logs (app_id, started_at_ms) WHERE app_id IS NOT NULL;

DROP INDEX access_logs_model;
CREATE INDEX access_logs_model ON access_logs (model, started_at_ms) WHERE model IS NOT NULL;
