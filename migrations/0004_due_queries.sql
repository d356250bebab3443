-- Indexes for the request flow's due queries: approved requests by the grant they became, and
-- open grants by their end, so "approved grants ending before T" reads only what is due.
CREATE INDEX requests_approved ON requests (grant_id) WHERE state = 'approved' AND extends_grant IS NULL;
CREATE INDEX grants_open_expiry ON grants (expires_at) WHERE state NOT IN ('expired', 'revoked', 'failed');
