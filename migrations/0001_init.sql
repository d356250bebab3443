-- lapse's first schema: grants, who and what they name, the ownership record, the
-- hash-chained history and API tokens.
--
-- Timestamps are TEXT in UTC with fixed precision, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so an auditor
-- can read them and text order is time order (range filters and ORDER BY work on the text).
--
-- A shipped migration is never edited: the daemon refuses a database whose applied migrations
-- do not match its own (checksums are stored in _sqlx_migrations). Change the schema by adding
-- a new numbered file.

-- `state` and `kind` carry no CHECK list: approval states and new kinds will be added later,
-- and widening a CHECK in SQLite means rebuilding a table that others reference by foreign
-- key. The store only ever writes them from Rust enums and refuses unknown values on read.
CREATE TABLE grants (
    id              TEXT PRIMARY KEY NOT NULL,   -- ULID, sorts by creation time
    kind            TEXT NOT NULL,
    spec            TEXT NOT NULL,               -- JSON of GrantSpec, every name resolved to an id
    requester       TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    starts_at       TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    state           TEXT NOT NULL,
    revoked_at      TEXT,
    revoke_reason   TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT,
    last_error      TEXT,
    -- A submission's idempotency key and the hash of its body: the same key with another body
    -- is refused. UNIQUE allows any number of NULLs.
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    updated_at      TEXT NOT NULL,
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
) STRICT;

-- The engine loads every open grant at start and after each wake-up; terminal grants are the
-- bulk of the table over time and are skipped by this partial index.
CREATE INDEX grants_open ON grants (state) WHERE state NOT IN ('expired', 'revoked', 'failed');
CREATE INDEX grants_kind ON grants (kind, id);

-- The users, resources, groups and service accounts a grant names, copied out of `spec` so that
-- grants and history can be filtered by a user's email or a resource's name.
CREATE TABLE grant_principals (
    grant_id  TEXT NOT NULL REFERENCES grants (id),
    role      TEXT NOT NULL CHECK (role IN ('user', 'resource', 'group', 'service-account')),
    remote_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    PRIMARY KEY (grant_id, role, remote_id)
) STRICT, WITHOUT ROWID;

-- Emails and resource names are compared case-insensitively, as people type them.
CREATE INDEX grant_principals_name ON grant_principals (role, name COLLATE NOCASE);
CREATE INDEX grant_principals_remote ON grant_principals (role, remote_id);

-- Remote edges lapse added (I2): an edge with no row here existed before lapse and is never
-- removed. A row is written before the add call (confirmed = 0, an intent) and confirmed after.
CREATE TABLE owned_edges (
    kind       TEXT NOT NULL,                    -- membership | access | service-resource
    container  TEXT NOT NULL,
    member     TEXT NOT NULL,
    added_by   TEXT NOT NULL REFERENCES grants (id),
    expires_at TEXT,                             -- server-side expiry set on access edges
    confirmed  INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
    created_at TEXT NOT NULL,
    PRIMARY KEY (kind, container, member)
) STRICT, WITHOUT ROWID;

CREATE INDEX owned_edges_added_by ON owned_edges (added_by);

-- Remote objects lapse creates under a deterministic name (I3): written with remote_id NULL
-- before the create call, so an unknown outcome is resolved by looking the name up.
CREATE TABLE owned_objects (
    grant_id  TEXT NOT NULL REFERENCES grants (id),
    kind      TEXT NOT NULL CHECK (kind IN ('group', 'key')),
    name      TEXT NOT NULL,
    remote_id TEXT,
    revoked   INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    PRIMARY KEY (grant_id, kind)
) STRICT, WITHOUT ROWID;

-- Every state change, with who, when and why (I6). Rows are chained: `hash` is the SHA-256 of
-- `prev_hash` and this row's fields (encoding documented in lapse-store's history module), and
-- the first row's prev_hash is 64 zeros. grant_id has no foreign key so that the log never
-- depends on another table's contents (token events have no grant at all).
CREATE TABLE history (
    seq       INTEGER PRIMARY KEY,               -- assigned by the store, 1, 2, 3, ... no gaps
    at        TEXT NOT NULL,
    grant_id  TEXT,
    actor     TEXT NOT NULL,
    event     TEXT NOT NULL,
    detail    TEXT NOT NULL,                     -- JSON
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

CREATE INDEX history_grant ON history (grant_id, seq);
CREATE INDEX history_at ON history (at);

-- Append-only: an edit needs these triggers dropped first, and the hash chain then shows it.
CREATE TRIGGER history_no_update BEFORE UPDATE ON history
BEGIN
    SELECT RAISE(ABORT, 'history is append-only');
END;

CREATE TRIGGER history_no_delete BEFORE DELETE ON history
BEGIN
    SELECT RAISE(ABORT, 'history is append-only');
END;

-- Bearer tokens for the HTTP API. Only the SHA-256 of a token is kept; the token itself is
-- printed once at creation. The name is the actor recorded in the history.
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
