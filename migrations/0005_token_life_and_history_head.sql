-- Tokens with a life (a role by what people do, an expiry, last use, the history row that
-- records them) and a history whose sequence numbers are never reused.
--
-- 0003 and 0004 are taken by other changes; sqlx applies migrations by version, so this file
-- does not depend on them.

-- The highest sequence number ever appended and that row's time, kept outside the rows: rows
-- deleted by hand (triggers dropped) cannot make the store hand their numbers out again, and a
-- new row's time is never earlier than the last one written. One row, updated in the same
-- transaction as every append.
CREATE TABLE history_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL CHECK (last_seq >= 0),
    last_at  TEXT
) STRICT;

INSERT INTO history_head (id, last_seq, last_at)
SELECT 1, COALESCE(MAX(seq), 0), MAX(at) FROM history;

CREATE TRIGGER history_head_forward_only BEFORE UPDATE ON history_head
WHEN NEW.last_seq < OLD.last_seq
BEGIN
    SELECT RAISE(ABORT, 'history_head only moves forward');
END;

CREATE TRIGGER history_head_no_delete BEFORE DELETE ON history_head
BEGIN
    SELECT RAISE(ABORT, 'history_head is never deleted');
END;

-- api_tokens is rebuilt: SQLite cannot widen a CHECK in place, and nothing references it by
-- foreign key. `created_seq` is the history row that records the token (its `token-created`
-- event, whose detail binds the row by the SHA-256 of `token_hash`); a row without one is
-- refused at authentication. Tokens from before this migration point at their `token-created`
-- row by name; the store binds them by hash once, at the first open after this migration
-- (a `token-bound` event). They get an expiry 90 days from the migration, the default lifetime.
CREATE TABLE api_tokens_new (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL CHECK (role IN ('requester', 'operator', 'admin', 'auditor')),
    token_hash   TEXT NOT NULL UNIQUE,
    identity     TEXT,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT,
    created_seq  INTEGER
) STRICT;

INSERT INTO api_tokens_new
    (id, name, role, token_hash, identity, created_at, expires_at, revoked_at, created_seq)
SELECT t.id, t.name, t.role, t.token_hash, t.identity, t.created_at,
       strftime('%Y-%m-%dT%H:%M:%S', 'now', '+90 days') || '.000000Z',
       t.revoked_at,
       (SELECT MAX(h.seq) FROM history h
         WHERE h.event = 'token-created' AND json_extract(h.detail, '$.name') = t.name)
FROM api_tokens t;

DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
