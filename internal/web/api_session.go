package web

import (
	"net/http"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

type sessionView struct {
	ID         string    `json:"id"`
	Device     string    `json:"device"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Current    bool      `json:"current"`
}

func (s *Server) handleSessionList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		list, err := s.opts.Sessions.FindSessions(ctx)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		current := sessionFrom(ctx).ID
		items := make([]sessionView, 0, len(list))
		for _, x := range list {
			items = append(items, sessionView{ID: x.ID, Device: x.Device, CreatedAt: x.CreatedAt.UTC(),
				LastSeenAt: x.LastSeenAt.UTC(), ExpiresAt: x.ExpiresAt.UTC(), Current: x.ID == current})
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	})
}

func (s *Server) handleSessionDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := r.PathValue("id")
		if err := s.opts.Sessions.EndSession(ctx, id, phr.EndedByUser); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if id == sessionFrom(ctx).ID {
			clearCookies(w)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) handleSessionDeleteAll() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.opts.Sessions.EndSessions(r.Context(), "", phr.EndedByUser); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		clearCookies(w)
		w.WriteHeader(http.StatusNoContent)
	})
}
