-- Privacy rights (issue 6, plan §8): consent per purpose, restriction of processing,
-- objection per purpose, the CCPA "do not sell or share" choice, and the deadline log of
-- privacy requests. Every choice is appended to privacy_choices, which the server's role
-- can add to and read but never change: the current state is the latest row per purpose.

-- +goose Up

-- Restriction (GDPR Art. 18) and do-not-sell (CCPA) are flags on the user, set and lifted
-- together with their row in privacy_choices.
ALTER TABLE users
    ADD COLUMN restricted_at  timestamptz,
    ADD COLUMN do_not_sell_at timestamptz;

CREATE TABLE privacy_choices (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text        NOT NULL CHECK (kind IN ('consent', 'objection', 'restriction', 'do_not_sell')),
    purpose    text        NOT NULL,
    -- consent: granted; objection: objected; restriction: restricted; do_not_sell: opted out.
    value      boolean     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT privacy_choices_purpose CHECK (
        (kind = 'consent' AND purpose IN ('assistant', 'research', 'product_emails'))
        OR (kind = 'objection' AND purpose IN ('analytics', 'marketing', 'research', 'third_party_export'))
        OR (kind IN ('restriction', 'do_not_sell') AND purpose = ''))
);
CREATE INDEX privacy_choices_user ON privacy_choices (user_id, kind, purpose, id DESC);
ALTER TABLE privacy_choices ENABLE ROW LEVEL SECURITY;
ALTER TABLE privacy_choices FORCE ROW LEVEL SECURITY;
CREATE POLICY privacy_choices_own ON privacy_choices
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

-- +goose StatementBegin
CREATE FUNCTION privacy_choices_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
    AS $$
BEGIN
    -- The one way a row goes is its user's erasure: the foreign key's cascade, which runs
    -- inside the referential-action trigger, one level below any statement.
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'privacy_choices is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER privacy_choices_no_change BEFORE UPDATE OR DELETE ON privacy_choices
    FOR EACH ROW EXECUTE FUNCTION privacy_choices_refuse_change();
CREATE TRIGGER privacy_choices_no_truncate BEFORE TRUNCATE ON privacy_choices
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_choices_refuse_change();

-- The deadline log: every privacy request with the day it is due (GDPR Art. 12(3): one
-- month). It outlives an erasure, so user_id has no foreign key; after an erasure it is an
-- id that leads nowhere, like the audit trail's.
CREATE TABLE privacy_requests (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('access', 'export', 'erasure', 'rectification',
                                                      'restriction', 'objection', 'do_not_sell')),
    received_at  timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    completed_at timestamptz,
    CHECK (due_at > received_at),
    CHECK (completed_at IS NULL OR completed_at >= received_at)
);
CREATE INDEX privacy_requests_user ON privacy_requests (user_id, received_at DESC);
CREATE INDEX privacy_requests_open ON privacy_requests (due_at, id) WHERE completed_at IS NULL;
ALTER TABLE privacy_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE privacy_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY privacy_requests_own ON privacy_requests
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

-- The admin's view of the deadlines: ids, kinds and times, no PHI. Ordered by due date.
-- +goose StatementBegin
CREATE FUNCTION admin_list_privacy_requests(p_open_only boolean, p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, user_id uuid, kind text, received_at timestamptz, due_at timestamptz,
                   completed_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
BEGIN
    PERFORM admin_require();
    RETURN QUERY
        SELECT r.id, r.user_id, r.kind, r.received_at, r.due_at, r.completed_at
        FROM public.privacy_requests r
        WHERE (NOT p_open_only OR r.completed_at IS NULL)
          AND (p_after IS NULL OR (r.due_at, r.id) > (SELECT a.due_at, a.id FROM public.privacy_requests a WHERE a.id = p_after))
        ORDER BY r.due_at, r.id
        LIMIT least(greatest(p_limit, 1), 201);
END
$$;
-- +goose StatementEnd
GRANT SELECT ON privacy_requests TO vitalnexa_auth;
ALTER FUNCTION admin_list_privacy_requests(boolean, uuid, integer) OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION admin_list_privacy_requests(boolean, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_list_privacy_requests(boolean, uuid, integer) TO vitalnexa_app;

-- Append-only for the server: no UPDATE or DELETE on privacy_choices, and of a request
-- only its completion may be written.
GRANT SELECT, INSERT ON privacy_choices, privacy_requests TO vitalnexa_app;
GRANT UPDATE (completed_at) ON privacy_requests TO vitalnexa_app;

-- +goose Down
REVOKE UPDATE (completed_at) ON privacy_requests FROM vitalnexa_app;
REVOKE SELECT, INSERT ON privacy_choices, privacy_requests FROM vitalnexa_app;
DROP FUNCTION admin_list_privacy_requests(boolean, uuid, integer);
REVOKE SELECT ON privacy_requests FROM vitalnexa_auth;
DROP TABLE privacy_requests;
DROP TABLE privacy_choices;
DROP FUNCTION privacy_choices_refuse_change();
ALTER TABLE users DROP COLUMN do_not_sell_at, DROP COLUMN restricted_at;
