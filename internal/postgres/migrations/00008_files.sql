-- Uploaded documents (issue 6). The name and the content are encrypted like every other
-- field; the content in chunks, each bound to its file and its place in the file, so that
-- a chunk moved to another file or another position does not decrypt.

-- +goose Up
CREATE TABLE files (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         ciphertext  NOT NULL,
    content_type text        NOT NULL CHECK (content_type IN ('application/pdf', 'text/plain')),
    size         bigint      NOT NULL CHECK (size >= 0),
    chunks       integer     NOT NULL CHECK (chunks >= 0),
    -- SHA-256 over the stored ciphertext chunks in order: an integrity check that reveals
    -- nothing about the content.
    sha256       bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_user ON files (user_id, created_at DESC, id DESC);

CREATE TABLE file_chunks (
    -- "<file id>:<index>": the row identity bound into the chunk's ciphertext
    id      text       PRIMARY KEY,
    file_id uuid       NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    user_id uuid       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idx     integer    NOT NULL CHECK (idx >= 0),
    data    ciphertext NOT NULL,
    UNIQUE (file_id, idx),
    CHECK (id = file_id::text || ':' || idx::text)
);

ALTER TABLE files ENABLE ROW LEVEL SECURITY;
ALTER TABLE files FORCE ROW LEVEL SECURITY;
CREATE POLICY files_own ON files
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());
ALTER TABLE file_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE file_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY file_chunks_own ON file_chunks
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

GRANT SELECT, INSERT, DELETE ON files, file_chunks TO vitalnexa_app;
GRANT UPDATE (name, size, chunks, sha256) ON files TO vitalnexa_app;
GRANT UPDATE (data) ON file_chunks TO vitalnexa_app;
-- keys_version_counts() counts the values under each key version in every table.
GRANT SELECT ON files, file_chunks TO vitalnexa_auth;

-- +goose Down
DROP TABLE file_chunks, files;
