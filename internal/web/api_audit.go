package web

import (
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Reading the trail. Admins search all of it (phr.AuditSearchService, which the database
// refuses to anyone but an admin with MFA); every user reads their own access history
// (phr.AccessHistoryService, which row-level security limits to their rows). Audit rows
// hold no PHI by construction. Each of these requests is itself audited by its own row.

type auditRecordView struct {
	ID             int64     `json:"id"`
	Timestamp      time.Time `json:"timestamp"`
	UserID         *string   `json:"user_id"`
	Action         string    `json:"action"`
	IPAddress      *string   `json:"ip_address"`
	StatusCode     *int      `json:"status_code"`
	ResponseTimeMS int       `json:"response_time_ms"`
	ResourceID     *string   `json:"resource_id"`
	UserAgent      string    `json:"user_agent"`
	RequestID      string    `json:"request_id"`
}

type accessHistoryView struct {
	Timestamp  time.Time `json:"timestamp"`
	Action     string    `json:"action"`
	IPAddress  *string   `json:"ip_address"`
	UserAgent  string    `json:"user_agent"`
	StatusCode *int      `json:"status_code"`
	ResourceID *string   `json:"resource_id"`
}

type auditAlertView struct {
	ID        int64     `json:"id"`
	Rule      string    `json:"rule"`
	Subject   string    `json:"subject"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Count     int       `json:"count"`
	Detail    string    `json:"detail"`
}

func toAccessHistoryView(a *phr.AuditRecord) accessHistoryView {
	return accessHistoryView{Timestamp: a.Timestamp.UTC(), Action: a.Action, IPAddress: orNull(a.IPAddress),
		UserAgent: a.UserAgent, StatusCode: auditStatus(a), ResourceID: orNull(a.ResourceID)}
}

// auditStatus is the HTTP status of a request's row and null for an event's ("EVENT …"), which
// answered nothing.
func auditStatus(a *phr.AuditRecord) *int {
	if a.StatusCode == 0 {
		return nil
	}
	return &a.StatusCode
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// accessHistory and auditSearch are the services, or, when Options leaves them nil, the
// user and admin services when those implement them (postgres.DB does).
func (s *Server) accessHistory() (phr.AccessHistoryService, error) {
	if s.opts.AccessHistory != nil {
		return s.opts.AccessHistory, nil
	}
	if h, ok := s.opts.Users.(phr.AccessHistoryService); ok {
		return h, nil
	}
	return nil, phr.Errorf(phr.EUNAVAILABLE, "The access history is not available on this server.")
}

func (s *Server) auditSearch() (phr.AuditSearchService, error) {
	if s.opts.AuditSearch != nil {
		return s.opts.AuditSearch, nil
	}
	if a, ok := s.opts.Admin.(phr.AuditSearchService); ok {
		return a, nil
	}
	return nil, phr.Errorf(phr.EUNAVAILABLE, "The audit trail is not searchable on this server.")
}

// auditFilterQuery reads the search parameters; every bad one is EINVALID naming it.
func auditFilterQuery(r *http.Request) (phr.AuditFilter, error) {
	limit, cursor, err := pageQuery(r)
	if err != nil {
		return phr.AuditFilter{}, err
	}
	q := r.URL.Query()
	f := phr.AuditFilter{UserID: q.Get("user_id"), Action: q.Get("action"), Cursor: cursor, Limit: limit}
	if f.UserID != "" && uuid.Validate(f.UserID) != nil {
		return f, phr.FieldErrorf(phr.EINVALID, "user_id", "must be a UUID")
	}
	if utf8.RuneCountInString(f.Action) > 200 {
		return f, phr.FieldErrorf(phr.EINVALID, "action", "must be at most 200 characters")
	}
	if v := q.Get("status"); v != "" {
		if f.StatusCode, err = strconv.Atoi(v); err != nil || f.StatusCode < 100 || f.StatusCode > 599 {
			return f, phr.FieldErrorf(phr.EINVALID, "status", "must be an integer between 100 and 599")
		}
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, phr.FieldErrorf(phr.EINVALID, p.name, "must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z")
			}
			*p.to = t
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, phr.FieldErrorf(phr.EINVALID, "to", "must be after from")
	}
	return f, nil
}

func (s *Server) handleAdminAuditSearch() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := auditFilterQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		// The request's own audit row names whose trail was searched.
		if f.UserID != "" {
			infoFrom(r.Context()).resourceID = cleanResourceID(f.UserID)
		}
		svc, err := s.auditSearch()
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		list, next, err := svc.FindAuditRecords(r.Context(), f)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[auditRecordView]{Items: make([]auditRecordView, 0, len(list)), NextCursor: next}
		for _, a := range list {
			out.Items = append(out.Items, auditRecordView{ID: a.ID, Timestamp: a.Timestamp.UTC(), UserID: orNull(a.UserID),
				Action: a.Action, IPAddress: orNull(a.IPAddress), StatusCode: auditStatus(a), ResponseTimeMS: a.ResponseTimeMS,
				ResourceID: orNull(a.ResourceID), UserAgent: a.UserAgent, RequestID: a.RequestID})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *Server) handleAdminAlertList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		svc, err := s.auditSearch()
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		list, next, err := svc.FindAuditAlerts(r.Context(), cursor, limit)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[auditAlertView]{Items: make([]auditAlertView, 0, len(list)), NextCursor: next}
		for _, a := range list {
			out.Items = append(out.Items, auditAlertView{ID: a.ID, Rule: a.Rule, Subject: a.Subject,
				FirstSeen: a.FirstSeen.UTC(), LastSeen: a.LastSeen.UTC(), Count: a.Count, Detail: a.Detail})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *Server) handleAccessHistory() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		svc, err := s.accessHistory()
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		list, next, err := svc.FindAccessHistory(r.Context(), cursor, limit)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[accessHistoryView]{Items: make([]accessHistoryView, 0, len(list)), NextCursor: next}
		for _, a := range list {
			out.Items = append(out.Items, toAccessHistoryView(a))
		}
		writeJSON(w, http.StatusOK, out)
	})
}
