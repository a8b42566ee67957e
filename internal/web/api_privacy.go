package web

import (
	"net/http"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Privacy rights (GDPR Art. 7, 18, 21; CCPA "do not sell or share"). Each choice is
// appended to a history the server cannot rewrite; restriction, objection and do-not-sell
// are also logged as privacy requests with their one-month deadline, answered at once.

func (s *Server) privacy() (phr.PrivacyService, error) {
	if s.opts.Privacy != nil {
		return s.opts.Privacy, nil
	}
	if p, ok := s.opts.Users.(phr.PrivacyService); ok {
		return p, nil
	}
	return nil, phr.Errorf(phr.EUNAVAILABLE, "Privacy settings are not available on this server.")
}

// withPrivacy runs fn with the privacy service, or answers the problem of its absence.
func (s *Server) withPrivacy(fn func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.privacy()
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		fn(w, r, p)
	})
}

type purposeView struct {
	Purpose   string     `json:"purpose"`
	Granted   *bool      `json:"granted,omitempty"`
	Objected  *bool      `json:"objected,omitempty"`
	ChangedAt *time.Time `json:"changed_at"`
}

type privacyView struct {
	Restricted   bool          `json:"restricted"`
	RestrictedAt *time.Time    `json:"restricted_at"`
	DoNotSell    bool          `json:"do_not_sell"`
	Consents     []purposeView `json:"consents"`
	Objections   []purposeView `json:"objections"`
	// Processing is what the choices allow, per kind of processing (phr.Processings).
	Processing map[string]bool `json:"processing"`
}

func toPrivacyView(st *phr.PrivacySettings) privacyView {
	v := privacyView{Restricted: st.Restricted, DoNotSell: st.DoNotSell,
		Consents: consentViews(st), Objections: make([]purposeView, 0, len(phr.ObjectionPurposes)),
		Processing: map[string]bool{}}
	for _, k := range phr.Processings {
		v.Processing[k] = st.Allows(k)
	}
	if st.Restricted {
		t := st.RestrictedAt.UTC()
		v.RestrictedAt = &t
	}
	for _, p := range phr.ObjectionPurposes {
		o := st.Objections[p]
		v.Objections = append(v.Objections, purposeView{Purpose: p, Objected: &o, ChangedAt: changedAt(st, phr.ChoiceObjection, p)})
	}
	return v
}

func consentViews(st *phr.PrivacySettings) []purposeView {
	out := make([]purposeView, 0, len(phr.ConsentPurposes))
	for _, p := range phr.ConsentPurposes {
		g := st.Consents[p]
		out = append(out, purposeView{Purpose: p, Granted: &g, ChangedAt: changedAt(st, phr.ChoiceConsent, p)})
	}
	return out
}

func changedAt(st *phr.PrivacySettings, kind, purpose string) *time.Time {
	t, ok := st.ChangedAt[kind+"/"+purpose]
	if !ok {
		return nil
	}
	t = t.UTC()
	return &t
}

// handlePrivacyGet answers every privacy choice of the signed-in user at once.
func (s *Server) handlePrivacyGet() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		st, err := p.FindPrivacySettings(r.Context())
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, toPrivacyView(st))
	})
}

func (s *Server) handleConsentList() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		st, err := p.FindPrivacySettings(r.Context())
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": consentViews(st)})
	})
}

