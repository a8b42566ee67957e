package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.ImportService = (*DB)(nil)

// Import stores a batch in one transaction: all of it or, on any error, nothing. Items an
// earlier import already stored (same source and source id) are left as they are.
func (db *DB) Import(ctx context.Context, b *phr.ImportBatch) (*phr.ImportResult, error) {
	userID := phr.UserIDFromContext(ctx)
	res := &phr.ImportResult{}
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		*res = phr.ImportResult{}
		for _, r := range b.TestResults {
			created, err := db.insertTestResult(ctx, tx, userID, r)
			if err != nil {
				return err
			}
			if created {
				res.TestResultsCreated++
			} else {
				res.Unchanged++
			}
		}
		for _, r := range b.HealthRecords {
			created, err := db.insertHealthRecord(ctx, tx, userID, r)
			if err != nil {
				return err
			}
			if created {
				res.HealthRecordsCreated++
			} else {
				res.Unchanged++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
