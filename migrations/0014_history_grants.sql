-- The grants each history row served: its own grant, and for a remote change made for several
-- grants at once (membership-changed, access-added, ...) each id in `detail.grants`. `lapse show
-- ID` and `history --grant/--user/--resource` find those remote changes through it by index.
-- It is derived from the rows (and rebuilt from them here); the chain covers the rows only.
--
-- Numbered after the issue that added it, as lower numbers are taken by other changes; sqlx
-- applies migrations by version.
CREATE TABLE history_grants (
    grant_id TEXT NOT NULL,
    -- No foreign key: the history's rows are never deleted, and one deleted behind the
    -- triggers must stay deletable so that verification, not a constraint, names it.
    seq      INTEGER NOT NULL,
    PRIMARY KEY (grant_id, seq)
) STRICT, WITHOUT ROWID;

INSERT OR IGNORE INTO history_grants (grant_id, seq)
SELECT grant_id, seq FROM history WHERE grant_id IS NOT NULL;

INSERT OR IGNORE INTO history_grants (grant_id, seq)
SELECT j.value, h.seq
FROM history h, json_each(h.detail, '$.grants') j
WHERE json_type(h.detail, '$.grants') = 'array' AND j.type = 'text';
