package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// mustAdminWithMFA makes the account of token an admin (as `users create-admin` does) and
// turns on two-factor authentication through the API; it returns the account's id.
func (e *testEnv) mustAdminWithMFA(token string) string {
	e.t.Helper()
	id := e.do("GET", "/api/me", token, nil).json(e.t)["id"].(string)
	e.mustRole(id, "admin")
	secret := e.do("POST", "/api/me/mfa/totp", token, nil).json(e.t)["secret"].(string)
	if r := e.do("POST", "/api/me/mfa/totp/confirm", token, map[string]string{"otp": totpCode(e.t, secret, time.Now())}); r.status != http.StatusOK {
		e.t.Fatalf("confirm MFA: %d %s", r.status, r.body)
	}
	return id
}

func (e *testEnv) mustRole(userID, role string) {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.owner.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", userID); err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE users SET role = $2 WHERE id = $1", userID, role); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// pages follows next_cursor from path (which must end in ? or &) and returns every item.
func (e *testEnv) pages(path, token string) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	cursor := ""
	for i := 0; ; i++ {
		if i > 200 {
			e.t.Fatal("pagination does not end")
		}
		r := e.do("GET", path+"cursor="+url.QueryEscape(cursor), token, nil)
		if r.status != http.StatusOK {
			e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
		if got := r.header.Get("Cache-Control"); got != "no-store" {
			e.t.Fatalf("Cache-Control = %q", got)
		}
		m := r.json(e.t)
		for _, it := range m["items"].([]any) {
			out = append(out, it.(map[string]any))
		}
		if cursor = m["next_cursor"].(string); cursor == "" {
			return out
		}
	}
}

