package phr

import (
	"unicode"
	"unicode/utf8"
)

// CheckText returns EINVALID naming field unless s is valid UTF-8 of at most max runes
// without NUL or other control characters (tab, newline and carriage return allowed when
// multiline). The message never quotes s.
func CheckText(field, s string, max int, multiline bool) error {
	if !utf8.ValidString(s) {
		return FieldErrorf(EINVALID, field, "must be valid UTF-8")
	}
	n := 0
	for _, r := range s {
		n++
		if r == 0 {
			return FieldErrorf(EINVALID, field, "must not contain a NUL character")
		}
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			return FieldErrorf(EINVALID, field, "must not contain control characters")
		}
	}
	if n > max {
		return FieldErrorf(EINVALID, field, "must be at most %d characters", max)
	}
	return nil
}
