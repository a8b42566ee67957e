package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"github.com/vitalnexa/vitalnexa/internal/web"
)

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	want := map[string]string{
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"X-Content-Type-Options":    "nosniff",
		"Cache-Control":             "no-store",
		"X-Frame-Options":           "DENY",
	}
	for name, r := range map[string]*response{
		"healthz":      e.do("GET", "/healthz", "", nil),
		"health data":  e.do("GET", "/api/test-results", ana, nil),
		"unauthorized": e.do("GET", "/api/test-results", "", nil),
		"not found":    e.do("GET", "/nope", "", nil),
		"bad request":  e.do("POST", "/api/auth/token", "", "{"),
	} {
		for h, v := range want {
			if got := r.header.Get(h); got != v {
				t.Errorf("%s: %s = %q, want %q", name, h, got, v)
			}
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q lacks frame-ancestors", name, csp)
		}
	}
}

func TestBadInputGetsAClearProblemNeverA500(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	secretName := "Quilla Zyxwer"
	reg := func(name string) map[string]string {
		return map[string]string{"email": "z@example.com", "password": testPassword, "full_name": name, "date_of_birth": "1980-01-01"}
	}
	cases := []struct {
		name         string
		method, path string
		token        string
		body         any
		status       int
	}{
		{"unknown field", "POST", "/api/auth/register", "", `{"email":"a@example.com","password":"x","full_name":"n","date_of_birth":"1980-01-01","admin":true}`, 400},
		{"wrong type", "POST", "/api/auth/token", "", `{"email":42,"password":"x"}`, 400},
		{"trailing data", "POST", "/api/auth/token", "", `{"email":"a@example.com","password":"x"} {"more":1}`, 400},
		{"not JSON", "POST", "/api/auth/token", "", `{"email":`, 400},
		{"NUL in name", "POST", "/api/auth/register", "", reg(secretName + "\x00"), 400},
		{"10 000-character name", "POST", "/api/auth/register", "", reg(strings.Repeat("é", 10000)), 400},
		{"weak password", "POST", "/api/auth/register", "", map[string]string{"email": "z@example.com", "password": "password", "full_name": secretName, "date_of_birth": "1980-01-01"}, 400},
		{"future birth date", "POST", "/api/auth/register", "", map[string]string{"email": "z@example.com", "password": testPassword, "full_name": secretName, "date_of_birth": "2999-01-01"}, 400},
		{"negative page size", "GET", "/api/test-results?limit=-1", ana, nil, 400},
		{"page size too big", "GET", "/api/health-records?limit=1000", ana, nil, 400},
		{"forged cursor", "GET", "/api/test-results?cursor=v1:AAAAAAAAAAAAAAAA::AAAAAAAAAAAAAAAAAAAAAA", ana, nil, 400},
		{"bad id", "GET", "/api/health-records/not-a-uuid", ana, nil, 400},
		{"unknown kind", "POST", "/api/health-records", ana, map[string]any{"kind": "horoscope", "title": "t", "content": "c"}, 400},
		{"NUL in content", "POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "t", "content": map[string]any{"a": "b\x00"}}, 400},
		// The zero time would otherwise read back as "no date".
		{"year-1 recorded_at", "POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "t", "content": "c", "recorded_at": "0001-01-01T00:00:00Z"}, 400},
		{"NUL in a query parameter", "GET", "/api/test-results?code=%00", ana, nil, 400},
		{"invalid UTF-8 in a query parameter", "GET", "/api/test-results?code=%ff", ana, nil, 400},
		{"empty patch", "PATCH", "/api/health-records/00000000-0000-4000-8000-000000000000", ana, map[string]any{}, 400},
		{"body over the limit", "POST", "/api/auth/token", "", `{"email":"` + strings.Repeat("a", 2<<20) + `"}`, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.token, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if got := r.header.Get("Content-Type"); got != "application/problem+json" {
				t.Fatalf("Content-Type %q", got)
			}
			p := r.json(t)
			if p["code"] == "" || p["code"] == "internal" || p["detail"] == "" {
				t.Fatalf("problem without a useful code: %s", r.body)
			}
			body := string(r.body)
			for _, leak := range []string{secretName, "SQLSTATE", "pgx", "goroutine", ".go:", "select ", "SELECT ", testPassword} {
				if strings.Contains(body, leak) {
					t.Fatalf("error body leaks %q: %s", leak, body)
				}
			}
		})
	}
	if strings.Contains(e.logs.String(), secretName) || strings.Contains(e.logs.String(), testPassword) {
		t.Fatalf("the log holds PHI or a password")
	}
}

func TestEveryRequestLeavesOneAuditRow(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	before := len(e.auditRows())
	rec := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Migraine", "content": "aura"}).json(t)
	id := rec["id"].(string)
	reqs := []struct {
		method, path, token string
		body                any
		action              string
		status              int
	}{
		{"GET", "/api/health-records/" + id, ana, nil, "GET /api/health-records/{id}", 200},
		{"GET", "/api/health-records?kind=note&limit=5", ana, nil, "GET /api/health-records", 200},
		{"GET", "/api/test-results?limit=5&cursor=", ana, nil, "GET /api/test-results", 200},
		{"GET", "/api/test-results", "", nil, "GET /api/test-results", 401},
		{"GET", "/api/health-records/00000000-0000-4000-8000-000000000000", ana, nil, "GET /api/health-records/{id}", 404},
		{"GET", "/no/such/route/ana@example.com", "", nil, "GET (no route)", 404},
		{"POST", "/api/auth/token", "", map[string]string{"email": "ana@example.com", "password": "Wrong-Passw0rd!"}, "POST /api/auth/token", 401},
	}
	for _, q := range reqs {
		if r := e.do(q.method, q.path, q.token, q.body, "User-Agent", "test-agent/1.0"); r.status != q.status {
			t.Fatalf("%s %s: %d, want %d", q.method, q.path, r.status, q.status)
		}
	}
	rows := e.auditRows()[before+1:]
	if got, want := len(rows), len(reqs); got != want {
		t.Fatalf("audit rows = %d, want one per request (%d)", got, want)
	}
	anaID := e.do("GET", "/api/me", ana, nil).json(t)["id"].(string)
	for i, q := range reqs {
		a := rows[i]
		if a.Action != q.action || a.Status != q.status {
			t.Errorf("row %d: action %q status %d, want %q %d", i, a.Action, a.Status, q.action, q.status)
		}
		if q.token != "" && a.UserID != anaID {
			t.Errorf("row %d: user_id %q, want ana", i, a.UserID)
		}
		// A failed sign-in names the account it was aimed at, so guessing can be traced.
		if q.path == "/api/auth/token" && a.UserID != anaID {
			t.Errorf("row %d: failed sign-in at ana has user_id %q", i, a.UserID)
		}
		if q.token == "" && q.path != "/api/auth/token" && a.UserID != "" {
			t.Errorf("row %d: anonymous request has user_id %q", i, a.UserID)
		}
		if a.IP != "127.0.0.1" || a.RequestID == "" || a.Timestamp.IsZero() || a.ResponseMS < 0 {
			t.Errorf("row %d incomplete: %+v", i, a)
		}
		if a.UserAgent != "test-agent/1.0" {
			t.Errorf("row %d: user agent %q", i, a.UserAgent)
		}
	}
	if rows[0].ResourceID != id {
		t.Errorf("resource_id = %q, want %q", rows[0].ResourceID, id)
	}
	// No PHI, token, password or email anywhere in the trail.
	var dump string
	if err := e.owner.QueryRow(context.Background(), `SELECT coalesce(string_agg(a::text, E'\n'), '') FROM audit_log a`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"ana@example.com", "Migraine", "Wrong-Passw0rd!", testPassword, ana, "kind=", "limit=", "cursor="} {
		if strings.Contains(dump, leak) {
			t.Errorf("audit_log holds %q", leak)
		}
	}
}

func TestForwardedForIsBelievedOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	owner := pgtest.MustPool(t, d.OwnerURL, 1)
	srv, err := web.NewServer(web.Options{Audit: &postgres.AuditStore{Pool: d.DB.Pool}, Spec: specForTest(),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, remote, xff, want string }{
		{"direct client spoofing the header", "203.0.113.9:5000", "1.2.3.4", "203.0.113.9"},
		{"trusted proxy", "10.1.2.3:5000", "198.51.100.7", "198.51.100.7"},
		{"client-supplied hop before the proxy's", "10.1.2.3:5000", "1.2.3.4, 198.51.100.7", "198.51.100.7"},
		{"chain of trusted proxies", "10.1.2.3:5000", "198.51.100.8, 10.9.9.9", "198.51.100.8"},
		{"garbage header from a trusted proxy", "10.1.2.3:5000", "not-an-ip", "10.1.2.3"},
	}
	for _, c := range cases {
		req := httptest.NewRequest("GET", "/healthz", nil)
		req.RemoteAddr = c.remote
		req.Header.Set("X-Forwarded-For", c.xff)
		srv.ServeHTTP(httptest.NewRecorder(), req)
		var ip string
		if err := owner.QueryRow(context.Background(), `SELECT host(ip_address) FROM audit_log ORDER BY id DESC LIMIT 1`).Scan(&ip); err != nil {
			t.Fatal(err)
		}
		if ip != c.want {
			t.Errorf("%s: ip_address %q, want %q", c.name, ip, c.want)
		}
	}
}

func TestNothingIsServedWhenTheAuditTrailCannotBeWritten(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	rec := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Private note", "content": "x"}).json(t)
	// A second server on the same data whose audit store is gone.
	broken := pgtest.MustPool(t, e.db.AppURL, 1)
	broken.Close()
	file := e.upload(ana, "file", "Private letter.txt", "text/plain", []byte("Private letter")).json(t)
	srv := mustServerWithAudit(t, e, &postgres.AuditStore{Pool: broken})
	// Buffered answers and streamed ones (download, export) alike.
	for _, path := range []string{"/api/health-records/" + rec["id"].(string), "/api/files/" + file["id"].(string) + "/content",
		"/api/me/export", "/api/me/export?include=files"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+ana)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: status %d, want 503", path, w.Code)
		}
		if strings.Contains(w.Body.String(), "Private") || w.Header().Get("Content-Disposition") != "" {
			t.Fatalf("%s: health data served without an audit row: %q", path, w.Body.String())
		}
		if got := w.Header().Get("Cache-Control"); got != "no-store" {
			t.Fatalf("Cache-Control %q", got)
		}
	}
	// Liveness stays up; readiness reports the trail.
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want {
			t.Fatalf("%s with the trail down: %d, want %d", path, w.Code, want)
		}
	}
}

func TestUserAgentIsCappedAndEscapedInTheTrail(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	req := httptest.NewRequest("GET", "/healthz", nil)
	// A terminal escape and a huge agent string, as a log-injection attempt.
	req.Header.Set("User-Agent", "evil\x1b[31m\x00"+strings.Repeat("A", 5000))
	e.srv.ServeHTTP(httptest.NewRecorder(), req)
	rows := e.auditRows()
	ua := rows[len(rows)-1].UserAgent
	if len(ua) > 260 || strings.ContainsAny(ua, "\x1b\x00") || !strings.HasPrefix(ua, "evil?[31m?") {
		t.Fatalf("user agent stored as %q (len %d)", ua[:min(len(ua), 40)], len(ua))
	}
}
