package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Password length limits, counted in characters (runes), not bytes, so that a password in any
// script gets the same allowance.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 256
)

// PasswordPolicy decides whether a new password is acceptable (plan §4.1).
//
// The zero value is the plan's policy: at least MinPasswordLength characters with at least
// one upper-case letter, one lower-case letter, one digit and one special character (anything
// that is neither a letter nor a digit, spaces included). Classes are Unicode-aware, so
// "Пароль1!" passes; scripts without letter case (Chinese, Arabic, ...) cannot satisfy the
// upper/lower rule and need NIST mode.
//
// NIST mode (NIST SP 800-63B) checks length only.
//
// Both modes refuse more than MaxPasswordLength characters, invalid UTF-8 and NUL.
type PasswordPolicy struct {
	NIST bool
}

// Check returns nil when password satisfies the policy. Otherwise it returns a *phr.Error
// with code EINVALID, Field "password" and a message naming the first rule that failed; the
// message never contains the password.
func (p PasswordPolicy) Check(password string) error {
	// Encoding problems first: counting characters of invalid UTF-8 is meaningless.
	if !utf8.ValidString(password) {
		return passwordError("password must be valid UTF-8")
	}
	if strings.IndexByte(password, 0) >= 0 {
		// Some bcrypt implementations and C tools stop at NUL; refuse it rather than let
		// two systems disagree on what the password is.
		return passwordError("password must not contain NUL characters")
	}
	n := utf8.RuneCountInString(password)
	if n > MaxPasswordLength {
		return passwordError("password must be at most 256 characters")
	}
	if n < MinPasswordLength {
		return passwordError("password must be at least 8 characters")
	}
	if p.NIST {
		return nil
	}

	var upper, lower, digit, special bool
	for _, r := range password {
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		case !unicode.IsLetter(r):
			special = true
		}
	}
	switch {
	case !upper:
		return passwordError("password must contain an upper-case letter")
	case !lower:
		return passwordError("password must contain a lower-case letter")
	case !digit:
		return passwordError("password must contain a digit")
	case !special:
		return passwordError("password must contain a special character (not a letter or digit)")
	}
	return nil
}

func passwordError(msg string) error {
	return phr.FieldErrorf(phr.EINVALID, "password", "%s", msg)
}
