-- keygate store, version 1. Times are Unix milliseconds. The secret itself is
-- never stored: only its SHA-256 (or HMAC-SHA-256 with a pepper) in `hash`.
CREATE TABLE api_keys (
  id            TEXT PRIMARY KEY,
  prefix        TEXT NOT NULL,            -- display prefix, e.g. kg_live_3fJ9
  last4         TEXT NOT NULL,
  hash          BLOB NOT NULL,
  name          TEXT NOT NULL,
  owner         TEXT NOT NULL DEFAULT '',
  scopes        TEXT NOT NULL DEFAULT '', -- comma-separated
  plan          TEXT NOT NULL DEFAULT '', -- '' = rate_limit.default_plan
  rate_requests INTEGER,                  -- per-key override, all three or none
  rate_period_ms INTEGER,
  rate_burst    INTEGER,
  allowed_ips   TEXT NOT NULL DEFAULT '', -- comma-separated CIDRs
  metadata      TEXT NOT NULL DEFAULT '{}',
  enabled       INTEGER NOT NULL DEFAULT 1,
  created_at    INTEGER NOT NULL,
  expires_at    INTEGER,
  revoked_at    INTEGER,
  last_used_at  INTEGER,
  last_used_ip  TEXT,
  rotated_from  TEXT,
  created_by    TEXT NOT NULL DEFAULT '',
  change_seq    INTEGER NOT NULL          -- store_state.change_seq of the last change
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys(hash);
CREATE INDEX api_keys_prefix ON api_keys(prefix);
CREATE INDEX api_keys_owner ON api_keys(owner);
CREATE INDEX api_keys_change_seq ON api_keys(change_seq);

-- Bumped by every key change; a running `serve` re-reads rows above what it has.
CREATE TABLE store_state (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  change_seq INTEGER NOT NULL
);
INSERT INTO store_state (id, change_seq) VALUES (1, 0);

CREATE TABLE audit_events (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  at      INTEGER NOT NULL,
  action  TEXT NOT NULL,     -- create | update | rotate | revoke
  key_id  TEXT NOT NULL,
  actor   TEXT NOT NULL,     -- admin | cli | key id
  details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events(at);
