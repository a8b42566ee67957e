-- Rectification (GDPR Art. 16, plan §8): when a user corrects their profile, a health
-- record or a test result, or deletes a record or result, the values it had are appended
-- to change_history, so the user can see what was changed and when. The previous values
-- are PHI: each entry holds them as one ciphertext (a JSON object of the fields that
-- changed, or of every field of a deleted row), bound to the entry's id like every other
-- encrypted field. The server's role may add entries and read its user's, never change or
-- remove one; an erasure takes them with the user (the foreign key's cascade).

-- +goose Up
CREATE TABLE change_history (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entity     text        NOT NULL CHECK (entity IN ('profile', 'health_record', 'test_result')),
    -- The changed row: the user for the profile, else the record or result, which may be
    -- gone (its history stays), so there is no foreign key.
    entity_id  uuid        NOT NULL,
    action     text        NOT NULL CHECK (action IN ('update', 'delete')),
    previous   ciphertext  NOT NULL,
    changed_at timestamptz NOT NULL,
    CHECK (entity <> 'profile' OR (entity_id = user_id AND action = 'update'))
);
CREATE INDEX change_history_page ON change_history (user_id, entity, changed_at DESC, id DESC);
CREATE INDEX change_history_entity ON change_history (user_id, entity_id, changed_at DESC, id DESC);
ALTER TABLE change_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE change_history FORCE ROW LEVEL SECURITY;
CREATE POLICY change_history_own ON change_history
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

-- +goose StatementBegin
CREATE FUNCTION change_history_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
    AS $$
BEGIN
    -- An erasure: the foreign key's cascade, which runs inside the referential-action
    -- trigger, one level below any statement.
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    -- Re-encryption: change_history_reencrypt (running as vitalnexa_auth) puts the same
    -- values under the newest key. Nothing but the ciphertext may change.
    IF TG_OP = 'UPDATE' AND current_user = 'vitalnexa_auth'
       AND to_jsonb(NEW) - 'previous' = to_jsonb(OLD) - 'previous' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'change_history is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER change_history_no_change BEFORE UPDATE OR DELETE ON change_history
    FOR EACH ROW EXECUTE FUNCTION change_history_refuse_change();
CREATE TRIGGER change_history_no_truncate BEFORE TRUNCATE ON change_history
    FOR EACH STATEMENT EXECUTE FUNCTION change_history_refuse_change();

-- Key rotation must move these values too, but the server's role may not UPDATE the table.
-- The re-encryption job (postgres.ReencryptAll) finds such tables in the catalog and calls
-- <table>_reencrypt(row identity, column, old value, new value) instead: a compare-and-swap
-- of one value of the caller's user (app.current_user_id), and only to the current write
-- key from an older one. It returns whether it replaced the value. The database cannot
-- check that both values hold the same plaintext; what it does check keeps the function
-- from being more than a re-encryption path: one swap per value per rotation, of the
-- signed-in user's own entries.
-- +goose StatementBegin
CREATE FUNCTION change_history_reencrypt(p_row text, p_column text, p_old text, p_new text) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
DECLARE
    v_current text;
BEGIN
    IF p_column IS DISTINCT FROM 'previous' THEN
        RAISE EXCEPTION 'change_history has no encrypted column %', p_column USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT 'v' || max(k.version) INTO v_current FROM public.encryption_keys k
        WHERE k.purpose = 'data' AND k.state = 'active';
    IF v_current IS NULL OR split_part(p_new, ':', 1) <> v_current OR split_part(p_old, ':', 1) = v_current THEN
        RETURN false;
    END IF;
    UPDATE public.change_history SET previous = p_new::ciphertext
        WHERE id = p_row::uuid AND user_id = app_current_user_id() AND previous = p_old;
    RETURN FOUND;
END
$$;
-- +goose StatementEnd
-- keys_version_counts() counts the values under each key version in every table.
GRANT SELECT ON change_history TO vitalnexa_auth;
GRANT UPDATE (previous) ON change_history TO vitalnexa_auth;
GRANT SELECT (purpose, version, state) ON encryption_keys TO vitalnexa_auth;
ALTER FUNCTION change_history_reencrypt(text, text, text, text) OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION change_history_reencrypt(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION change_history_reencrypt(text, text, text, text) TO vitalnexa_app;

-- Append-only for the server.
GRANT SELECT, INSERT ON change_history TO vitalnexa_app;

-- +goose Down
REVOKE SELECT, INSERT ON change_history FROM vitalnexa_app;
DROP FUNCTION change_history_reencrypt(text, text, text, text);
REVOKE SELECT (purpose, version, state) ON encryption_keys FROM vitalnexa_auth;
REVOKE UPDATE (previous) ON change_history FROM vitalnexa_auth;
REVOKE SELECT ON change_history FROM vitalnexa_auth;
DROP TABLE change_history;
DROP FUNCTION change_history_refuse_change();
