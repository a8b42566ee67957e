package phr

import (
	"context"
	"time"
)

// Lockout policy (plan §4.2): this many consecutive failed sign-ins lock an account for
// LockoutDuration. Failures are counted per account, never per address.
const (
	MaxFailedLogins = 5
	LockoutDuration = 30 * time.Minute
)

// Purposes of the single-use tokens mailed to a user. Only a hash of each is stored.
const (
	TokenVerifyEmail   = "verify_email"
	TokenPasswordReset = "password_reset"
	TokenUnlock        = "unlock"
	TokenEmailChange   = "email_change"
)

// Lifetimes of the mailed tokens: short, because a mailbox is not a safe.
var TokenTTL = map[string]time.Duration{
	TokenVerifyEmail:   24 * time.Hour,
	TokenPasswordReset: time.Hour,
	TokenUnlock:        24 * time.Hour,
	TokenEmailChange:   24 * time.Hour,
}

// Account is the security state of an account, without PHI: what sign-in, the session
// check and the admin console need.
type Account struct {
	ID               string
	Role             string // "user" or "admin"
	EmailVerified    bool
	MFAEnabled       bool
	PasswordBreached bool // found in a breach after it was set: the user should change it
	LockedUntil      time.Time
	Disabled         bool
	CreatedAt        time.Time
	LiveSessions     int // admin listings only
}

// LoginAttempt is the outcome of reserving a password comparison for an account.
type LoginAttempt struct {
	// Allowed is false while the account is locked or disabled: no comparison may run.
	Allowed bool
	// Failures counts this attempt; when it reaches MaxFailedLogins the account is locked
	// from this moment, and a success of this very attempt lifts the lock again.
	Failures int
}

// MFAState is what sign-in needs to check a second factor.
type MFAState struct {
	Enabled  bool
	Secret   []byte // the TOTP secret; pending enrolment when !Enabled
	LastStep int64  // the last TOTP time step accepted
}

// AccountService keeps the security state of accounts: lockout, mailed tokens, passwords,
// second factors. Methods named ...ForUser act on the given user id before anyone is
// authenticated (the id comes from a blind-index lookup or a token); all others act on the
// user in the context.
type AccountService interface {
	// FindAccount returns the state of the user in the context.
	FindAccount(ctx context.Context) (*Account, error)

	// BeginLoginAttempt atomically counts one attempt for userID before its password is
	// compared, so that parallel guesses cannot run more than MaxFailedLogins comparisons
	// before the lock holds. A locked or disabled account is not counted (attempts never
	// extend a lock) and is reported as not allowed.
	BeginLoginAttempt(ctx context.Context, userID string) (LoginAttempt, error)
	// LoginSucceeded resets the failure count and lifts any lock.
	LoginSucceeded(ctx context.Context, userID string) error
	// RefundLoginAttempt takes back the count of an attempt whose password was right but
	// that asked for a second factor it did not carry.
	RefundLoginAttempt(ctx context.Context, userID string) error

	// CreateAccountToken stores the hash of a mailed token for userID.
	CreateAccountToken(ctx context.Context, userID, purpose string, tokenHash []byte, expiresAt time.Time) error
	// SpendAccountToken marks the token used and returns its user: ENOTFOUND when it is
	// unknown, of another purpose, already used or expired.
	SpendAccountToken(ctx context.Context, purpose string, tokenHash []byte) (userID string, err error)
	// CreateEmailChange stores a pending change of the context user's email to newEmail,
	// confirmed by the mailed token.
	CreateEmailChange(ctx context.Context, tokenHash []byte, newEmail string, expiresAt time.Time) error
	// ConfirmEmailChange spends an email-change token and makes its new address the user's
	// (verified). ENOTFOUND for an unknown, spent or expired token; ECONFLICT when another
	// account has taken the address meanwhile.
	ConfirmEmailChange(ctx context.Context, tokenHash []byte) (userID, oldEmail, newEmail string, err error)
	// MarkEmailVerified records that userID controls their email address.
	MarkEmailVerified(ctx context.Context, userID string) error
	// Unlock lifts userID's lock and resets the failure count.
	Unlock(ctx context.Context, userID string) error

	// SetPassword stores a new password hash for userID and ends every session of theirs
	// except keepSessionID ("": all), with every refresh token. recheck marks a password
	// whose breach check could not reach its remote source.
	SetPassword(ctx context.Context, userID, passwordHash string, recheck bool, keepSessionID string) error
	// RehashPassword replaces the stored hash of a verified password (newer pepper or cost).
	RehashPassword(ctx context.Context, userID, passwordHash string) error
	// SetPasswordBreached records the outcome of a re-check of userID's password.
	SetPasswordBreached(ctx context.Context, userID string, breached bool) error

	// FindMFA returns userID's second-factor state.
	FindMFA(ctx context.Context, userID string) (*MFAState, error)
	// BeginMFAEnrolment stores a new, not yet enabled TOTP secret for the user in the
	// context; ECONFLICT when MFA is already enabled.
	BeginMFAEnrolment(ctx context.Context, secret []byte) error
	// EnableMFA turns on the pending secret, having seen a code of time step step, and
	// replaces the recovery codes with recoveryHashes.
	EnableMFA(ctx context.Context, step int64, recoveryHashes [][]byte) error
	// UseMFAStep records step as used for userID; false when it (or a later one) was already used.
	UseMFAStep(ctx context.Context, userID string, step int64) (bool, error)
	// UseRecoveryCode spends one of userID's recovery codes; false when it is unknown or spent.
	UseRecoveryCode(ctx context.Context, userID string, codeHash []byte) (bool, error)
}

// AdminService is what admins may do across users. It never reads or returns PHI; the
// database itself refuses callers that are not admins with MFA enabled (EFORBIDDEN).
type AdminService interface {
	// FindAccounts lists accounts by id, after the given id ("" from the start).
	FindAccounts(ctx context.Context, after string, limit int) ([]*Account, error)
	// EndUserSessions ends every session of userID; ENOTFOUND for an unknown user.
	EndUserSessions(ctx context.Context, userID string) (int, error)
	// SetUserLock locks userID until the given time, or unlocks with the zero time.
	SetUserLock(ctx context.Context, userID string, until time.Time) error
	// SetUserDisabled disables (ending every session) or re-enables userID.
	SetUserDisabled(ctx context.Context, userID string, disabled bool) error
}

// RateLimiter counts hits in fixed windows shared by every server process.
type RateLimiter interface {
	// Allow counts one hit for key and reports whether it is within limit per window;
	// when not, retryAfter says when the window ends. key is hashed before it is stored.
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
	// Reset forgets the count of key.
	Reset(ctx context.Context, key string) error
}
