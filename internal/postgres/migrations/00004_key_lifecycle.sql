-- Key lifecycle (issue 4): rotation, revocation, destruction and online re-encryption.
-- The server may add a data-key version (scheduled rotation) and change a version's state,
-- never read a key in clear: every key is stored wrapped by the master key.

-- +goose Up
ALTER TABLE encryption_keys
    -- Encryptions made under this version (flushed by each server now and then): AES-GCM
    -- with random 96-bit nonces must stay well below 2^32 encryptions per key.
    ADD COLUMN encryptions      bigint      NOT NULL DEFAULT 0 CHECK (encryptions >= 0),
    ADD COLUMN state_changed_at timestamptz NOT NULL DEFAULT now();

GRANT INSERT, UPDATE (state, state_changed_at, encryptions) ON encryption_keys TO vitalnexa_app;

-- The re-encryption job walks users by id and acts as each one under RLS; this is the only
-- cross-user thing it needs, and it returns ids only.
CREATE FUNCTION keys_user_ids(p_after uuid, p_limit integer) RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$ SELECT id FROM public.users WHERE p_after IS NULL OR id > p_after ORDER BY id LIMIT least(greatest(p_limit, 1), 1000) $$;

-- How many stored values each key version still holds, over every column of type
-- ciphertext in every table, found in the catalog so that tables added later count too.
-- Counts only: no value leaves the function.
-- +goose StatementBegin
CREATE FUNCTION keys_version_counts() RETURNS TABLE (version integer, n bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = public, pg_catalog
    AS $$
DECLARE
    c record;
    q text := '';
BEGIN
    FOR c IN
        SELECT cl.relname AS tab, a.attname AS col
        FROM pg_attribute a
        JOIN pg_class cl ON cl.oid = a.attrelid
        JOIN pg_namespace ns ON ns.oid = cl.relnamespace
        WHERE ns.nspname = 'public' AND cl.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid = 'public.ciphertext'::regtype
    LOOP
        IF q <> '' THEN
            q := q || ' UNION ALL ';
        END IF;
        q := q || format('SELECT substr(split_part(%I, '':'', 1), 2)::integer AS v FROM public.%I WHERE %I IS NOT NULL',
            c.col, c.tab, c.col);
    END LOOP;
    IF q = '' THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE 'SELECT v, count(*) FROM (' || q || ') s GROUP BY v ORDER BY v';
END
$$;
-- +goose StatementEnd

GRANT SELECT ON users, test_results, health_records, account_tokens TO vitalnexa_auth;
ALTER FUNCTION keys_user_ids(uuid, integer) OWNER TO vitalnexa_auth;
ALTER FUNCTION keys_version_counts() OWNER TO vitalnexa_auth;
REVOKE ALL ON FUNCTION keys_user_ids(uuid, integer), keys_version_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keys_user_ids(uuid, integer), keys_version_counts() TO vitalnexa_app, vitalnexa_owner;

-- +goose Down
DROP FUNCTION keys_version_counts(), keys_user_ids(uuid, integer);
REVOKE SELECT ON users, test_results, health_records, account_tokens FROM vitalnexa_auth;
REVOKE INSERT, UPDATE (state, state_changed_at, encryptions) ON encryption_keys FROM vitalnexa_app;
ALTER TABLE encryption_keys DROP COLUMN state_changed_at, DROP COLUMN encryptions;
