-- keygate store, version 4 (PostgreSQL; the same change as migrations/sqlite/): the
-- order keys were created in. Lists order by created_at, then by this: ids are
-- random, so keys created in one millisecond came back in any order and a page
-- could repeat or skip one. It is the change sequence the insert took and never
-- moves (an update moves change_seq).
ALTER TABLE api_keys ADD COLUMN created_seq BIGINT;
UPDATE api_keys SET created_seq = change_seq;
