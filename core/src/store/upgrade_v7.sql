-- Schema version 7: the outbox's state index is ordered by queue position,
-- so picking the next batch reads that batch and no more (the old index on
-- (state, next_attempt_ms) made every batch sort all pending operations:
-- quadratic in a long offline backlog).
DROP INDEX outbox_state;
CREATE INDEX outbox_state ON outbox (state, seq);
