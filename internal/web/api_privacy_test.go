package web_test

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/phr"
)

func consentState(t *testing.T, r *response) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, it := range r.json(t)["items"].([]any) {
		m := it.(map[string]any)
		out[m["purpose"].(string)] = m["granted"].(bool)
	}
	return out
}

func TestConsentGrantWithdrawAndHistory(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	alice := e.MustVerifiedUser("alice@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	r := e.do("GET", "/api/me/consents", alice, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET consents: %d %s", r.status, r.body)
	}
	if got := consentState(t, r); len(got) != 3 || got["assistant"] || got["research"] || got["product_emails"] {
		t.Fatalf("default consents = %v, want all three not granted", got)
	}
	for _, granted := range []bool{true, false} {
		r = e.do("PUT", "/api/me/consents", alice, map[string]any{"purpose": "assistant", "granted": granted})
		if r.status != http.StatusOK {
			t.Fatalf("PUT consent %v: %d %s", granted, r.status, r.body)
		}
		if got := consentState(t, r)["assistant"]; got != granted {
			t.Fatalf("after PUT %v: assistant = %v", granted, got)
		}
	}
	r = e.do("GET", "/api/me/consents/history", alice, nil)
	items := r.json(t)["items"].([]any)
	if r.status != http.StatusOK || len(items) != 2 || items[0].(map[string]any)["granted"] != false ||
		items[1].(map[string]any)["granted"] != true || items[0].(map[string]any)["changed_at"] == "" {
		t.Fatalf("history = %d %s", r.status, r.body)
	}
	// Bob sees nothing of Alice's choices.
	if r := e.do("GET", "/api/me/consents/history", bob, nil); len(r.json(t)["items"].([]any)) != 0 {
		t.Fatalf("bob's history: %s", r.body)
	}
	// Attack: rewrite the history as the server's role.
	for _, stmt := range []string{"UPDATE privacy_choices SET value = true", "DELETE FROM privacy_choices"} {
		if _, err := e.db.DB.Pool.Exec(context.Background(), stmt); err == nil {
			t.Errorf("%q as the app role succeeded", stmt)
		}
	}
	for name, body := range map[string]any{
		"unknown purpose":  map[string]any{"purpose": "marketing", "granted": true},
		"missing granted":  map[string]any{"purpose": "assistant"},
		"granted a string": map[string]any{"purpose": "assistant", "granted": "yes"},
		"extra field":      map[string]any{"purpose": "assistant", "granted": true, "user_id": "x"},
		"a map":            map[string]any{"assistant": true},
	} {
		if r := e.do("PUT", "/api/me/consents", alice, body); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, r.status, r.body)
		}
	}
}