func TestAdminAuditSearch(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	admin := e.MustVerifiedUser("admin@example.com")
	ana := e.MustVerifiedUser("ana@example.com")
	e.MustVerifiedUser("bob@example.com")
	anaID := e.do("GET", "/api/me", ana, nil).json(t)["id"].(string)
	e.do("GET", "/api/test-results", ana, nil)
	e.signIn("bob@example.com", "Wrong-Passw0rd!") // a 401 in the trail

	for _, path := range []string{"/api/admin/audit", "/api/admin/alerts"} {
		// Attack: a plain user reads everyone's trail.
		if r := e.do("GET", path, ana, nil); r.status != http.StatusForbidden {
			t.Fatalf("plain user on %s: %d, want 403", path, r.status)
		}
	}
	adminID := e.do("GET", "/api/me", admin, nil).json(t)["id"].(string)
	e.mustRole(adminID, "admin")
	for _, path := range []string{"/api/admin/audit", "/api/admin/alerts"} {
		// Attack: an admin whose password alone was stolen.
		if r := e.do("GET", path, admin, nil); r.status != http.StatusForbidden {
			t.Fatalf("admin without MFA on %s: %d, want 403", path, r.status)
		}
	}
	e.mustAdminWithMFA(admin)

	rows := e.auditRows() // every row so far: the searches below see exactly these and newer
	var cut time.Time
	for _, a := range rows {
		if a.Timestamp.After(cut) {
			cut = a.Timestamp
		}
	}
	count := func(keep func(a auditRow) bool) int {
		n := 0
		for _, a := range rows {
			if keep(a) {
				n++
			}
		}
		return n
	}
	// Only rows up to cut: the searches add rows of their own.
	until := "to=" + url.QueryEscape(cut.Add(time.Microsecond).Format(time.RFC3339Nano)) + "&"
	from := rows[2].Timestamp
	for _, tc := range []struct {
		name, query string
		keep        func(a auditRow) bool
	}{
		{"all", "", func(auditRow) bool { return true }},
		{"user", "user_id=" + anaID + "&", func(a auditRow) bool { return a.UserID == anaID }},
		{"action", "action=" + url.QueryEscape("GET /api/me") + "&", func(a auditRow) bool { return a.Action == "GET /api/me" }},
		{"status", "status=401&", func(a auditRow) bool { return a.Status == 401 }},
		{"range", "from=" + url.QueryEscape(from.Format(time.RFC3339Nano)) + "&", func(a auditRow) bool { return !a.Timestamp.Before(from) }},
		{"combined", "user_id=" + anaID + "&status=200&", func(a auditRow) bool { return a.UserID == anaID && a.Status == 200 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := count(tc.keep)
			if want == 0 {
				t.Fatal("the case selects no row")
			}
			items := e.pages("/api/admin/audit?limit=2&"+tc.query+until, admin)
			seen := map[float64]bool{}
			var last time.Time
			for _, it := range items {
				id := it["id"].(float64)
				if seen[id] {
					t.Fatalf("row %v on two pages", id)
				}
				seen[id] = true
				at, err := time.Parse(time.RFC3339Nano, it["timestamp"].(string))
				if err != nil {
					t.Fatal(err)
				}
				if !last.IsZero() && at.After(last) {
					t.Fatalf("not newest first: %v after %v", at, last)
				}
				last = at
				a := auditRow{Action: it["action"].(string), Status: statusCode(t, it), Timestamp: at}
				if u, ok := it["user_id"].(string); ok {
					a.UserID = u
				}
				if !tc.keep(a) {
					t.Fatalf("row outside the filter: %v", it)
				}
			}
			if got := len(items); got != want {
				t.Fatalf("%d rows, want %d", got, want)
			}
		})
	}

	// The search itself is audited, naming whose trail was searched.
	found := false
	for _, a := range e.auditRows() {
		if a.Action == "GET /api/admin/audit" && a.UserID == adminID && a.ResourceID == anaID && a.Status == 200 {
			found = true
		}
	}
	if !found {
		t.Fatal("the admin's search of ana's trail is not in the trail")
	}

	for _, tc := range []struct{ name, query, field string }{
		{"user id not a uuid", "user_id=ana", "user_id"},
		{"status too small", "status=42", "status"},
		{"status not a number", "status=abc", "status"},
		{"from not RFC 3339", "from=yesterday", "from"},
		{"to a bare date", "to=2026-01-01", "to"},
		{"to before from", "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"},
		{"action too long", "action=" + strings.Repeat("a", 201), "action"},
		{"limit zero", "limit=0", "limit"},
		{"limit too large", "limit=1000", "limit"},
		{"forged cursor", "cursor=%21%21", "cursor"},
		// Attack: a misspelt filter would silently widen the search.
		{"unknown filter", "user=" + anaID, "user"},
		{"filter twice", "status=200&status=401", "status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("GET", "/api/admin/audit?"+tc.query, admin, nil)
			if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s %s, want a 400 problem", r.status, r.header.Get("Content-Type"), r.body)
			}
			if got := r.json(t)["field"]; got != tc.field {
				t.Fatalf("field = %v, want %q", got, tc.field)
			}
		})
	}
}

