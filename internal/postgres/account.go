package postgres

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.AccountService = (*DB)(nil)

// FindAccount returns the security state of the user in the context.
func (db *DB) FindAccount(ctx context.Context) (*phr.Account, error) {
	a := &phr.Account{ID: phr.UserIDFromContext(ctx)}
	var locked *time.Time
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT role, email_verified_at IS NOT NULL, mfa_enabled_at IS NOT NULL,
			password_breached, locked_until, disabled_at IS NOT NULL, created_at FROM users WHERE id = $1`, a.ID).
			Scan(&a.Role, &a.EmailVerified, &a.MFAEnabled, &a.PasswordBreached, &locked, &a.Disabled, &a.CreatedAt)
	})
	if err != nil {
		return nil, err
	}
	if locked != nil {
		a.LockedUntil = *locked
	}
	return a, nil
}

// BeginLoginAttempt counts an attempt before its comparison. The row lock serialises
// parallel attempts, and the WHERE clause is re-checked after the wait, so once one of them
// sets the lock the rest find the account locked and run no comparison.
func (db *DB) BeginLoginAttempt(ctx context.Context, userID string) (phr.LoginAttempt, error) {
	var a phr.LoginAttempt
	err := db.asUser(ctx, userID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE users SET
				failed_logins = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_logins + 1 END,
				locked_until = CASE WHEN locked_until IS NULL AND failed_logins + 1 >= $3 THEN $2::timestamptz + $4::interval END
			WHERE id = $1 AND disabled_at IS NULL AND (locked_until IS NULL OR locked_until <= $2)
			RETURNING failed_logins`, userID, db.now(), phr.MaxFailedLogins, phr.LockoutDuration).Scan(&a.Failures)
		if err == pgx.ErrNoRows {
			return nil
		}
		a.Allowed = err == nil
		return err
	})
	return a, err
}

// LoginSucceeded resets the count and lifts the lock.
func (db *DB) LoginSucceeded(ctx context.Context, userID string) error {
	return db.asUser(ctx, userID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE users SET failed_logins = 0, locked_until = NULL
			WHERE id = $1 AND (failed_logins <> 0 OR locked_until IS NOT NULL)`, userID)
		return err
	})
}

// RefundLoginAttempt takes back one count, and the lock that count may have set.
func (db *DB) RefundLoginAttempt(ctx context.Context, userID string) error {
	return db.asUser(ctx, userID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE users SET failed_logins = greatest(failed_logins - 1, 0),
				locked_until = CASE WHEN failed_logins - 1 < $2 THEN NULL ELSE locked_until END
			WHERE id = $1 AND failed_logins > 0`, userID, phr.MaxFailedLogins)
		return err
	})
}

// CreateAccountToken stores a mailed token's hash.
func (db *DB) CreateAccountToken(ctx context.Context, userID, purpose string, tokenHash []byte, expiresAt time.Time) error {
	return db.asUser(ctx, userID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5)`, tokenHash, userID, purpose, expiresAt, db.now())
		return err
	})
}

var errTokenSpent = phr.Errorf(phr.ENOTFOUND, "The link is invalid or has expired.")

// SpendAccountToken marks a token used, once.
func (db *DB) SpendAccountToken(ctx context.Context, purpose string, tokenHash []byte) (string, error) {
	var id *string
	if err := db.Pool.QueryRow(ctx, "SELECT auth_user_id_by_account_token($1, $2)::text", tokenHash, purpose).Scan(&id); err != nil {
		return "", FormatError(err)
	}
	if id == nil {
		return "", errTokenSpent
	}
	err := db.asUser(ctx, *id, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE account_tokens SET used_at = $3
			WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3`, tokenHash, purpose, db.now())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errTokenSpent
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return *id, nil
}

// MarkEmailVerified records the verification once.
func (db *DB) MarkEmailVerified(ctx context.Context, userID string) error {
	return db.asUser(ctx, userID, func(tx pgx.Tx) error {
		now := db.now()
		_, err := tx.Exec(ctx, `UPDATE users SET email_verified_at = coalesce(email_verified_at, $2), updated_at = $2 WHERE id = $1`, userID, now)
		return err
	})
}

