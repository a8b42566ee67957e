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

var _ phr.HealthRecordService = (*DB)(nil)

const healthRecordColumns = `id, user_id, kind, title, content, recorded_at, source, created_at, updated_at`

func (db *DB) scanHealthRecord(row pgx.Row) (*phr.HealthRecord, error) {
	r := &phr.HealthRecord{}
	var title, content string
	var recorded *time.Time
	if err := row.Scan(&r.ID, &r.UserID, &r.Kind, &title, &content, &recorded, &r.Source, &r.CreatedAt, &r.UpdatedAt); err != nil {
		return nil, err
	}
	s := sealer{db: db, table: "health_records", rowID: r.ID}
	r.Title = s.open("title", title)
	r.Content = json.RawMessage(s.open("content", content))
	if recorded != nil {
		r.RecordedAt = recorded.UTC()
	}
	return r, s.err
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// FindHealthRecordByID returns ENOTFOUND for an unknown id and for another user's record.
func (db *DB) FindHealthRecordByID(ctx context.Context, id string) (*phr.HealthRecord, error) {
	if uuid.Validate(id) != nil {
		return nil, phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	var r *phr.HealthRecord
	err := db.withUser(ctx, func(tx pgx.Tx) (err error) {
		r, err = db.scanHealthRecord(tx.QueryRow(ctx, `SELECT `+healthRecordColumns+` FROM health_records WHERE id = $1`, id))
		return err
	})
	return r, err
}

// FindHealthRecords returns a page of the user's records, newest first.
func (db *DB) FindHealthRecords(ctx context.Context, f phr.HealthRecordFilter) ([]*phr.HealthRecord, string, error) {
	if f.Kind != "" && !phr.ValidHealthRecordKind(f.Kind) {
		return nil, "", phr.FieldErrorf(phr.EINVALID, "kind", "is not a kind of health record")
	}
	return keysetPage(ctx, db, "health_records", f.Cursor, f.Limit,
		func(tx pgx.Tx, at *time.Time, id *string, inNulls bool, limit int) (pgx.Rows, error) {
			return tx.Query(ctx, `SELECT `+healthRecordColumns+` FROM health_records
				WHERE `+fmt.Sprintf(keysetClause, "recorded_at")+` AND ($4 = '' OR kind = $4)
				ORDER BY recorded_at DESC NULLS LAST, id DESC LIMIT $5`, at, id, inNulls, f.Kind, limit)
		},
		db.scanHealthRecord, func(r *phr.HealthRecord) (time.Time, string) { return r.RecordedAt, r.ID })
}

// CheckHealthRecord validates a record before it is stored.
func CheckHealthRecord(r *phr.HealthRecord) error {
	if !phr.ValidHealthRecordKind(r.Kind) {
		return phr.FieldErrorf(phr.EINVALID, "kind", "is not a kind of health record")
	}
	if r.Title == "" {
		return phr.FieldErrorf(phr.EINVALID, "title", "is required")
	}
	if err := phr.CheckText("title", r.Title, 500, false); err != nil {
		return err
	}
	if len(r.Content) == 0 || !json.Valid(r.Content) {
		return phr.FieldErrorf(phr.EINVALID, "content", "must be a JSON value")
	}
	return nil
}

// insertHealthRecord stores r for the user of tx unless a record with its source key
// exists; it reports whether it stored a row.
func (db *DB) insertHealthRecord(ctx context.Context, tx pgx.Tx, userID string, r *phr.HealthRecord) (importOutcome, error) {
	now := db.now()
	r.ID, r.UserID, r.CreatedAt, r.UpdatedAt = uuid.NewString(), userID, now, now
	sourceKey := db.sourceKey("health_records/"+r.Kind, userID, r.Source, r.SourceID)
	var digest []byte
	if sourceKey != nil {
		var err error
		if digest, err = db.sourceDigest(userID, []any{r.Kind, r.Title, r.Content, r.RecordedAt.UTC()}); err != nil {
			return 0, err
		}
	}
	fields := func(id string) (title, content string, err error) {
		s := sealer{db: db, table: "health_records", rowID: id}
		title, content = s.seal("title", r.Title), s.seal("content", string(r.Content))
		return title, content, s.err
	}
	title, content, err := fields(r.ID)
	if err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO health_records (`+healthRecordColumns+`, source_key, source_digest)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (user_id, source_key) DO NOTHING`,
		r.ID, userID, r.Kind, title, content, optionalTime(r.RecordedAt), r.Source, now, now, sourceKey, digest)
	if err != nil || tag.RowsAffected() == 1 {
		return importCreated, err
	}
	// Imported before: update it when the source has changed it.
	id, stored, err := storedImport(ctx, tx, "health_records", userID, sourceKey)
	if err != nil || !changed(stored, digest) {
		return importUnchanged, err
	}
	r.ID = id
	old, err := db.scanHealthRecord(tx.QueryRow(ctx, `SELECT `+healthRecordColumns+` FROM health_records WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return 0, err
	}
	if title, content, err = fields(id); err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE health_records SET title = $2, content = $3, recorded_at = $4, updated_at = $5, source_digest = $6
		WHERE id = $1`, id, title, content, optionalTime(r.RecordedAt), now, digest)
	if err != nil {
		return 0, err
	}
	// An amended record keeps what it said before, like a correction by its user.
	return importUpdated, db.appendHistory(ctx, tx, userID, phr.HistoryHealthRecord, id, phr.ChangeUpdate, healthRecordChanges(old, r), now)
}

// healthRecordValues are every field of r as its history keeps them.
func healthRecordValues(r *phr.HealthRecord) previousValues {
	return previousValues{"kind": r.Kind, "title": r.Title, "content": r.Content, "recorded_at": historyTime(r.RecordedAt)}
}

// healthRecordChanges are the fields of old that differ in r, with old's values.
func healthRecordChanges(old, r *phr.HealthRecord) previousValues {
	p := previousValues{}
	p.set("kind", old.Kind, r.Kind)
	p.set("title", old.Title, r.Title)
	p.setJSON("content", old.Content, r.Content)
	p.set("recorded_at", historyTime(old.RecordedAt), historyTime(r.RecordedAt))
	return p
}

// CreateHealthRecord stores a record the user wrote.
func (db *DB) CreateHealthRecord(ctx context.Context, r *phr.HealthRecord) error {
	if err := CheckHealthRecord(r); err != nil {
		return err
	}
	r.Source, r.SourceID = "manual", ""
	return db.withUser(ctx, func(tx pgx.Tx) error {
		_, err := db.insertHealthRecord(ctx, tx, phr.UserIDFromContext(ctx), r)
		return err
	})
}

// UpdateHealthRecord changes the given fields of the user's record.
func (db *DB) UpdateHealthRecord(ctx context.Context, id string, upd phr.HealthRecordUpdate) (*phr.HealthRecord, error) {
	if uuid.Validate(id) != nil {
		return nil, phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	var r *phr.HealthRecord
	err := db.withUser(ctx, func(tx pgx.Tx) (err error) {
		r, err = db.scanHealthRecord(tx.QueryRow(ctx, `SELECT `+healthRecordColumns+` FROM health_records WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		old := *r
		if upd.Kind != nil {
			r.Kind = *upd.Kind
		}
		if upd.Title != nil {
			r.Title = *upd.Title
		}
		if upd.Content != nil {
			r.Content = upd.Content
		}
		if upd.RecordedAt != nil {
			r.RecordedAt = *upd.RecordedAt
		}
		if err := CheckHealthRecord(r); err != nil {
			return err
		}
		r.UpdatedAt = db.now()
		s := sealer{db: db, table: "health_records", rowID: r.ID}
		title, content := s.seal("title", r.Title), s.seal("content", string(r.Content))
		if s.err != nil {
			return s.err
		}
		_, err = tx.Exec(ctx, `UPDATE health_records SET kind = $2, title = $3, content = $4, recorded_at = $5, updated_at = $6 WHERE id = $1`,
			r.ID, r.Kind, title, content, optionalTime(r.RecordedAt), r.UpdatedAt)
		if err != nil {
			return err
		}
		return db.appendHistory(ctx, tx, r.UserID, phr.HistoryHealthRecord, r.ID, phr.ChangeUpdate, healthRecordChanges(&old, r), r.UpdatedAt)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// DeleteHealthRecord removes the user's record and keeps its last values in the history;
// ENOTFOUND when there is none.
func (db *DB) DeleteHealthRecord(ctx context.Context, id string) error {
	if uuid.Validate(id) != nil {
		return phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		r, err := db.scanHealthRecord(tx.QueryRow(ctx, `DELETE FROM health_records WHERE id = $1 RETURNING `+healthRecordColumns, id))
		if err != nil {
			return err
		}
		return db.appendHistory(ctx, tx, r.UserID, phr.HistoryHealthRecord, r.ID, phr.ChangeDelete, healthRecordValues(r), db.now())
	})
}
