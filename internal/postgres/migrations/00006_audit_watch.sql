-- The audit trail watched and copied (issue 5): rules over the trail raise alerts, and the
-- rows are copied, signed, off the database. The server role reads only a user's own audit
-- rows, so the cross-user work is done by SECURITY DEFINER functions owned by the owner
-- (which has the owner read policy); they return alerts, or the rows to copy, and nothing else.

-- +goose Up
-- An alert names a rule and its subject: a user id or a client address, never PHI. A rule
-- fires at most once per subject per window (window_start is the start of the window).
CREATE TABLE audit_alerts (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule         text        NOT NULL,
    subject      text        NOT NULL,
    window_start timestamptz NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    count        integer     NOT NULL,
    detail       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule, subject, window_start)
);

-- Where the copy off the database has got to: one row per segment written.
CREATE TABLE audit_copies (
    last_seq  bigint      PRIMARY KEY,
    first_seq bigint      NOT NULL,
    last_hash bytea       NOT NULL,
    object    text        NOT NULL,
    copied_at timestamptz NOT NULL DEFAULT now()
);

-- The rules, over the windows (of width p_window, aligned to 2001-01-01 UTC) from the one
-- holding p_since on. New alerts are stored and returned; one already raised for the same
-- rule, subject and window is not raised again. p_hours_from/p_hours_to NULL: no office hours.
CREATE FUNCTION audit_evaluate_rules(p_since timestamptz, p_window interval, p_bulk integer, p_enumeration integer,
        p_stuffing_accounts integer, p_stuffing_requests integer, p_hours_from time, p_hours_to time)
    RETURNS TABLE (id bigint, rule text, subject text, first_seen timestamptz, last_seen timestamptz, count integer, detail text)
    LANGUAGE sql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
WITH w AS (
    SELECT a."timestamp" AS ts, a.user_id, a.action, a.ip_address, a.status_code, a.resource_id,
           date_bin(p_window, a."timestamp", timestamptz '2001-01-01 00:00:00+00') AS bucket,
           (a."timestamp" AT TIME ZONE 'UTC')::time AS tod
    FROM public.audit_log a
    WHERE a."timestamp" >= date_bin(p_window, p_since, timestamptz '2001-01-01 00:00:00+00')
      AND p_window BETWEEN interval '1 minute' AND interval '1 day'
),
hits (rule, subject, bucket, first_seen, last_seen, n, detail) AS (
    -- One user touching many distinct records.
    SELECT 'bulk_access', w.user_id::text, w.bucket, min(w.ts), max(w.ts), count(DISTINCT w.resource_id)::integer,
           'distinct_records=' || count(DISTINCT w.resource_id)
    FROM w WHERE w.user_id IS NOT NULL AND w.resource_id IS NOT NULL AND w.status_code < 400 AND w.action NOT LIKE 'EVENT %'
    GROUP BY w.user_id, w.bucket HAVING count(DISTINCT w.resource_id) > p_bulk
    UNION ALL
    -- Requests of a signed-in user outside office hours (UTC; a range may wrap midnight).
    SELECT 'off_hours', w.user_id::text, w.bucket, min(w.ts), max(w.ts), count(*)::integer, 'requests=' || count(*)
    FROM w WHERE p_hours_from IS NOT NULL AND p_hours_to IS NOT NULL AND w.user_id IS NOT NULL AND w.action NOT LIKE 'EVENT %'
      AND NOT CASE WHEN p_hours_from <= p_hours_to THEN w.tod >= p_hours_from AND w.tod < p_hours_to
                   ELSE w.tod >= p_hours_from OR w.tod < p_hours_to END
    GROUP BY w.user_id, w.bucket
    UNION ALL
    -- Enumeration: many distinct ids answered 404, by user and by address.
    SELECT 'enumeration', w.user_id::text, w.bucket, min(w.ts), max(w.ts), count(DISTINCT w.resource_id)::integer,
           'distinct_ids_not_found=' || count(DISTINCT w.resource_id)
    FROM w WHERE w.status_code = 404 AND w.resource_id IS NOT NULL AND w.user_id IS NOT NULL
    GROUP BY w.user_id, w.bucket HAVING count(DISTINCT w.resource_id) > p_enumeration
    UNION ALL
    SELECT 'enumeration', host(w.ip_address), w.bucket, min(w.ts), max(w.ts), count(DISTINCT w.resource_id)::integer,
           'distinct_ids_not_found=' || count(DISTINCT w.resource_id)
    FROM w WHERE w.status_code = 404 AND w.resource_id IS NOT NULL AND w.ip_address IS NOT NULL
    GROUP BY w.ip_address, w.bucket HAVING count(DISTINCT w.resource_id) > p_enumeration
    UNION ALL
    -- Credential stuffing: failed sign-ins from one address across many accounts, or many.
    SELECT 'credential_stuffing', host(w.ip_address), w.bucket, min(w.ts), max(w.ts), count(*)::integer,
           'accounts=' || count(DISTINCT w.user_id) || ' failures=' || count(*)
    FROM w WHERE w.action IN ('POST /api/auth/token', 'POST /api/auth/login') AND w.status_code = 401 AND w.ip_address IS NOT NULL
    GROUP BY w.ip_address, w.bucket
    HAVING count(DISTINCT w.user_id) > p_stuffing_accounts OR count(*) > p_stuffing_requests
    UNION ALL
    -- A spent refresh token presented again: a stolen token, or a stolen session.
    SELECT 'refresh_token_reuse', coalesce(w.user_id::text, host(w.ip_address), 'unknown'), w.bucket, min(w.ts), max(w.ts),
           count(*)::integer, 'reuses=' || count(*)
    FROM w WHERE w.action = 'EVENT refresh_token.reused'
    GROUP BY 2, w.bucket
    UNION ALL
    -- Every admin action is worth a look.
    SELECT 'admin_action', coalesce(w.user_id::text, host(w.ip_address), 'unknown'), w.bucket, min(w.ts), max(w.ts),
           count(*)::integer, left('actions=' || string_agg(DISTINCT w.action, ', '), 500)
    FROM w WHERE w.action LIKE 'EVENT admin.%' OR w.action ~ '^[A-Z]+ /api/admin(/|$)'
    GROUP BY 2, w.bucket
)
INSERT INTO public.audit_alerts AS al (rule, subject, window_start, first_seen, last_seen, count, detail)
    SELECT h.rule, h.subject, h.bucket, h.first_seen, h.last_seen, h.n, h.detail FROM hits h
    ON CONFLICT (rule, subject, window_start) DO NOTHING
    RETURNING al.id, al.rule, al.subject, al.first_seen, al.last_seen, al.count, al.detail
