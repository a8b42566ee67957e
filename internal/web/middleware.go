package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

// requestInfo is filled in as a request passes through the handlers and read by the audit
// middleware when it is done. It lives in the context as a pointer, so copies of the
// request made by inner handlers (WithContext) share it.
type requestInfo struct {
	pattern    string
	userID     string
	resourceID string
	ip         string // the client address (after trusted proxies)
	userAgent  string // capped and escaped
	body       []byte // the request body, read and validated once by route
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

func routeOf(r *http.Request) string { return infoFrom(r.Context()).pattern }

// bodyOf is the request body that route read and validated.
func bodyOf(r *http.Request) []byte { return infoFrom(r.Context()).body }

// cleanResourceID keeps only well-formed ids in audit rows: a path segment is client input.
func cleanResourceID(id string) string {
	if uuid.Validate(id) != nil || len(id) != 36 {
		return ""
	}
	return strings.ToLower(id)
}

// knownMethods keeps arbitrary method strings (client input) out of audit rows and logs.
var knownMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true}

// auditAction is the method and route pattern, never the raw path or query string.
func auditAction(r *http.Request, pattern string) string {
	method := r.Method
	if !knownMethods[method] {
		method = "OTHER"
	}
	if pattern == "" {
		return method + " (no route)"
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = pattern[i+1:]
	}
	return method + " " + pattern
}

// bufferedResponse holds a response until its audit row is committed, or, once a handler
// has called streamResponse, passes it straight through.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
	// commit writes the request's audit row with status; set by withAudit.
	commit func(status int) error
	// out is the client's writer once the response streams.
	out http.ResponseWriter
	// withheld is set when the audit row of a stream could not be written.
	withheld bool
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.out != nil {
		return b.out.Write(p)
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// streamResponse is for answers too large to hold in memory (exports, downloads): it
// commits the request's audit row now, with the status set so far (200 if none), sends the
// header, and returns the client's writer. The trail still records every response before
// its first byte leaves. The status cannot change afterwards: a handler that fails midway
// calls abortStream, which cuts the connection so the client cannot take a truncated answer
// for a whole one. On an error nothing was sent and the handler just returns (withAudit
// answers 503).
func streamResponse(w http.ResponseWriter) (io.Writer, error) {
	b, ok := w.(*bufferedResponse)
	if !ok || b.commit == nil {
		return w, nil
	}
	if b.out != nil {
		return b.out, nil
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if err := b.commit(b.status); err != nil {
		return nil, err
	}
	return b.out, nil
}

// abortStream ends a streamed response that failed midway by cutting the connection.
func abortStream() { panic(http.ErrAbortHandler) }

// lazyStream starts streaming at the first byte written, so that a failure before it is
// still a clean error answer.
type lazyStream struct {
	w   http.ResponseWriter
	out io.Writer
}

func (l *lazyStream) Write(p []byte) (int, error) {
	if l.out == nil {
		out, err := streamResponse(l.w)
		if err != nil {
			return 0, err
		}
		l.out = out
	}
	return l.out.Write(p)
}

// fail answers err if nothing was sent yet, and cuts the connection otherwise.
func (l *lazyStream) fail(r *http.Request, logger *slog.Logger, err error) {
	if l.out != nil {
		abortStream()
	}
	writeError(l.w, r, logger, err)
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// withAudit gives every request an id, runs it, writes its audit row and only then
// releases the response. If the row cannot be written, the response is withheld and the
// client gets 503: nothing leaves that the trail does not record.
func (s *Server) withAudit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		ri := &requestInfo{ip: s.clientIP(r), userAgent: cleanUserAgent(r.UserAgent())}
		reqID := newRequestID()
		ctx := context.WithValue(phr.NewContextWithRequestID(r.Context(), reqID), infoKey{}, ri)
		r = r.WithContext(ctx)
		buf := &bufferedResponse{header: w.Header()}
		buf.header.Set("X-Request-Id", reqID)
		// writeRow writes the request's one audit row; false means it could not be written
		// and nothing of the answer may leave.
		writeRow := func(status int) bool {
			elapsed := s.now().Sub(start)
			ev := &phr.AuditEvent{
				Timestamp:      start.UTC(),
				UserID:         ri.userID,
				Action:         auditAction(r, ri.pattern),
				IPAddress:      ri.ip,
				StatusCode:     status,
				ResponseTimeMS: int(elapsed.Milliseconds()),
				ResourceID:     ri.resourceID,
				UserAgent:      ri.userAgent,
				RequestID:      reqID,
			}
			// The row must be written even when the client has gone away.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := s.audit.WriteAuditEvent(actx, ev)
			cancel()
			s.auditFailing.Store(err != nil)
			if err != nil && ri.pattern == patternHealthz {
				// Liveness stays up when the trail is down (readiness reports it); say so.
				s.logger.WarnContext(ctx, "audit write failed for a liveness probe", "request_id", reqID, "err", err.Error())
			}
			if err != nil && ri.pattern != patternHealthz {
				s.logger.ErrorContext(ctx, "audit write failed; response withheld", "request_id", reqID, "route", ri.pattern, "err", err.Error())
				return false
			}
			return true
		}
		buf.commit = func(status int) error {
			if !writeRow(status) {
				buf.withheld = true
				return phr.Errorf(phr.EUNAVAILABLE, "The service is temporarily unavailable.")
			}
			w.WriteHeader(status)
			// The header goes now: the client sees the answer start, and a cut later shows
			// as a truncated body rather than as no answer.
			_ = http.NewResponseController(w).Flush()
			buf.out = w
			return nil
		}
		func() {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler || buf.out != nil {
						if v != http.ErrAbortHandler {
							s.logger.ErrorContext(ctx, "handler panicked while streaming", "request_id", reqID, "route", ri.pattern)
						}
						if buf.out != nil {
							s.logger.LogAttrs(ctx, slog.LevelInfo, "request", append(requestLogAttrs(r, buf.status, s.now().Sub(start)),
								slog.Bool("cut", true))...)
						}
						panic(http.ErrAbortHandler)
					}
					// The panic value may hold PHI: log only that one happened, and where.
					s.logger.ErrorContext(ctx, "handler panicked", "request_id", reqID, "route", ri.pattern)
					buf.body.Reset()
					buf.status = 0
					writeError(buf, r, s.logger, phr.Errorf(phr.EUNAVAILABLE, "The request could not be completed."))
				}
			}()
			next.ServeHTTP(buf, r)
		}()
		if buf.out != nil { // streamed: its row was written before the first byte
			s.logger.LogAttrs(ctx, slog.LevelInfo, "request", requestLogAttrs(r, buf.status, s.now().Sub(start))...)
			return
		}
		if buf.status == 0 {
			buf.status = http.StatusOK
		}
		if buf.withheld || !writeRow(buf.status) {
			for k := range w.Header() {
				if k != "X-Request-Id" && !securityHeader[k] {
					w.Header().Del(k)
				}
			}
			writeError(w, r, s.logger, phr.Errorf(phr.EUNAVAILABLE, "The service is temporarily unavailable."))
			return
		}
		w.WriteHeader(buf.status)
		_, _ = w.Write(buf.body.Bytes())
		s.logger.LogAttrs(ctx, slog.LevelInfo, "request", requestLogAttrs(r, buf.status, s.now().Sub(start))...)
	})
}

