package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vitalnexa/vitalnexa/internal/pgtest"
	"github.com/vitalnexa/vitalnexa/internal/phr"
)

func TestPrivacyRequestDueAt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"2025-03-10T12:00:00Z", "2025-04-10T12:00:00Z"},
		{"2025-01-31T08:00:00Z", "2025-02-28T08:00:00Z"}, // no 31 February: the month's last day
		{"2024-01-31T08:00:00Z", "2024-02-29T08:00:00Z"},
		{"2025-12-15T00:00:00Z", "2026-01-15T00:00:00Z"},
		{"2025-03-10T23:30:00-05:00", "2025-04-11T04:30:00Z"}, // counted in UTC
	} {
		in, _ := time.Parse(time.RFC3339, tc.in)
		if got := phr.PrivacyRequestDueAt(in).Format(time.RFC3339); got != tc.want {
			t.Errorf("PrivacyRequestDueAt(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestConsentIsAppendedAndWithdrawnAtOnce(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	ok, err := d.DB.HasConsent(alice, phr.ConsentAssistant)
	if err != nil || ok {
		t.Fatalf("consent before any choice = %v, %v; want false", ok, err)
	}
	for _, granted := range []bool{true, false, true} {
		if err := d.DB.SetConsent(alice, phr.ConsentAssistant, granted); err != nil {
			t.Fatal(err)
		}
		if ok, err := d.DB.HasConsent(alice, phr.ConsentAssistant); err != nil || ok != granted {
			t.Fatalf("after setting %v: HasConsent = %v, %v", granted, ok, err)
		}
	}
	if err := d.DB.SetConsent(alice, phr.ConsentAssistant, false); err != nil {
		t.Fatal(err)
	}
	if ok, _ := d.DB.HasConsent(alice, phr.ConsentAssistant); ok {
		t.Fatal("a withdrawal did not take effect at once")
	}
	hist, next, err := d.DB.FindPrivacyChoices(alice, phr.ChoiceConsent, "", 0)
	if err != nil || next != "" {
		t.Fatal(err, next)
	}
	var values []bool
	for _, c := range hist {
		values = append(values, c.Value)
	}
	if got, want := values, []bool{false, true, false, true}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[3] != want[3] {
		t.Fatalf("history newest first = %v, want %v", got, want)
	}
	// Pages of two visit all four.
	page, next, err := d.DB.FindPrivacyChoices(alice, phr.ChoiceConsent, "", 2)
	if err != nil || len(page) != 2 || next == "" {
		t.Fatalf("page 1 = %d, %q, %v", len(page), next, err)
	}
	page, next, err = d.DB.FindPrivacyChoices(alice, phr.ChoiceConsent, next, 2)
	if err != nil || len(page) != 2 || next != "" || page[1].ID != hist[3].ID {
		t.Fatalf("page 2 = %d, %q, %v", len(page), next, err)
	}
	// Bob sees nothing of Alice's.
	if hist, _, err := d.DB.FindPrivacyChoices(bob, "", "", 0); err != nil || len(hist) != 0 {
		t.Fatalf("bob's history = %d, %v; want none", len(hist), err)
	}
	if st, err := d.DB.FindPrivacySettings(bob); err != nil || st.Consents[phr.ConsentAssistant] {
		t.Fatalf("bob's settings = %+v, %v", st, err)
	}
	for _, bad := range []string{"", "Assistant", "marketing"} {
		if err := d.DB.SetConsent(alice, bad, true); phr.ErrorCode(err) != phr.EINVALID {
			t.Errorf("SetConsent(%q) = %v, want invalid", bad, err)
		}
	}
	if _, _, err := d.DB.FindPrivacyChoices(alice, "", "x1", 0); phr.ErrorCode(err) != phr.EINVALID {
		t.Errorf("bad cursor: %v, want invalid", err)
	}
}

func TestPrivacyChoicesAreAppendOnly(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	if err := d.DB.SetConsent(alice, phr.ConsentResearch, true); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.SetRestricted(alice, true); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, url := range map[string]string{"app": d.AppURL, "owner": d.OwnerURL} {
		pool := pgtest.MustPool(t, url, 1)
		for _, stmt := range []string{
			// Attack: rewrite history so that consent seems never to have been withdrawn.
			"UPDATE privacy_choices SET value = NOT value",
			"DELETE FROM privacy_choices",
			"TRUNCATE privacy_choices",
			// Attack: erase a request from the deadline log, or move its deadline.
			"DELETE FROM privacy_requests",
			"UPDATE privacy_requests SET due_at = due_at + interval '1 year'",
		} {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", phr.UserIDFromContext(alice)); err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, stmt)
			tx.Rollback(ctx)
			if name == "owner" && strings.Contains(stmt, "privacy_requests") {
				continue // the owner owns the log; only the server's role is held to it
			}
			if err == nil {
				t.Errorf("%s: %q succeeded", name, stmt)
			}
		}
	}
	hist, _, err := d.DB.FindPrivacyChoices(alice, "", "", 0)
	if err != nil || len(hist) != 2 || !hist[0].Value || hist[0].Kind != phr.ChoiceRestriction {
		t.Fatalf("history after the attempts = %+v, %v", hist, err)
	}
	// An erasure takes the choices with the user, but the deadline log keeps its rows.
	if _, err := d.DB.EraseUser(alice); err != nil {
		t.Fatal(err)
	}
	var choices, requests int
	owner := pgtest.MustPool(t, d.AdminURL, 1)
	if err := owner.QueryRow(ctx, "SELECT (SELECT count(*) FROM privacy_choices), (SELECT count(*) FROM privacy_requests)").Scan(&choices, &requests); err != nil {
		t.Fatal(err)
	}
	if choices != 0 || requests != 1 {
		t.Fatalf("after the erasure: %d choices, %d requests; want 0 and 1", choices, requests)
	}
}

func TestRestrictionDoNotSellAndObjections(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	if err := d.DB.SetConsent(alice, phr.ConsentAssistant, true); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.SetRestricted(alice, true); err != nil {
		t.Fatal(err)
	}
	if r, err := d.DB.IsRestricted(alice); err != nil || !r {
		t.Fatalf("IsRestricted = %v, %v", r, err)
	}
	// A restriction stops processing on consent too.
	if ok, _ := d.DB.HasConsent(alice, phr.ConsentAssistant); ok {
		t.Fatal("consent counted while processing is restricted")
	}
	if err := d.DB.SetRestricted(alice, false); err != nil {
		t.Fatal(err)
	}
	if r, _ := d.DB.IsRestricted(alice); r {
		t.Fatal("restriction not lifted")
	}
	if ok, _ := d.DB.HasConsent(alice, phr.ConsentAssistant); !ok {
		t.Fatal("consent not back after the restriction was lifted")
	}
	if err := d.DB.SetDoNotSell(alice, true); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.SetObjection(alice, phr.ObjectionMarketing, true); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.SetObjection(alice, "assistant", true); phr.ErrorCode(err) != phr.EINVALID {
		t.Fatalf("objection to an unknown purpose: %v", err)
	}
	st, err := d.DB.FindPrivacySettings(alice)
	if err != nil {
		t.Fatal(err)
	}
	if st.Restricted || !st.DoNotSell || !st.Objections[phr.ObjectionMarketing] || st.Objections[phr.ObjectionAnalytics] ||
		!st.Consents[phr.ConsentAssistant] || len(st.Objections) != 4 || len(st.Consents) != 3 {
		t.Fatalf("settings = %+v", st)
	}
	reqs, err := d.DB.FindPrivacyRequests(alice)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(reqs), 4; got != want { // restrict, lift, do-not-sell, objection
		t.Fatalf("%d requests logged, want %d", got, want)
	}
	for _, r := range reqs {
		if r.CompletedAt.IsZero() || !r.DueAt.Equal(phr.PrivacyRequestDueAt(r.ReceivedAt)) {
			t.Errorf("request %+v: want completed, due one month out", r)
		}
	}
}

func TestPrivacyRequestsDeadlineLog(t *testing.T) {
	t.Parallel()
	d := pgtest.MustDatabase(t)
	alice := MustUser(t, d.DB, "alice@example.com")
	bob := MustUser(t, d.DB, "bob@example.com")
	admin := MustUser(t, d.DB, "admin@example.com")
	req, err := d.DB.RecordPrivacyRequest(alice, phr.RequestExport)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB.RecordPrivacyRequest(alice, "sell"); phr.ErrorCode(err) != phr.EINVALID {
		t.Fatalf("unknown kind: %v", err)
	}
	// Bob neither sees nor completes Alice's request.
	if list, err := d.DB.FindPrivacyRequests(bob); err != nil || len(list) != 0 {
		t.Fatalf("bob sees %d requests (%v)", len(list), err)
	}
	if err := d.DB.CompletePrivacyRequest(bob, req.ID); phr.ErrorCode(err) != phr.ENOTFOUND {
		t.Fatalf("bob completing alice's request: %v, want not_found", err)
	}
	// Plain users get no admin listing; nor does an admin without MFA.
	if _, _, err := d.DB.FindPrivacyRequestsForAdmin(bob, phr.PrivacyRequestFilter{}); phr.ErrorCode(err) != phr.EFORBIDDEN {
		t.Fatalf("plain user: %v, want forbidden", err)
	}
	mustAdmin(t, d, admin, true)
	list, _, err := d.DB.FindPrivacyRequestsForAdmin(admin, phr.PrivacyRequestFilter{})
	if err != nil || len(list) != 1 || list[0].ID != req.ID || list[0].UserID != phr.UserIDFromContext(alice) {
		t.Fatalf("admin's open requests = %+v, %v", list, err)
	}
	if got, want := list[0].DueAt, req.ReceivedAt.AddDate(0, 1, 0); got.Sub(want).Abs() > 72*time.Hour {
		t.Fatalf("due %v, want about %v", got, want)
	}
	if err := d.DB.CompletePrivacyRequest(alice, req.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.DB.CompletePrivacyRequest(alice, req.ID); phr.ErrorCode(err) != phr.ECONFLICT {
		t.Fatalf("completing twice: %v, want conflict", err)
	}
	if list, _, err := d.DB.FindPrivacyRequestsForAdmin(admin, phr.PrivacyRequestFilter{}); err != nil || len(list) != 0 {
		t.Fatalf("open requests after completion = %d, %v", len(list), err)
	}
	// Pages of one visit every request, by due date.
	for i := 0; i < 3; i++ {
		if _, err := d.DB.RecordPrivacyRequest(bob, phr.RequestRectification); err != nil {
			t.Fatal(err)
		}
	}
	seen, cursor := 0, ""
	for {
		page, next, err := d.DB.FindPrivacyRequestsForAdmin(admin, phr.PrivacyRequestFilter{All: true, Cursor: cursor, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		seen += len(page)
		if next == "" {
			break
		}
		cursor = next
	}
	if seen != 4 {
		t.Fatalf("pages visited %d requests, want 4", seen)
	}
}