// handleConsentSet grants or withdraws consent for one purpose per call; the answer is
// the state of every purpose after the change.
func (s *Server) handleConsentSet() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		var req struct {
			Purpose string `json:"purpose"`
			Granted *bool  `json:"granted"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if req.Granted == nil {
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "granted", "is required"))
			return
		}
		ctx := r.Context()
		if err := p.SetConsent(ctx, req.Purpose, *req.Granted); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		st, err := p.FindPrivacySettings(ctx)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": consentViews(st)})
	})
}

type consentChangeView struct {
	Purpose   string    `json:"purpose"`
	Granted   bool      `json:"granted"`
	ChangedAt time.Time `json:"changed_at"`
}

// handleConsentHistory lists every grant and withdrawal, newest first.
func (s *Server) handleConsentHistory() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		list, next, err := p.FindPrivacyChoices(r.Context(), phr.ChoiceConsent, cursor, limit)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[consentChangeView]{Items: make([]consentChangeView, 0, len(list)), NextCursor: next}
		for _, c := range list {
			out.Items = append(out.Items, consentChangeView{Purpose: c.Purpose, Granted: c.Value, ChangedAt: c.At.UTC()})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleObjectionSet objects to one purpose, or withdraws the objection; the answer is
// every privacy choice after the change.
func (s *Server) handleObjectionSet() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		var req struct {
			Purpose  string `json:"purpose"`
			Objected *bool  `json:"objected"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if req.Objected == nil {
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "objected", "is required"))
			return
		}
		ctx := r.Context()
		if err := p.SetObjection(ctx, req.Purpose, *req.Objected); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.writePrivacy(w, r, p)
	})
}

// handleRestriction restricts processing to storage (on) or lifts the restriction.
func (s *Server) handleRestriction(on bool) http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		if err := p.SetRestricted(r.Context(), on); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.writePrivacy(w, r, p)
	})
}

func (s *Server) handleDoNotSell() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		var req struct {
			DoNotSell *bool `json:"do_not_sell"`
		}
		if err := decodeJSON(bodyOf(r), &req); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if req.DoNotSell == nil {
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "do_not_sell", "is required"))
			return
		}
		if err := p.SetDoNotSell(r.Context(), *req.DoNotSell); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		s.writePrivacy(w, r, p)
	})
}

func (s *Server) writePrivacy(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
	st, err := p.FindPrivacySettings(r.Context())
	if err != nil {
		writeError(w, r, s.logger, err)
		return
	}
	writeJSON(w, http.StatusOK, toPrivacyView(st))
}

type privacyRequestView struct {
	ID          string     `json:"id"`
	UserID      string     `json:"user_id,omitempty"`
	Kind        string     `json:"kind"`
	ReceivedAt  time.Time  `json:"received_at"`
	DueAt       time.Time  `json:"due_at"`
	CompletedAt *time.Time `json:"completed_at"`
}

func toPrivacyRequestView(p *phr.PrivacyRequest, withUser bool) privacyRequestView {
	v := privacyRequestView{ID: p.ID, Kind: p.Kind, ReceivedAt: p.ReceivedAt.UTC(), DueAt: p.DueAt.UTC()}
	if withUser {
		v.UserID = p.UserID
	}
	if !p.CompletedAt.IsZero() {
		t := p.CompletedAt.UTC()
		v.CompletedAt = &t
	}
	return v
}

// handlePrivacyRequestList lists the signed-in user's own privacy requests, newest first.
func (s *Server) handlePrivacyRequestList() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		list, err := p.FindPrivacyRequests(r.Context())
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		items := make([]privacyRequestView, 0, len(list))
		for _, x := range list {
			items = append(items, toPrivacyRequestView(x, false))
		}
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	})
}

// handleAdminPrivacyRequestList lists every user's requests by due date (open ones unless
// status=all), with no PHI: ids, kinds and times.
func (s *Server) handleAdminPrivacyRequestList() http.Handler {
	return s.withPrivacy(func(w http.ResponseWriter, r *http.Request, p phr.PrivacyService) {
		limit, cursor, err := pageQuery(r)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		f := phr.PrivacyRequestFilter{Cursor: cursor, Limit: limit}
		switch r.URL.Query().Get("status") {
		case "", "open":
		case "all":
			f.All = true
		default:
			writeError(w, r, s.logger, phr.FieldErrorf(phr.EINVALID, "status", "must be open or all"))
			return
		}
		list, next, err := p.FindPrivacyRequestsForAdmin(r.Context(), f)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		out := listJSON[privacyRequestView]{Items: make([]privacyRequestView, 0, len(list)), NextCursor: next}
		for _, x := range list {
			out.Items = append(out.Items, toPrivacyRequestView(x, true))
		}
		writeJSON(w, http.StatusOK, out)
	})
}