// Unlock lifts the lock.
func (db *DB) Unlock(ctx context.Context, userID string) error {
	return db.LoginSucceeded(ctx, userID)
}

// SetPassword stores the new hash and ends the other sessions in the same transaction.
func (db *DB) SetPassword(ctx context.Context, userID, passwordHash string, recheck bool, keepSessionID string) error {
	var keep *string
	if uuid.Validate(keepSessionID) == nil {
		keep = &keepSessionID
	}
	return db.asUser(ctx, userID, func(tx pgx.Tx) error {
		now := db.now()
		if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = $2, password_recheck = $3, password_breached = false,
				password_changed_at = $4, updated_at = $4, failed_logins = 0, locked_until = NULL WHERE id = $1`,
			userID, passwordHash, recheck, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, ended_reason = $3
			WHERE user_id = $1 AND revoked_at IS NULL AND ($4::uuid IS NULL OR id <> $4::uuid)`, userID, now, phr.EndedByPassword, keep); err != nil {
			return err
		}
		// A new password closes every door the old one may have opened: links in flight to
		// reset it again or to move the account to another address.
		return cancelTokens(ctx, tx, userID, now, phr.TokenPasswordReset, phr.TokenEmailChange)
	})
}

// cancelTokens spends every outstanding mailed token of the purposes for userID.
func cancelTokens(ctx context.Context, tx pgx.Tx, userID string, now time.Time, purposes ...string) error {
	_, err := tx.Exec(ctx, `UPDATE account_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL AND purpose = ANY($3)`,
		userID, now, purposes)
	return err
}

// RehashPassword replaces the stored hash.
func (db *DB) RehashPassword(ctx context.Context, userID, passwordHash string) error {
	return db.asUser(ctx, userID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1`, userID, passwordHash)
		return err
	})
}

// SetPasswordBreached records a re-check.
func (db *DB) SetPasswordBreached(ctx context.Context, userID string, breached bool) error {
	return db.asUser(ctx, userID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE users SET password_breached = $2, password_recheck = false WHERE id = $1`, userID, breached)
		return err
	})
}

// The TOTP secret is a credential: it is stored encrypted like PHI, bound to its row.
func (db *DB) sealMFASecret(userID string, secret []byte) (string, error) {
	return db.seal("users", "mfa_secret", userID, base64.RawStdEncoding.EncodeToString(secret))
}

// FindMFA returns userID's second factor.
func (db *DB) FindMFA(ctx context.Context, userID string) (*phr.MFAState, error) {
	m := &phr.MFAState{}
	var sealed *string
	err := db.asUser(ctx, userID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT mfa_secret, mfa_enabled_at IS NOT NULL, mfa_last_step FROM users WHERE id = $1`, userID).
			Scan(&sealed, &m.Enabled, &m.LastStep)
	})
	if err != nil || sealed == nil {
		return m, err
	}
	s, err := db.open("users", "mfa_secret", userID, *sealed)
	if err != nil {
		return nil, err
	}
	if m.Secret, err = base64.RawStdEncoding.DecodeString(s); err != nil {
		return nil, &wrapped{phr.Errorf(phr.EINTERNAL, "A stored value could not be read."), err}
	}
	return m, nil
}

// BeginMFAEnrolment stores a pending secret.
func (db *DB) BeginMFAEnrolment(ctx context.Context, secret []byte) error {
	userID := phr.UserIDFromContext(ctx)
	sealed, err := db.sealMFASecret(userID, secret)
	if err != nil {
		return err
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET mfa_secret = $2, mfa_last_step = 0 WHERE id = $1 AND mfa_enabled_at IS NULL`, userID, sealed)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return phr.Errorf(phr.ECONFLICT, "Two-factor authentication is already on.")
		}
		return nil
	})
}

