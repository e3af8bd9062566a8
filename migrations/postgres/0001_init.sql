-- keygate store, version 1 (PostgreSQL). The same tables as migrations/sqlite/:
-- times are Unix milliseconds; the secret itself is never stored, only its
-- SHA-256 (or HMAC-SHA-256 with a pepper) in `hash`.
CREATE TABLE api_keys (
  id            TEXT COLLATE "C" PRIMARY KEY,
  prefix        TEXT COLLATE "C" NOT NULL,  -- display prefix, e.g. kg_live_3fJ9
  last4         TEXT NOT NULL,
  hash          BYTEA NOT NULL,
  name          TEXT NOT NULL,
  owner         TEXT COLLATE "C" NOT NULL DEFAULT '',
  scopes        TEXT NOT NULL DEFAULT '',   -- comma-separated
  plan          TEXT NOT NULL DEFAULT '',   -- '' = rate_limit.default_plan
  rate_requests BIGINT,                     -- per-key override, all three or none
  rate_period_ms BIGINT,
  rate_burst    BIGINT,
  allowed_ips   TEXT NOT NULL DEFAULT '',   -- comma-separated CIDRs
  metadata      TEXT NOT NULL DEFAULT '{}', -- JSON object of strings
  enabled       BOOLEAN NOT NULL DEFAULT TRUE,
  created_at    BIGINT NOT NULL,
  expires_at    BIGINT,
  revoked_at    BIGINT,
  last_used_at  BIGINT,
  last_used_ip  TEXT,
  rotated_from  TEXT,
  created_by    TEXT NOT NULL DEFAULT '',
  change_seq    BIGINT NOT NULL             -- store_state.change_seq of the last change
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys(hash);
CREATE INDEX api_keys_prefix ON api_keys(prefix);
CREATE INDEX api_keys_owner ON api_keys(owner);
CREATE INDEX api_keys_change_seq ON api_keys(change_seq);

-- Bumped by every key change in the writer's transaction. The row lock makes
-- concurrent writers commit in sequence order, so a replica that has applied
-- everything up to N only ever needs the rows with change_seq > N. Each bump
-- also sends NOTIFY keygate_key_changes (payload: the new sequence).
CREATE TABLE store_state (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  change_seq BIGINT NOT NULL
);
INSERT INTO store_state (id, change_seq) VALUES (1, 0);

CREATE TABLE audit_events (
  id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at      BIGINT NOT NULL,
  action  TEXT NOT NULL,     -- create | update | rotate | revoke
  key_id  TEXT NOT NULL,
  actor   TEXT NOT NULL,     -- admin | cli | key id
  details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events(at);
