-- v1: current presence per extension, an append-only audit log of every change, and the
-- presence subscriptions (so watchers survive a restart and any node can count them).
-- Times are milliseconds since the Unix epoch, as in the SQLite store.
CREATE TABLE presence (
    extension     TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    custom_text   TEXT,
    version       BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    source        TEXT NOT NULL
);

-- The id is the global event id readers resume from; writers take a transaction-level
-- advisory lock before allocating it, so ids commit in order and `id > last` never skips.
CREATE TABLE history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    extension   TEXT NOT NULL REFERENCES presence (extension),
    version     BIGINT NOT NULL,
    status      TEXT NOT NULL,
    custom_text TEXT,
    source      TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    actor       TEXT
);
CREATE INDEX history_by_extension ON history (extension, id);

CREATE FUNCTION history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'history is append-only';
END;
$$;
CREATE TRIGGER history_no_update_or_delete BEFORE UPDATE OR DELETE OR TRUNCATE ON history
    FOR EACH STATEMENT EXECUTE FUNCTION history_is_append_only();

CREATE TABLE subscriptions (
    id            TEXT PRIMARY KEY,
    extension     TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX subscriptions_by_extension ON subscriptions (extension);
