-- The grants each history row served, as SQLite's migration 0014 has it: its own grant, and for
-- a remote change made for several grants at once (membership-changed, access-added, ...) each
-- id in `detail.grants`. A grant's history, and `history --user/--resource`, are found through
-- it by index instead of reading every row's JSON. It is derived from the rows (and rebuilt
-- from them here); the chain covers the rows only.
CREATE TABLE history_grants (
    grant_id TEXT COLLATE "C" NOT NULL,
    -- No foreign key: the history's rows are never deleted, and one deleted behind the
    -- triggers must stay deletable so that verification, not a constraint, names it.
    seq      BIGINT NOT NULL,
    PRIMARY KEY (grant_id, seq)
);

INSERT INTO history_grants (grant_id, seq)
SELECT grant_id, seq FROM history WHERE grant_id IS NOT NULL
ON CONFLICT DO NOTHING;

INSERT INTO history_grants (grant_id, seq)
SELECT e #>> '{}', h.seq
FROM history h, jsonb_array_elements(h.detail::jsonb -> 'grants') e
WHERE jsonb_typeof(h.detail::jsonb -> 'grants') = 'array' AND jsonb_typeof(e) = 'string'
ON CONFLICT DO NOTHING;
