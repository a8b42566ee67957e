package postgres

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var _ phr.SessionService = (*DB)(nil)

var errSession = phr.Errorf(phr.EUNAUTHORIZED, "The session has ended. Sign in again.")

// maxDeviceLength caps the stored user agent.
const maxDeviceLength = 200

// CreateSession starts a session for the user in the context.
func (db *DB) CreateSession(ctx context.Context, refreshTokenHash []byte, expiresAt time.Time, device string) (*phr.Session, error) {
	now := db.now()
	if len(device) > maxDeviceLength {
		device = strings.ToValidUTF8(device[:maxDeviceLength], "") // never half a character
	}
	s := &phr.Session{ID: uuid.NewString(), UserID: phr.UserIDFromContext(ctx), CreatedAt: now, LastSeenAt: now,
		ExpiresAt: expiresAt, Device: device}
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, user_agent)
			VALUES ($1, $2, $3, $3, $4, $5)`, s.ID, s.UserID, now, expiresAt, device); err != nil {
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

// RotateRefreshToken spends oldHash and stores newHash in the same session, or recognises
// a second presentation of oldHash (see phr.SessionService).
func (db *DB) RotateRefreshToken(ctx context.Context, oldHash, newHash, client []byte) (*phr.Session, error) {
	userID, err := db.lookup(ctx, "auth_user_id_by_refresh_token", oldHash)
	if err != nil {
		if phr.ErrorCode(err) == phr.ENOTFOUND {
			return nil, errSession
		}
		return nil, err
	}
	s := &phr.Session{UserID: userID}
	reused := false
	err = db.asUser(ctx, userID, func(tx pgx.Tx) error {
		now := db.now()
		var usedAt *time.Time
		var tokenExpires time.Time
		var revoked *time.Time
		var rotatedBy, successor []byte
		err := tx.QueryRow(ctx, `SELECT t.used_at, t.expires_at, t.rotated_by, t.successor_hash,
				s.id, s.created_at, s.last_seen_at, s.expires_at, s.revoked_at, s.user_agent
			FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
			WHERE t.token_hash = $1 FOR UPDATE OF t, s`, oldHash).
			Scan(&usedAt, &tokenExpires, &rotatedBy, &successor, &s.ID, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &revoked, &s.Device)
		if err != nil {
			return err
		}
		if revoked != nil || !now.Before(s.ExpiresAt) || !now.Before(tokenExpires) || now.Sub(s.LastSeenAt) > db.idleTimeout() {
			return errSession
		}
		if usedAt != nil {
			// Two tabs refreshing at once: the same client, within seconds, for the
			// successor it already got, which nobody has spent yet.
			if now.Sub(*usedAt) <= phr.RefreshReuseGrace && bytes.Equal(rotatedBy, client) && bytes.Equal(successor, newHash) {
				var successorUsed bool
				if err := tx.QueryRow(ctx, `SELECT used_at IS NOT NULL FROM refresh_tokens WHERE token_hash = $1`, successor).Scan(&successorUsed); err != nil {
					return err
				}
				if !successorUsed {
					s.LastSeenAt = now
					_, err := tx.Exec(ctx, `UPDATE sessions SET last_seen_at = $2 WHERE id = $1`, s.ID, now)
					return err
				}
			}
			// A spent token in anyone else's hands: the family is compromised.
			if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, ended_reason = $3 WHERE id = $1`, s.ID, now, phr.EndedByReuse); err != nil {
				return err
			}
			reused = true
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = $2, rotated_by = $3, successor_hash = $4 WHERE token_hash = $1`,
			oldHash, now, client, newHash); err != nil {
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
	if reused {
		return s, phr.ErrRefreshTokenReused
	}
	return s, nil
}

// CheckSession fails with EUNAUTHORIZED unless the session is live, and marks it seen.
func (db *DB) CheckSession(ctx context.Context, sessionID string) (*phr.Session, error) {
	if uuid.Validate(sessionID) != nil {
		return nil, errSession
	}
	s := &phr.Session{ID: sessionID}
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		now := db.now()
		err := tx.QueryRow(ctx, `UPDATE sessions SET last_seen_at = $2
			WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at >= $2::timestamptz - $3::interval
			RETURNING user_id, created_at, last_seen_at, expires_at, user_agent`, sessionID, now, db.idleTimeout()).
			Scan(&s.UserID, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.Device)
		if err == pgx.ErrNoRows {
			return errSession
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// FindSessions lists the live sessions of the user in the context.
func (db *DB) FindSessions(ctx context.Context) ([]*phr.Session, error) {
	var out []*phr.Session
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		now := db.now()
		rows, err := tx.Query(ctx, `SELECT id, user_id, created_at, last_seen_at, expires_at, user_agent FROM sessions
			WHERE revoked_at IS NULL AND expires_at > $1 AND last_seen_at >= $1::timestamptz - $2::interval
			ORDER BY created_at DESC, id LIMIT 500`, now, db.idleTimeout())
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*phr.Session, error) {
			s := &phr.Session{}
			return s, r.Scan(&s.ID, &s.UserID, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.Device)
		})
		return err
	})
	return out, err
}

// EndSession ends one session of the user in the context.
func (db *DB) EndSession(ctx context.Context, sessionID, reason string) error {
	if uuid.Validate(sessionID) != nil {
		return phr.Errorf(phr.ENOTFOUND, "Not found.")
	}
	return db.withUser(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $2, ended_reason = $3 WHERE id = $1 AND revoked_at IS NULL`,
			sessionID, db.now(), reason)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return phr.Errorf(phr.ENOTFOUND, "Not found.")
		}
		return nil
	})
}

// EndSessions ends every live session of the user in the context but exceptID.
func (db *DB) EndSessions(ctx context.Context, exceptID, reason string) (int, error) {
	var keep *string
	if uuid.Validate(exceptID) == nil {
		keep = &exceptID
	}
	var n int
	err := db.withUser(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = $1, ended_reason = $2
			WHERE revoked_at IS NULL AND ($3::uuid IS NULL OR id <> $3::uuid)`, db.now(), reason, keep)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}