func TestAccessHistoryHoldsOnlyOwnRows(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	anaID := e.do("GET", "/api/me", ana, nil).json(t)["id"].(string)
	bobID := e.do("GET", "/api/me", bob, nil).json(t)["id"].(string)
	e.do("GET", "/api/test-results", ana, nil)
	e.do("GET", "/api/sessions", bob, nil, "User-Agent", "bob-phone/1.0")
	for i := 0; i < 5; i++ { // bob's account gets locked: a security event about him
		e.signIn("bob@example.com", "Wrong-Passw0rd!")
	}
	if e.countAudit("EVENT account.locked") != 1 {
		t.Fatal("no lockout in the trail")
	}

	for _, tc := range []struct {
		name, token, id, other string
		hasLock                bool
	}{
		{"ana", ana, anaID, bobID, false},
		{"bob", bob, bobID, anaID, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type key struct {
				at     int64 // Unix microseconds
				action string
				status int
			}
			want := map[key]int{}
			for _, a := range e.auditRows() {
				if a.UserID == tc.id {
					want[key{a.Timestamp.UnixMicro(), a.Action, a.Status}]++
				}
			}
			items := e.pages("/api/me/access-history?limit=3&", tc.token)
			got := map[key]int{}
			lock := false
			for _, it := range items {
				at, err := time.Parse(time.RFC3339Nano, it["timestamp"].(string))
				if err != nil {
					t.Fatal(err)
				}
				got[key{at.UnixMicro(), it["action"].(string), statusCode(t, it)}]++
				lock = lock || it["action"] == "EVENT account.locked"
				for _, field := range []string{"user_id", "request_id", "id"} {
					if _, ok := it[field]; ok {
						t.Fatalf("access history shows %s", field)
					}
				}
			}
			// Attack: reading someone else's trail through one's own history.
			if len(got) != len(want) || len(items) == 0 {
				t.Fatalf("%d distinct rows (%d items), want %d", len(got), len(items), len(want))
			}
			for k, n := range want {
				if got[k] != n {
					t.Fatalf("row %v: %d times, want %d", k, got[k], n)
				}
			}
			if lock != tc.hasLock {
				t.Fatalf("lockout event shown = %v, want %v", lock, tc.hasLock)
			}
			if strings.Contains(string(e.do("GET", "/api/me/access-history", tc.token, nil).body), tc.other) {
				t.Fatal("the other user's id is in the history")
			}
		})
	}
	if r := e.do("GET", "/api/me/access-history", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d, want 401", r.status)
	}
	for _, q := range []string{"cursor=%21%21", "limit=0", "limit=101", "user_id=" + bobID} {
		if r := e.do("GET", "/api/me/access-history?"+q, ana, nil); r.status != http.StatusBadRequest {
			t.Fatalf("%s: %d %s, want 400", q, r.status, r.body)
		}
	}
}

func TestAdminAlerts(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	admin := e.MustVerifiedUser("admin@example.com")
	e.mustAdminWithMFA(admin)
	var exists bool
	if err := e.owner.QueryRow(context.Background(),
		`SELECT to_regprocedure('admin_list_alerts(bigint, integer)') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/api/admin/alerts?limit=5", admin, nil)
	if !exists {
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("alerts without their migration: %d %s, want 503", r.status, r.body)
		}
		t.Skip("admin_list_alerts (migration 00006) is not in this schema yet")
	}
	if r.status != http.StatusOK {
		t.Fatalf("alerts: %d %s", r.status, r.body)
	}
	if _, ok := r.json(t)["items"].([]any); !ok {
		t.Fatalf("no items: %s", r.body)
	}
	if _, err := e.owner.Exec(context.Background(), `INSERT INTO audit_alerts (rule, subject, window_start, first_seen, last_seen, count)
		SELECT 'test.rule', 'subject-' || i, now(), now(), now(), i FROM generate_series(1, 5) i`); err != nil {
		t.Fatal(err)
	}
	items := e.pages("/api/admin/alerts?limit=2&", admin)
	seen := map[float64]bool{}
	for i, it := range items {
		id := it["id"].(float64)
		if seen[id] || i > 0 && id >= items[i-1]["id"].(float64) {
			t.Fatalf("alerts not newest first, each once: %v", items)
		}
		seen[id] = true
	}
	if got, want := len(items), 5; got != want {
		t.Fatalf("%d alerts, want %d", got, want)
	}
	for _, q := range []string{"cursor=abc", "cursor=-1", "limit=0"} {
		if r := e.do("GET", "/api/admin/alerts?"+q, admin, nil); r.status != http.StatusBadRequest {
			t.Fatalf("%s: %d %s, want 400", q, r.status, r.body)
		}
	}
}

// statusCode reads a row's status_code: a number for a request, null for an event.
func statusCode(t *testing.T, it map[string]any) int {
	t.Helper()
	event := strings.HasPrefix(it["action"].(string), "EVENT ")
	switch v := it["status_code"].(type) {
	case float64:
		if event || v == 0 {
			t.Fatalf("status_code %v on %v", v, it["action"])
		}
		return int(v)
	case nil:
		if !event {
			t.Fatalf("a request's row without its status: %v", it)
		}
		return 0
	default:
		t.Fatalf("status_code %T", v)
		return 0
	}
}
