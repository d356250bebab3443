-- Indexes for the request flow's due queries: approved requests by the grant they became, and
-- live (active or applying) grants by their end, so "approved grants ending before T" reads only what is due.
CREATE INDEX requests_approved ON requests (grant_id) WHERE state = 'approved' AND extends_grant IS NULL;
CREATE INDEX grants_live_expiry ON grants (expires_at) WHERE state IN ('active', 'applying');