$$;

-- The rows after p_after, in chain order, for the copy off the database. They hold no PHI.
CREATE FUNCTION audit_copy_rows(p_after bigint, p_limit integer)
    RETURNS TABLE (id bigint, seq bigint, "timestamp" timestamptz, user_id text, action text, ip_address text,
                   status_code integer, response_time_ms integer, resource_id text, user_agent text, request_id text,
                   prev_hash bytea, hash bytea)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
SELECT a.id, a.seq, a."timestamp", a.user_id::text, a.action, host(a.ip_address), a.status_code, a.response_time_ms,
       a.resource_id, a.user_agent, a.request_id, a.prev_hash, a.hash
FROM public.audit_log a
WHERE a.seq > p_after AND a.seq <= (SELECT h.seq FROM public.audit_chain_head h WHERE h.singleton)
ORDER BY a.seq
LIMIT least(greatest(p_limit, 1), 100000)
$$;

-- For GET /api/admin/alerts: newest first, before the id p_before (NULL: from the newest).
-- +goose StatementBegin
CREATE FUNCTION admin_list_alerts(p_before bigint, p_limit integer)
    RETURNS TABLE (id bigint, rule text, subject text, first_seen timestamptz, last_seen timestamptz, count integer, detail text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
BEGIN
    PERFORM admin_require();
    RETURN QUERY
        SELECT al.id, al.rule, al.subject, al.first_seen, al.last_seen, al.count, al.detail
        FROM public.audit_alerts al
        WHERE p_before IS NULL OR al.id < p_before
        ORDER BY al.id DESC
        LIMIT least(greatest(p_limit, 1), 200);
END
$$;
-- +goose StatementEnd

ALTER FUNCTION audit_evaluate_rules(timestamptz, interval, integer, integer, integer, integer, time, time) OWNER TO vitalnexa_owner;
ALTER FUNCTION audit_copy_rows(bigint, integer) OWNER TO vitalnexa_owner;
GRANT SELECT ON audit_alerts TO vitalnexa_auth;
ALTER FUNCTION admin_list_alerts(bigint, integer) OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION audit_evaluate_rules(timestamptz, interval, integer, integer, integer, integer, time, time),
    audit_copy_rows(bigint, integer), admin_list_alerts(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_evaluate_rules(timestamptz, interval, integer, integer, integer, integer, time, time),
    audit_copy_rows(bigint, integer), admin_list_alerts(bigint, integer) TO vitalnexa_app;
-- The copy job (run by the server) records where it has got to; it never rewrites that.
GRANT SELECT, INSERT ON audit_copies TO vitalnexa_app;

-- +goose Down
DROP FUNCTION admin_list_alerts(bigint, integer), audit_copy_rows(bigint, integer),
    audit_evaluate_rules(timestamptz, interval, integer, integer, integer, integer, time, time);
DROP TABLE audit_copies, audit_alerts;
