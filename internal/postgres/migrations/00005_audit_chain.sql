-- The audit trail that nobody can quietly change (issue 5): partitioned by month, every row
-- chained to the one before it by a hash computed in the database itself (so concurrent
-- writers in any number of processes cannot fork the chain), append-only for every role,
-- the owner included.

-- +goose Up
ALTER TABLE audit_log RENAME TO audit_log_v1;
ALTER INDEX audit_log_timestamp RENAME TO audit_log_v1_timestamp;
ALTER INDEX audit_log_user RENAME TO audit_log_v1_user;
ALTER TABLE audit_log_v1 RENAME CONSTRAINT audit_log_pkey TO audit_log_v1_pkey;

-- The head of the chain: the last sequence number and hash. One row.
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint  NOT NULL,
    hash      bytea   NOT NULL
);
INSERT INTO audit_chain_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Where the kept chain starts: the last row retention removed (seq 0 and the zero hash until
-- it first does), so that audit verify can check what is left from there.
CREATE TABLE audit_chain_anchor (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq       bigint  NOT NULL,
    hash      bytea   NOT NULL
);
INSERT INTO audit_chain_anchor (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    id               bigint      GENERATED ALWAYS AS IDENTITY,
    "timestamp"      timestamptz NOT NULL,
    user_id          uuid,
    action           text        NOT NULL,
    ip_address       inet,
    status_code      integer     NOT NULL,
    response_time_ms integer     NOT NULL,
    resource_id      text,
    user_agent       text        NOT NULL DEFAULT '',
    request_id       text        NOT NULL,
    -- the chain: set by audit_log_chain(), whatever the inserting statement says
    seq              bigint      NOT NULL,
    prev_hash        bytea       NOT NULL,
    hash             bytea       NOT NULL,
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
CREATE INDEX audit_log_timestamp ON audit_log ("timestamp");
CREATE INDEX audit_log_user_time ON audit_log (user_id, "timestamp");
CREATE INDEX audit_log_seq ON audit_log (seq);

-- What a row's hash covers, in one canonical text form; audit verify uses the same function.
CREATE FUNCTION audit_row_content(a audit_log) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog
    AS $$ SELECT jsonb_build_array(a.seq, to_char(a."timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        a.user_id, a.action, host(a.ip_address), a.status_code, a.response_time_ms, a.resource_id,
        a.user_agent, a.request_id)::text $$;

-- +goose StatementBegin
CREATE FUNCTION audit_log_chain() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
DECLARE
    head record;
BEGIN
    -- The row lock serialises every writer of every process until its commit: one chain.
    SELECT seq, hash INTO head FROM public.audit_chain_head WHERE singleton FOR UPDATE;
    NEW.seq := head.seq + 1;
    NEW.prev_hash := head.hash;
    NEW.hash := sha256(head.hash || convert_to(public.audit_row_content(NEW), 'UTF8'));
    UPDATE public.audit_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE singleton;
    RETURN NEW;
END
$$;

-- Monthly partitions, each with the statement-level guard (statement triggers are not
-- inherited, and a partition can be truncated on its own).
CREATE FUNCTION audit_ensure_partitions(p_from timestamptz, p_months integer) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
DECLARE
    m timestamptz := date_trunc('month', p_from AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text;
    made integer := 0;
BEGIN
    FOR i IN 0 .. p_months LOOP
        name := 'audit_log_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass('public.' || name) IS NULL THEN
            EXECUTE format('CREATE TABLE public.%I PARTITION OF public.audit_log FOR VALUES FROM (%L) TO (%L)',
                name, m, m + interval '1 month');
            EXECUTE format('CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON public.%I
                FOR EACH STATEMENT EXECUTE FUNCTION public.audit_log_refuse_change()', name);
            -- Read straight from a partition, only the owner sees rows (through the parent,
            -- the parent's policies decide).
            EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', name);
            EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', name);
            EXECUTE format('CREATE POLICY audit_owner_read ON public.%I FOR SELECT TO vitalnexa_owner USING (true)', name);
            made := made + 1;
        END IF;
        m := m + interval '1 month';
    END LOOP;
    RETURN made;
END
$$;

-- Retention: drop whole months older than p_keep, never less than six years (HIPAA). Only
-- this function may remove audit rows, and only by dropping their partition.
CREATE FUNCTION audit_drop_expired(p_keep interval) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
DECLARE
    p record;
BEGIN
    IF p_keep < interval '6 years' THEN
        RAISE EXCEPTION 'audit retention cannot be shorter than six years' USING ERRCODE = 'check_violation';
    END IF;
    FOR p IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.audit_log'::regclass AND c.relname ~ '^audit_log_[0-9]{4}_[0-9]{2}$'
    LOOP
        IF (to_date(substr(p.relname, 11), 'YYYY_MM') + interval '1 month') <= (now() - p_keep) THEN
            -- Keep the chain checkable: remember the last row that goes.
            EXECUTE format('UPDATE public.audit_chain_anchor a SET seq = l.seq, hash = l.hash
                FROM (SELECT seq, hash FROM public.%I ORDER BY seq DESC LIMIT 1) l WHERE l.seq > a.seq', p.relname);
            EXECUTE format('DROP TABLE public.%I', p.relname);
            RETURN NEXT p.relname;
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_chain();
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_chain_head_no_change BEFORE DELETE OR TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_chain_anchor_no_change BEFORE DELETE OR TRUNCATE ON audit_chain_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Partitions from the oldest row there is (or now) to two years ahead.
SELECT audit_ensure_partitions(least(now(), coalesce((SELECT min("timestamp") FROM audit_log_v1), now())),
    (extract(year FROM age(now() + interval '24 months', least(now(), coalesce((SELECT min("timestamp") FROM audit_log_v1), now())))) * 12
     + extract(month FROM age(now() + interval '24 months', least(now(), coalesce((SELECT min("timestamp") FROM audit_log_v1), now())))))::integer);

-- The rows so far, chained in their order.
INSERT INTO audit_log ("timestamp", user_id, action, ip_address, status_code, response_time_ms, resource_id, user_agent, request_id, seq, prev_hash, hash)
    SELECT "timestamp", user_id, action, ip_address, status_code, response_time_ms, resource_id, user_agent, request_id, 0, '\x', '\x'
    FROM audit_log_v1 ORDER BY id;
DROP TABLE audit_log_v1;

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_log_append ON audit_log FOR INSERT WITH CHECK (true);
-- The server reads only a user's own access history (their user_id) and, for admins, through
-- the admin functions; the owner (audit verify, export) reads everything.
CREATE POLICY audit_log_own ON audit_log FOR SELECT USING (user_id = app_current_user_id());
CREATE POLICY audit_log_owner_read ON audit_log FOR SELECT TO vitalnexa_owner USING (true);

ALTER FUNCTION audit_log_chain() OWNER TO vitalnexa_owner;
REVOKE ALL ON FUNCTION audit_log_chain(), audit_ensure_partitions(timestamptz, integer), audit_drop_expired(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_ensure_partitions(timestamptz, integer), audit_drop_expired(interval) TO vitalnexa_app;
GRANT INSERT ON audit_log TO vitalnexa_app;
GRANT SELECT (id, "timestamp", user_id, action, status_code, resource_id) ON audit_log TO vitalnexa_app;

-- +goose Down
SELECT 1; -- the chained, partitioned trail is not taken back: audit rows are kept by law
