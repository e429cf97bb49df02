-- v2: extensions as accounts, and who may use the web and the API (the SQLite schema's v3-v5
-- in one step; see `postgres/accounts.rs` and `postgres/web_auth.rs`). Secrets are kept only
-- as hashes: SIP digest secrets as HA1 per realm and algorithm, portal and admin passwords
-- as argon2id, API tokens and session cookies as SHA-256. Presence rows and history do not
-- reference accounts: removing an account keeps them.
CREATE TABLE accounts (
    extension       TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    language        TEXT,
    enabled         BOOLEAN NOT NULL,
    portal_password TEXT,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);

CREATE TABLE sip_credentials (
    extension TEXT NOT NULL REFERENCES accounts (extension) ON DELETE CASCADE,
    realm     TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    ha1       TEXT NOT NULL,
    PRIMARY KEY (extension, realm, algorithm)
);

-- One row every account write bumps inside its own transaction: every node's accounts
-- watcher sees it move. Writers update it first, so its row lock also takes account
-- writers of all nodes in turn (an "exists?" check then sees the previous writer's commit).
CREATE TABLE accounts_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO accounts_version (id, version) VALUES (1, 0);

CREATE TABLE web_admins (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('admin', 'extension')),
    extension    TEXT,
    token_hash   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_used_ms BIGINT,
    revoked_ms   BIGINT,
    CHECK ((scope = 'admin') = (extension IS NULL))
);

-- Sessions are here so they survive a restart and every node on the database sees them.
CREATE TABLE web_sessions (
    id_hash        TEXT PRIMARY KEY,
    principal_kind TEXT NOT NULL CHECK (principal_kind IN ('admin', 'extension')),
    principal      TEXT NOT NULL,
    csrf           TEXT NOT NULL,
    credential_tag TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    expires_ms     BIGINT NOT NULL,
    last_seen_ms   BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_principal ON web_sessions (principal_kind, principal);
