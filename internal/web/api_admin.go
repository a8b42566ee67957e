package web

import (
	"net/http"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Admin handlers act across users through phr.AdminService, which returns no PHI. They run
// behind requireAdmin, and the database checks the caller's role again.

type adminUserView struct {
	ID            string     `json:"id"`
	Role          string     `json:"role"`
	CreatedAt     time.Time  `json:"created_at"`
	EmailVerified bool       `json:"email_verified"`
	LockedUntil   *time.Time `json:"locked_until"`
	Disabled      bool       `json:"disabled"`
	MFAEnabled    bool       `json:"mfa_enabled"`
	LiveSessions  int        `json:"live_sessions"`
}

// requireAdmin lets through only admins with two-factor authentication on.
func (s *Server) requireAdmin(r *http.Request) error {
	a, err := s.opts.Accounts.FindAccount(r.Context())
	if err != nil {
		return err
	}
	if a.Role != "admin" {
		return phr.Errorf(phr.EFORBIDDEN, "This needs an admin account.")
	}
	if !a.MFAEnabled {
		return phr.Errorf(phr.EFORBIDDEN, "Admin endpoints need two-factor authentication. Turn it on first.")
	}
	return nil
}

func (s *Server) handleAdminUserList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if limit == 0 {
			limit = 50
		}
		list, err := s.opts.Admin.FindAccounts(r.Context(), cursor, limit+1)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		next := ""
		if len(list) > limit {
			list = list[:limit]
			next = list[limit-1].ID
		}
		items := make([]adminUserView, 0, len(list))
		for _, a := range list {
			v := adminUserView{ID: a.ID, Role: a.Role, CreatedAt: a.CreatedAt.UTC(), EmailVerified: a.EmailVerified,
				Disabled: a.Disabled, MFAEnabled: a.MFAEnabled, LiveSessions: a.LiveSessions}
			if !a.LockedUntil.IsZero() {
				t := a.LockedUntil.UTC()
				v.LockedUntil = &t
			}
			items = append(items, v)
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
	})
}

// handleAdminAction runs an admin action on the user named in the path and records it as a
// security event.
func (s *Server) handleAdminAction(event string, act func(r *http.Request, userID string) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		out, err := act(r, id)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.securityEvent(r.Context(), event, id)
		if out == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func (s *Server) adminRoutes(admin func(pattern string, h http.Handler)) {
	admin("GET /api/admin/users", s.handleAdminUserList())
	admin("POST /api/admin/users/{id}/lock", s.handleAdminAction("admin.user_locked", func(r *http.Request, id string) (any, error) {
		return nil, s.opts.Admin.SetUserLock(r.Context(), id, s.now().Add(phr.LockoutDuration))
	}))
	admin("POST /api/admin/users/{id}/unlock", s.handleAdminAction("admin.user_unlocked", func(r *http.Request, id string) (any, error) {
		return nil, s.opts.Admin.SetUserLock(r.Context(), id, time.Time{})
	}))
	admin("POST /api/admin/users/{id}/disable", s.handleAdminAction("admin.user_disabled", func(r *http.Request, id string) (any, error) {
		return nil, s.opts.Admin.SetUserDisabled(r.Context(), id, true)
	}))
	admin("POST /api/admin/users/{id}/enable", s.handleAdminAction("admin.user_enabled", func(r *http.Request, id string) (any, error) {
		return nil, s.opts.Admin.SetUserDisabled(r.Context(), id, false)
	}))
	admin("DELETE /api/admin/users/{id}/sessions", s.handleAdminAction("admin.sessions_ended", func(r *http.Request, id string) (any, error) {
		n, err := s.opts.Admin.EndUserSessions(r.Context(), id)
		if err != nil {
			return nil, err
		}
		return map[string]int{"ended": n}, nil
	}))
}
