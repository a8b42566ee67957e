package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.AdminService = (*DB)(nil)

// The admin functions run in the database as vitalnexa_auth and refuse any caller that is
// not an admin with MFA (insufficient_privilege); that refusal is EFORBIDDEN here.
func (db *DB) asAdmin(ctx context.Context, fn func(tx pgx.Tx) error) error {
	err := db.withUser(ctx, fn)
	if phr.ErrorCode(err) == phr.ENOTFOUND && isInsufficientPrivilege(err) {
		return phr.Errorf(phr.EFORBIDDEN, "Admin endpoints need an admin account with two-factor authentication.")
	}
	return err
}

var errNoUser = phr.Errorf(phr.ENOTFOUND, "Not found.")

// FindAccounts lists accounts without PHI.
func (db *DB) FindAccounts(ctx context.Context, after string, limit int) ([]*phr.Account, error) {
	var afterID *string
	if after != "" {
		if uuid.Validate(after) != nil {
			return nil, phr.FieldErrorf(phr.EINVALID, "cursor", "is not a valid cursor")
		}
		afterID = &after
	}
	var out []*phr.Account
	err := db.asAdmin(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, role, created_at, email_verified, locked_until, disabled, mfa_enabled, live_sessions
			FROM admin_list_users($1, $2)`, afterID, limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*phr.Account, error) {
			a := &phr.Account{}
			var locked *time.Time
			err := r.Scan(&a.ID, &a.Role, &a.CreatedAt, &a.EmailVerified, &locked, &a.Disabled, &a.MFAEnabled, &a.LiveSessions)
			if locked != nil && locked.After(db.now()) {
				a.LockedUntil = *locked
			}
			return a, err
		})
		return err
	})
	return out, err
}

// EndUserSessions ends every session of userID.
func (db *DB) EndUserSessions(ctx context.Context, userID string) (int, error) {
	if uuid.Validate(userID) != nil {
		return 0, errNoUser
	}
	var n int
	err := db.asAdmin(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT admin_end_sessions($1, $2)`, userID, phr.EndedByAdmin).Scan(&n)
	})
	if err == nil && n < 0 {
		return 0, errNoUser
	}
	return n, err
}

// SetUserLock locks or unlocks userID.
func (db *DB) SetUserLock(ctx context.Context, userID string, until time.Time) error {
	if uuid.Validate(userID) != nil {
		return errNoUser
	}
	var t *time.Time
	if !until.IsZero() {
		t = &until
	}
	return db.asAdmin(ctx, func(tx pgx.Tx) error {
		var found bool
		if err := tx.QueryRow(ctx, `SELECT admin_set_lock($1, $2)`, userID, t).Scan(&found); err != nil {
			return err
		}
		if !found {
			return errNoUser
		}
		return nil
	})
}

// SetUserDisabled disables or re-enables userID.
func (db *DB) SetUserDisabled(ctx context.Context, userID string, disabled bool) error {
	if uuid.Validate(userID) != nil {
		return errNoUser
	}
	return db.asAdmin(ctx, func(tx pgx.Tx) error {
		var found bool
		if err := tx.QueryRow(ctx, `SELECT admin_set_disabled($1, $2)`, userID, disabled).Scan(&found); err != nil {
			return err
		}
		if !found {
			return errNoUser
		}
		return nil
	})
}
