-- Accounts that hold against attacks (issue 3): lockout, single-use account tokens for
-- verification, password reset and unlock, refresh-token reuse detection, idle sessions,
-- TOTP with recovery codes, shared rate limits and the admin's narrow cross-user functions.

-- +goose Up

-- One table for every single-use token mailed to a user. Only hashes are stored.
ALTER TABLE email_verifications RENAME TO account_tokens;
ALTER TABLE account_tokens ADD COLUMN purpose text NOT NULL DEFAULT 'verify_email'
    CHECK (purpose IN ('verify_email', 'password_reset', 'unlock', 'email_change'));
ALTER TABLE account_tokens ALTER COLUMN purpose DROP DEFAULT;
-- An email change waits here, encrypted, until the new address is confirmed.
ALTER TABLE account_tokens ADD COLUMN new_email ciphertext,
    ADD CONSTRAINT account_tokens_email_change CHECK ((purpose = 'email_change') = (new_email IS NOT NULL));
ALTER INDEX email_verifications_user RENAME TO account_tokens_user;
ALTER POLICY email_verifications_own ON account_tokens RENAME TO account_tokens_own;

DROP FUNCTION auth_user_id_by_verification(bytea);
CREATE FUNCTION auth_user_id_by_account_token(p_token_hash bytea, p_purpose text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$ SELECT user_id FROM public.account_tokens WHERE token_hash = p_token_hash AND purpose = p_purpose $$;
GRANT SELECT (purpose) ON account_tokens TO vitalnexa_auth;
ALTER FUNCTION auth_user_id_by_account_token(bytea, text) OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION auth_user_id_by_account_token(bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_user_id_by_account_token(bytea, text) TO vitalnexa_app;

ALTER TABLE users
    -- Lockout (plan §4.2): consecutive failures, counted before each password comparison.
    ADD COLUMN failed_logins       integer     NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    ADD COLUMN locked_until        timestamptz,
    ADD COLUMN disabled_at         timestamptz,
    ADD COLUMN password_changed_at timestamptz,
    -- The breach check could not reach its remote source when the password was set.
    ADD COLUMN password_recheck    boolean     NOT NULL DEFAULT false,
    -- The password was found in a breach after it was set: the user is asked to change it.
    ADD COLUMN password_breached   boolean     NOT NULL DEFAULT false,
    ADD COLUMN mfa_secret          ciphertext,
    ADD COLUMN mfa_enabled_at      timestamptz,
    -- The last TOTP time step accepted: a code is never accepted twice.
    ADD COLUMN mfa_last_step       bigint      NOT NULL DEFAULT 0,
    ADD CONSTRAINT users_mfa_enabled_has_secret CHECK (mfa_enabled_at IS NULL OR mfa_secret IS NOT NULL);

ALTER TABLE sessions
    ADD COLUMN user_agent   text NOT NULL DEFAULT '',
    ADD COLUMN ended_reason text CHECK (ended_reason IN ('logout', 'user', 'refresh_token_reuse',
        'password_changed', 'admin', 'disabled'));

ALTER TABLE refresh_tokens
    -- Who spent it (a hash of the client's address and user agent) and what it was spent for:
    -- the same client presenting it again within seconds gets that successor, anyone else
    -- ends the session.
    ADD COLUMN rotated_by     bytea,
    ADD COLUMN successor_hash bytea;

CREATE TABLE mfa_recovery_codes (
    code_hash  bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes (user_id);
ALTER TABLE mfa_recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE mfa_recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY mfa_recovery_codes_own ON mfa_recovery_codes
    USING (user_id = app_current_user_id()) WITH CHECK (user_id = app_current_user_id());

-- Fixed-window counters shared by every serve process. The bucket is a keyed hash of what
-- is counted (a client address, an account), so no address or email is stored in clear.
CREATE TABLE rate_limits (
    bucket       bytea       PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL
);
CREATE INDEX rate_limits_window ON rate_limits (window_start);

-- Admin functions: they act across users, so they run as vitalnexa_auth (BYPASSRLS), and
-- each first checks that the caller (app.current_user_id) is an admin with MFA enabled.
-- None of them reads or returns an encrypted column: an admin sees no PHI.
GRANT SELECT (id, role, created_at, email_verified_at, failed_logins, locked_until, disabled_at, mfa_enabled_at)
    ON users TO vitalnexa_auth;
GRANT UPDATE (failed_logins, locked_until, disabled_at, updated_at) ON users TO vitalnexa_auth;
GRANT SELECT (id, user_id, revoked_at, expires_at, last_seen_at), UPDATE (revoked_at, ended_reason) ON sessions TO vitalnexa_auth;
GRANT SELECT (user_id, used_at), UPDATE (used_at) ON account_tokens TO vitalnexa_auth;

-- +goose StatementBegin
CREATE FUNCTION admin_require() RETURNS void
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.users WHERE id = app_current_user_id()
                   AND role = 'admin' AND mfa_enabled_at IS NOT NULL AND disabled_at IS NULL) THEN
        RAISE EXCEPTION 'admin with MFA required' USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

CREATE FUNCTION admin_list_users(p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, role text, created_at timestamptz, email_verified boolean,
                   locked_until timestamptz, disabled boolean, mfa_enabled boolean, live_sessions integer)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
BEGIN
    PERFORM admin_require();
    RETURN QUERY
        SELECT u.id, u.role, u.created_at, u.email_verified_at IS NOT NULL, u.locked_until,
               u.disabled_at IS NOT NULL, u.mfa_enabled_at IS NOT NULL,
               (SELECT count(*)::integer FROM public.sessions s
                 WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now())
        FROM public.users u
        WHERE p_after IS NULL OR u.id > p_after
        ORDER BY u.id
        LIMIT least(greatest(p_limit, 1), 200);
END
$$;

CREATE FUNCTION admin_end_sessions(p_user uuid, p_reason text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
DECLARE n integer;
BEGIN
    PERFORM admin_require();
    IF NOT EXISTS (SELECT 1 FROM public.users WHERE id = p_user) THEN
        RETURN -1;
    END IF;
    UPDATE public.sessions SET revoked_at = now(), ended_reason = p_reason
        WHERE user_id = p_user AND revoked_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE FUNCTION admin_set_lock(p_user uuid, p_until timestamptz) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
BEGIN
    PERFORM admin_require();
    UPDATE public.users SET locked_until = p_until,
        failed_logins = CASE WHEN p_until IS NULL THEN 0 ELSE failed_logins END, updated_at = now()
        WHERE id = p_user;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- An admin's decision stands: unlock links mailed before it no longer work.
    UPDATE public.account_tokens SET used_at = now()
        WHERE user_id = p_user AND purpose = 'unlock' AND used_at IS NULL;
    RETURN true;
END
$$;

CREATE FUNCTION admin_set_disabled(p_user uuid, p_disabled boolean) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
BEGIN
    PERFORM admin_require();
    IF p_user = app_current_user_id() THEN
        RAISE EXCEPTION 'an admin cannot disable their own account' USING ERRCODE = 'check_violation';
    END IF;
    UPDATE public.users SET disabled_at = CASE WHEN p_disabled THEN coalesce(disabled_at, now()) END,
        updated_at = now() WHERE id = p_user;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_disabled THEN
        UPDATE public.sessions SET revoked_at = now(), ended_reason = 'disabled'
            WHERE user_id = p_user AND revoked_at IS NULL;
    END IF;
    RETURN true;
END
$$;
-- +goose StatementEnd

ALTER FUNCTION admin_require() OWNER TO vitalnexa_auth;
ALTER FUNCTION admin_list_users(uuid, integer) OWNER TO vitalnexa_auth;
ALTER FUNCTION admin_end_sessions(uuid, text) OWNER TO vitalnexa_auth;
ALTER FUNCTION admin_set_lock(uuid, timestamptz) OWNER TO vitalnexa_auth;
ALTER FUNCTION admin_set_disabled(uuid, boolean) OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION admin_require(), admin_list_users(uuid, integer), admin_end_sessions(uuid, text),
    admin_set_lock(uuid, timestamptz), admin_set_disabled(uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_list_users(uuid, integer), admin_end_sessions(uuid, text),
    admin_set_lock(uuid, timestamptz), admin_set_disabled(uuid, boolean) TO vitalnexa_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_recovery_codes, rate_limits TO vitalnexa_app;

-- +goose Down
REVOKE SELECT, INSERT, UPDATE, DELETE ON mfa_recovery_codes, rate_limits FROM vitalnexa_app;
DROP FUNCTION admin_set_disabled(uuid, boolean), admin_set_lock(uuid, timestamptz),
    admin_end_sessions(uuid, text), admin_list_users(uuid, integer), admin_require();
REVOKE SELECT (id, user_id, revoked_at, expires_at, last_seen_at), UPDATE (revoked_at, ended_reason) ON sessions FROM vitalnexa_auth;
REVOKE SELECT (user_id, used_at), UPDATE (used_at) ON account_tokens FROM vitalnexa_auth;
REVOKE UPDATE (failed_logins, locked_until, disabled_at, updated_at) ON users FROM vitalnexa_auth;
REVOKE SELECT (role, created_at, email_verified_at, failed_logins, locked_until, disabled_at, mfa_enabled_at)
    ON users FROM vitalnexa_auth;
DROP TABLE rate_limits, mfa_recovery_codes;
ALTER TABLE refresh_tokens DROP COLUMN successor_hash, DROP COLUMN rotated_by;
ALTER TABLE sessions DROP COLUMN ended_reason, DROP COLUMN user_agent;
ALTER TABLE users DROP CONSTRAINT users_mfa_enabled_has_secret, DROP COLUMN mfa_last_step,
    DROP COLUMN mfa_enabled_at, DROP COLUMN mfa_secret, DROP COLUMN password_breached,
    DROP COLUMN password_recheck, DROP COLUMN password_changed_at, DROP COLUMN disabled_at,
    DROP COLUMN locked_until, DROP COLUMN failed_logins;
DROP FUNCTION auth_user_id_by_account_token(bytea, text);
REVOKE SELECT (purpose) ON account_tokens FROM vitalnexa_auth;
ALTER POLICY account_tokens_own ON account_tokens RENAME TO email_verifications_own;
ALTER INDEX account_tokens_user RENAME TO email_verifications_user;
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_email_change, DROP COLUMN new_email, DROP COLUMN purpose;
ALTER TABLE account_tokens RENAME TO email_verifications;
CREATE FUNCTION auth_user_id_by_verification(p_token_hash bytea) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$ SELECT user_id FROM public.email_verifications WHERE token_hash = p_token_hash $$;
ALTER FUNCTION auth_user_id_by_verification(bytea) OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION auth_user_id_by_verification(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_user_id_by_verification(bytea) TO vitalnexa_app;
