package phr

import (
	"context"
	"log/slog"
	"time"
)

// User is a person with an account. Email, FullName and DateOfBirth are PHI: the postgres
// adapter stores them encrypted, and LogValue shows only the id.
type User struct {
	ID            string
	Email         string
	FullName      string
	DateOfBirth   string // YYYY-MM-DD
	Role          string // "user" or "admin"
	EmailVerified bool
	CreatedAt     time.Time
}

// LogValue keeps PHI out of logs.
func (u User) LogValue() slog.Value { return slog.StringValue("user:" + u.ID) }

// Credentials is what the login flows need of an account, found by email before anyone is
// authenticated.
type Credentials struct {
	UserID          string
	PasswordHash    string
	EmailVerified   bool
	PasswordRecheck bool // the breach check is owed a remote look at this password
}

// UserService stores accounts. Methods that find an account by email or token look across
// users and so run through narrow privileged database functions; every other method acts
// only on the user in the context.
type UserService interface {
	// CreateUser stores a new, unverified account with its hashed password; recheck marks a
	// password whose breach check could not reach its remote source. It returns ECONFLICT
	// when the email is taken (callers must not reveal that to the client).
	CreateUser(ctx context.Context, u *User, passwordHash string, recheck bool) error
	// FindCredentialsByEmail returns ENOTFOUND when no account has this email.
	FindCredentialsByEmail(ctx context.Context, email string) (*Credentials, error)
	// FindEmailForUser returns userID's email address, for mail about their account.
	FindEmailForUser(ctx context.Context, userID string) (string, error)
	// EraseUser deletes the user in the context and all their data, for good, and returns
	// how many of each kind (test_results, health_records, files, sessions, change_history) went.
	EraseUser(ctx context.Context) (map[string]int64, error)
	// FindUserByID returns the user in the context (ENOTFOUND for any other id).
	FindUserByID(ctx context.Context, id string) (*User, error)
	// UpdateUser corrects the profile of the user in the context (GDPR Art. 16) and, in
	// the same transaction, appends the values it replaced to their history. A field set
	// to its current value is no change. Callers validate the values first.
	UpdateUser(ctx context.Context, upd UserUpdate) (*User, error)
}

// UserUpdate holds the profile fields a user may correct; nil means unchanged. The email
// address changes only through the confirmed email change (AccountService).
type UserUpdate struct {
	FullName    *string
	DateOfBirth *string // YYYY-MM-DD
}
