package postgres

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.TestResultService = (*DB)(nil)

const testResultColumns = `id, user_id, code_system, code, name, value, value_type, unit, reference_range, notes, effective_at, source, created_at`

func (db *DB) codeIndex(userID, code string) []byte {
	return db.Keys.BlindIndex("test_result.code", []byte(userID+"\x00"+code))
}

func (db *DB) sourceKey(table, userID, source, sourceID string) []byte {
	if sourceID == "" {
		return nil
	}
	return db.Keys.BlindIndex("source", []byte(table+"\x00"+userID+"\x00"+source+"\x00"+sourceID))
}

func (db *DB) scanTestResult(row pgx.Row) (*phr.TestResult, error) {
	r := &phr.TestResult{}
	var code, name, value, unit, rng, notes string
	var effective *time.Time
	if err := row.Scan(&r.ID, &r.UserID, &r.CodeSystem, &code, &name, &value, &r.ValueType, &unit, &rng, &notes, &effective, &r.Source, &r.CreatedAt); err != nil {
		return nil, err
	}
	s := sealer{db: db, table: "test_results", rowID: r.ID}
	r.Code, r.Name, r.Value, r.Unit = s.open("code", code), s.open("name", name), s.open("value", value), s.open("unit", unit)
	r.ReferenceRange, r.Notes = s.open("reference_range", rng), s.open("notes", notes)
	if effective != nil {
		r.EffectiveAt = effective.UTC()
	}
	return r, s.err
}

