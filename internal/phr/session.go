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
	Device     string // the user agent that signed in, capped; no address is kept
}

// Why a session ended.
const (
	EndedByLogout       = "logout"
	EndedByUser         = "user"
	EndedByReuse        = "refresh_token_reuse"
	EndedByPassword     = "password_changed"
	EndedByAdmin        = "admin"
	EndedByDisabling    = "disabled"
	DefaultIdleTimeout  = 15 * time.Minute
	SessionLifetime     = 7 * 24 * time.Hour
	RefreshReuseGrace   = 10 * time.Second
	RecentLoginInterval = 15 * time.Minute
)

// ErrRefreshTokenReused is returned when a refresh token that was already spent is
// presented again by another client or after the grace period: the session has been
// ended. Clients see the same answer as for any ended session; the server reports it as a
// security event.
var ErrRefreshTokenReused = &Error{Code: EUNAUTHORIZED, Message: "The session has ended. Sign in again."}

// SessionService stores sessions and their refresh tokens (only hashes of tokens).
type SessionService interface {
	// CreateSession starts a session for the user in the context with its first refresh
	// token; the session and every token of it end at expiresAt at the latest.
	CreateSession(ctx context.Context, refreshTokenHash []byte, expiresAt time.Time, device string) (*Session, error)
	// RotateRefreshToken spends a refresh token and stores its successor newHash in the same
	// session; the successor expires with the session, so rotation never extends a login.
	// client identifies the presenting client (a hash of its address and user agent). The
	// same client presenting the same spent token again within RefreshReuseGrace, while its
	// successor is unspent, gets the session back and must be handed that same successor
	// (newHash then equals the stored successor; callers derive successors deterministically).
	// Any other reuse of a spent token ends the session and returns ErrRefreshTokenReused.
	// It returns EUNAUTHORIZED when the token is unknown or expired or its session ended or
	// idled out. It needs no user in the context: the token names its user.
	RotateRefreshToken(ctx context.Context, oldHash, newHash, client []byte) (*Session, error)
	// CheckSession returns EUNAUTHORIZED unless the session of the user in the context is
	// live (not ended, not expired, seen within the idle timeout), and records that it was seen.
	CheckSession(ctx context.Context, sessionID string) (*Session, error)
	// FindSessions lists the live sessions of the user in the context, newest first.
	FindSessions(ctx context.Context) ([]*Session, error)
	// EndSession ends one session of the user in the context and its refresh tokens;
	// ENOTFOUND when it is not theirs or already ended.
	EndSession(ctx context.Context, sessionID, reason string) error
	// EndSessions ends every live session of the user in the context except exceptID.
	EndSessions(ctx context.Context, exceptID, reason string) (int, error)
}
