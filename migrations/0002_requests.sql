-- Just-in-time requests on access lists, their approvals, list reviews, and the notification
-- outbox. Timestamps follow 0001: UTC text, fixed precision, so text order is time order.

-- A token may be bound to a person's identity (an email, stored trimmed and lower-cased), which
-- is what access lists name. Tokens created before this migration have none.
ALTER TABLE api_tokens ADD COLUMN identity TEXT;

-- A request: pending → approved | denied | cancelled | lapsed. An approved request names the
-- grant it became (or, for an extension, the grant it extended). `state` carries no CHECK list
-- for the same reason as grants.state in 0001.
CREATE TABLE requests (
    id              TEXT PRIMARY KEY NOT NULL,   -- ULID
    list            TEXT NOT NULL,
    requester       TEXT NOT NULL,               -- normalised identity
    token_name      TEXT NOT NULL,               -- the token it was made with (the history actor)
    reason          TEXT NOT NULL,
    duration_secs   INTEGER NOT NULL CHECK (duration_secs > 0),
    break_glass     INTEGER NOT NULL DEFAULT 0 CHECK (break_glass IN (0, 1)),
    extends_grant   TEXT,                        -- set when the request extends a grant
    state           TEXT NOT NULL,
    approvals_needed INTEGER NOT NULL CHECK (approvals_needed >= 0),
    created_at      TEXT NOT NULL,
    wait_until      TEXT NOT NULL,               -- a pending request lapses after this
    decided_at      TEXT,
    decided_by      TEXT,
    decision_reason TEXT,
    grant_id        TEXT,
    -- The grant expiry an expiring-soon notice was sent for; an extension moves the expiry and
    -- so re-arms the notice.
    warned_expiry   TEXT,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE INDEX requests_open ON requests (state, wait_until) WHERE state = 'pending';
CREATE INDEX requests_grant ON requests (grant_id);

-- One row per distinct owner approval; the primary key makes a second approval by the same
-- identity impossible.
CREATE TABLE approvals (
    request_id TEXT NOT NULL REFERENCES requests (id),
    approver   TEXT NOT NULL,                    -- normalised identity
    token_name TEXT NOT NULL,
    at         TEXT NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (request_id, approver)
) STRICT, WITHOUT ROWID;

-- Reviews recorded by owners. Lists live in files; the review record lives here, and moves the
-- list's due date on and takes removed members out of the list until the file drops them.
CREATE TABLE list_reviews (
    id       INTEGER PRIMARY KEY,
    list     TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    at       TEXT NOT NULL,
    kept     TEXT NOT NULL,                      -- JSON array of identities
    removed  TEXT NOT NULL,                      -- JSON array of identities
    next_due TEXT NOT NULL
) STRICT;

CREATE INDEX list_reviews_list ON list_reviews (list, id);

-- Notifications to deliver, one row per sink, written in the same transaction as the event they
-- announce, so that none is lost and none is invented.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    sink            TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,               -- JSON
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT
) STRICT;

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- Small named marks of work done exactly once: the last history row scanned for
-- notifications, the last daily review reminder per list.
CREATE TABLE marks (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