// FindTestResultByID returns ENOTFOUND for an unknown id and for another user's result.
func (db *DB) FindTestResultByID(ctx context.Context, id string) (*phr.TestResult, error) {
	if uuid.Validate(id) != nil {
		return nil, phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	var r *phr.TestResult
	err := db.withUser(ctx, func(tx pgx.Tx) (err error) {
		r, err = db.scanTestResult(tx.QueryRow(ctx, `SELECT `+testResultColumns+` FROM test_results WHERE id = $1`, id))
		return err
	})
	return r, err
}

// FindTestResults returns a page of the user's results, newest first.
func (db *DB) FindTestResults(ctx context.Context, f phr.TestResultFilter) ([]*phr.TestResult, string, error) {
	var codeIdx []byte
	if f.Code != "" {
		codeIdx = db.codeIndex(phr.UserIDFromContext(ctx), f.Code)
	}
	return keysetPage(ctx, db, "test_results", f.Cursor, f.Limit,
		func(tx pgx.Tx, at *time.Time, id *string, inNulls bool, limit int) (pgx.Rows, error) {
			return tx.Query(ctx, `SELECT `+testResultColumns+` FROM test_results
				WHERE `+fmt.Sprintf(keysetClause, "effective_at")+` AND ($4::bytea IS NULL OR code_index = $4)
				ORDER BY effective_at DESC NULLS LAST, id DESC LIMIT $5`, at, id, inNulls, codeIdx, limit)
		},
		db.scanTestResult, func(r *phr.TestResult) (time.Time, string) { return r.EffectiveAt, r.ID })
}

// insertTestResult stores r for the user of tx unless a result with its source key exists;
// it reports whether it stored a row.
func (db *DB) insertTestResult(ctx context.Context, tx pgx.Tx, userID string, r *phr.TestResult) (importOutcome, error) {
	r.ID, r.UserID, r.CreatedAt = uuid.NewString(), userID, db.now()
	sourceKey := db.sourceKey("test_results", userID, r.Source, r.SourceID)
	digest, err := db.sourceDigest(userID, []any{r.CodeSystem, r.Code, r.Name, r.Value, r.ValueType, r.Unit,
		r.ReferenceRange, r.Notes, r.EffectiveAt.UTC()})
	if err != nil {
		return 0, err
	}
	fields := func(id string) (code, name, value, unit, rng, notes string, err error) {
		s := sealer{db: db, table: "test_results", rowID: id}
		code, name, value, unit = s.seal("code", r.Code), s.seal("name", r.Name), s.seal("value", r.Value), s.seal("unit", r.Unit)
		rng, notes = s.seal("reference_range", r.ReferenceRange), s.seal("notes", r.Notes)
		return code, name, value, unit, rng, notes, s.err
	}
	code, name, value, unit, rng, notes, err := fields(r.ID)
	if err != nil {
		return 0, err
	}
	var effective *time.Time
	if !r.EffectiveAt.IsZero() {
		effective = &r.EffectiveAt
	}
	tag, err := tx.Exec(ctx, `INSERT INTO test_results (`+testResultColumns+`, code_index, source_key, source_digest)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		ON CONFLICT (user_id, source_key) DO NOTHING`,
		r.ID, userID, r.CodeSystem, code, name, value, r.ValueType, unit, rng, notes, effective, r.Source, r.CreatedAt,
		db.codeIndex(userID, r.Code), sourceKey, digest)
	if err != nil || tag.RowsAffected() == 1 {
		return importCreated, err
	}
	// Imported before: update it when the source has changed it (an amended result).
	id, stored, err := storedImport(ctx, tx, "test_results", userID, sourceKey)
	if err != nil || !changed(stored, digest) {
		return importUnchanged, err
	}
	r.ID = id
	old, err := db.scanTestResult(tx.QueryRow(ctx, `SELECT `+testResultColumns+` FROM test_results WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return 0, err
	}
	if code, name, value, unit, rng, notes, err = fields(id); err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE test_results SET code_system = $2, code = $3, name = $4, value = $5, value_type = $6,
		unit = $7, reference_range = $8, notes = $9, effective_at = $10, code_index = $11, source_digest = $12 WHERE id = $1`,
		id, r.CodeSystem, code, name, value, r.ValueType, unit, rng, notes, effective, db.codeIndex(userID, r.Code), digest)
	if err != nil {
		return 0, err
	}
	// An amended result keeps the value it had, like a correction by its user.
	return importUpdated, db.appendHistory(ctx, tx, userID, phr.HistoryTestResult, id, phr.ChangeUpdate, testResultChanges(old, r), db.now())
}

// testResultValues are every clinical field of r as its history keeps them.
func testResultValues(r *phr.TestResult) previousValues {
	return previousValues{"code_system": r.CodeSystem, "code": r.Code, "name": r.Name, "value": r.Value,
		"value_type": r.ValueType, "unit": r.Unit, "reference_range": r.ReferenceRange, "notes": r.Notes,
		"effective_at": historyTime(r.EffectiveAt)}
}

// testResultChanges are the fields of old that differ in r, with old's values.
func testResultChanges(old, r *phr.TestResult) previousValues {
	p := previousValues{}
	p.set("code_system", old.CodeSystem, r.CodeSystem)
	p.set("code", old.Code, r.Code)
	p.set("name", old.Name, r.Name)
	p.set("value", old.Value, r.Value)
	p.set("value_type", old.ValueType, r.ValueType)
	p.set("unit", old.Unit, r.Unit)
	p.set("reference_range", old.ReferenceRange, r.ReferenceRange)
	p.set("notes", old.Notes, r.Notes)
	p.set("effective_at", historyTime(old.EffectiveAt), historyTime(r.EffectiveAt))
	return p
}

// Bounds of the fields a user may correct, in characters.
const (
	maxTestResultName  = 500
	maxTestResultValue = 500
	maxTestResultUnit  = 100
	maxTestResultRange = 500
	maxTestResultNotes = 10000
)

// quantityValue is how a quantity's value is written: an optional comparator and a
// decimal number, as the FHIR import stores it ("95", "<0.5", "1.2e3").
var quantityValue = regexp.MustCompile(`^(<|<=|>=|>)?-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$`)

// CheckTestResultUpdate validates a correction of a result whose value type is valueType.
// Only the fields it changes are checked: what a lab sent stays readable as it came.
func CheckTestResultUpdate(upd phr.TestResultUpdate, valueType string) error {
	type text struct {
		field     string
		v         *string
		max       int
		required  bool
		multiline bool
	}
	for _, t := range []text{
		{"name", upd.Name, maxTestResultName, true, false},
		{"value", upd.Value, maxTestResultValue, true, false},
		{"unit", upd.Unit, maxTestResultUnit, false, false},
		{"reference_range", upd.ReferenceRange, maxTestResultRange, false, false},
		{"notes", upd.Notes, maxTestResultNotes, false, true},
	} {
		if t.v == nil {
			continue
		}
		if t.required && strings.TrimSpace(*t.v) == "" {
			return phr.FieldErrorf(phr.EINVALID, t.field, "must not be empty")
		}
		if err := phr.CheckText(t.field, *t.v, t.max, t.multiline); err != nil {
			return err
		}
	}
	if upd.Value != nil && valueType == "quantity" && !quantityValue.MatchString(*upd.Value) {
		return phr.FieldErrorf(phr.EINVALID, "value", "must be a number, optionally after <, <=, >= or >, for a quantity")
	}
	if upd.Value != nil && valueType == "quantity" {
		// The pattern admits 1e400, which no reader can hold but as Infinity.
		if _, err := strconv.ParseFloat(strings.TrimLeft(*upd.Value, "<=>"), 64); err != nil {
			return phr.FieldErrorf(phr.EINVALID, "value", "must be a finite number")
		}
	}
	if upd.EffectiveAt != nil && upd.EffectiveAt.IsZero() {
		return phr.FieldErrorf(phr.EINVALID, "effective_at", "must be a date")
	}
	return nil
}

// UpdateTestResult corrects the given fields of the user's result and appends the values
// they replaced to the history, in one transaction.
func (db *DB) UpdateTestResult(ctx context.Context, id string, upd phr.TestResultUpdate) (*phr.TestResult, error) {
	if uuid.Validate(id) != nil {
		return nil, phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	var r *phr.TestResult
	err := db.withUser(ctx, func(tx pgx.Tx) (err error) {
		r, err = db.scanTestResult(tx.QueryRow(ctx, `SELECT `+testResultColumns+` FROM test_results WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if err := CheckTestResultUpdate(upd, r.ValueType); err != nil {
			return err
		}
		old := *r
		for _, f := range []struct {
			dst *string
			src *string
		}{{&r.Name, upd.Name}, {&r.Value, upd.Value}, {&r.Unit, upd.Unit}, {&r.ReferenceRange, upd.ReferenceRange}, {&r.Notes, upd.Notes}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		if upd.EffectiveAt != nil {
			r.EffectiveAt = upd.EffectiveAt.UTC()
		}
		prev := testResultChanges(&old, r)
		if len(prev) == 0 {
			return nil
		}
		s := sealer{db: db, table: "test_results", rowID: r.ID}
		name, value, unit := s.seal("name", r.Name), s.seal("value", r.Value), s.seal("unit", r.Unit)
		rng, notes := s.seal("reference_range", r.ReferenceRange), s.seal("notes", r.Notes)
		if s.err != nil {
			return s.err
		}
		_, err = tx.Exec(ctx, `UPDATE test_results SET name = $2, value = $3, unit = $4, reference_range = $5, notes = $6,
			effective_at = $7 WHERE id = $1`, r.ID, name, value, unit, rng, notes, optionalTime(r.EffectiveAt))
		if err != nil {
			return err
		}
		return db.appendHistory(ctx, tx, r.UserID, phr.HistoryTestResult, r.ID, phr.ChangeUpdate, prev, db.now())
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// DeleteTestResult removes the user's result and keeps its last values in the history;
// ENOTFOUND when there is none.
func (db *DB) DeleteTestResult(ctx context.Context, id string) error {
	if uuid.Validate(id) != nil {
		return phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		r, err := db.scanTestResult(tx.QueryRow(ctx, `DELETE FROM test_results WHERE id = $1 RETURNING `+testResultColumns, id))
		if err != nil {
			return err
		}
		return db.appendHistory(ctx, tx, r.UserID, phr.HistoryTestResult, r.ID, phr.ChangeDelete, testResultValues(r), db.now())
	})
}
