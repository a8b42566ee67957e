package audit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vitalnexa/vitalnexa/internal/audit"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// testRules are low thresholds, so that fixtures stay small.
func testRules() audit.Rules {
	return audit.Rules{Window: 10 * time.Minute, BulkRecords: 5, Enumeration: 5, StuffingAccounts: 3, StuffingRequests: 10}
}

type fixture struct {
	at       time.Duration // after the start of the window
	user     string
	ip       string
	action   string
	status   int
	resource string
}

func TestRulesFireOnTheirPatternOnly(t *testing.T) {
	t.Parallel()
	alice, bob, carol, dave := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	many := func(n int, f func(i int) fixture) []fixture {
		var out []fixture
		for i := 0; i < n; i++ {
			out = append(out, f(i))
		}
		return out
	}
	today := time.Now().UTC().Truncate(24 * time.Hour)
	cases := []struct {
		name  string
		rule  string
		start time.Time // the window's start; zero: the current window
		hours string
		rows  []fixture
		fire  bool
	}{
		// Attack: one account reads hundreds of records (a stolen session scraping).
		{"bulk access fires", "bulk_access", time.Time{}, "", many(6, func(i int) fixture {
			return fixture{user: alice, action: "GET /api/test-results/{id}", status: 200, resource: fmt.Sprint("r", i)}
		}), true},
		{"bulk access: the same few records again and again", "bulk_access", time.Time{}, "", many(20, func(i int) fixture {
			return fixture{user: alice, action: "GET /api/test-results/{id}", status: 200, resource: fmt.Sprint("r", i%5)}
		}), false},
		// Attack: a stolen session used at night.
		{"off hours fires", "off_hours", today.Add(3 * time.Hour), "06:00-22:00", []fixture{
			{user: alice, action: "GET /api/test-results", status: 200}}, true},
		{"off hours: in office hours", "off_hours", today.Add(12 * time.Hour), "06:00-22:00", []fixture{
			{user: alice, action: "GET /api/test-results", status: 200}}, false},
		{"off hours: range across midnight", "off_hours", today.Add(12 * time.Hour), "22:00-06:00", []fixture{
			{user: alice, action: "GET /api/test-results", status: 200}}, true},
		// Attack: guessing record ids.
		{"enumeration by user fires", "enumeration", time.Time{}, "", many(6, func(i int) fixture {
			return fixture{user: bob, action: "GET /api/health-records/{id}", status: 404, resource: uuid.NewString()}
		}), true},
		{"enumeration by address fires", "enumeration", time.Time{}, "", many(6, func(i int) fixture {
			return fixture{ip: "198.51.100.7", action: "GET /api/health-records/{id}", status: 404, resource: uuid.NewString()}
		}), true},
		{"enumeration: a few stale links", "enumeration", time.Time{}, "", many(5, func(i int) fixture {
			return fixture{user: bob, ip: "198.51.100.7", action: "GET /api/health-records/{id}", status: 404, resource: uuid.NewString()}
		}), false},
		// Attack: credential stuffing, one address trying many accounts.
		{"credential stuffing across accounts fires", "credential_stuffing", time.Time{}, "", []fixture{
			{user: alice, ip: "203.0.113.9", action: "POST /api/auth/token", status: 401},
			{user: bob, ip: "203.0.113.9", action: "POST /api/auth/login", status: 401},
			{user: carol, ip: "203.0.113.9", action: "POST /api/auth/token", status: 401},
			{user: dave, ip: "203.0.113.9", action: "POST /api/auth/token", status: 401}}, true},
		// Attack: the same, with addresses that match no account.
		{"credential stuffing by volume fires", "credential_stuffing", time.Time{}, "", many(11, func(i int) fixture {
			return fixture{ip: "203.0.113.9", action: "POST /api/auth/token", status: 401}
		}), true},
		{"credential stuffing: a user mistyping", "credential_stuffing", time.Time{}, "", []fixture{
			{user: alice, ip: "203.0.113.9", action: "POST /api/auth/token", status: 401},
			{user: alice, ip: "203.0.113.9", action: "POST /api/auth/token", status: 401},
			{user: alice, ip: "203.0.113.9", action: "POST /api/auth/token", status: 200},
			{user: bob, ip: "203.0.113.10", action: "POST /api/auth/token", status: 401},
			{user: carol, ip: "203.0.113.11", action: "POST /api/auth/token", status: 401},
			{user: dave, ip: "203.0.113.12", action: "POST /api/auth/token", status: 401}}, false},
		// Attack: a stolen refresh token replayed.
		{"refresh token reuse fires", "refresh_token_reuse", time.Time{}, "", []fixture{
			{user: alice, ip: "192.0.2.1", action: "EVENT refresh_token.reused"}}, true},
		{"refresh token: normal rotation", "refresh_token_reuse", time.Time{}, "", []fixture{
			{user: alice, ip: "192.0.2.1", action: "POST /api/auth/refresh", status: 200}}, false},
		// An admin acting on accounts.
		{"admin action fires", "admin_action", time.Time{}, "", []fixture{
			{user: carol, action: "POST /api/admin/users/{id}/lock", status: 204}}, true},
		{"admin event fires", "admin_action", time.Time{}, "", []fixture{
			{user: carol, action: "EVENT admin.user_disabled"}}, true},
		{"admin: ordinary requests", "admin_action", time.Time{}, "", []fixture{
			{user: carol, action: "GET /api/me", status: 200}, {user: carol, action: "GET /api/administrivia", status: 404}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := pgtest.MustDatabase(t)
			ctx := context.Background()
			rules := testRules()
			start := tc.start
			if start.IsZero() {
				start = time.Now().UTC().Truncate(rules.Window)
			}
			if tc.hours != "" {
				h, err := audit.ParseHours(tc.hours)
				if err != nil {
					t.Fatal(err)
				}
				rules.Hours = h
			}
			store := &postgres.AuditStore{Pool: d.DB.Pool} // as the server role
			for i, f := range tc.rows {
				ev := &phr.AuditEvent{Timestamp: start.Add(time.Second + time.Duration(i)*time.Millisecond + f.at), UserID: f.user,
					Action: f.action, IPAddress: f.ip, StatusCode: f.status, ResourceID: f.resource, RequestID: fmt.Sprint("q", i), UserAgent: "test"}
				if err := store.WriteAuditEvent(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			alerts, err := audit.EvaluateRules(ctx, d.DB.Pool, start, rules)
			if err != nil {
				t.Fatal(err)
			}
			fired := 0
			for _, a := range alerts {
				if a.Rule == tc.rule {
					fired++
					if a.Subject == "" || a.Count < 1 || a.FirstSeen.After(a.LastSeen) {
						t.Fatalf("alert %+v", a)
					}
				}
			}
			if got, want := fired > 0, tc.fire; got != want {
				t.Fatalf("rule %s fired = %v, want %v (alerts %+v)", tc.rule, got, want, alerts)
			}
			// A rule fires once per subject per window.
			again, err := audit.EvaluateRules(ctx, d.DB.Pool, start, rules)
			if err != nil {
				t.Fatal(err)
			}
			if len(again) != 0 {
				t.Fatalf("raised again in the same window: %+v", again)
			}
		})
	}
}

func TestAlertsAreReadOnlyThroughTheAdminFunction(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	ctx := context.Background()
	store := &postgres.AuditStore{Pool: d.DB.Pool}
	if err := store.WriteAuditEvent(ctx, &phr.AuditEvent{Timestamp: time.Now(), UserID: uuid.NewString(),
		Action: "EVENT refresh_token.reused", RequestID: "x"}); err != nil {
		t.Fatal(err)
	}
	alerts, err := audit.EvaluateRules(ctx, d.DB.Pool, time.Now().Add(-time.Minute), testRules())
	if err != nil || len(alerts) != 1 {
		t.Fatalf("alerts %+v, %v", alerts, err)
	}
	// Attack: the server role reading the alerts table directly.
	if _, err := d.DB.Pool.Exec(ctx, `SELECT * FROM audit_alerts`); err == nil {
		t.Fatal("the server role reads audit_alerts directly")
	}
	// Attack: a non-admin calling the admin listing.
	if _, err := d.DB.Pool.Exec(ctx, `SELECT * FROM admin_list_alerts(NULL, 10)`); err == nil {
		t.Fatal("admin_list_alerts answered a caller that is not an admin")
	}
}

func TestParseHours(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{{"06:00-22:00", true}, {"22:00-06:00", true}, {"00:00-24:00", true}, {"6-22", false}, {"06:00-06:00", false}, {"25:00-06:00", false}} {
		if _, err := audit.ParseHours(tc.in); (err == nil) != tc.ok {
			t.Errorf("ParseHours(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}
