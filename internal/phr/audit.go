package phr

import (
	"context"
	"time"
)

// AuditEvent is one row of the audit trail (plan §6.1). It never holds PHI, a token, a
// password or an email: Action is the method and route pattern, never the raw path or query.
type AuditEvent struct {
	Timestamp      time.Time
	UserID         string // "" when anonymous
	Action         string // "GET /api/test-results/{id}"
	IPAddress      string // "" when unknown
	StatusCode     int
	ResponseTimeMS int
	ResourceID     string
	UserAgent      string
	RequestID      string
}

// AuditService writes the audit trail. WriteAuditEvent returns only once the row is durable;
// callers that hold PHI must not release it before then.
type AuditService interface {
	WriteAuditEvent(ctx context.Context, e *AuditEvent) error
}

// Mail is one outgoing email. It must carry no PHI: no name, no clinical content.
type Mail struct {
	To      string
	Subject string
	Text    string
}

// Mailer sends mail.
type Mailer interface {
	SendMail(ctx context.Context, m *Mail) error
}
