-- The first schema. Runs as vitalnexa_owner, which owns every table; the server connects
-- as vitalnexa_app, which owns nothing and is subject to every policy below.

-- +goose Up

-- The user id of the current transaction, set by the server with
-- set_config('app.current_user_id', $1, true). Unset or empty means "nobody": no row matches.
CREATE FUNCTION app_current_user_id() RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path = pg_catalog
    AS $$ SELECT NULLIF(current_setting('app.current_user_id', true), '')::uuid $$;

-- Every encrypted column has this type: the database itself refuses a plaintext value.
-- v{version}:{iv 12 bytes}:{ciphertext}:{tag 16 bytes}, base64url without padding.
CREATE DOMAIN ciphertext AS text
    CHECK (VALUE ~ '^v[1-9][0-9]*:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]*:[A-Za-z0-9_-]{22}$');

CREATE TABLE encryption_keys (
    purpose     text        NOT NULL CHECK (purpose IN ('data', 'blind_index')),
    version     integer     NOT NULL CHECK (version >= 1),
    state       text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retired', 'revoked')),
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose, version)
);

CREATE TABLE users (
    id                uuid        PRIMARY KEY,
    email_index       bytea       NOT NULL UNIQUE,
    email             ciphertext  NOT NULL,
    full_name         ciphertext  NOT NULL,
    date_of_birth     ciphertext  NOT NULL,
    password_hash     text        NOT NULL,
    role              text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    email_verified_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE email_verifications (
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_verifications_user ON email_verifications (user_id);

CREATE TABLE sessions (
    id           uuid        PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE test_results (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_system     text        NOT NULL,
    code            ciphertext  NOT NULL,
    -- keyed hash of (user, code) so a user's results can be filtered by test without
    -- storing the code in clear
    code_index      bytea       NOT NULL,
    name            ciphertext  NOT NULL,
    value           ciphertext  NOT NULL,
    value_type      text        NOT NULL CHECK (value_type IN ('quantity', 'coded', 'string')),
    unit            ciphertext  NOT NULL,
    reference_range ciphertext  NOT NULL,
    notes           ciphertext  NOT NULL,
    effective_at    timestamptz,
    source          text        NOT NULL CHECK (source IN ('fhir', 'manual')),
    -- keyed hash of the source's id: makes imports idempotent without keeping the id in clear
    source_key      bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, source_key)
);
CREATE INDEX test_results_page ON test_results (user_id, effective_at DESC NULLS LAST, id DESC);
CREATE INDEX test_results_code ON test_results (user_id, code_index);

CREATE TABLE health_records (
    id          uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text        NOT NULL CHECK (kind IN ('condition', 'medication', 'immunization',
                    'procedure', 'allergy', 'care_plan', 'diagnostic_report', 'note')),
    title       ciphertext  NOT NULL,
    content     ciphertext  NOT NULL,
    recorded_at timestamptz,
    source      text        NOT NULL CHECK (source IN ('fhir', 'manual')),
    source_key  bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, source_key)
);
CREATE INDEX health_records_page ON health_records (user_id, recorded_at DESC NULLS LAST, id DESC);

-- Audit rows hold no PHI. The server may only add rows; nobody may change or remove one.
CREATE TABLE audit_log (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "timestamp"      timestamptz NOT NULL,
    user_id          uuid,
    action           text        NOT NULL,
    ip_address       inet,
    status_code      integer     NOT NULL,
    response_time_ms integer     NOT NULL,
    resource_id      text,
    user_agent       text        NOT NULL DEFAULT '',
    request_id       text        NOT NULL
);
CREATE INDEX audit_log_timestamp ON audit_log ("timestamp");
CREATE INDEX audit_log_user ON audit_log (user_id, "timestamp");

-- +goose StatementBegin
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
    AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
-- Statement-level too: a statement that sees no rows (RLS) must fail as loudly.
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Row-level security: on, and forced, on every table that holds a user's data.
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_own ON users
    USING (id = app_current_user_id()) WITH CHECK (id = app_current_user_id());

ALTER TABLE email_verifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE email_verifications FORCE ROW LEVEL SECURITY;
CREATE POLICY email_verifications_own ON email_verifications
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY sessions_own ON sessions
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY refresh_tokens_own ON refresh_tokens
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

ALTER TABLE test_results ENABLE ROW LEVEL SECURITY;
ALTER TABLE test_results FORCE ROW LEVEL SECURITY;
CREATE POLICY test_results_own ON test_results
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

ALTER TABLE health_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE health_records FORCE ROW LEVEL SECURITY;
CREATE POLICY health_records_own ON health_records
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

-- The audit log: anyone may add a row (also before login); nobody reads through the server.
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_log_append ON audit_log FOR INSERT WITH CHECK (true);
-- The owner (operators' tools: audit verify and export) reads it.
CREATE POLICY audit_log_owner_read ON audit_log FOR SELECT TO vitalnexa_owner USING (true);

-- The few lookups that must look across users before anyone is authenticated. Each maps a
-- keyed hash to a user id and nothing more; the caller then acts as that user under RLS.
-- They are owned by vitalnexa_auth (BYPASSRLS, NOLOGIN) and pin their search_path.
GRANT USAGE, CREATE ON SCHEMA public TO vitalnexa_auth;

CREATE FUNCTION auth_user_id_by_email_index(p_email_index bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$ SELECT id FROM public.users WHERE email_index = p_email_index $$;

CREATE FUNCTION auth_user_id_by_verification(p_token_hash bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$ SELECT user_id FROM public.email_verifications WHERE token_hash = p_token_hash $$;

CREATE FUNCTION auth_user_id_by_refresh_token(p_token_hash bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$ SELECT user_id FROM public.refresh_tokens WHERE token_hash = p_token_hash $$;

GRANT SELECT (id, email_index) ON users TO vitalnexa_auth;
GRANT SELECT (token_hash, user_id) ON email_verifications TO vitalnexa_auth;
GRANT SELECT (token_hash, user_id) ON refresh_tokens TO vitalnexa_auth;
ALTER FUNCTION auth_user_id_by_email_index(bytea) OWNER TO vitalnexa_auth;
ALTER FUNCTION auth_user_id_by_verification(bytea) OWNER TO vitalnexa_auth;
ALTER FUNCTION auth_user_id_by_refresh_token(bytea) OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION auth_user_id_by_email_index(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_user_id_by_verification(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_user_id_by_refresh_token(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_user_id_by_email_index(bytea) TO vitalnexa_app;
GRANT EXECUTE ON FUNCTION auth_user_id_by_verification(bytea) TO vitalnexa_app;
GRANT EXECUTE ON FUNCTION auth_user_id_by_refresh_token(bytea) TO vitalnexa_app;

-- What the server may do.
GRANT SELECT ON encryption_keys TO vitalnexa_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users, email_verifications, sessions, refresh_tokens,
    test_results, health_records TO vitalnexa_app;
GRANT INSERT ON audit_log TO vitalnexa_app;

-- +goose Down
DROP TABLE audit_log, health_records, test_results, refresh_tokens, sessions,
    email_verifications, users, encryption_keys;
DROP FUNCTION audit_log_refuse_change(), auth_user_id_by_email_index(bytea),
    auth_user_id_by_verification(bytea), auth_user_id_by_refresh_token(bytea), app_current_user_id();
DROP DOMAIN ciphertext;
