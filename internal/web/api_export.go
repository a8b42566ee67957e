package web

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// handleExport is the right of access and portability (GDPR Art. 15 and 20, CCPA right to
// know): everything the service holds about the signed-in user, decrypted, as one JSON
// document. It is written section by section, page by page, as it is read.
func (s *Server) handleExport() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		userID := phr.UserIDFromContext(ctx)
		u, err := s.opts.Users.FindUserByID(ctx, userID)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		// Read everything first that can fail cleanly before the answer starts.
		sessions, err := s.opts.Sessions.FindSessions(ctx)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		var files []*phr.File
		if s.opts.Files != nil {
			if files, err = s.opts.Files.FindFiles(ctx); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		var results []testResultJSON
		for cursor := ""; ; {
			page, next, err := s.opts.TestResults.FindTestResults(ctx, phr.TestResultFilter{Cursor: cursor, Limit: 100})
			if err != nil {
				writeError(w, r, s.logger, err)
				return
			}
			for _, x := range page {
				results = append(results, toTestResultJSON(x))
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		var records []healthRecordJSON
		for cursor := ""; ; {
			page, next, err := s.opts.HealthRecords.FindHealthRecords(ctx, phr.HealthRecordFilter{Cursor: cursor, Limit: 100})
			if err != nil {
				writeError(w, r, s.logger, err)
				return
			}
			for _, x := range page {
				records = append(records, toHealthRecordJSON(x))
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		var history []accessHistoryView
		if h, err := s.accessHistory(); err == nil {
			for cursor := ""; ; {
				page, next, err := h.FindAccessHistory(ctx, cursor, 100)
				if err != nil {
					writeError(w, r, s.logger, err)
					return
				}
				for _, a := range page {
					history = append(history, toAccessHistoryView(a))
				}
				if cursor = next; cursor == "" {
					break
				}
			}
		}
		fileViews := make([]fileJSON, 0, len(files))
		for _, f := range files {
			fileViews = append(fileViews, toFileJSON(f))
		}
		sessionViews := make([]sessionView, 0, len(sessions))
		for _, x := range sessions {
			sessionViews = append(sessionViews, sessionView{ID: x.ID, Device: x.Device, CreatedAt: x.CreatedAt.UTC(),
				LastSeenAt: x.LastSeenAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(), Current: x.ID == sessionFrom(ctx).ID})
		}
		// The request and its answer go in the log of privacy requests (and their deadlines).
		if err := s.recordAnsweredRequest(ctx, phr.RequestExport); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="vitalnexa-export.json"`)
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"format":      "vitalnexa-export/1",
			"exported_at": stored(s.now()),
			"profile": map[string]any{"id": u.ID, "email": u.Email, "full_name": u.FullName, "date_of_birth": u.DateOfBirth,
				"email_verified": u.EmailVerified, "created_at": stored(u.CreatedAt)},
			"test_results":   nonNil(results),
			"health_records": nonNil(records),
			"files":          fileViews,
			"sessions":       sessionViews,
			"access_history": nonNil(history),
		})
		s.securityEvent(ctx, "privacy.export", userID)
	})
}

// recordAnsweredRequest logs a privacy request of kind that is answered at once.
func (s *Server) recordAnsweredRequest(ctx context.Context, kind string) error {
	p, err := s.privacy()
	if err != nil {
		return err
	}
	req, err := p.RecordPrivacyRequest(ctx, kind)
	if err != nil {
		return err
	}
	return p.CompletePrivacyRequest(ctx, req.ID)
}

// nonNil makes an empty list [] rather than null in JSON.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
