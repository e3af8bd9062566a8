-- keygate store, version 3: credits, rotation time and usage (SPEC §11).
-- credits_remaining NULL: the key has no credits. The serving process spends
-- credits in memory and writes the spending here in batches (without moving
-- change_seq); credits_version moves when an operator sets the balance.
ALTER TABLE api_keys ADD COLUMN credits_remaining INTEGER;
ALTER TABLE api_keys ADD COLUMN credits_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN refill_amount INTEGER;        -- with refill_interval_ms, or neither
ALTER TABLE api_keys ADD COLUMN refill_interval_ms INTEGER;
ALTER TABLE api_keys ADD COLUMN refilled_at INTEGER;          -- last refill on the grid
ALTER TABLE api_keys ADD COLUMN credits_key TEXT;             -- rotated: spends this key's credits
ALTER TABLE api_keys ADD COLUMN rotated_at INTEGER;           -- rotated: deprecated since

-- Requests per key per hour by outcome, added up by the serving process.
CREATE TABLE key_usage (
  key_id         TEXT NOT NULL,
  hour           INTEGER NOT NULL,   -- Unix milliseconds of the hour's start (UTC)
  ok             INTEGER NOT NULL DEFAULT 0,
  rate_limited   INTEGER NOT NULL DEFAULT 0,
  denied         INTEGER NOT NULL DEFAULT 0,
  upstream_error INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, hour)
);
CREATE INDEX key_usage_hour ON key_usage(hour);
