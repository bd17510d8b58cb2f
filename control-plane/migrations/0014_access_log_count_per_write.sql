-- The row count of 0005 is kept by the log writer, once per write (`store::logs::insert_rows`
-- adds the rows it inserted, in the same transaction), instead of by a trigger that ran an
-- UPDATE for every inserted row: that trigger was a sixth of SQLite's work per ingested row.
-- Deletes (retention, in the background) keep their trigger. Never edit once landed.

DROP TRIGGER access_logs_counted_insert;
