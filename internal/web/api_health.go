package web

import (
	"net/http"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// handleHealthz says the process is up; it touches nothing else.
func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReadyz says whether the service can serve: its database answers.
func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.auditFailing.Load() {
			s.logger.WarnContext(r.Context(), "not ready: the audit trail cannot be written")
			writeError(w, r, s.logger, phr.Errorf(phr.EUNAVAILABLE, "The service is not ready."))
			return
		}
		if s.opts.Ready != nil {
			if err := s.opts.Ready(r); err != nil {
				s.logger.WarnContext(r.Context(), "not ready", "err", err.Error())
				writeError(w, r, s.logger, phr.Errorf(phr.EUNAVAILABLE, "The service is not ready."))
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}
