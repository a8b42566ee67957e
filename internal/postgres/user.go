package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.UserService = (*DB)(nil)

func (db *DB) seal(table, column, rowID, plaintext string) (string, error) {
	v, err := db.Keys.EncryptString(plaintext, keyring.Field{Table: table, Column: column, RowID: rowID})
	if err != nil {
		return "", fmt.Errorf("encrypt %s.%s: %w", table, column, err)
	}
	return v, nil
}

func (db *DB) open(table, column, rowID, value string) (string, error) {
	s, err := db.Keys.DecryptString(value, keyring.Field{Table: table, Column: column, RowID: rowID})
	if err != nil {
		// The cause names table and column only; the client sees a generic message.
		return "", &wrapped{phr.Errorf(phr.EINTERNAL, "A stored value could not be read."),
			fmt.Errorf("decrypt %s.%s of %s: %w", table, column, rowID, err)}
	}
	if db.OnRevokedRead != nil && db.Keys.IsRevoked(value) {
		// The read succeeds; the value is moved off the revoked key right away.
		db.OnRevokedRead()
	}
	return s, nil
}

// sealer collects the encryptions of one row, so callers check one error.
type sealer struct {
	db    *DB
	table string
	rowID string
	err   error
}

func (s *sealer) seal(column, plaintext string) string {
	if s.err != nil {
		return ""
	}
	v, err := s.db.seal(s.table, column, s.rowID, plaintext)
	s.err = err
	return v
}

func (s *sealer) open(column, value string) string {
	if s.err != nil {
		return ""
	}
	v, err := s.db.open(s.table, column, s.rowID, value)
	s.err = err
	return v
}

func (db *DB) emailIndex(email string) []byte {
	return db.Keys.BlindIndex("email", []byte(keyring.NormalizeEmail(email)))
}

// CreateUser stores a new unverified account; ECONFLICT when the email is taken.
func (db *DB) CreateUser(ctx context.Context, u *phr.User, passwordHash string, recheck bool) error {
	u.ID = uuid.NewString()
	u.CreatedAt = db.now()
	u.Role = "user"
	s := sealer{db: db, table: "users", rowID: u.ID}
	email := s.seal("email", strings.TrimSpace(u.Email))
	name := s.seal("full_name", u.FullName)
	dob := s.seal("date_of_birth", u.DateOfBirth)
	if s.err != nil {
		return s.err
	}
	return db.asUser(ctx, u.ID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO users (id, email_index, email, full_name, date_of_birth, password_hash, password_recheck, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (email_index) DO NOTHING`,
			u.ID, db.emailIndex(u.Email), email, name, dob, passwordHash, recheck, u.CreatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return phr.Errorf(phr.ECONFLICT, "An account with this email exists.")
		}
		return nil
	})
}

// lookup runs one of the privileged auth_user_id_by_* functions; ENOTFOUND when it finds nobody.
func (db *DB) lookup(ctx context.Context, fn string, key []byte) (string, error) {
	var id *string
	// fn is one of a fixed set of names chosen below, never input.
	if err := db.Pool.QueryRow(ctx, "SELECT "+fn+"($1)::text", key).Scan(&id); err != nil {
		return "", FormatError(err)
	}
	if id == nil {
		return "", phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	return *id, nil
}

// FindCredentialsByEmail finds an account through the email's blind index.
func (db *DB) FindCredentialsByEmail(ctx context.Context, email string) (*phr.Credentials, error) {
	id, err := db.lookup(ctx, "auth_user_id_by_email_index", db.emailIndex(email))
	if err != nil {
		return nil, err
	}
	c := &phr.Credentials{UserID: id}
	err = db.asUser(ctx, id, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT password_hash, email_verified_at IS NOT NULL, password_recheck FROM users WHERE id = $1`, id).
			Scan(&c.PasswordHash, &c.EmailVerified, &c.PasswordRecheck)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// FindEmailForUser decrypts userID's email address.
func (db *DB) FindEmailForUser(ctx context.Context, userID string) (string, error) {
	var email string
	err := db.asUser(ctx, userID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, userID).Scan(&email)
	})
	if err != nil {
		return "", err
	}
	return db.open("users", "email", userID, email)
}

