package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
)

// encryptedTable is a table with columns of type ciphertext, found in the catalog, so that
// re-encryption covers every table, also those added after this code was written.
type encryptedTable struct {
	name    string
	key     string // the primary-key column, which is the row identity bound into each value
	keyHex  bool   // the key is bytea: its row identity is its hex form
	columns []string
	// swap is set for an append-only table (change_history), which the server's role may
	// not UPDATE: the function its migration provides instead, <table>_reencrypt(row
	// identity, column, old value, new value) returning boolean, a compare-and-swap of one
	// value of the current user to the write key.
	swap string
}

func (db *DB) encryptedTables(ctx context.Context) ([]encryptedTable, error) {
	rows, err := db.Pool.Query(ctx, `
		SELECT c.relname, a.attname,
		       (SELECT ka.attname FROM pg_index i JOIN pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = i.indkey[0]
		         WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1),
		       (SELECT ka.atttypid = 'bytea'::regtype FROM pg_index i JOIN pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = i.indkey[0]
		         WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnatts = 1),
		       has_column_privilege(c.oid, a.attnum, 'UPDATE'),
		       to_regprocedure(format('public.%I(text, text, text, text)', c.relname || '_reencrypt')) IS NOT NULL
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
		  AND a.atttypid = 'public.ciphertext'::regtype
		ORDER BY c.relname, a.attnum`)
	if err != nil {
		return nil, FormatError(err)
	}
	defer rows.Close()
	var out []encryptedTable
	for rows.Next() {
		var table, column string
		var key *string
		var keyHex *bool
		var updatable, hasSwap bool
		if err := rows.Scan(&table, &column, &key, &keyHex, &updatable, &hasSwap); err != nil {
			return nil, err
		}
		if key == nil {
			return nil, fmt.Errorf("keys: table %s has encrypted columns but no single-column primary key to bind them to", table)
		}
		if len(out) == 0 || out[len(out)-1].name != table {
			out = append(out, encryptedTable{name: table, key: *key, keyHex: keyHex != nil && *keyHex})
		}
		t := &out[len(out)-1]
		t.columns = append(t.columns, column)
		if hasSwap {
			t.swap = table + "_reencrypt"
		} else if !updatable {
			// Found before the first batch: a table the job could not write would otherwise
			// fail it halfway, with every later table left under the old key.
			return nil, fmt.Errorf("keys: %s.%s is encrypted, but this role may not update it and there is no %s_reencrypt function", table, column, table)
		}
	}
	return out, rows.Err()
}

// ReencryptProgress reports how far ReencryptAll has come.
type ReencryptProgress struct {
	Users  int // users done
	Values int // values moved to the newest version so far
}

