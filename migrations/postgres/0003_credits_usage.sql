-- keygate store, version 3 (PostgreSQL; the same change as migrations/sqlite/):
-- credits, rotation time and usage (SPEC §11). credits_remaining NULL: the key
-- has no credits. Serving processes spend credits in memory and add their
-- spending here in batches (without moving change_seq); credits_version moves
-- when an operator sets the balance.
ALTER TABLE api_keys ADD COLUMN credits_remaining BIGINT;
ALTER TABLE api_keys ADD COLUMN credits_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN refill_amount BIGINT;         -- with refill_interval_ms, or neither
ALTER TABLE api_keys ADD COLUMN refill_interval_ms BIGINT;
ALTER TABLE api_keys ADD COLUMN refilled_at BIGINT;           -- last refill on the grid
ALTER TABLE api_keys ADD COLUMN credits_key TEXT;             -- rotated: spends this key's credits
ALTER TABLE api_keys ADD COLUMN rotated_at BIGINT;            -- rotated: deprecated since

-- Requests per key per hour by outcome, added up by the serving processes.
CREATE TABLE key_usage (
  key_id         TEXT COLLATE "C" NOT NULL,
  hour           BIGINT NOT NULL,   -- Unix milliseconds of the hour's start (UTC)
  ok             BIGINT NOT NULL DEFAULT 0,
  rate_limited   BIGINT NOT NULL DEFAULT 0,
  denied         BIGINT NOT NULL DEFAULT 0,
  upstream_error BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, hour)
);
CREATE INDEX key_usage_hour ON key_usage(hour);
