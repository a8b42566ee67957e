package postgres

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.ImportService = (*DB)(nil)

// importOutcome is what storing one imported item did.
type importOutcome int

const (
	importCreated importOutcome = iota
	importUpdated
	importUnchanged
)

// Import stores a batch in one transaction: all of it or, on any error, nothing. Items an
// earlier import stored (same source and source id) are updated when their content has
// changed at the source, and left alone otherwise.
func (db *DB) Import(ctx context.Context, b *phr.ImportBatch) (*phr.ImportResult, error) {
	userID := phr.UserIDFromContext(ctx)
	res := &phr.ImportResult{}
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		*res = phr.ImportResult{}
		count := func(o importOutcome, created *int) {
			switch o {
			case importCreated:
				*created++
			case importUpdated:
				res.Updated++
			default:
				res.Unchanged++
			}
		}
		for _, r := range b.TestResults {
			o, err := db.insertTestResult(ctx, tx, userID, r)
			if err != nil {
				return err
			}
			count(o, &res.TestResultsCreated)
		}
		for _, r := range b.HealthRecords {
			o, err := db.insertHealthRecord(ctx, tx, userID, r)
			if err != nil {
				return err
			}
			count(o, &res.HealthRecordsCreated)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// sourceDigest is a keyed hash of an imported item's content (v, marshalled), for telling
// whether the source changed it since the last import.
func (db *DB) sourceDigest(userID string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return db.Keys.BlindIndex("import_digest", append([]byte(userID+"\x00"), b...)), nil
}

// storedImport finds the row an earlier import stored under sourceKey: its id and digest.
func storedImport(ctx context.Context, tx pgx.Tx, table string, userID string, sourceKey []byte) (id string, digest []byte, err error) {
	// table is one of two constants, never input.
	err = tx.QueryRow(ctx, `SELECT id, source_digest FROM `+table+` WHERE user_id = $1 AND source_key = $2`, userID, sourceKey).Scan(&id, &digest)
	return id, digest, err
}

func changed(stored, digest []byte) bool { return !bytes.Equal(stored, digest) }
