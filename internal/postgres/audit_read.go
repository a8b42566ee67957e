package postgres

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

var (
	_ phr.AccessHistoryService = (*DB)(nil)
	_ phr.AuditSearchService   = (*DB)(nil)
)

// MaxAuditActionLength bounds the action filter of an audit search.
const MaxAuditActionLength = 200

// auditCursor is the keyset position after the last row of a page of the trail. Audit rows
// hold no PHI and every reader is limited by the database (RLS or admin_require), so the
// cursor needs no secrecy: a forged one only moves the page.
type auditCursor struct {
	at time.Time
	id int64
}

func encodeAuditCursor(r *phr.AuditRecord) string {
	buf := make([]byte, 16)
	binary.BigEndian.PutUint64(buf[:8], uint64(r.Timestamp.UnixMicro()))
	binary.BigEndian.PutUint64(buf[8:], uint64(r.ID))
	return base64.RawURLEncoding.EncodeToString(buf)
}

func decodeAuditCursor(s string) (*auditCursor, error) {
	if s == "" {
		return nil, nil
	}
	buf, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(buf) != 16 {
		return nil, phr.FieldErrorf(phr.EINVALID, "cursor", "is not a cursor of this list")
	}
	return &auditCursor{at: time.UnixMicro(int64(binary.BigEndian.Uint64(buf[:8]))).UTC(),
		id: int64(binary.BigEndian.Uint64(buf[8:]))}, nil
}

func (c *auditCursor) args() (*time.Time, *int64) {
	if c == nil {
		return nil, nil
	}
	return &c.at, &c.id
}

// FindAccessHistory returns the signed-in user's own audit rows, newest first. Row-level
// security (audit_log_own) is what keeps other users' rows out; the user_id condition only
// lets the index answer.
func (db *DB) FindAccessHistory(ctx context.Context, cursor string, limit int) ([]*phr.AuditRecord, string, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	c, err := decodeAuditCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	at, id := c.args()
	var out []*phr.AuditRecord
	err = db.withUser(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, "timestamp", user_id::text, action, host(ip_address), status_code,
				0, resource_id, user_agent, ''
			FROM audit_log
			WHERE user_id = app_current_user_id()
			  AND ($1::timestamptz IS NULL OR ("timestamp", id) < ($1, $2::bigint))
			ORDER BY "timestamp" DESC, id DESC
			LIMIT $3`, at, id, limit+1)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanAuditRecord)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return auditPage(out, limit)
}

// FindAuditRecords searches the whole trail, newest first. Only an admin with MFA gets an
// answer (EFORBIDDEN otherwise); the check runs in the database, in admin_search_audit.
func (db *DB) FindAuditRecords(ctx context.Context, f phr.AuditFilter) ([]*phr.AuditRecord, string, error) {
	limit, err := pageLimit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	c, err := decodeAuditCursor(f.Cursor)
	if err != nil {
		return nil, "", err
	}
	var user, action *string
	var status *int
	var from, to *time.Time
	if f.UserID != "" {
		if uuid.Validate(f.UserID) != nil {
			return nil, "", phr.FieldErrorf(phr.EINVALID, "user_id", "must be a UUID")
		}
		user = &f.UserID
	}
	if f.Action != "" {
		if !utf8.ValidString(f.Action) || utf8.RuneCountInString(f.Action) > MaxAuditActionLength {
			return nil, "", phr.FieldErrorf(phr.EINVALID, "action", "must be at most %d characters", MaxAuditActionLength)
		}
		action = &f.Action
	}
	if f.StatusCode != 0 {
		if f.StatusCode < 100 || f.StatusCode > 599 {
			return nil, "", phr.FieldErrorf(phr.EINVALID, "status", "must be between 100 and 599")
		}
		status = &f.StatusCode
	}
	if !f.From.IsZero() {
		from = &f.From
	}
	if !f.To.IsZero() {
		to = &f.To
	}
	if from != nil && to != nil && !from.Before(*to) {
		return nil, "", phr.FieldErrorf(phr.EINVALID, "to", "must be after from")
	}
	at, id := c.args()
	var out []*phr.AuditRecord
	err = db.asAdmin(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, "timestamp", user_id::text, action, ip_address, status_code,
				response_time_ms, resource_id, user_agent, request_id
			FROM admin_search_audit($1, $2, $3, $4, $5, $6, $7, $8)`,
			user, action, status, from, to, at, id, limit+1)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanAuditRecord)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return auditPage(out, limit)
}

func scanAuditRecord(r pgx.CollectableRow) (*phr.AuditRecord, error) {
	a := &phr.AuditRecord{}
	var user, ip, resource *string
	if err := r.Scan(&a.ID, &a.Timestamp, &user, &a.Action, &ip, &a.StatusCode, &a.ResponseTimeMS,
		&resource, &a.UserAgent, &a.RequestID); err != nil {
		return nil, err
	}
	a.Timestamp = a.Timestamp.UTC()
	if user != nil {
		a.UserID = *user
	}
	if ip != nil {
		a.IPAddress = *ip
	}
	if resource != nil {
		a.ResourceID = *resource
	}
	return a, nil
}

// auditPage cuts the extra row fetched to learn whether there is a next page.
func auditPage(rows []*phr.AuditRecord, limit int) ([]*phr.AuditRecord, string, error) {
	if len(rows) <= limit {
		return rows, "", nil
	}
	rows = rows[:limit]
	return rows, encodeAuditCursor(rows[limit-1]), nil
}

// FindAuditAlerts lists the anomaly rules' alerts, newest first, through
// admin_list_alerts (migration 00006), which refuses anyone but an admin with MFA. The
// cursor is the id of the last alert of the previous page.
func (db *DB) FindAuditAlerts(ctx context.Context, cursor string, limit int) ([]*phr.AuditAlert, string, error) {
	limit, err := pageLimit(limit)
	if err != nil {
		return nil, "", err
	}
	var before *int64
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil || n <= 0 || strconv.FormatInt(n, 10) != cursor {
			return nil, "", phr.FieldErrorf(phr.EINVALID, "cursor", "is not a cursor of this list")
		}
		before = &n
	}
	var out []*phr.AuditAlert
	err = db.asAdmin(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, rule, subject, first_seen, last_seen, count, detail
			FROM admin_list_alerts($1, $2)`, before, limit+1)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*phr.AuditAlert, error) {
			a := &phr.AuditAlert{}
			var subject, detail *string
			if err := r.Scan(&a.ID, &a.Rule, &subject, &a.FirstSeen, &a.LastSeen, &a.Count, &detail); err != nil {
				return nil, err
			}
			a.FirstSeen, a.LastSeen = a.FirstSeen.UTC(), a.LastSeen.UTC()
			if subject != nil {
				a.Subject = *subject
			}
			if detail != nil {
				a.Detail = *detail
			}
			return a, nil
		})
		return err
	})
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "42883" { // undefined_function: migration 00006 not applied
		return nil, "", phr.Errorf(phr.EUNAVAILABLE, "Alerts are not available on this server.")
	}
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = strconv.FormatInt(out[limit-1].ID, 10)
	}
	return out, next, nil
}
