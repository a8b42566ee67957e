// Package web is VitalNexa's HTTP interface: the JSON API (api_*.go), its middleware and
// the request contract in api/openapi.yaml. NewServer is the only constructor; routes.go
// lists every route.
package web

import (
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Options are everything the server depends on.
type Options struct {
	Logger        *slog.Logger
	Users         phr.UserService
	Sessions      phr.SessionService
	TestResults   phr.TestResultService
	HealthRecords phr.HealthRecordService
	Imports       phr.ImportService
	Audit         phr.AuditService
	Mailer        phr.Mailer
	Hasher        *auth.Hasher
	Tokens        *auth.TokenIssuer
	Passwords     auth.PasswordPolicy
	// ParseFHIR turns a FHIR bundle into an import batch (package fhir).
	ParseFHIR func(body []byte) (*phr.ImportBatch, error)
	// Ready reports whether the database answers, for /readyz.
	Ready func(r *http.Request) error
	// Spec is the OpenAPI contract requests are validated against.
	Spec []byte
	// PublicURL is where users reach the service, for links in emails.
	PublicURL      string
	TrustedProxies []netip.Prefix
	MaxBodyBytes   int64 // JSON bodies; default 1 MiB
	MaxImportBytes int64 // FHIR bundles; default 32 MiB
	Now            func() time.Time
}

// Server is the HTTP handler of the service.
type Server struct {
	opts      Options
	logger    *slog.Logger
	audit     phr.AuditService
	validator *requestValidator
	handler   http.Handler
}

// NewServer builds the handler. It fails only when the contract does not load.
func NewServer(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxImportBytes == 0 {
		opts.MaxImportBytes = 32 << 20
	}
	v, err := newRequestValidator(opts.Spec)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, logger: opts.Logger, audit: opts.Audit, validator: v}
	mux := http.NewServeMux()
	s.routes(mux)
	s.handler = withSecurityHeaders(s.withAudit(mux))
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}
