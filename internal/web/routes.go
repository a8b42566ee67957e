package web

import (
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

const patternHealthz = "GET /healthz"

// routes lists every route of the service. Each is wrapped so that its pattern reaches the
// audit row; authenticated ones pass requireUser first, and every request with a contract
// is validated against it before its handler runs.
func (s *Server) routes(mux *http.ServeMux) {
	public := func(pattern string, h http.Handler) { mux.Handle(pattern, s.route(pattern, access{}, h)) }
	private := func(pattern string, h http.Handler) { mux.Handle(pattern, s.route(pattern, access{user: true}, h)) }
	admin := func(pattern string, h http.Handler) {
		mux.Handle(pattern, s.route(pattern, access{user: true, admin: true}, h))
	}
	// Public auth endpoints are limited per client address, before anything else runs.
	auth := func(pattern string, h http.Handler) {
		mux.Handle(pattern, s.route(pattern, access{limited: true}, h))
	}

	public(patternHealthz, s.handleHealthz())
	public("GET /readyz", s.handleReadyz())
	public("GET /privacy/do-not-sell", s.handlePageDoNotSell())

	auth("POST /api/auth/register", s.handleRegister())
	auth("POST /api/auth/verify-email", s.handleVerifyEmail())
	auth("POST /api/auth/resend-verification", s.handleResendVerification())
	auth("POST /api/auth/token", s.handleToken())
	auth("POST /api/auth/login", s.handleLogin())
	auth("POST /api/auth/refresh", s.handleRefresh())
	auth("POST /api/auth/unlock", s.handleUnlock())
	auth("POST /api/auth/confirm-email", s.handleEmailConfirm())
	auth("POST /api/auth/password-reset", s.handlePasswordReset())
	auth("POST /api/auth/password-reset/confirm", s.handlePasswordResetConfirm())
	private("POST /api/auth/logout", s.handleLogout())

	private("GET /api/me", s.handleMe())
	private("PATCH /api/me", s.handleMeUpdate())
	private("GET /api/me/history", s.handleHistoryList())
	private("DELETE /api/me", s.handleErase())
	private("GET /api/me/export", s.handleExport())
	private("POST /api/me/password", s.handlePasswordChange())
	private("POST /api/me/email", s.handleEmailChange())
	private("POST /api/me/mfa/totp", s.handleMFAEnrol())
	private("POST /api/me/mfa/totp/confirm", s.handleMFAConfirm())
	private("GET /api/me/access-history", s.handleAccessHistory())
	private("GET /api/me/privacy", s.handlePrivacyGet())
	private("GET /api/me/consents", s.handleConsentList())
	private("PUT /api/me/consents", s.handleConsentSet())
	private("GET /api/me/consents/history", s.handleConsentHistory())
	private("PUT /api/me/objections", s.handleObjectionSet())
	private("POST /api/me/restriction", s.handleRestriction(true))
	private("DELETE /api/me/restriction", s.handleRestriction(false))
	private("PUT /api/me/do-not-sell", s.handleDoNotSell())
	private("GET /api/me/privacy-requests", s.handlePrivacyRequestList())

	private("GET /api/sessions", s.handleSessionList())
	private("DELETE /api/sessions", s.handleSessionDeleteAll())
	private("DELETE /api/sessions/{id}", s.handleSessionDelete())

	s.adminRoutes(admin)
	admin("GET /api/admin/audit", s.handleAdminAuditSearch())
	admin("GET /api/admin/alerts", s.handleAdminAlertList())
	admin("GET /api/admin/privacy-requests", s.handleAdminPrivacyRequestList())

	private("POST /api/imports/fhir", s.handleImportFHIR())

	private("GET /api/test-results", s.handleTestResultList())
	private("GET /api/test-results/{id}", s.handleTestResultGet())
	private("PATCH /api/test-results/{id}", s.handleTestResultUpdate())
	private("DELETE /api/test-results/{id}", s.handleTestResultDelete())
	private("GET /api/test-results/{id}/history", s.handleEntityHistory(phr.HistoryTestResult))

	private("POST /api/files", s.handleFileUpload())
	private("GET /api/files", s.handleFileList())
	private("GET /api/files/{id}", s.handleFileGet())
	private("GET /api/files/{id}/content", s.handleFileContent())
	private("DELETE /api/files/{id}", s.handleFileDelete())

	private("GET /api/health-records", s.handleHealthRecordList())
	private("POST /api/health-records", s.handleHealthRecordCreate())
	private("GET /api/health-records/{id}", s.handleHealthRecordGet())
	private("PATCH /api/health-records/{id}", s.handleHealthRecordUpdate())
	private("DELETE /api/health-records/{id}", s.handleHealthRecordDelete())
	private("GET /api/health-records/{id}/history", s.handleEntityHistory(phr.HistoryHealthRecord))

	// Everything else: the same problem document for every unknown path, so that nothing
	// about the route table (or about someone's data) can be learned from a 404.
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.logger, phr.Errorf(phr.ENOTFOUND, "Not found."))
	}))
}

// access says who may call a route.
type access struct {
	user    bool // a signed-in user
	admin   bool // an admin with MFA (implies user)
	limited bool // public, rate-limited per client address
}

// route records the pattern, applies the access rule, reads and validates the body, and
// then runs h with the body available through bodyOf.
func (s *Server) route(pattern string, a access, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoFrom(r.Context()).pattern = pattern
		if a.limited {
			if err := s.limit(r.Context(), "ip:"+s.clientIP(r), s.opts.Limits.PerIP); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		if a.user {
			var err error
			if r, err = s.authenticate(r); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		if a.admin {
			if err := s.requireAdmin(r); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		if err := checkQuery(r); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if id := r.PathValue("id"); id != "" {
			infoFrom(r.Context()).resourceID = cleanResourceID(id)
		}
		limit := s.opts.MaxBodyBytes
		switch pattern {
		case "POST /api/imports/fhir":
			limit = s.opts.MaxImportBytes
		case "POST /api/files":
			limit = s.opts.MaxUploadBytes + 64<<10 // the file and its multipart framing
		}
		body, err := readBody(r, limit)
		if err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		if err := s.validator.validate(r, body); err != nil {
			writeError(w, r, s.logger, err)
			return
		}
		infoFrom(r.Context()).body = body
		h.ServeHTTP(w, r)
	})
}

// checkQuery refuses query values that no parameter may hold: NUL and invalid UTF-8.
func checkQuery(r *http.Request) error {
	for name, values := range r.URL.Query() {
		for _, v := range values {
			if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
				return phr.FieldErrorf(phr.EINVALID, cleanParamName(name), "holds a NUL or invalid UTF-8")
			}
		}
	}
	return nil
}

// cleanParamName keeps a client's parameter name out of the answer unless it is plain.
func cleanParamName(name string) string {
	if len(name) > 32 {
		return "query"
	}
	for _, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "query"
		}
	}
	return name
}
