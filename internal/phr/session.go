package phr

import (
	"context"
	"time"
)

// Session is one login: the refresh tokens of a login belong to its session, and every
// access token names it, so ending the session ends them all.
type Session struct {
	ID         string
	UserID     string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time
}

// SessionService stores sessions and their refresh tokens (only hashes of tokens).
type SessionService interface {
	// CreateSession starts a session for the user in the context with its first refresh token.
	CreateSession(ctx context.Context, refreshTokenHash []byte, expiresAt time.Time) (*Session, error)
	// RotateRefreshToken spends a refresh token and stores its successor in the same session;
	// the successor expires with the session, so rotation never extends a login.
	// It returns EUNAUTHORIZED when the token is unknown, spent, expired or its session ended.
	// It needs no user in the context: the token names its user.
	RotateRefreshToken(ctx context.Context, oldHash, newHash []byte) (*Session, error)
	// CheckSession returns EUNAUTHORIZED unless the session of the user in the context is
	// live, and records that it was seen.
	CheckSession(ctx context.Context, sessionID string) error
	// EndSession revokes the session and its refresh tokens.
	EndSession(ctx context.Context, sessionID string) error
}
