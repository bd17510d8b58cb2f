-- A counter bumped by every change the filter's state feed depends on, so the feed's ETag is
-- one small read and an unchanged state costs a 304 without building the feed. Never edit once
-- landed.

CREATE TABLE state_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO state_version (id, version) VALUES (1, 1);

CREATE TRIGGER apps_changed_insert AFTER INSERT ON apps BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER apps_changed_update AFTER UPDATE ON apps BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER apps_changed_delete AFTER DELETE ON apps BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER keys_changed_insert AFTER INSERT ON api_keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER keys_changed_update AFTER UPDATE ON api_keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER keys_changed_delete AFTER DELETE ON api_keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER users_changed_insert AFTER INSERT ON users BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER users_changed_update AFTER UPDATE ON users BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER users_changed_delete AFTER DELETE ON users BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER signing_keys_changed_insert AFTER INSERT ON signing_keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER signing_keys_changed_update AFTER UPDATE ON signing_keys BEGIN UPDATE state_version SET version = version + 1; END;
CREATE TRIGGER signing_keys_changed_delete AFTER DELETE ON signing_keys BEGIN UPDATE state_version SET version = version + 1; END;
