package phr

import "context"

type contextKey int

const (
	userIDKey contextKey = iota
	requestIDKey
)

// NewContextWithUserID returns a context that carries the authenticated user's id. The
// postgres adapter reads it to scope every transaction to that user (RLS).
func NewContextWithUserID(ctx context.Context, userID string) context.Context {
	return context.WithValue(ctx, userIDKey, userID)
}

// UserIDFromContext returns the authenticated user's id, or "" when the request is anonymous.
func UserIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(userIDKey).(string)
	return id
}

// NewContextWithRequestID returns a context that carries the request id.
func NewContextWithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestIDFromContext returns the request id, or "".
func RequestIDFromContext(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}
