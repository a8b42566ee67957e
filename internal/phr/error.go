// Package phr is VitalNexa's domain: the people, records and results the service keeps,
// the service interfaces the adapters implement, and the error codes every layer shares.
// It imports only the standard library.
package phr

import (
	"errors"
	"fmt"
)

// Error codes: one small set for the whole service. The web layer maps each to one HTTP
// status; nothing else about an error reaches a client.
const (
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	ECONFLICT     = "conflict"
	ELOCKED       = "locked"
	ETOOMANY      = "rate_limited"
	ETOOLARGE     = "too_large"
	EUNAVAILABLE  = "unavailable"
	EINTERNAL     = "internal"
)

// Error is an error whose Message is safe to show to a client: it never carries PHI, SQL,
// a token or a stack trace. Detail, when set, names the offending field (a JSON pointer or
// a parameter name), never its value.
type Error struct {
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("phr %s: %s (%s)", e.Code, e.Message, e.Field)
	}
	return fmt.Sprintf("phr %s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code. The formatted message must be safe to show.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf is Errorf for a problem with one named input field.
func FieldErrorf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Field: field}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for any other
// error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the safe message of the first *Error in err's chain, or a generic
// message for any other error: the text of an untyped error never reaches a client.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "An internal error occurred."
}

// ErrorField returns the field named by the first *Error in err's chain, if any.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
