package web

import (
	"net/http"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

const patternHealthz = "GET /healthz"

// routes lists every route of the service. Each is wrapped so that its pattern reaches the
// audit row; authenticated ones pass requireUser first, and every request with a contract
// is validated against it before its handler runs.
func (s *Server) routes(mux *http.ServeMux) {
	public := func(pattern string, h http.Handler) { mux.Handle(pattern, s.route(pattern, false, h)) }
	private := func(pattern string, h http.Handler) { mux.Handle(pattern, s.route(pattern, true, h)) }

	public(patternHealthz, s.handleHealthz())
	public("GET /readyz", s.handleReadyz())

	public("POST /api/auth/register", s.handleRegister())
	public("POST /api/auth/verify-email", s.handleVerifyEmail())
	public("POST /api/auth/token", s.handleToken())
	public("POST /api/auth/login", s.handleLogin())
	public("POST /api/auth/refresh", s.handleRefresh())
	private("POST /api/auth/logout", s.handleLogout())
	private("GET /api/me", s.handleMe())

	private("POST /api/imports/fhir", s.handleImportFHIR())

	private("GET /api/test-results", s.handleTestResultList())
	private("GET /api/test-results/{id}", s.handleTestResultGet())

	private("GET /api/health-records", s.handleHealthRecordList())
	private("POST /api/health-records", s.handleHealthRecordCreate())
	private("GET /api/health-records/{id}", s.handleHealthRecordGet())
	private("PATCH /api/health-records/{id}", s.handleHealthRecordUpdate())
	private("DELETE /api/health-records/{id}", s.handleHealthRecordDelete())

	// Everything else: the same problem document for every unknown path, so that nothing
	// about the route table (or about someone's data) can be learned from a 404.
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.logger, phr.Errorf(phr.ENOTFOUND, "Not found."))
	}))
}

// route records the pattern, authenticates when asked, reads and validates the body, and
// then runs h with the body available again as r.Body.
func (s *Server) route(pattern string, private bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoFrom(r.Context()).pattern = pattern
		if private {
			var err error
			if r, err = s.authenticate(r); err != nil {
				writeError(w, r, s.logger, err)
				return
			}
		}
		if id := r.PathValue("id"); id != "" {
			infoFrom(r.Context()).resourceID = cleanResourceID(id)
		}
		limit := s.opts.MaxBodyBytes
		if pattern == "POST /api/imports/fhir" {
			limit = s.opts.MaxImportBytes
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