// EnableMFA turns the pending secret on and stores fresh recovery codes.
func (db *DB) EnableMFA(ctx context.Context, step int64, recoveryHashes [][]byte) error {
	userID := phr.UserIDFromContext(ctx)
	return db.withUser(ctx, func(tx pgx.Tx) error {
		now := db.now()
		tag, err := tx.Exec(ctx, `UPDATE users SET mfa_enabled_at = $2, mfa_last_step = $3, updated_at = $2
			WHERE id = $1 AND mfa_enabled_at IS NULL AND mfa_secret IS NOT NULL AND mfa_last_step < $3`, userID, now, step)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return phr.Errorf(phr.ECONFLICT, "There is no enrolment waiting for confirmation.")
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mfa_recovery_codes WHERE user_id = $1`, userID); err != nil {
			return err
		}
		for _, h := range recoveryHashes {
			if _, err := tx.Exec(ctx, `INSERT INTO mfa_recovery_codes (code_hash, user_id, created_at) VALUES ($1, $2, $3)`, h, userID, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// UseMFAStep moves the last used step forward, only forward.
func (db *DB) UseMFAStep(ctx context.Context, userID string, step int64) (bool, error) {
	var ok bool
	err := db.asUser(ctx, userID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND mfa_last_step < $2`, userID, step)
		ok = tag.RowsAffected() == 1
		return err
	})
	return ok, err
}

// UseRecoveryCode spends a recovery code once.
func (db *DB) UseRecoveryCode(ctx context.Context, userID string, codeHash []byte) (bool, error) {
	var ok bool
	err := db.asUser(ctx, userID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE mfa_recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL`,
			userID, codeHash, db.now())
		ok = tag.RowsAffected() == 1
		return err
	})
	return ok, err
}

func tokenRowID(tokenHash []byte) string { return hex.EncodeToString(tokenHash) }

// CreateEmailChange stores the pending address, encrypted and bound to its token row.
func (db *DB) CreateEmailChange(ctx context.Context, tokenHash []byte, newEmail string, expiresAt time.Time) error {
	userID := phr.UserIDFromContext(ctx)
	sealed, err := db.seal("account_tokens", "new_email", tokenRowID(tokenHash), strings.TrimSpace(newEmail))
	if err != nil {
		return err
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO account_tokens (token_hash, user_id, purpose, new_email, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, tokenHash, userID, phr.TokenEmailChange, sealed, expiresAt, db.now())
		return err
	})
}

// ConfirmEmailChange spends the token and moves the account to the new address.
func (db *DB) ConfirmEmailChange(ctx context.Context, tokenHash []byte) (userID, oldEmail, newEmail string, err error) {
	userID, err = db.SpendAccountToken(ctx, phr.TokenEmailChange, tokenHash)
	if err != nil {
		return "", "", "", err
	}
	err = db.asUser(ctx, userID, func(tx pgx.Tx) error {
		var sealedNew, sealedOld string
		if err := tx.QueryRow(ctx, `SELECT t.new_email, u.email FROM account_tokens t JOIN users u ON u.id = t.user_id
			WHERE t.token_hash = $1`, tokenHash).Scan(&sealedNew, &sealedOld); err != nil {
			return err
		}
		var err error
		if newEmail, err = db.open("account_tokens", "new_email", tokenRowID(tokenHash), sealedNew); err != nil {
			return err
		}
		if oldEmail, err = db.open("users", "email", userID, sealedOld); err != nil {
			return err
		}
		email, err := db.seal("users", "email", userID, newEmail)
		if err != nil {
			return err
		}
		now := db.now()
		_, err = tx.Exec(ctx, `UPDATE users SET email = $2, email_index = $3, email_verified_at = $4, updated_at = $4 WHERE id = $1`,
			userID, email, db.emailIndex(newEmail), now)
		if phr.ErrorCode(FormatError(err)) == phr.ECONFLICT {
			return phr.Errorf(phr.ECONFLICT, "This address cannot be used.")
		}
		if err != nil {
			return err
		}
		// The address the account had goes to its history, now that the change has landed.
		prev := previousValues{}
		prev.set("email", oldEmail, newEmail)
		if err := db.appendHistory(ctx, tx, userID, phr.HistoryProfile, userID, phr.ChangeUpdate, prev, now); err != nil {
			return err
		}
		// Links mailed to the old address (or for another new one) must not outlive the move.
		return cancelTokens(ctx, tx, userID, now, phr.TokenPasswordReset, phr.TokenEmailChange, phr.TokenVerifyEmail)
	})
	return userID, oldEmail, newEmail, err
}