func TestRestrictionObjectionAndDoNotSell(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	alice := e.MustVerifiedUser("alice@example.com")
	ctx := phr.NewContextWithUserID(context.Background(), e.do("GET", "/api/me", alice, nil).json(t)["id"].(string))
	e.do("PUT", "/api/me/consents", alice, map[string]any{"purpose": "assistant", "granted": true})
	r := e.do("POST", "/api/me/restriction", alice, nil)
	if r.status != http.StatusOK || r.json(t)["restricted"] != true || r.json(t)["restricted_at"] == nil {
		t.Fatalf("restrict: %d %s", r.status, r.body)
	}
	if ok, _ := e.db.DB.IsRestricted(ctx); !ok {
		t.Fatal("IsRestricted = false after POST /api/me/restriction")
	}
	if ok, _ := e.db.DB.HasConsent(ctx, phr.ConsentAssistant); ok {
		t.Fatal("consent acted upon while restricted")
	}
	// While restricted, nothing but storage: every processing is refused.
	for k, v := range e.do("GET", "/api/me/privacy", alice, nil).json(t)["processing"].(map[string]any) {
		if v != false {
			t.Errorf("processing %s allowed while restricted", k)
		}
	}
	if r := e.do("DELETE", "/api/me/restriction", alice, nil); r.status != http.StatusOK || r.json(t)["restricted"] != false {
		t.Fatalf("lift: %d %s", r.status, r.body)
	}
	r = e.do("PUT", "/api/me/do-not-sell", alice, map[string]any{"do_not_sell": true})
	if r.status != http.StatusOK || r.json(t)["do_not_sell"] != true {
		t.Fatalf("do-not-sell: %d %s", r.status, r.body)
	}
	r = e.do("PUT", "/api/me/objections", alice, map[string]any{"purpose": "marketing", "objected": true})
	if r.status != http.StatusOK {
		t.Fatalf("objection: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/api/me/privacy", alice, nil)
	m := r.json(t)
	if r.status != http.StatusOK || m["restricted"] != false || m["do_not_sell"] != true {
		t.Fatalf("privacy: %d %s", r.status, r.body)
	}
	objected := map[string]bool{}
	for _, it := range m["objections"].([]any) {
		o := it.(map[string]any)
		objected[o["purpose"].(string)] = o["objected"].(bool)
	}
	if len(objected) != 4 || !objected["marketing"] || objected["analytics"] {
		t.Fatalf("objections = %v", objected)
	}
	// Lifted: consent counts again; do-not-sell stops sharing.
	want := map[string]any{"assistant": true, "research": false, "product_emails": false, "analytics": true, "third_party_export": false}
	if got := m["processing"].(map[string]any); !reflect.DeepEqual(got, want) {
		t.Fatalf("processing = %v, want %v", got, want)
	}
	// Each request is logged with its deadline, answered at once.
	r = e.do("GET", "/api/me/privacy-requests", alice, nil)
	reqs := r.json(t)["items"].([]any)
	if r.status != http.StatusOK || len(reqs) != 4 {
		t.Fatalf("privacy requests: %d %s", r.status, r.body)
	}
	for _, it := range reqs {
		if q := it.(map[string]any); q["completed_at"] == nil || q["user_id"] != nil {
			t.Errorf("request %v: want completed, without user_id", q)
		}
	}
	for name, c := range map[string]struct {
		method, path string
		body         any
	}{
		"objection to an unknown purpose": {"PUT", "/api/me/objections", map[string]any{"purpose": "assistant", "objected": true}},
		"objection without objected":      {"PUT", "/api/me/objections", map[string]any{"purpose": "marketing"}},
		"do-not-sell as a string":         {"PUT", "/api/me/do-not-sell", map[string]any{"do_not_sell": "true"}},
		"do-not-sell empty":               {"PUT", "/api/me/do-not-sell", map[string]any{}},
	} {
		if r := e.do(c.method, c.path, alice, c.body); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, r.status, r.body)
		}
	}
	if r := e.do("GET", "/api/me/privacy", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("without a session: %d", r.status)
	}
}

func TestAdminSeesOpenPrivacyRequests(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	alice := e.MustVerifiedUser("alice@example.com")
	admin := e.MustVerifiedUser("admin@example.com")
	aliceID := e.do("GET", "/api/me", alice, nil).json(t)["id"].(string)
	ctx := phr.NewContextWithUserID(context.Background(), aliceID)
	req, err := e.db.DB.RecordPrivacyRequest(ctx, phr.RequestExport)
	if err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/api/me/restriction", alice, nil) // answered at once: not open
	// A plain user gets 403.
	if r := e.do("GET", "/api/admin/privacy-requests", alice, nil); r.status != http.StatusForbidden {
		t.Fatalf("plain user: %d %s", r.status, r.body)
	}
	e.mustAdminWithMFA(admin)
	r := e.do("GET", "/api/admin/privacy-requests", admin, nil)
	if r.status != http.StatusOK {
		t.Fatalf("admin: %d %s", r.status, r.body)
	}
	items := r.json(t)["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("open requests = %s, want the export only", r.body)
	}
	it := items[0].(map[string]any)
	if it["id"] != req.ID || it["user_id"] != aliceID || it["kind"] != "export" || it["completed_at"] != nil {
		t.Fatalf("open request = %v", it)
	}
	received, _ := time.Parse(time.RFC3339Nano, it["received_at"].(string))
	due, _ := time.Parse(time.RFC3339Nano, it["due_at"].(string))
	if !due.Equal(received.AddDate(0, 1, 0)) && received.Day() <= 28 {
		t.Fatalf("due %v, want one month after %v", due, received)
	}
	if d := due.Sub(time.Now()); d < 27*24*time.Hour || d > 32*24*time.Hour {
		t.Fatalf("due in %v, want about a month", d)
	}
	if r := e.do("GET", "/api/admin/privacy-requests?status=all", admin, nil); len(r.json(t)["items"].([]any)) != 2 {
		t.Fatalf("all requests: %s", r.body)
	}
	for _, q := range []string{"?status=closed", "?limit=0", "?cursor=not-a-uuid"} {
		if r := e.do("GET", "/api/admin/privacy-requests"+q, admin, nil); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, r.status, r.body)
		}
	}
}
