package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/api"
	"github.com/vitalnexa/vitalnexa/internal/auth"
	"github.com/vitalnexa/vitalnexa/internal/document"
	"github.com/vitalnexa/vitalnexa/internal/fhir"
	vnmail "github.com/vitalnexa/vitalnexa/internal/mail"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
	"github.com/vitalnexa/vitalnexa/internal/web"
	"golang.org/x/crypto/bcrypt"
)

const testPassword = "Str0ng-Passw0rd!"

// testEnv is a real server on a real, fresh database.
type testEnv struct {
	t       *testing.T
	db      *pgtest.Database
	srv     *web.Server
	http    *httptest.Server
	mailDir string
	owner   *pgxpool.Pool
	logs    *bytes.Buffer
	opts    web.Options
}

type envOption func(*web.Options)

func MustEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	d := pgtest.MustDatabase(t)
	mailDir := t.TempDir()
	hasher, err := auth.NewHasher(auth.HasherOptions{Pepper: bytes.Repeat([]byte{7}, 32), Cost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokenIssuer(auth.TokenOptions{Secrets: map[string][]byte{"k1": bytes.Repeat([]byte{9}, 32)},
		CurrentKID: "k1", Issuer: "http://vitalnexa.test", Audience: "vitalnexa-api", TTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	o := web.Options{
		Logger: slogJSON(logs), Users: d.DB, Accounts: d.DB, Admin: d.DB, Sessions: d.DB, TestResults: d.DB,
		HealthRecords: d.DB, Imports: d.DB, Files: d.DB, CheckDocument: document.Check, RateLimiter: &postgres.RateLimiter{Pool: d.DB.Pool, Keys: d.DB.Keys},
		RefreshKey: bytes.Repeat([]byte{5}, 32), ReceiptKey: bytes.Repeat([]byte{6}, 32),
		Audit:  &postgres.AuditStore{Pool: d.DB.Pool},
		Mailer: &vnmail.DirMailer{Dir: mailDir, From: "VitalNexa <no-reply@vitalnexa.test>"},
		Hasher: hasher, Tokens: tokens,
		ParseFHIR: func(b []byte) (*phr.ImportBatch, error) { return fhir.ParseBundle(b, fhir.Options{}) },
		Spec:      api.Spec, PublicURL: "http://vitalnexa.test",
	}
	for _, f := range opts {
		f(&o)
	}
	srv, err := web.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(srv.Close)
	return &testEnv{t: t, db: d, srv: srv, http: hs, mailDir: mailDir, owner: pgtest.MustPool(t, d.OwnerURL, 2), logs: logs, opts: o}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request; body may be a string, []byte or a value to marshal.
func (e *testEnv) do(method, path, token string, body any, hdr ...string) *response {
	e.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

// mails returns the messages written so far, oldest first.
func (e *testEnv) mails() []*mail.Message {
	e.t.Helper()
	e.srv.Close() // mail goes out after the response: wait for it
	files, _ := filepath.Glob(filepath.Join(e.mailDir, "*.eml"))
	sort.Strings(files)
	var out []*mail.Message
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			e.t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

var tokenInLink = regexp.MustCompile(`verify-email\?token=([A-Za-z0-9_%-]+)`)

// MustVerifiedUser registers, verifies through the mailed link and signs in; it returns an access token.
func (e *testEnv) MustVerifiedUser(email string) string {
	e.t.Helper()
	before := len(e.mails())
	r := e.do("POST", "/api/auth/register", "", map[string]string{"email": email, "password": testPassword,
		"full_name": "Person " + email, "date_of_birth": "1980-02-03"})
	if r.status != http.StatusAccepted {
		e.t.Fatalf("register: %d %s", r.status, r.body)
	}
	ms := e.mails()
	if len(ms) != before+1 {
		e.t.Fatalf("register sent %d mails, want 1", len(ms)-before)
	}
	text, _ := vnmail.ReadText(ms[len(ms)-1])
	m := tokenInLink.FindStringSubmatch(text)
	if m == nil {
		e.t.Fatalf("no verification link in the mail: %q", text)
	}
	if r := e.do("POST", "/api/auth/verify-email", "", map[string]string{"token": m[1]}); r.status != http.StatusOK {
		e.t.Fatalf("verify: %d %s", r.status, r.body)
	}
	r = e.do("POST", "/api/auth/token", "", map[string]string{"email": email, "password": testPassword})
	if r.status != http.StatusOK {
		e.t.Fatalf("token: %d %s", r.status, r.body)
	}
	return r.json(e.t)["access_token"].(string)
}

type auditRow struct {
	UserID, Action, IP, ResourceID, UserAgent, RequestID string
	Status, ResponseMS                                   int
	Timestamp                                            time.Time
}

func (e *testEnv) auditRows() []auditRow {
	e.t.Helper()
	rows, err := e.owner.Query(context.Background(), `SELECT "timestamp", coalesce(user_id::text, ''), action,
		coalesce(host(ip_address), ''), status_code, response_time_ms, coalesce(resource_id, ''), user_agent, request_id
		FROM audit_log ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var a auditRow
		if err := rows.Scan(&a.Timestamp, &a.UserID, &a.Action, &a.IP, &a.Status, &a.ResponseMS, &a.ResourceID, &a.UserAgent, &a.RequestID); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// withoutRequestID is a problem body with its (always different) request id removed, so
// two answers can be compared byte for byte.
func withoutRequestID(b []byte) string {
	return regexp.MustCompile(`"request_id":"[0-9a-f]+"`).ReplaceAllString(string(b), "")
}

func readBody(m *mail.Message) (string, error) { return vnmail.ReadText(m) }

func specForTest() []byte { return api.Spec }

// mustServerWithAudit is e's server with another audit store.
func mustServerWithAudit(t *testing.T, e *testEnv, a phr.AuditService) *web.Server {
	t.Helper()
	o := e.opts
	o.Audit = a
	srv, err := web.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}
