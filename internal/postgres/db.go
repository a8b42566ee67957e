// Package postgres implements the phr services on PostgreSQL with pgx. Every read or write
// of a user's data runs in a transaction scoped to that user with
// set_config('app.current_user_id', id, true), so row-level security decides what the
// statement sees; the server's role cannot bypass it.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/keyring"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// DB is the server's connection pool (as vitalnexa_app) with the keyring that encrypts
// and decrypts fields.
type DB struct {
	Pool *pgxpool.Pool
	Keys *keyring.Keyring
	Now  func() time.Time
	// IdleTimeout ends a session not seen for this long; 0 means phr.DefaultIdleTimeout.
	IdleTimeout time.Duration
	// FileQuota is each user's storage for documents in bytes; 0 means DefaultFileQuota.
	FileQuota int64
	// OnRevokedRead, when set, is called when a read decrypts a value under a revoked key
	// version; it should have the re-encryption job run now. It must not block.
	OnRevokedRead func()
}

// Open connects to url and checks the connection.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database URL: %w", redactURLError(err))
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	return pool, nil
}

// redactURLError drops the text of URL parse errors, which can quote the password.
func redactURLError(err error) error {
	return errors.New("invalid connection string")
}

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now()
	}
	return time.Now()
}

func (db *DB) idleTimeout() time.Duration {
	if db.IdleTimeout > 0 {
		return db.IdleTimeout
	}
	return phr.DefaultIdleTimeout
}

// withUser runs fn in a transaction that row-level security scopes to the user in ctx.
// The setting is local to the transaction, so it never leaks to the next user of the
// pooled connection.
func (db *DB) withUser(ctx context.Context, fn func(tx pgx.Tx) error) error {
	userID := phr.UserIDFromContext(ctx)
	if userID == "" {
		return phr.Errorf(phr.EUNAUTHORIZED, "Authentication is required.")
	}
	return db.asUser(ctx, userID, fn)
}

// asUser is withUser for flows that learn the user id from a token or email first.
func (db *DB) asUser(ctx context.Context, userID string, fn func(tx pgx.Tx) error) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return FormatError(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", userID); err != nil {
		return FormatError(err)
	}
	if err := fn(tx); err != nil {
		return FormatError(err)
	}
	return FormatError(tx.Commit(ctx))
}

// FormatError turns driver errors into phr errors. A *phr.Error passes through; anything
// else becomes EINTERNAL wrapped around the original (for the log, never the client).
func FormatError(err error) error {
	if err == nil {
		return nil
	}
	var pe *phr.Error
	if errors.As(err, &pe) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &wrapped{phr.Errorf(phr.EUNAVAILABLE, "The request was cancelled or timed out."), err}
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "23505": // unique_violation
			return &wrapped{phr.Errorf(phr.ECONFLICT, "It already exists."), err}
		case "22P02", "22007", "22008", "23514", "22001": // bad text representation, datetime, check, too long
			return &wrapped{phr.Errorf(phr.EINVALID, "The request holds an invalid value."), err}
		case "42501": // insufficient_privilege (includes RLS WITH CHECK failures)
			return &wrapped{phr.Errorf(phr.ENOTFOUND, "Not found."), err}
		case "57P01", "57P02", "57P03", "53300":
			return &wrapped{phr.Errorf(phr.EUNAVAILABLE, "The database is unavailable."), err}
		}
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return &wrapped{phr.Errorf(phr.EUNAVAILABLE, "The database is unavailable."), err}
	}
	return fmt.Errorf("postgres: %w", err)
}

// isInsufficientPrivilege reports whether the database refused the statement for lack of
// privilege (also how the admin functions refuse a caller who is not an admin).
func isInsufficientPrivilege(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "42501"
}

// wrapped carries a phr error for the client and the driver error for the log.
type wrapped struct {
	safe  *phr.Error
	cause error
}

func (w *wrapped) Error() string { return w.safe.Error() + ": " + w.cause.Error() }
func (w *wrapped) Unwrap() []error {
	return []error{w.safe, w.cause}
}
