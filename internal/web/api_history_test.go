package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/vitalnexa/vitalnexa/internal/pgtest"
)

// historyItems returns the entries of a history page, failing unless it answered 200.
func (e *testEnv) historyItems(path, token string) []map[string]any {
	e.t.Helper()
	r := e.do("GET", path, token, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	var out []map[string]any
	for _, it := range r.json(e.t)["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

func previous(entry map[string]any) map[string]any { return entry["previous"].(map[string]any) }

func TestProfileCorrectionKeepsTheOldValuesInHistory(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	me := e.do("GET", "/api/me", ana, nil).json(t)
	for name, body := range map[string]map[string]any{
		"blank name":       {"full_name": "   "},
		"future birth":     {"date_of_birth": "2999-01-01"},
		"not a date":       {"date_of_birth": "1980-13-40"},
		"name with a NUL":  {"full_name": "Ana\u0000Bad"},
		"nothing to do":    {"current_password": testPassword},
		"someone else's":   {"full_name": "Mallory", "user_id": uuid.NewString()}, // Attack: rename another account.
		"a field not ours": {"role": "admin"},                                     // Attack: promote oneself.
	} {
		if r := e.do("PATCH", "/api/me", ana, body); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, r.status, r.body)
		}
	}
	r := e.do("PATCH", "/api/me", ana, map[string]any{"full_name": "  Ana Correct ", "date_of_birth": "1981-04-05"})
	if r.status != http.StatusOK {
		t.Fatalf("correct: %d %s", r.status, r.body)
	}
	got := r.json(t)
	if got["full_name"] != "Ana Correct" || got["date_of_birth"] != "1981-04-05" || got["email"] != "ana@example.com" || got["id"] != me["id"] ||
		len(got) != len(me) {
		t.Fatalf("answer %v, want the profile as GET /api/me shows it (%v)", got, me)
	}
	if again := e.do("GET", "/api/me", ana, nil).json(t); again["full_name"] != "Ana Correct" || again["date_of_birth"] != "1981-04-05" {
		t.Fatalf("GET /api/me after the correction: %v", again)
	}
	// The same values again change nothing and add no entry.
	if r := e.do("PATCH", "/api/me", ana, map[string]any{"full_name": "Ana Correct"}); r.status != http.StatusOK {
		t.Fatalf("repeat: %d %s", r.status, r.body)
	}
	hist := e.historyItems("/api/me/history", ana)
	if len(hist) != 1 {
		t.Fatalf("%d profile entries, want 1: %v", len(hist), hist)
	}
	if h := hist[0]; h["entity"] != "profile" || h["entity_id"] != me["id"] || h["action"] != "update" ||
		previous(h)["full_name"] != "Person ana@example.com" || previous(h)["date_of_birth"] != "1980-02-03" || len(previous(h)) != 2 {
		t.Fatalf("entry %v", h)
	}
	// Each correction is a rectification request, answered at once.
	n := 0
	for _, it := range e.do("GET", "/api/me/privacy-requests", ana, nil).json(t)["items"].([]any) {
		if q := it.(map[string]any); q["kind"] == "rectification" {
			n++
			if q["completed_at"] == nil {
				t.Errorf("rectification request %v is open", q)
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d rectification requests, want 2", n)
	}
	if e.countAudit("PATCH /api/me") != 9 || e.countAudit("GET /api/me/history") != 1 {
		t.Fatalf("audit rows: %d PATCH, %d history", e.countAudit("PATCH /api/me"), e.countAudit("GET /api/me/history"))
	}
	if strings.Contains(e.logs.String(), "Ana Correct") || strings.Contains(e.logs.String(), "1981-04-05") {
		t.Fatal("the log holds the corrected PHI")
	}
}

func TestEmailCorrectionLandsOnlyOnceConfirmed(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	// Attack: a borrowed session moves the account with a wrong password, and a rename
	// in the same request must not slip through either.
	r := e.do("PATCH", "/api/me", ana, map[string]any{"email": "thief@evil.example", "current_password": "Wrong-Passw0rd!", "full_name": "Thief"})
	if r.status != http.StatusBadRequest || r.json(t)["field"] != "current_password" {
		t.Fatalf("wrong current password: %d %s", r.status, r.body)
	}
	if me := e.do("GET", "/api/me", ana, nil).json(t); me["full_name"] != "Person ana@example.com" {
		t.Fatalf("a refused correction changed the name: %v", me["full_name"])
	}
	if e.countMails("thief@evil.example", "Confirm") != 0 {
		t.Fatal("a link went out for a refused change")
	}
	// The address shown, sent back with the form, is no change: no password, no mail.
	if r := e.do("PATCH", "/api/me", ana, map[string]any{"email": "ana@example.com", "full_name": "Ana Person"}); r.status != http.StatusOK {
		t.Fatalf("unchanged address: %d %s", r.status, r.body)
	}
	// A password sent with a rename alone is checked as well: a wrong one changes nothing.
	r = e.do("PATCH", "/api/me", ana, map[string]any{"full_name": "Thief", "current_password": "Wrong-Passw0rd!"})
	if r.status != http.StatusBadRequest || r.json(t)["field"] != "current_password" {
		t.Fatalf("rename with a wrong current password: %d %s", r.status, r.body)
	}
	if me := e.do("GET", "/api/me", ana, nil).json(t); me["full_name"] != "Ana Person" {
		t.Fatalf("a rename with a wrong password changed the name: %v", me["full_name"])
	}
	r = e.do("PATCH", "/api/me", ana, map[string]any{"email": "ana@new.example", "current_password": testPassword})
	if r.status != http.StatusOK || r.json(t)["email"] != "ana@example.com" {
		t.Fatalf("change: %d %s, want 200 with the old address until confirmed", r.status, r.body)
	}
	if got := e.countMails("ana@example.com", "change of your VitalNexa email"); got != 1 {
		t.Fatalf("%d notices to the old address, want 1", got)
	}
	for _, h := range e.historyItems("/api/me/history", ana) {
		if _, ok := previous(h)["email"]; ok {
			t.Fatalf("the address is in the history before the change is confirmed: %v", h)
		}
	}
	link := e.linkToken("ana@new.example", "/confirm-email")
	if r := e.do("POST", "/api/auth/confirm-email", "", map[string]string{"token": link}); r.status != http.StatusOK {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	if me := e.do("GET", "/api/me", ana, nil).json(t); me["email"] != "ana@new.example" {
		t.Fatalf("email after confirmation: %v", me["email"])
	}
	hist := e.historyItems("/api/me/history", ana)
	if len(hist) != 2 || previous(hist[0])["email"] != "ana@example.com" || len(previous(hist[0])) != 1 ||
		previous(hist[1])["full_name"] != "Person ana@example.com" {
		t.Fatalf("history after the confirmation: %v", hist)
	}
}

func TestTestResultCorrectionAndDeletionKeepTheOldValues(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	if r := e.do("POST", "/api/imports/fhir", ana, smallBundle, "Content-Type", "application/fhir+json"); r.status != http.StatusOK {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	var glucose map[string]any
	for _, it := range e.do("GET", "/api/test-results", ana, nil).json(t)["items"].([]any) {
		if m := it.(map[string]any); m["name"] == "Glucose" {
			glucose = m
		}
	}
	id := glucose["id"].(string)
	path := "/api/test-results/" + id
	for name, body := range map[string]map[string]any{
		"a word for a quantity": {"value": "quite high"},
		"an empty name":         {"name": ""},
		"a date before 1800":    {"effective_at": "1700-01-01T00:00:00Z"},
		"the code":              {"code": "718-7"}, // the lab's coding is not the user's to change
		"nothing":               {},
	} {
		if r := e.do("PATCH", path, ana, body); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", name, r.status, r.body)
		}
	}
	r := e.do("PATCH", path, ana, map[string]any{"value": "5.55", "unit": "mmol/L", "notes": "converted by my doctor"})
	if r.status != http.StatusOK {
		t.Fatalf("correct: %d %s", r.status, r.body)
	}
	if got := r.json(t); got["value"] != "5.55" || got["unit"] != "mmol/L" || got["name"] != "Glucose" || got["code"] != "2339-0" {
		t.Fatalf("answer %v", got)
	}
	hist := e.historyItems(path+"/history", ana)
	if len(hist) != 1 || hist[0]["entity"] != "test_result" || hist[0]["entity_id"] != id ||
		previous(hist[0])["value"] != glucose["value"] || previous(hist[0])["unit"] != "mg/dL" || previous(hist[0])["notes"] != "" {
		t.Fatalf("history %v (was %v)", hist, glucose)
	}
	// Attack: another user reads, corrects or deletes the result, or reads its history.
	for _, c := range []struct {
		method, suffix string
		body           any
	}{{"GET", "/history", nil}, {"PATCH", "", map[string]any{"value": "1"}}, {"DELETE", "", nil}} {
		theirs := e.do(c.method, path+c.suffix, bob, c.body)
		none := e.do(c.method, "/api/test-results/"+uuid.NewString()+c.suffix, bob, c.body)
		if theirs.status != http.StatusNotFound || withoutRequestID(theirs.body) != withoutRequestID(none.body) {
			t.Fatalf("bob %s %s: %d %s, want the 404 of an unknown id (%s)", c.method, c.suffix, theirs.status, theirs.body, none.body)
		}
	}
	if r := e.do("DELETE", path, ana, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("GET", path, ana, nil); r.status != http.StatusNotFound {
		t.Fatalf("get after delete: %d", r.status)
	}
	hist = e.historyItems(path+"/history", ana)
	if len(hist) != 2 || hist[0]["action"] != "delete" || previous(hist[0])["value"] != "5.55" || previous(hist[0])["code"] != "2339-0" {
		t.Fatalf("history after the deletion %v", hist)
	}
	if all := e.historyItems("/api/me/history?entity=test_result", ana); len(all) != 2 {
		t.Fatalf("/api/me/history?entity=test_result: %v", all)
	}
	if r := e.do("GET", path+"/history", bob, nil); r.status != http.StatusNotFound {
		t.Fatalf("bob reads the deleted result's history: %d", r.status)
	}
	if got := e.historyItems("/api/me/history?entity=all", bob); len(got) != 0 {
		t.Fatalf("bob's history holds %v", got)
	}
	if strings.Contains(e.logs.String(), "converted by my doctor") {
		t.Fatal("the log holds the correction")
	}
}

func TestDeletedHealthRecordStaysInHistory(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	id := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "allergy", "title": "Peanuts",
		"content": map[string]any{"severity": "mild"}, "recorded_at": "2024-03-01T10:00:00Z"}).json(t)["id"].(string)
	path := "/api/health-records/" + id
	if got := e.historyItems(path+"/history", ana); len(got) != 0 {
		t.Fatalf("an unchanged record has history %v", got)
	}
	if r := e.do("GET", path+"/history", bob, nil); r.status != http.StatusNotFound {
		t.Fatalf("bob reads ana's record history: %d", r.status)
	}
	e.do("PATCH", path, ana, map[string]any{"content": map[string]any{"severity": "severe"}})
	if r := e.do("DELETE", path, ana, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	hist := e.historyItems(path+"/history", ana)
	if len(hist) != 2 {
		t.Fatalf("history %v", hist)
	}
	last := previous(hist[0])
	if hist[0]["action"] != "delete" || last["title"] != "Peanuts" || last["kind"] != "allergy" ||
		last["content"].(map[string]any)["severity"] != "severe" || last["recorded_at"] != "2024-03-01T10:00:00Z" {
		t.Fatalf("the deleted record's last values: %v", hist[0])
	}
	if prev := previous(hist[1]); prev["content"].(map[string]any)["severity"] != "mild" || len(prev) != 1 {
		t.Fatalf("the correction's entry: %v", hist[1])
	}
	if got := e.historyItems("/api/me/history?entity=health_record&limit=1", ana); len(got) != 1 || got[0]["action"] != "delete" {
		t.Fatalf("first page of the record history: %v", got)
	}
	for _, q := range []string{"?entity=files", "?entity=", "?limit=0", "?cursor=forged"} {
		if r := e.do("GET", "/api/me/history"+q, ana, nil); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, r.status)
		}
	}
	// Attack: a deleted record of another user is as unknown as one that never was.
	theirs := e.do("GET", path+"/history", bob, nil)
	none := e.do("GET", "/api/health-records/"+uuid.NewString()+"/history", bob, nil)
	if theirs.status != http.StatusNotFound || withoutRequestID(theirs.body) != withoutRequestID(none.body) {
		t.Fatalf("bob: %d %s / %s", theirs.status, theirs.body, none.body)
	}
}

func TestErasureTakesTheHistory(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	e.MustVerifiedUser("bob@example.com")
	anaID := e.do("GET", "/api/me", ana, nil).json(t)["id"].(string)
	e.do("PATCH", "/api/me", ana, map[string]any{"full_name": "Ana Renamed"})
	id := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Diary", "content": "x"}).json(t)["id"].(string)
	e.do("DELETE", "/api/health-records/"+id, ana, nil)
	if got := e.historyItems("/api/me/history?entity=all", ana); len(got) != 2 {
		t.Fatalf("history before the erasure: %v", got)
	}
	r := e.do("DELETE", "/api/me", ana, map[string]string{"password": testPassword})
	if r.status != http.StatusOK {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	if got := r.json(t)["receipt"].(map[string]any)["erased"].(map[string]any)["change_history"]; got != 2.0 {
		t.Fatalf("the receipt counts %v history entries, want 2", got)
	}
	var n int
	if err := pgtest.MustPool(t, e.db.AdminURL, 1).QueryRow(t.Context(), `SELECT count(*) FROM change_history WHERE user_id = $1`, anaID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d history rows of the erased user are left", n)
	}
}
