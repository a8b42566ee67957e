package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
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
	b := &pgx.Batch{}
	QueueAuditInsert(b, e)
	return FormatError(a.Pool.SendBatch(ctx, b).Close())
}

// QueueAuditInsert adds the insert of e's row to b. The database sets the row's place in
// the hash chain.
func QueueAuditInsert(b *pgx.Batch, e *phr.AuditEvent) {
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
	b.Queue(`INSERT INTO audit_log ("timestamp", user_id, action, ip_address, status_code, response_time_ms, resource_id, user_agent, request_id, seq, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, '\x', '\x')`,
		e.Timestamp.UTC(), userID, e.Action, ip, e.StatusCode, e.ResponseTimeMS, resource, e.UserAgent, e.RequestID)
}
