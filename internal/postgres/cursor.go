package postgres

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

const (
	defaultPageSize = 50
	maxPageSize     = 100
)

// pageCursor is the keyset position after the last row of a page: its sort time (nil for
// rows without one, which sort last) and its id.
type pageCursor struct {
	at *time.Time
	id string
}

// Cursors travel in URLs, and a record's date is PHI, so a cursor is encrypted and bound to
// its list and its user: it cannot be read, forged or replayed by another user.
func (db *DB) encodeCursor(list, userID string, c pageCursor) (string, error) {
	buf := make([]byte, 25)
	if c.at != nil {
		buf[0] = 1
		binary.BigEndian.PutUint64(buf[1:9], uint64(c.at.UnixMicro()))
	}
	id, err := uuid.Parse(c.id)
	if err != nil {
		return "", err
	}
	copy(buf[9:], id[:])
	return db.Keys.Encrypt(buf, keyring.Field{Table: "cursor", Column: list, RowID: userID})
}

func (db *DB) decodeCursor(list, userID, s string) (*pageCursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := phr.FieldErrorf(phr.EINVALID, "cursor", "is not a cursor of this list")
	buf, err := db.Keys.Decrypt(s, keyring.Field{Table: "cursor", Column: list, RowID: userID})
	if err != nil || len(buf) != 25 || buf[0] > 1 {
		return nil, bad
	}
	c := &pageCursor{id: uuid.UUID(buf[9:25]).String()}
	if buf[0] == 1 {
		t := time.UnixMicro(int64(binary.BigEndian.Uint64(buf[1:9]))).UTC()
		c.at = &t
	}
	return c, nil
}

// pageLimit checks a requested page size.
func pageLimit(n int) (int, error) {
	switch {
	case n == 0:
		return defaultPageSize, nil
	case n < 0 || n > maxPageSize:
		return 0, phr.FieldErrorf(phr.EINVALID, "limit", "must be between 1 and %d", maxPageSize)
	}
	return n, nil
}

// keysetClause selects the rows after cursor c in "ORDER BY col DESC NULLS LAST, id DESC".
// $1 is the cursor time (NULL for none or for the NULL section), $2 the cursor id
// (NULL on the first page), $3 whether the cursor is in the NULL section.
const keysetClause = `($2::uuid IS NULL
	OR (NOT $3 AND (%[1]s < $1 OR (%[1]s = $1 AND id < $2) OR %[1]s IS NULL))
	OR ($3 AND %[1]s IS NULL AND id < $2))`

func keysetArgs(c *pageCursor) (at *time.Time, id *string, inNulls bool) {
	if c == nil {
		return nil, nil, false
	}
	return c.at, &c.id, c.at == nil
}

// pageQuery runs a page's SELECT: the keyset arguments as $1–$3 (see keysetClause) and the
// row limit, ordered by "<time> DESC NULLS LAST, id DESC".
type pageQuery func(tx pgx.Tx, at *time.Time, id *string, inNulls bool, limit int) (pgx.Rows, error)

// keysetPage reads one page of the user's list (the name binds its cursors): up to limit
// rows (0 for the default) after cursor, each read by scan, and the cursor after the last
// one, made of the time and id that key gives; "" after the last page.
func keysetPage[T any](ctx context.Context, db *DB, list, cursor string, limit int, query pageQuery,
	scan func(pgx.Row) (T, error), key func(T) (time.Time, string)) ([]T, string, error) {
	userID := phr.UserIDFromContext(ctx)
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	c, err := db.decodeCursor(list, userID, cursor)
	if err != nil {
		return nil, "", err
	}
	at, id, inNulls := keysetArgs(c)
	var out []T
	err = db.withUser(ctx, func(tx pgx.Tx) error {
		rows, err := query(tx, at, id, inNulls, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", err
	}
	if len(out) <= limit {
		return out, "", nil
	}
	out = out[:limit]
	t, lastID := key(out[limit-1])
	next, err := db.encodeCursor(list, userID, pageCursor{at: optionalTime(t), id: lastID})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}
