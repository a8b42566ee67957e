-- Reading the trail (issue 5): a user reads their own rows directly (policy audit_log_own
-- already limits the server's role to them), an admin searches every row through
-- admin_search_audit. Audit rows hold no PHI by construction.

-- +goose Up

-- The access history shows where and with what each request came.
GRANT SELECT (ip_address, user_agent) ON audit_log TO vitalnexa_app;

-- admin_search_audit runs as the owner, the one role with a read policy on every audit row;
-- it checks the caller with the same admin_require() as the other admin functions.
GRANT EXECUTE ON FUNCTION admin_require() TO vitalnexa_owner;

-- +goose StatementBegin
CREATE FUNCTION admin_search_audit(p_user uuid, p_action text, p_status integer,
        p_from timestamptz, p_to timestamptz, p_before_ts timestamptz, p_before_id bigint, p_limit integer)
    RETURNS TABLE (id bigint, "timestamp" timestamptz, user_id uuid, action text, ip_address text,
                   status_code integer, response_time_ms integer, resource_id text, user_agent text, request_id text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
BEGIN
    PERFORM admin_require();
    -- Newest first; the keyset (timestamp, id) is unique, so every row is on exactly one page.
    RETURN QUERY
        SELECT a.id, a."timestamp", a.user_id, a.action, host(a.ip_address), a.status_code,
               a.response_time_ms, a.resource_id, a.user_agent, a.request_id
        FROM public.audit_log a
        WHERE (p_user IS NULL OR a.user_id = p_user)
          AND (p_action IS NULL OR a.action = p_action)
          AND (p_status IS NULL OR a.status_code = p_status)
          AND (p_from IS NULL OR a."timestamp" >= p_from)
          AND (p_to IS NULL OR a."timestamp" < p_to)
          AND (p_before_ts IS NULL OR (a."timestamp", a.id) < (p_before_ts, p_before_id))
        ORDER BY a."timestamp" DESC, a.id DESC
        LIMIT least(greatest(p_limit, 1), 201);
END
$$;
-- +goose StatementEnd

ALTER FUNCTION admin_search_audit(uuid, text, integer, timestamptz, timestamptz, timestamptz, bigint, integer)
    OWNER TO vitalnexa_owner;
REVOKE ALL ON FUNCTION admin_search_audit(uuid, text, integer, timestamptz, timestamptz, timestamptz, bigint, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION admin_search_audit(uuid, text, integer, timestamptz, timestamptz, timestamptz, bigint, integer)
    TO vitalnexa_app;

-- +goose Down
DROP FUNCTION admin_search_audit(uuid, text, integer, timestamptz, timestamptz, timestamptz, bigint, integer);
REVOKE EXECUTE ON FUNCTION admin_require() FROM vitalnexa_owner;
REVOKE SELECT (ip_address, user_agent) ON audit_log FROM vitalnexa_app;
