-- The number of access-log rows, kept by triggers, so an unfiltered page of GET /api/logs does
-- not count a million rows for its total. Never edit once landed.

CREATE TABLE access_log_count (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    rows INTEGER NOT NULL
);
INSERT INTO access_log_count (id, rows) SELECT 1, COUNT(*) FROM access_logs;

CREATE TRIGGER access_logs_counted_insert AFTER INSERT ON access_logs
BEGIN UPDATE access_log_count SET rows = rows + 1 WHERE id = 1; END;
CREATE TRIGGER access_logs_counted_delete AFTER DELETE ON access_logs
BEGIN UPDATE access_log_count SET rows = rows - 1 WHERE id = 1; END;
