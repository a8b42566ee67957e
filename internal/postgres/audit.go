package postgres

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// AuditStore writes audit rows. It uses its own pool so that a flood of requests waiting
// for user transactions cannot starve the audit trail.
type AuditStore struct {
	Pool *pgxpool.Pool
}

var _ phr.AuditService = (*AuditStore)(nil)

// WriteAuditEvent inserts one row and returns once it is committed.
func (a *AuditStore) WriteAuditEvent(ctx context.Context, e *phr.AuditEvent) error {
	var userID, ip, resource *string
	if e.UserID != "" {
		userID = &e.UserID
	}
	if e.IPAddress != "" {
		ip = &e.IPAddress
	}
	if e.ResourceID != "" {
		resource = &e.ResourceID
	}
	_, err := a.Pool.Exec(ctx, `INSERT INTO audit_log ("timestamp", user_id, action, ip_address, status_code, response_time_ms, resource_id, user_agent, request_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		e.Timestamp.UTC(), userID, e.Action, ip, e.StatusCode, e.ResponseTimeMS, resource, e.UserAgent, e.RequestID)
	return FormatError(err)
}
