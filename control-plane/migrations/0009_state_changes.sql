-- The state feed's deltas: what each bump of the state version (0004) changed, so a puller
-- that holds version n gets only what changed after n. The triggers of 0004 are replaced by
-- triggers that, in one body, bump the version and log the change under the new version. Never
-- edit once landed.

-- The database the versions count in: made once, here, so a new database never passes its
-- versions off as another's. (A copy restored from a backup keeps its epoch while its versions
-- go back: give it a new one, `UPDATE state_epoch SET epoch = lower(hex(randomblob(8)))`, so
-- that every puller starts again from the whole state.)
CREATE TABLE state_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch TEXT    NOT NULL
);
INSERT INTO state_epoch (id, epoch) VALUES (1, lower(hex(randomblob(8))));

-- One row per version bump, saying what changed; every column NULL means "only the JWT keys"
-- (a signing key), which a delta always carries whole.
--   app_id   an app that changed, or whose key did (its live keys are all sent);
--   key_hash a key that changed (sent when live, else named as removed);
--   user_id  a user that changed (sent when present, else named as removed).
-- A change that precedes this migration is not logged: a puller of an older version (which
-- also holds another epoch) gets the whole state.
CREATE TABLE state_changes (
    version  INTEGER PRIMARY KEY,
    app_id   INTEGER,
    key_hash TEXT,
    user_id  INTEGER
);

-- The log keeps the newest 100,000 changes (one range delete by primary key per change); a
-- puller whose version is older than that gets the whole state.
CREATE TRIGGER state_changes_pruned AFTER INSERT ON state_changes
BEGIN DELETE FROM state_changes WHERE version <= NEW.version - 100000; END;

DROP TRIGGER apps_changed_insert;
DROP TRIGGER apps_changed_update;
DROP TRIGGER apps_changed_delete;
DROP TRIGGER keys_changed_insert;
DROP TRIGGER keys_changed_update;
DROP TRIGGER keys_changed_delete;
DROP TRIGGER users_changed_insert;
DROP TRIGGER users_changed_update;
DROP TRIGGER users_changed_delete;
DROP TRIGGER signing_keys_changed_insert;
DROP TRIGGER signing_keys_changed_update;
DROP TRIGGER signing_keys_changed_delete;

CREATE TRIGGER apps_changed_insert AFTER INSERT ON apps BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, app_id) SELECT version, NEW.id FROM state_version WHERE id = 1;
END;
CREATE TRIGGER apps_changed_update AFTER UPDATE ON apps BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, app_id) SELECT version, NEW.id FROM state_version WHERE id = 1;
END;
-- An app's keys go with it (ON DELETE CASCADE), and SQLite fires their delete triggers below:
-- every hash of the app is logged, and named as removed.
CREATE TRIGGER apps_changed_delete AFTER DELETE ON apps BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, app_id) SELECT version, OLD.id FROM state_version WHERE id = 1;
END;

CREATE TRIGGER keys_changed_insert AFTER INSERT ON api_keys BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, app_id, key_hash)
        SELECT version, NEW.app_id, NEW.hash FROM state_version WHERE id = 1;
END;
-- A key whose hash changes (nothing does that today) logs the old hash too, one version later.
CREATE TRIGGER keys_changed_update AFTER UPDATE ON api_keys BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, app_id, key_hash)
        SELECT version, NEW.app_id, NEW.hash FROM state_version WHERE id = 1;
    UPDATE state_version SET version = version + 1 WHERE id = 1 AND OLD.hash IS NOT NEW.hash;
    INSERT INTO state_changes (version, app_id, key_hash)
        SELECT version, OLD.app_id, OLD.hash FROM state_version WHERE id = 1 AND OLD.hash IS NOT NEW.hash;
END;
CREATE TRIGGER keys_changed_delete AFTER DELETE ON api_keys BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, app_id, key_hash)
        SELECT version, OLD.app_id, OLD.hash FROM state_version WHERE id = 1;
END;

CREATE TRIGGER users_changed_insert AFTER INSERT ON users BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, user_id) SELECT version, NEW.id FROM state_version WHERE id = 1;
END;
CREATE TRIGGER users_changed_update AFTER UPDATE ON users BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, user_id) SELECT version, NEW.id FROM state_version WHERE id = 1;
END;
CREATE TRIGGER users_changed_delete AFTER DELETE ON users BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version, user_id) SELECT version, OLD.id FROM state_version WHERE id = 1;
END;

CREATE TRIGGER signing_keys_changed_insert AFTER INSERT ON signing_keys BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version) SELECT version FROM state_version WHERE id = 1;
END;
CREATE TRIGGER signing_keys_changed_update AFTER UPDATE ON signing_keys BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version) SELECT version FROM state_version WHERE id = 1;
END;
CREATE TRIGGER signing_keys_changed_delete AFTER DELETE ON signing_keys BEGIN
    UPDATE state_version SET version = version + 1 WHERE id = 1;
    INSERT INTO state_changes (version) SELECT version FROM state_version WHERE id = 1;
END;
