package auth

import (
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

func TestPasswordPolicyCheck(t *testing.T) {
	t.Parallel()
	const (
		ok            = ""
		msgUTF8       = "password must be valid UTF-8"
		msgNUL        = "password must not contain NUL characters"
		msgLong       = "password must be at most 256 characters"
		msgShort      = "password must be at least 8 characters"
		msgUpper      = "password must contain an upper-case letter"
		msgLower      = "password must contain a lower-case letter"
		msgDigit      = "password must contain a digit"
		msgSpecial    = "password must contain a special character (not a letter or digit)"
		complex8      = "Abcdef1!"
		cyrillic      = "Пароль1!"
		passphrase    = "correct horse battery"
		threeByteRune = "密"
	)
	// 256 runes of 3 bytes each: over 72 bytes many times, still within the rune limit.
	long256 := "Aa1!" + strings.Repeat(threeByteRune, 252)
	long257 := long256 + "x"

	tests := []struct {
		name     string
		nist     bool
		password string
		want     string // expected message, "" for accepted
	}{
		{"default: all classes, 8 chars", false, complex8, ok},
		{"default: Cyrillic upper and lower count", false, cyrillic, ok},
		{"default: Greek", false, "Κωδικός9#", ok},
		{"default: space is a special character", false, "Abcdefg1 ", ok},
		{"default: non-ASCII digit counts", false, "Abcdefg٣!", ok},
		{"default: 256 runes", false, long256, ok},
		{"default: missing upper", false, "abcdef1!", msgUpper},
		{"default: missing lower", false, "ABCDEF1!", msgLower},
		{"default: missing digit", false, "Abcdefg!", msgDigit},
		{"default: missing special", false, "Abcdefg1", msgSpecial},
		{"default: caseless script cannot meet upper/lower", false, "密码很安全的1!", msgUpper},
		{"default: 7 chars", false, "Abcde1!", msgShort},
		{"default: empty", false, "", msgShort},
		// Counting bytes would let a 7-character password of 10 bytes pass: length is in runes.
		{"default: 7 runes but 10 bytes", false, "Пар1!aA", msgShort},
		// Unbounded input would let a client make the server HMAC megabytes per request.
		{"default: 257 runes", false, long257, msgLong},
		// NUL truncates the password in C-based bcrypt implementations and tools.
		{"default: NUL inside", false, "Abcd\x00ef1!", msgNUL},
		// Invalid UTF-8 has no single meaning as text; two systems could read it differently.
		{"default: invalid UTF-8", false, "Abcdef1!\xff", msgUTF8},
		{"default: overlong encoding of NUL", false, "Abcdef1!\xc0\x80", msgUTF8},
		{"nist: passphrase without classes", true, passphrase, ok},
		{"nist: 8 lower-case", true, "abcdefgh", ok},
		{"nist: caseless script", true, "密码很安全的密码", ok},
		{"nist: 256 runes", true, long256, ok},
		{"nist: 7 chars", true, "abcdefg", msgShort},
		{"nist: 257 runes", true, long257, msgLong},
		{"nist: NUL inside", true, "abcd\x00efgh", msgNUL},
		{"nist: invalid UTF-8", true, "abcdefgh\xfe", msgUTF8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := PasswordPolicy{NIST: tt.nist}.Check(tt.password)
			if tt.want == ok {
				if err != nil {
					t.Fatalf("Check() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check() = nil, want %q", tt.want)
			}
			if got, want := phr.ErrorCode(err), phr.EINVALID; got != want {
				t.Fatalf("code = %q, want %q", got, want)
			}
			if got, want := phr.ErrorField(err), "password"; got != want {
				t.Fatalf("field = %q, want %q", got, want)
			}
			if got, want := phr.ErrorMessage(err), tt.want; got != want {
				t.Fatalf("message = %q, want %q", got, want)
			}
			if tt.password != "" && strings.Contains(err.Error(), tt.password) {
				t.Fatalf("error %q contains the password", err)
			}
		})
	}
}

func TestPasswordPolicyDefaultIsPlanPolicy(t *testing.T) {
	t.Parallel()
	// The zero value must be the strict policy: forgetting to configure must not weaken it.
	if err := (PasswordPolicy{}).Check("correct horse battery"); err == nil {
		t.Fatalf("zero PasswordPolicy accepted a password without upper case and digits")
	}
}
