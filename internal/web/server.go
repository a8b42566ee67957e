// Package web is VitalNexa's HTTP interface: the JSON API (api_*.go), its middleware and
// the request contract in api/openapi.yaml. NewServer is the only constructor; routes.go
// lists every route.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// Options are everything the server depends on.
type Options struct {
	Logger        *slog.Logger
	Users         phr.UserService
	Accounts      phr.AccountService
	Admin         phr.AdminService
	Sessions      phr.SessionService
	RateLimiter   phr.RateLimiter
	TestResults   phr.TestResultService
	HealthRecords phr.HealthRecordService
	Imports       phr.ImportService
	Files         phr.FileService
	// Privacy keeps consent, restriction, objection and do-not-sell choices and the
	// deadline log of privacy requests; nil uses Users when it implements it.
	Privacy phr.PrivacyService
	// CheckDocument proves what uploaded bytes are (package document): the content type,
	// or a problem (415 for what is neither PDF nor text, 422 for unsafe or broken files).
	CheckDocument func(data []byte) (string, error)
	// Scan, when set, scans an upload for malware (ClamAV); a positive scan is a problem
	// with code "unprocessable".
	Scan  func(ctx context.Context, data []byte) error
	Audit phr.AuditService
	// AccessHistory reads a user's own audit rows; nil uses Users when it implements it.
	AccessHistory phr.AccessHistoryService
	// History reads a user's history of corrections; nil uses Users when it implements it.
	History phr.HistoryService
	// AuditSearch reads the whole trail and its alerts for admins; nil uses Admin when it
	// implements it.
	AuditSearch phr.AuditSearchService
	Mailer      phr.Mailer
	Hasher      *auth.Hasher
	Tokens      *auth.TokenIssuer
	Passwords   auth.PasswordPolicy
	// Breach checks new passwords against known breaches; nil skips the check.
	Breach BreachChecker
	// ReceiptKey signs erasure receipts.
	ReceiptKey []byte
	// RefreshKey derives each refresh token's successor (auth.NextRefreshToken).
	RefreshKey []byte
	// Limits are the rate limits of the auth endpoints; zero fields take defaults.
	Limits RateLimits
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
	MaxUploadBytes int64 // one uploaded file; default 20 MiB
	Now            func() time.Time
}

// BreachChecker is what the server needs of auth.BreachChecker.
type BreachChecker interface {
	Check(ctx context.Context, password string) (auth.BreachResult, error)
}

// RateLimit is N hits per Window.
type RateLimit struct {
	N      int
	Window time.Duration
}

// RateLimits of the auth endpoints, shared by every process through phr.RateLimiter.
type RateLimits struct {
	// PerIP counts every request to a public auth endpoint from one client address.
	PerIP RateLimit // default 60 per minute
	// PerAccount counts sign-ins, registrations, resets and resends naming one email, and
	// second-factor confirmations of one user.
	PerAccount RateLimit // default 20 per 15 minutes
}

// Server is the HTTP handler of the service.
type Server struct {
	opts      Options
	logger    *slog.Logger
	audit     phr.AuditService
	validator *requestValidator
	handler   http.Handler
	// background runs mail that must not make a response slower for some emails than for
	// others (no account enumeration by timing); Close waits for it.
	background sync.WaitGroup
	blocked    blockList
	// auditFailing is true while the last audit write failed: /readyz says so.
	auditFailing atomic.Bool
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
	if opts.MaxUploadBytes == 0 {
		opts.MaxUploadBytes = 20 << 20
	}
	if opts.CheckDocument == nil {
		opts.CheckDocument = document.Check
	}
	if opts.Limits.PerIP.N == 0 {
		opts.Limits.PerIP = RateLimit{N: 60, Window: time.Minute}
	}
	if opts.Limits.PerAccount.N == 0 {
		opts.Limits.PerAccount = RateLimit{N: 20, Window: 15 * time.Minute}
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

// Close waits for mail still being sent in the background.
func (s *Server) Close() { s.background.Wait() }

// goBackground runs fn after the response, detached from the request's cancellation.
func (s *Server) goBackground(ctx context.Context, what string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		defer cancel()
		if err := fn(ctx); err != nil {
			s.logger.ErrorContext(ctx, "background work failed", "job", what,
				"request_id", phr.RequestIDFromContext(ctx), "err", err.Error())
		}
	}()
}

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}
