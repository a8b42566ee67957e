package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestHealthRecordCRUD(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	r := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Knee pain",
		"content": map[string]any{"text": "left knee, after running"}, "recorded_at": "2024-03-01T10:00:00Z"})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	rec := r.json(t)
	id := rec["id"].(string)
	if got, want := r.header.Get("Location"), "/api/health-records/"+id; got != want {
		t.Fatalf("Location = %q, want %q", got, want)
	}
	if r := e.do("GET", "/api/health-records/"+id, ana, nil); r.status != http.StatusOK || r.json(t)["title"] != "Knee pain" {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	r = e.do("PATCH", "/api/health-records/"+id, ana, map[string]any{"title": "Knee pain (better)"})
	if r.status != http.StatusOK || r.json(t)["title"] != "Knee pain (better)" {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if got := r.json(t)["content"].(map[string]any)["text"]; got != "left knee, after running" {
		t.Fatalf("patch of the title changed the content: %v", got)
	}
	list := e.do("GET", "/api/health-records?kind=note", ana, nil).json(t)
	if items := list["items"].([]any); len(items) != 1 {
		t.Fatalf("list = %d items, want 1", len(items))
	}
	if r := e.do("DELETE", "/api/health-records/"+id, ana, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/api/health-records/"+id, ana, nil); r.status != http.StatusNotFound {
		t.Fatalf("get after delete: %d, want 404", r.status)
	}
}

func TestAnotherUsersDataIsNotFoundLikeARandomID(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	rec := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "condition", "title": "Asthma", "content": "since 2001"}).json(t)
	if r := e.do("POST", "/api/imports/fhir", ana, smallBundle); r.status != http.StatusOK {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	results := e.do("GET", "/api/test-results", ana, nil).json(t)["items"].([]any)
	if len(results) == 0 {
		t.Fatal("ana has no test results")
	}
	resultID := results[0].(map[string]any)["id"].(string)
	random := uuid.NewString()
	cases := []struct {
		name, method, path string
		body               any
	}{
		{"read a result", "GET", "/api/test-results/%s", nil},
		{"read a record", "GET", "/api/health-records/%s", nil},
		{"update a record", "PATCH", "/api/health-records/%s", map[string]any{"title": "mine now"}},
		{"delete a record", "DELETE", "/api/health-records/%s", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := rec["id"].(string)
			if strings.Contains(c.path, "test-results") {
				id = resultID
			}
			theirs := e.do(c.method, strings.Replace(c.path, "%s", id, 1), bob, c.body)
			none := e.do(c.method, strings.Replace(c.path, "%s", random, 1), bob, c.body)
			if theirs.status != http.StatusNotFound || none.status != http.StatusNotFound {
				t.Fatalf("statuses %d (another user's) and %d (random), want 404", theirs.status, none.status)
			}
			if withoutRequestID(theirs.body) != withoutRequestID(none.body) {
				t.Fatalf("bodies differ:\n%s\n%s", theirs.body, none.body)
			}
		})
	}
	if got := e.do("GET", "/api/health-records/"+rec["id"].(string), ana, nil).json(t)["title"]; got != "Asthma" {
		t.Fatalf("ana's record after bob's attempts: title %v", got)
	}
	if items := e.do("GET", "/api/test-results", bob, nil).json(t)["items"].([]any); len(items) != 0 {
		t.Fatalf("bob lists %d of ana's results", len(items))
	}
}

func TestACiphertextMovedInTheDatabaseFailsCleanly(t *testing.T) {
	t.Parallel()
	e := MustEnv(t)
	ana := e.MustVerifiedUser("ana@example.com")
	bob := e.MustVerifiedUser("bob@example.com")
	a1 := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Secret diagnosis", "content": "x"}).json(t)["id"].(string)
	a2 := e.do("POST", "/api/health-records", ana, map[string]any{"kind": "note", "title": "Other", "content": "y"}).json(t)["id"].(string)
	b1 := e.do("POST", "/api/health-records", bob, map[string]any{"kind": "note", "title": "Bob's", "content": "z"}).json(t)["id"].(string)
	ctx := context.Background()
	// A thief with write access to the database moves ciphertext around, as the owner.
	var title string
	userOf := func(token string) string { return e.do("GET", "/api/me", token, nil).json(t)["id"].(string) }
	anaID, bobID := userOf(ana), userOf(bob)
	tx, _ := e.owner.Begin(ctx)
	tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", anaID)
	if err := tx.QueryRow(ctx, "SELECT title FROM health_records WHERE id = $1", a1).Scan(&title); err != nil {
		t.Fatal(err)
	}
	// Attack: another row of the same user, and another column of the same row.
	tx.Exec(ctx, "UPDATE health_records SET title = $2 WHERE id = $1", a2, title)
	tx.Exec(ctx, "UPDATE health_records SET content = $2 WHERE id = $1", a1, title)
	tx.Commit(ctx)
	tx, _ = e.owner.Begin(ctx)
	tx.Exec(ctx, "SELECT set_config('app.current_user_id', $1, true)", bobID)
	// Attack: another user's row.
	tx.Exec(ctx, "UPDATE health_records SET title = $2 WHERE id = $1", b1, title)
	tx.Commit(ctx)
	for _, c := range []struct{ token, id string }{{ana, a2}, {ana, a1}, {bob, b1}} {
		r := e.do("GET", "/api/health-records/"+c.id, c.token, nil)
		if r.status != http.StatusInternalServerError || r.json(t)["code"] != "internal" {
			t.Fatalf("moved ciphertext: %d %s, want a plain 500", r.status, r.body)
		}
		for _, leak := range []string{"Secret diagnosis", "health_records", "decrypt", "cipher", "v1:"} {
			if strings.Contains(string(r.body), leak) {
				t.Fatalf("the answer tells %q: %s", leak, r.body)
			}
		}
	}
	if strings.Contains(e.logs.String(), "Secret diagnosis") {
		t.Fatal("the log holds the plaintext")
	}
}
