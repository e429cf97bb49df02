-- v3: several nodes on one database. Each node holds a lease (on the database server's
-- clock) and a block of subscription ids; each subscription belongs to the node that accepted
-- it (NULL: stored before the database was shared; the next node to join claims it).
CREATE SEQUENCE node_id_blocks START WITH 1;

CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    id_block    BIGINT NOT NULL UNIQUE,
    -- A random number per process: a renewal by an older process under the same name fails.
    instance    BIGINT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);

ALTER TABLE subscriptions ADD COLUMN owner TEXT;
CREATE INDEX subscriptions_by_owner ON subscriptions (owner);

-- Settings changed on one node (the feature codes, through the API) that every node applies
-- to its own config file. The version moves on every change of the value.
CREATE TABLE shared_settings (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    version BIGINT NOT NULL
);
