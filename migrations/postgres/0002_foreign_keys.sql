-- keygate store, version 2 (PostgreSQL; the same change as migrations/sqlite/):
-- keys imported from an API that issued its own (`keygate keys import`). A
-- foreign-format key's plaintext does not follow the keygate format (or only its
-- SHA-256 was imported); while any is present the gateway hashes and looks up
-- credentials that fail the format check instead of rejecting them as malformed.
ALTER TABLE api_keys ADD COLUMN foreign_format BOOLEAN NOT NULL DEFAULT FALSE;
