package phr

import (
	"context"
	"time"
)

// AuditRecord is one stored row of the audit trail with its id. Like AuditEvent it holds
// no PHI by construction, so admins may read any of them.
type AuditRecord struct {
	ID int64
	AuditEvent
}

// AuditFilter selects rows of the trail for an admin's search. Zero fields select
// everything; From is inclusive and To exclusive.
type AuditFilter struct {
	UserID     string
	Action     string // exact match, e.g. "GET /api/test-results/{id}" or "EVENT account.locked"
	StatusCode int
	From, To   time.Time
	Cursor     string // next cursor of the previous page; "" for the first
	Limit      int    // 0 for the default page size
}

// AuditAlert is an alert raised by the anomaly rules over the trail. Subject names what the
// rule saw (an account id, a client address), never PHI.
type AuditAlert struct {
	ID        int64
	Rule      string
	Subject   string
	FirstSeen time.Time
	LastSeen  time.Time
	Count     int
	Detail    string
}

// AccessHistoryService reads the signed-in user's own part of the trail: every request
// made with their credentials and every security event about their account, newest first.
// It never returns another user's row. Bad cursors and limits are EINVALID.
type AccessHistoryService interface {
	FindAccessHistory(ctx context.Context, cursor string, limit int) (items []*AuditRecord, next string, err error)
}

// AuditSearchService reads the whole trail and its alerts. Only an admin with two-factor
// authentication may call it: anyone else gets EFORBIDDEN, from the database itself. Bad
// filters, cursors and limits are EINVALID.
type AuditSearchService interface {
	FindAuditRecords(ctx context.Context, f AuditFilter) (items []*AuditRecord, next string, err error)
	FindAuditAlerts(ctx context.Context, cursor string, limit int) (items []*AuditAlert, next string, err error)
}