// ReencryptAll moves every stored value of every user to the newest key version, user by
// user and in batches, each batch its own short transaction under that user's RLS. It is
// online and safe to run while users read and write: each value is replaced only if it is
// still the value that was read (compare-and-swap), so a racing update is never lost. It
// is idempotent and resumable: stopped at any point, the next run finds only what is left.
// progress, when not nil, is called after each user.
func (db *DB) ReencryptAll(ctx context.Context, batch int, progress func(ReencryptProgress)) (ReencryptProgress, error) {
	var p ReencryptProgress
	tables, err := db.encryptedTables(ctx)
	if err != nil {
		return p, err
	}
	var after *string
	for {
		rows, err := db.Pool.Query(ctx, `SELECT u::text FROM keys_user_ids($1, 500) AS u`, after)
		if err != nil {
			return p, FormatError(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return p, FormatError(err)
		}
		if len(ids) == 0 {
			return p, nil
		}
		for _, id := range ids {
			n, err := db.reencryptUser(ctx, id, tables, batch)
			p.Values += n
			if err != nil {
				return p, err
			}
			p.Users++
			if progress != nil {
				progress(p)
			}
		}
		after = &ids[len(ids)-1]
	}
}

// ReencryptUser moves one user's values to the newest key version.
func (db *DB) ReencryptUser(ctx context.Context, userID string, batch int) (int, error) {
	tables, err := db.encryptedTables(ctx)
	if err != nil {
		return 0, err
	}
	return db.reencryptUser(ctx, userID, tables, batch)
}

func (db *DB) reencryptUser(ctx context.Context, userID string, tables []encryptedTable, batch int) (int, error) {
	if batch < 1 {
		batch = 500
	}
	moved := 0
	for _, t := range tables {
		var last any // keyset cursor: the last primary key seen
		for {
			n, seen, next, err := db.reencryptBatch(ctx, userID, t, last, batch)
			moved += n
			if err != nil {
				return moved, err
			}
			if seen < batch {
				break
			}
			last = next
		}
	}
	return moved, nil
}

// reencryptBatch re-encrypts the values of up to batch rows after last in one transaction.
func (db *DB) reencryptBatch(ctx context.Context, userID string, t encryptedTable, last any, batch int) (moved, seen int, next any, err error) {
	current := fmt.Sprintf("v%d:", db.Keys.CurrentVersion())
	var stale []string
	for _, c := range t.columns {
		stale = append(stale, fmt.Sprintf("(%s IS NOT NULL AND left(%s, %d) <> '%s')", pgIdent(c), pgIdent(c), len(current), current))
	}
	rowID := pgIdent(t.key) + "::text"
	if t.keyHex {
		rowID = "encode(" + pgIdent(t.key) + ", 'hex')"
	}
	// Identifiers come from the catalog, quoted; values are parameters.
	// Walking the primary key in order (no OR on the cursor) lets the plan use its index.
	after, args := "", []any{}
	if last != nil {
		after, args = fmt.Sprintf(" AND %s > $1", pgIdent(t.key)), []any{last}
	}
	q := fmt.Sprintf(`SELECT %s, %s AS row_identity, %s FROM %s AS x WHERE (%s)%s ORDER BY x.%s LIMIT %d`,
		pgIdent(t.key), rowID, joinIdents(t.columns), pgIdent(t.name), strings.Join(stale, " OR "),
		after, pgIdent(t.key), batch)
	err = db.asUser(ctx, userID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		type row struct {
			key    any
			id     string
			values []*string
		}
		var found []row
		for rows.Next() {
			r := row{values: make([]*string, len(t.columns))}
			dest := []any{&r.key, &r.id}
			for i := range r.values {
				dest = append(dest, &r.values[i])
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return err
			}
			found = append(found, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		seen = len(found)
		for _, r := range found {
			next = r.key
			// One statement per row: every stale column at once, each compared with the value
			// read (compare-and-swap). If the user changed any of them meanwhile, the row is
			// left for the next pass, which the job makes until nothing is left.
			var set, where, columns []string
			args := []any{r.key}
			for i, c := range t.columns {
				old := r.values[i]
				if old == nil || strings.HasPrefix(*old, current) {
					continue
				}
				nv, changed, err := db.Keys.Reencrypt(*old, keyring.Field{Table: t.name, Column: c, RowID: r.id})
				if err != nil {
					return fmt.Errorf("keys: re-encrypt %s.%s of %s: %w", t.name, c, r.id, err)
				}
				if !changed {
					continue
				}
				args = append(args, nv, *old)
				columns = append(columns, c)
				set = append(set, fmt.Sprintf("%s = $%d", pgIdent(c), len(args)-1))
				where = append(where, fmt.Sprintf("%s = $%d", pgIdent(c), len(args)))
			}
			if len(set) == 0 {
				continue
			}
			if t.swap != "" {
				// An append-only table: one call of its swap function per value.
				for i, c := range columns {
					var ok bool
					// The function name comes from the catalog, quoted; values are parameters.
					if err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT public.%s($1, $2, $3, $4)`, pgIdent(t.swap)),
						r.id, c, args[2+2*i], args[1+2*i]).Scan(&ok); err != nil {
						return err
					}
					if ok {
						moved++
					}
				}
				continue
			}
			tag, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %s WHERE %s = $1 AND %s`, pgIdent(t.name),
				strings.Join(set, ", "), pgIdent(t.key), strings.Join(where, " AND ")), args...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				moved += len(set)
			}
		}
		return nil
	})
	return moved, seen, next, err
}

func pgIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

func joinIdents(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = pgIdent(c)
	}
	return strings.Join(out, ", ")
}
