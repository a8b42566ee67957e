package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Codes the web layer adds to phr's for HTTP-only failures.
const (
	codeUnsupportedMediaType = "unsupported_media_type"
	codeMethodNotAllowed     = "method_not_allowed"
	// The password was right; the account has two-factor authentication and no code came.
	codeMFARequired = "mfa_required"
)

// retryError is an error after which the client should wait: 429 and 503 carry Retry-After.
type retryError struct {
	err   *phr.Error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	phr.EINVALID:             http.StatusBadRequest,
	phr.ETOOLARGE:            http.StatusRequestEntityTooLarge,
	codeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	codeMethodNotAllowed:     http.StatusMethodNotAllowed,
	phr.EUNAUTHORIZED:        http.StatusUnauthorized,
	codeMFARequired:          http.StatusUnauthorized,
	codeUnprocessable:        http.StatusUnprocessableEntity,
	phr.EFORBIDDEN:           http.StatusForbidden,
	phr.ENOTFOUND:            http.StatusNotFound,
	phr.ECONFLICT:            http.StatusConflict,
	phr.ELOCKED:              http.StatusLocked,
	phr.ETOOMANY:             http.StatusTooManyRequests,
	phr.EUNAVAILABLE:         http.StatusServiceUnavailable,
	phr.EINTERNAL:            http.StatusInternalServerError,
}

// problem is an RFC 9457 problem document. Detail is the safe message of a phr.Error.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Detail    string `json:"detail"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// writeError answers with the problem document for err. Only EINTERNAL is logged, and
// then with err's text, which may name tables but never holds PHI; err never reaches the
// client.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	code := phr.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		code, status = phr.EINTERNAL, http.StatusInternalServerError
	}
	msg := phr.ErrorMessage(err)
	if code == phr.EINTERNAL {
		msg = "An internal error occurred."
		logger.ErrorContext(r.Context(), "request failed", "request_id", phr.RequestIDFromContext(r.Context()),
			"route", routeOf(r), "err", err.Error())
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vitalnexa"`)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		after := 5 * time.Second
		var re *retryError
		if errors.As(err, &re) {
			after = re.after
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
	}
	p := problem{
		Type:      "urn:vitalnexa:problem:" + code,
		Title:     http.StatusText(status),
		Status:    status,
		Code:      code,
		Detail:    msg,
		Field:     phr.ErrorField(err),
		RequestID: phr.RequestIDFromContext(r.Context()),
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readBody reads the whole body, refusing more than limit bytes with ETOOLARGE.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, phr.Errorf(phr.ETOOLARGE, "The request body is larger than %d bytes.", limit)
	}
	if n := r.ContentLength; n > 0 {
		// Grown as the bytes arrive, never past the declared length: a client that declares
		// much and sends little holds little (net/http stops the body at Content-Length).
		b, err := readAll(r.Body, n, min(n, 64<<10))
		if err != nil || int64(len(b)) != n {
			return nil, phr.Errorf(phr.EINVALID, "The request body could not be read.")
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, phr.Errorf(phr.EINVALID, "The request body could not be read.")
	}
	if int64(len(b)) > limit {
		return nil, phr.Errorf(phr.ETOOLARGE, "The request body is larger than %d bytes.", limit)
	}
	return b, nil
}

// readAll reads r to its end into a buffer that starts at first bytes and doubles, but not
// past size, the length r is expected to have: reading size bytes allocates at most about
// twice size (once when first is size), and never more than arrived. What comes past size,
// if anything, is read on as io.ReadAll would.
func readAll(r io.Reader, size, first int64) ([]byte, error) {
	buf := make([]byte, 0, max(min(first, size), 512))
	for int64(len(buf)) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(int64(cap(buf)), size-int64(len(buf)))))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), int(size))])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	rest, err := io.ReadAll(r)
	return append(buf, rest...), err
}

// decodeJSON decodes body into v strictly: unknown fields, wrong types and anything after
// the value are errors. Messages name the field, never the value.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return phr.FieldErrorf(phr.EINVALID, "/"+strings.ReplaceAll(typeErr.Field, ".", "/"), "has the wrong type")
		case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return phr.Errorf(phr.EINVALID, "The request body is not valid JSON.")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return phr.FieldErrorf(phr.EINVALID, "/"+field, "is not allowed")
		default:
			return phr.Errorf(phr.EINVALID, "The request body is not valid JSON.")
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return phr.Errorf(phr.EINVALID, "The request body holds data after the JSON value.")
	}
	return nil
}
