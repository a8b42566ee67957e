-- A re-import updates what the source has changed (an amended lab result) and leaves the
-- rest alone. source_digest is a keyed hash of an imported item's content, so the
-- comparison needs no decryption and reveals nothing.

-- +goose Up
ALTER TABLE test_results ADD COLUMN source_digest bytea;
ALTER TABLE health_records ADD COLUMN source_digest bytea;

-- +goose Down
ALTER TABLE health_records DROP COLUMN source_digest;
ALTER TABLE test_results DROP COLUMN source_digest;