// cleanUserAgent caps the user agent and keeps only printable characters.
func cleanUserAgent(ua string) string {
	var b strings.Builder
	for _, r := range ua {
		if b.Len() >= 256 {
			break
		}
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			b.WriteRune('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// clientIP is the peer address, or, when the peer is a trusted proxy, the nearest address
// in X-Forwarded-For that is not itself a trusted proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a.String()
		}
		peer = a
	}
	return peer.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var securityHeader = map[string]bool{
	"Strict-Transport-Security": true, "X-Content-Type-Options": true, "X-Frame-Options": true,
	"Content-Security-Policy": true, "Referrer-Policy": true, "Cache-Control": true,
	"Cross-Origin-Opener-Policy": true, "Cross-Origin-Resource-Policy": true, "Permissions-Policy": true,
}

// withSecurityHeaders sets the plan's headers on every response. Every response may carry
// PHI or a token, so none may be cached.
func withSecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
		next.ServeHTTP(w, r)
	})
}

// requestLogAttrs are the one request log line: no path, no query, no body.
func requestLogAttrs(r *http.Request, status int, d time.Duration) []slog.Attr {
	return []slog.Attr{
		slog.String("request_id", phr.RequestIDFromContext(r.Context())),
		slog.String("route", auditAction(r, routeOf(r))),
		slog.Int("status", status),
		slog.Int64("duration_ms", d.Milliseconds()),
	}
}
