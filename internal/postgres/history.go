package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.HistoryService = (*DB)(nil)

// change_history is append-only for the server's role (no UPDATE or DELETE grant, and a
// trigger): an entry is written in the transaction of the change it records, so a change
// never lands without its entry, and it is read only under RLS.

// previousValues collects the fields a change replaces, as JSON values by API name.
type previousValues map[string]any

// set records that field had old and is about to become new; equal values are no change.
func (p previousValues) set(field string, old, new any) {
	if old != new {
		p[field] = old
	}
}

// setJSON is set for raw JSON values, compared byte for byte.
func (p previousValues) setJSON(field string, old, new json.RawMessage) {
	if string(old) != string(new) {
		p[field] = old
	}
}

// historyTime is a stored time as the history keeps it: RFC 3339 in UTC, or null.
func historyTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// appendHistory adds one entry for the user of tx; an update that replaced nothing adds none.
func (db *DB) appendHistory(ctx context.Context, tx pgx.Tx, userID, entity, entityID, action string, prev previousValues, at time.Time) error {
	if len(prev) == 0 {
		return nil
	}
	b, err := json.Marshal(prev)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	id := uuid.NewString()
	sealed, err := db.seal("change_history", "previous", id, string(b))
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO change_history (id, user_id, entity, entity_id, action, previous, changed_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, userID, entity, entityID, action, sealed, at)
	return err
}

// FindHistory returns a page of every history entry of the user, newest first.
func (db *DB) FindHistory(ctx context.Context, cursor string, limit int) ([]*phr.HistoryEntry, string, error) {
	return db.FindHistoryEntries(ctx, phr.HistoryFilter{Cursor: cursor, Limit: limit})
}

// FindHistoryEntries returns a page of the entries f selects, newest first. One record's
// history is answered while the record is the user's or has entries of theirs (it was
// deleted); anything else is ENOTFOUND, whoever's it is.
func (db *DB) FindHistoryEntries(ctx context.Context, f phr.HistoryFilter) ([]*phr.HistoryEntry, string, error) {
	userID := phr.UserIDFromContext(ctx)
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	if f.Entity != "" && !phr.IsHistoryEntity(f.Entity) {
		return nil, "", phr.FieldErrorf(phr.EINVALID, "entity", "is not a kind of history")
	}
	var table string
	switch {
	case f.EntityID == "":
	case f.Entity == phr.HistoryHealthRecord:
		table = "health_records"
	case f.Entity == phr.HistoryTestResult:
		table = "test_results"
	default:
		return nil, "", phr.FieldErrorf(phr.EINVALID, "entity", "must name a health record or test result with an id")
	}
	if f.EntityID != "" && uuid.Validate(f.EntityID) != nil {
		return nil, "", phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	list := "change_history/" + f.Entity + "/" + f.EntityID
	c, err := db.decodeCursor(list, userID, f.Cursor)
	if err != nil {
		return nil, "", err
	}
	at, id, inNulls := keysetArgs(c)
	var entityID *string
	if f.EntityID != "" {
		entityID = &f.EntityID
	}
	type row struct {
		id, entity, entityID, action, previous string
		at                                     time.Time
	}
	var rows []row
	err = db.withUser(ctx, func(tx pgx.Tx) error {
		if table != "" {
			var known bool
			// table is one of two constants above, never input.
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+table+` WHERE id = $1)
				OR EXISTS (SELECT 1 FROM change_history WHERE entity = $2 AND entity_id = $1)`, f.EntityID, f.Entity).Scan(&known); err != nil {
				return err
			}
			if !known {
				return phr.Errorf(phr.ENOTFOUND, "Not found.")
			}
		}
		rs, err := tx.Query(ctx, `SELECT id::text, entity, entity_id::text, action, previous, changed_at FROM change_history
			WHERE `+fmt.Sprintf(keysetClause, "changed_at")+` AND ($4 = '' OR entity = $4) AND ($5::uuid IS NULL OR entity_id = $5)
			ORDER BY changed_at DESC, id DESC LIMIT $6`, at, id, inNulls, f.Entity, entityID, limit+1)
		if err != nil {
			return err
		}
		var r row
		_, err = pgx.ForEachRow(rs, []any{&r.id, &r.entity, &r.entityID, &r.action, &r.previous, &r.at}, func() error {
			rows = append(rows, r)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]*phr.HistoryEntry, 0, len(rows))
	for _, r := range rows {
		plain, err := db.open("change_history", "previous", r.id, r.previous)
		if err != nil {
			return nil, "", err
		}
		e := &phr.HistoryEntry{ID: r.id, Entity: r.entity, EntityID: r.entityID, Action: r.action, ChangedAt: r.at.UTC()}
		if err := json.Unmarshal([]byte(plain), &e.Previous); err != nil {
			return nil, "", &wrapped{phr.Errorf(phr.EINTERNAL, "A stored value could not be read."),
				fmt.Errorf("history: entry %s does not hold a JSON object", r.id)}
		}
		out = append(out, e)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		if next, err = db.encodeCursor(list, userID, pageCursor{at: &last.ChangedAt, id: last.ID}); err != nil {
			return nil, "", err
		}
	}
	return out, next, nil
}
