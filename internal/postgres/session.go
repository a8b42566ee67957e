package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.SessionService = (*DB)(nil)

// SessionLifetime is the absolute lifetime of a login and of every refresh token in it.
const SessionLifetime = 7 * 24 * time.Hour

var errSession = phr.Errorf(phr.EUNAUTHORIZED, "The session has ended. Sign in again.")

// CreateSession starts a session for the user in the context.
func (db *DB) CreateSession(ctx context.Context, refreshTokenHash []byte, expiresAt time.Time) (*phr.Session, error) {
	now := db.now()
	s := &phr.Session{ID: uuid.NewString(), UserID: phr.UserIDFromContext(ctx), CreatedAt: now, LastSeenAt: now, ExpiresAt: expiresAt}
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at) VALUES ($1, $2, $3, $3, $4)`,
			s.ID, s.UserID, now, expiresAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)`,
			refreshTokenHash, s.ID, s.UserID, expiresAt, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// RotateRefreshToken spends oldHash and stores newHash in the same session.
func (db *DB) RotateRefreshToken(ctx context.Context, oldHash, newHash []byte) (*phr.Session, error) {
	userID, err := db.lookup(ctx, "auth_user_id_by_refresh_token", oldHash)
	if err != nil {
		if phr.ErrorCode(err) == phr.ENOTFOUND {
			return nil, errSession
		}
		return nil, err
	}
	s := &phr.Session{UserID: userID}
	err = db.asUser(ctx, userID, func(tx pgx.Tx) error {
		now := db.now()
		err := tx.QueryRow(ctx, `UPDATE refresh_tokens t SET used_at = $2
			FROM sessions s
			WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > $2
			  AND s.id = t.session_id AND s.revoked_at IS NULL AND s.expires_at > $2
			RETURNING s.id, s.created_at, s.expires_at`, oldHash, now).Scan(&s.ID, &s.CreatedAt, &s.ExpiresAt)
		if err == pgx.ErrNoRows {
			return errSession
		}
		if err != nil {
			return err
		}
		s.LastSeenAt = now
		if _, err := tx.Exec(ctx, `UPDATE sessions SET last_seen_at = $2 WHERE id = $1`, s.ID, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)`,
			newHash, s.ID, userID, s.ExpiresAt, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// CheckSession fails with EUNAUTHORIZED unless the session is live.
func (db *DB) CheckSession(ctx context.Context, sessionID string) error {
	if uuid.Validate(sessionID) != nil {
		return errSession
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		now := db.now()
		tag, err := tx.Exec(ctx, `UPDATE sessions SET last_seen_at = $2
			WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2`, sessionID, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errSession
		}
		return nil
	})
}

// EndSession revokes the session (and so every token of it).
func (db *DB) EndSession(ctx context.Context, sessionID string) error {
	if uuid.Validate(sessionID) != nil {
		return nil
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, sessionID, db.now())
		return err
	})
}