// FindUserByID returns the user in the context; ENOTFOUND for anyone else.
func (db *DB) FindUserByID(ctx context.Context, id string) (*phr.User, error) {
	if uuid.Validate(id) != nil {
		return nil, phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	u := &phr.User{ID: id}
	var email, name, dob string
	var verified *time.Time
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT email, full_name, date_of_birth, role, email_verified_at, created_at FROM users WHERE id = $1`, id).
			Scan(&email, &name, &dob, &u.Role, &verified, &u.CreatedAt)
	})
	if err != nil {
		return nil, err
	}
	s := sealer{db: db, table: "users", rowID: id}
	u.Email, u.FullName, u.DateOfBirth = s.open("email", email), s.open("full_name", name), s.open("date_of_birth", dob)
	u.EmailVerified = verified != nil
	return u, s.err
}

// UpdateUser corrects the name and date of birth of the user in the context and appends
// the values it replaced to their history, in one transaction.
func (db *DB) UpdateUser(ctx context.Context, upd phr.UserUpdate) (*phr.User, error) {
	userID := phr.UserIDFromContext(ctx)
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		var name, dob string
		if err := tx.QueryRow(ctx, `SELECT full_name, date_of_birth FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&name, &dob); err != nil {
			return err
		}
		s := sealer{db: db, table: "users", rowID: userID}
		oldName, oldDOB := s.open("full_name", name), s.open("date_of_birth", dob)
		if s.err != nil {
			return s.err
		}
		prev := previousValues{}
		if upd.FullName != nil {
			prev.set("full_name", oldName, *upd.FullName)
		}
		if upd.DateOfBirth != nil {
			prev.set("date_of_birth", oldDOB, *upd.DateOfBirth)
		}
		if len(prev) == 0 {
			return nil
		}
		if _, ok := prev["full_name"]; ok {
			name = s.seal("full_name", *upd.FullName)
		}
		if _, ok := prev["date_of_birth"]; ok {
			dob = s.seal("date_of_birth", *upd.DateOfBirth)
		}
		if s.err != nil {
			return s.err
		}
		now := db.now()
		if _, err := tx.Exec(ctx, `UPDATE users SET full_name = $2, date_of_birth = $3, updated_at = $4 WHERE id = $1`,
			userID, name, dob, now); err != nil {
			return err
		}
		return db.appendHistory(ctx, tx, userID, phr.HistoryProfile, userID, phr.ChangeUpdate, prev, now)
	})
	if err != nil {
		return nil, err
	}
	return db.FindUserByID(ctx, userID)
}

// SetRoleByEmail gives the account with this email the role ("user" or "admin"). It is for
// operators (`vitalnexa users create-admin`), never reachable through the API; ENOTFOUND
// when no account has the email.
func (db *DB) SetRoleByEmail(ctx context.Context, email, role string) (userID string, err error) {
	if role != "user" && role != "admin" {
		return "", phr.Errorf(phr.EINVALID, "The role must be user or admin.")
	}
	id, err := db.lookup(ctx, "auth_user_id_by_email_index", db.emailIndex(email))
	if err != nil {
		return "", err
	}
	return id, db.asUser(ctx, id, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE users SET role = $2, updated_at = $3 WHERE id = $1`, id, role, db.now())
		return err
	})
}

// EraseUser deletes the user in the context and, through the foreign keys, everything the
// service holds about them: records, results, files, the history of their changes,
// sessions, tokens, second factors. The audit trail keeps its rows (required by law),
// which now name an id that leads nowhere. It returns how many of each kind were erased.
func (db *DB) EraseUser(ctx context.Context) (map[string]int64, error) {
	userID := phr.UserIDFromContext(ctx)
	counts := map[string]int64{}
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		for _, table := range []string{"test_results", "health_records", "files", "sessions", "change_history", "privacy_choices"} {
			var n int64
			// table is one of the constants above, never input.
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
				return err
			}
			counts[table] = n
		}
		tag, err := tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, userID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return phr.Errorf(phr.ENOTFOUND, "Not found.")
		}
		return nil
	})
	return counts, err
}
